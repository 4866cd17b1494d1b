#!/bin/sh
# Starts a grandchild, writes both pids to the file $1, and sleeps: killed at
# the deadline, with its grandchild.
sleep 300 &
echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"
sleep 300
