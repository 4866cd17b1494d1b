#!/bin/sh
# Replies {"got": ARGS}: reads its stdin (one JSON text) and echoes it back.
read -r args
printf '{"got": %s}\n' "$args"
