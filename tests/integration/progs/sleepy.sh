#!/bin/sh
# Sleeps $1 seconds, then replies.
sleep "$1"
echo '{"slept": true}'
