#!/usr/bin/env bash
# Runs the image (scripts/container.sh test) against a private sshd on 127.0.0.1, as UID 4242
# with the key and known_hosts mounted read-only and a read-only root: /healthz answers 200, a
# request goes through the tunnel, the image's HEALTHCHECK and `autossh health` pass, the
# process runs as 4242, podman stop ends it with exit 0. Everything is removed on exit.
#   bash scripts/container-test.sh IMAGE [PODMAN RUN OPTIONS...]
set -euo pipefail
IMAGE=$1
shift
RUN_OPTS=("$@")
UID_IN=4242
work=$(mktemp -d /tmp/autossh-container.XXXXXX)
name=autossh-test-$$
sshd_pid=
svc_pid=
cleanup() {
  local rc=$?
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  [ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null || true
  [ -z "$svc_pid" ] || kill "$svc_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "--- container log ---" >&2
    cat "$work/container.log" 2>/dev/null >&2 || true
    echo "--- sshd log ---" >&2
    tail -n 20 "$work/sshd.log" 2>/dev/null >&2 || true
  fi
  rm -rf "$work"
  if [ -n "${CI:-}" ] && [ -z "${CONTAINER_KEEP_IMAGE:-}" ]; then
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Polls "$@" every 200 ms until it succeeds, at most $1 seconds (bounded, never a fixed sleep).
wait_for() {
  local limit=$1 end
  shift
  end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$work/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$work/authorized_keys"
sshd_port=$(free_port)
cat >"$work/sshd_config" <<CFG
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel VERBOSE
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
# The server's host key pinned, as a ConfigMap would give it.
echo "[127.0.0.1]:$sshd_port $(cut -d' ' -f1-2 "$work/host_key.pub")" >"$work/known_hosts"
# The key as the container's user owns it (ssh wants its own key not readable by others).
install -m 0400 -o "$UID_IN" -g "$UID_IN" "$work/id_ed25519" "$work/key"
chmod 0755 "$work"
svc_port=$(free_port)
python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def echo(c):
    with c:
        while (d := c.recv(4096)):
            c.sendall(d)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
' "$svc_port" &
svc_pid=$!
wait_for 10 grep -q "Server listening on 127.0.0.1 port $sshd_port" "$work/sshd.log" || fail "sshd did not start"

tun_port=$(free_port)
http_port=$(free_port)
# --health-interval disable: podman schedules the HEALTHCHECK with a systemd timer, and there
# may be no systemd (this script runs the check itself: podman healthcheck run).
podman run -d --name "$name" "${RUN_OPTS[@]}" --network host --user "$UID_IN:$UID_IN" \
  --health-interval disable \
  --read-only --tmpfs /tmp:rw,mode=1777 \
  -v "$work/key:/etc/autossh/key/id_ed25519:ro" \
  -v "$work/known_hosts:/etc/autossh/known_hosts/known_hosts:ro" \
  -e AUTOSSH_HTTP="127.0.0.1:$http_port" -e AUTOSSH_GATETIME=0 \
  "$IMAGE" -M 0 -N -p "$sshd_port" -i /etc/autossh/key/id_ed25519 \
  -o UserKnownHostsFile=/etc/autossh/known_hosts/known_hosts -o StrictHostKeyChecking=yes \
  -o BatchMode=yes -L "$tun_port:127.0.0.1:$svc_port" root@127.0.0.1 >/dev/null
logs() { podman logs "$name" >"$work/container.log" 2>&1 || true; }
healthz() { curl -fsS --max-time 2 "http://127.0.0.1:$http_port/healthz"; }
if ! wait_for 30 healthz; then logs; fail "/healthz never answered 200"; fi
echo "container-test: /healthz: $(healthz)" >&2
reply=$(python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"through the container\n"); print(s.recv(64).decode().strip())' "$tun_port") || true
[ "$reply" = "through the container" ] || { logs; fail "the tunnel did not carry a request: $reply"; }
podman healthcheck run "$name" >/dev/null || { logs; fail "the image's HEALTHCHECK failed"; }
podman exec "$name" /usr/bin/autossh health >/dev/null || { logs; fail "autossh health in the container failed"; }
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = "$UID_IN" ] || fail "autossh runs as UID $uid, not $UID_IN"
curl -fsS --max-time 2 "http://127.0.0.1:$http_port/metrics" | grep -q '^autossh_up 1$' || fail "/metrics: not up"
podman stop -t 10 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
logs
[ "$code" = 0 ] || fail "autossh exited $code on podman stop"
grep -q "tunnel up" "$work/container.log" || fail "no 'tunnel up' in the container's log"
echo "container-test: ok ($IMAGE as UID $UID_IN: /healthz 200, a request through the tunnel, HEALTHCHECK, autossh health, stop exit 0)" >&2
