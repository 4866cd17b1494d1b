#!/bin/sh
# Two stderr lines, then a reply.
echo "first line" >&2
echo "second line" >&2
echo '{"ok": true}'
