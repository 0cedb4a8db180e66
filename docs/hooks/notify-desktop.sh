#!/bin/sh
# AUTOSSH_HOOK example: a desktop notification on each tunnel state change (notify-send, from
# libnotify-bin). For a user's own autossh in a desktop session:
#   AUTOSSH_HOOK=$HOME/bin/notify-desktop.sh autossh -M 0 -N -L 5432:127.0.0.1:5432 db-gateway
# autossh sets AUTOSSH_TUNNEL (empty for the command line's tunnel), AUTOSSH_STATE (up, down,
# port-held, stopping, stopped, failed), AUTOSSH_REASON and AUTOSSH_DOWN_FOR (seconds); it kills a hook
# still running after 10 s.
name=${AUTOSSH_TUNNEL:-tunnel}
case $AUTOSSH_STATE in
  up) urgency=low; text="back after ${AUTOSSH_DOWN_FOR} s" ;;
  down) urgency=normal; text=$AUTOSSH_REASON ;;
  port-held) urgency=normal; text="$AUTOSSH_REASON (see autossh's log for the sshd fix)" ;;
  failed) urgency=critical; text="gave up: $AUTOSSH_REASON" ;;
  *) urgency=low; text=$AUTOSSH_STATE ;;
esac
exec notify-send --app-name=autossh --urgency="$urgency" "autossh: $name $AUTOSSH_STATE" "$text"
