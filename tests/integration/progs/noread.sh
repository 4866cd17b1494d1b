#!/bin/sh
# Never reads its stdin; writes much before exiting.
exec 0<&-
i=0
while [ $i -lt 2000 ]; do echo "                                                  "; i=$((i+1)); done
echo '{"ignored": "stdin"}'
