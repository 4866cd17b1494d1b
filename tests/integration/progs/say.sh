#!/bin/sh
# Prints its first argument as its reply (valid JSON or not).
printf '%s\n' "$1"
