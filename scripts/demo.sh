#!/usr/bin/env bash
# The demo: a private sshd on loopback, autossh-echo as the server's echo service, a small
# service behind an `ssh -L` tunnel held by `autossh -M <port>:<echo>`. Traffic flows, the
# server session is frozen (SIGSTOP), autossh notices and brings the tunnel back, and the
# times are measured. Everything is removed at the end. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n== %s\n' "$*"; }
now_ms() { date +%s%3N; }

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
  say "installing openssh"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
mkdir -p /run/sshd

say "building autossh and autossh-echo (release)"
cargo build --release --workspace -q
bin="$root/target/release"

work=$(mktemp -d /tmp/autossh-demo.XXXXXX)
pids=()
frozen=()
cleanup() {
  for p in "${frozen[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"; return
    fi
  done
  echo "no free port" >&2; exit 1
}

# One request through the tunnel: a line must come back within a second.
tunnel_ok() {
  local port=$1 line
  exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  printf 'ping %s\n' "$RANDOM" >&3 || { exec 3>&-; return 1; }
  IFS= read -r -t 1 line <&3 || { exec 3>&-; return 1; }
  exec 3>&-
  [[ $line == ping* ]]
}

say "private sshd on 127.0.0.1 with generated keys"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
sshd_port=$(free_port)
cat >"$work/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel ERROR
EOF
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
pids+=("$sshd_pid")

echo_port=$(free_port)
service_port=$(free_port)
"$bin/autossh-echo" --listen "127.0.0.1:$echo_port" -q &
pids+=($!)
# The "database": any TCP service; here another echo server.
"$bin/autossh-echo" --listen "127.0.0.1:$service_port" -q &
pids+=($!)
sleep 0.5
echo "sshd on port $sshd_port, echo service on $echo_port, service on $service_port"

tunnel=$(free_port)
monitor=$(free_port)
say "autossh -M $monitor:$echo_port -N -L $tunnel:127.0.0.1:$service_port (default AUTOSSH_POLL: 600 s)"
AUTOSSH_GATETIME=0 AUTOSSH_LOGFILE="$work/autossh.log" \
  "$bin/autossh" -M "$monitor:$echo_port" -N -L "$tunnel:127.0.0.1:$service_port" \
  -F /dev/null -i "$work/client_key" -p "$sshd_port" -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 &
pids+=($!)

for _ in $(seq 1 100); do grep -q "tunnel up" "$work/autossh.log" 2>/dev/null && break; sleep 0.1; done
grep -q "tunnel up" "$work/autossh.log" || { echo "tunnel never came up"; cat "$work/autossh.log"; exit 1; }

say "traffic through the tunnel"
for i in 1 2 3 4 5; do
  if tunnel_ok "$tunnel"; then echo "request $i: answered"; else echo "request $i: FAILED"; fi
  sleep 0.3
done

say "freezing the server's ssh session (SIGSTOP): TCP stays up, no byte moves; requests go on"
for p in $(pgrep -P "$sshd_pid"); do
  frozen+=("$p")
  for c in $(pgrep -P "$p"); do frozen+=("$c"); done
done
kill -STOP "${frozen[@]}"
t0=$(now_ms)
detected=""
back=""
for _ in $(seq 1 300); do
  if [ -z "$detected" ] && grep -q "restarting ssh" <(sed -n '/tunnel up/,$p' "$work/autossh.log"); then
    detected=$(now_ms)
  fi
  # The application keeps asking (each request waits up to 1 s): autossh sees it unanswered
  # with the server silent and probes at once, whatever the poll.
  if tunnel_ok "$tunnel"; then back=$(now_ms); break; fi
  sleep 0.2
done
if [ -z "$back" ]; then
  echo "the tunnel did not come back"; cat "$work/autossh.log"; exit 1
fi
printf 'autossh noticed after %d ms; requests answered again %d ms after the freeze\n' \
  $((${detected:-$back} - t0)) $((back - t0))

say "traffic again"
for i in 1 2 3; do
  if tunnel_ok "$tunnel"; then echo "request $i: answered"; else echo "request $i: FAILED"; fi
done

say "autossh's log"
cat "$work/autossh.log"
say "done; cleaning up"
