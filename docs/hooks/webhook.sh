#!/bin/sh
# AUTOSSH_HOOK example: POST each tunnel state change as JSON to a webhook (a chat room's
# incoming webhook, an alerting gateway). The URL comes from the environment autossh runs in
# (e.g. a systemd drop-in: Environment=AUTOSSH_WEBHOOK_URL=https://hooks.example.org/T/B/X).
#   AUTOSSH_HOOK=/usr/local/bin/autossh-webhook.sh
# autossh kills a hook still running after 10 s: curl gives up before that.
set -eu
url=${AUTOSSH_WEBHOOK_URL:?set AUTOSSH_WEBHOOK_URL}
# JSON strings: backslashes and quotes escaped, control characters dropped.
esc() { printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g'; }
host=$(hostname)
body=$(printf '{"host": "%s", "tunnel": "%s", "state": "%s", "reason": "%s", "down_for_s": %s, "text": "autossh on %s: %s %s"}' \
  "$(esc "$host")" "$(esc "${AUTOSSH_TUNNEL:-}")" "$(esc "$AUTOSSH_STATE")" \
  "$(esc "${AUTOSSH_REASON:-}")" "${AUTOSSH_DOWN_FOR:-0}" \
  "$(esc "$host")" "$(esc "${AUTOSSH_TUNNEL:-tunnel}")" "$(esc "$AUTOSSH_STATE")")
exec curl --silent --show-error --fail --max-time 8 \
  --header 'Content-Type: application/json' --data "$body" "$url"
