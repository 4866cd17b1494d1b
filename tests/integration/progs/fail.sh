#!/bin/sh
# Exits with the status given as its first argument, after a line on stderr.
echo "failing with $1" >&2
exit "$1"
