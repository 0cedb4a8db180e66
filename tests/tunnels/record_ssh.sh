#!/bin/sh
# A recording wrapper around the real ssh (not a fake): appends its arguments as one line to
# $TUNNELS_TEST_RECORD, then becomes /usr/bin/ssh. The file-error tests point AUTOSSH_PATH here
# to prove that no ssh (not even `ssh -G`) was started.
if [ -n "$TUNNELS_TEST_RECORD" ]; then
  printf '%s\n' "$*" >>"$TUNNELS_TEST_RECORD"
fi
exec /usr/bin/ssh "$@"
