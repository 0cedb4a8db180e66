#!/usr/bin/env bash
# Benchmark suite: our autossh against Debian's autossh 1.4g, and autossh-echo against a minimal
# epoll echo server and socat. Run as root on Debian:   bash bench/run.sh
# The recovery benchmarks (outages, loss, latency, a saturated link; network namespaces joined
# by veth pairs) are opt-in:                              bash bench/run.sh recovery
# So is the application benchmark (psycopg2 writing to PostgreSQL through the tunnel while the
# server side fails):                                     bash bench/run.sh app
# And the field cases (jump host, connection sharing, -M 0 black hole, the client's address
# changing, a reverse tunnel's black hole, a remote port held; default settings):                            bash bench/run.sh field
# And the fleet benchmark (100 tunnels to one sshd: one autossh --tunnels against 100 x 1.4g;
# memory, CPU, a 30 s server outage):                     bash bench/run.sh fleet
# And the HTTP endpoint's cost (100 tunnels, 100 GET /metrics a second; /healthz following a
# tunnel down and back):                                  bash bench/run.sh http
# And the relay's cost (held forwards against plain ssh -L: bulk, request/response, connects;
# 10,000 connections held through an sshd restart):       bash bench/run.sh relay
# And the agent benchmark (a key with a passphrase through restarts: prompts, recovery against
# a key without one, processes left after SIGTERM/SIGKILL; ours vs 1.4g): bash bench/run.sh agent
#
#   BENCH_REPEAT=3     repetitions of every benchmark (medians are reported; not recovery)
#   BENCH_SEED=...     seed of the random freeze delays (same sequence for both programs)
#   BENCH_ONLY="cost freeze echo"   run a subset (cost runs first: it wants a quiet host);
#                      "recovery" may be added to the list
#   BENCH_RECOVERY_QUICK=1   recovery with short outages and windows (a smoke test, ~2 min)
#   BENCH_KEEP=1       keep the work directory (logs, JSON) under /tmp
#   APP_BENCH_REPEAT, APP_BENCH_GIVEUP, APP_BENCH_QUICK, APP_BENCH_ONLY: see bench/README.md (5.)
#   FIELD_BENCH_QUICK, FIELD_BENCH_REPEAT, FIELD_BENCH_GIVEUP, FIELD_BENCH_ONLY: bench/README.md (6.)
#   FLEET_BENCH_QUICK, FLEET_BENCH_TUNNELS, FLEET_BENCH_GIVEUP, FLEET_BENCH_PROGS: bench/README.md (7.)
#   HTTP_BENCH_QUICK, HTTP_BENCH_TUNNELS, HTTP_BENCH_RATE: bench/README.md (8.)
#   RELAY_BENCH_QUICK, RELAY_BENCH_REPEAT, RELAY_BENCH_BULK_MIB, ...: bench/README.md (9.)
#   AGENT_BENCH_QUICK, AGENT_BENCH_RESTARTS, AGENT_BENCH_WAIT: bench/README.md (10.)
#
# Prints a results table and writes bench/results.md (recovery: bench/results-recovery.md, app:
# bench/results-app.md, field: bench/results-field.md, fleet: bench/results-fleet.md, http:
# bench/results-http.md, relay: bench/results-relay.md, agent: bench/results-agent.md); per-run
# autossh logs go to bench/logs/ (recovery: bench/logs/recovery/, app: bench/logs/app/, field:
# bench/logs/field/, fleet: bench/logs/fleet/, http: bench/logs/http/, relay: bench/logs/relay/,
# agent: bench/logs/agent/).
# Everything started is killed on exit, also on failure or Ctrl-C; the recovery benchmarks'
# network namespaces are deleted too.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
REPEAT=${BENCH_REPEAT:-3}
SEED=${BENCH_SEED:-20240601}
ONLY=${BENCH_ONLY:-cost freeze echo}
case ${1:-} in
  '') ;;
  recovery) ONLY=recovery ;;
  app) ONLY=app ;;
  field) ONLY=field ;;
  fleet) ONLY=fleet ;;
  http) ONLY=http ;;
  relay) ONLY=relay ;;
  agent) ONLY=agent ;;
  *) printf 'usage: bash bench/run.sh [recovery|app|field|fleet|http|relay|agent]\n' >&2; exit 2 ;;
esac
CLASSIC=0
RECOVERY=0
APP=0
FIELD=0
FLEET=0
HTTP=0
RELAY=0
AGENT=0
for b in $ONLY; do
  case $b in
    recovery) RECOVERY=1 ;;
    app) APP=1 ;;
    field) FIELD=1 ;;
    fleet) FLEET=1 ;;
    http) HTTP=1 ;;
    relay) RELAY=1 ;;
    agent) AGENT=1 ;;
    *) CLASSIC=1 ;;
  esac
done
T_START=$(date +%s)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '\n[%s] == %s\n' "$(date +%H:%M:%S)" "$*"; }
info() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

case $REPEAT in '' | *[!0-9]* | 0) fail "BENCH_REPEAT must be a positive integer" ;; esac
[ "$(id -u)" -eq 0 ] || fail "run as root (sshd, apt-get, taskset, /proc of other users)"

export BENCH_WORK
BENCH_WORK=$(mktemp -d /tmp/autossh-bench.XXXXXX)
: >"$BENCH_WORK/pids"
: >"$BENCH_WORK/frozen"
: >"$BENCH_WORK/netns"

# --- cleanup: everything the helpers started is listed in $BENCH_WORK/pids (each the leader of
# its own session) and every frozen sshd session in $BENCH_WORK/frozen.
descendants() {
  local p c
  for p in "$@"; do
    for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do
      echo "$c"
      descendants "$c"
    done
  done
}
RC_ADDED=0 # 1 while the policy-rc.d this script wrote (see "tools") is in place
cleanup() {
  local rc=$? pids=() all=() p
  trap - EXIT INT TERM
  [ "$RC_ADDED" = 0 ] || rm -f /usr/sbin/policy-rc.d
  for p in $(cat "$BENCH_WORK/frozen" 2>/dev/null); do
    kill -CONT "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
  done
  mapfile -t pids < <(cat "$BENCH_WORK/pids" 2>/dev/null)
  if [ "${#pids[@]}" -gt 0 ]; then
    mapfile -t all < <(descendants "${pids[@]}")
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
    for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
    for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  # network namespaces made by benchlib.Pair (listed before each was created): whatever
  # still runs inside, then the namespace (its veth end, iptables rules and qdiscs go with it)
  for ns in $(sort -u "$BENCH_WORK/netns" 2>/dev/null); do
    case $ns in asbench-*) ;; *) continue ;; esac
    for p in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do
      kill -CONT "$p" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    done
    timeout 10 ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "${BENCH_KEEP:-}" ]; then
    info "work directory kept: $BENCH_WORK"
  else
    rm -rf "$BENCH_WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools
say "checking tools"
missing=()
[ -x /usr/lib/autossh/autossh ] || missing+=(autossh)
command -v socat >/dev/null || missing+=(socat)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v gcc >/dev/null || missing+=(gcc)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v python3 >/dev/null || missing+=(python3)
if [ "$RECOVERY" = 1 ]; then
  command -v iptables >/dev/null || missing+=(iptables)
  command -v tc >/dev/null || missing+=(iproute2)
fi
if [ "$FIELD" = 1 ]; then
  command -v iptables >/dev/null || missing+=(iptables)
fi
if [ "$APP" = 1 ]; then
  command -v iptables >/dev/null || missing+=(iptables)
  command -v runuser >/dev/null || missing+=(util-linux)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  # Debian's psycopg2 is importable by /usr/bin/python3 (pyenv's python3 may come first on PATH)
  /usr/bin/python3 -c 'import psycopg2' 2>/dev/null || missing+=(python3-psycopg2)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  info "installing: ${missing[*]}"
  apt-get update -qq || fail "apt-get update failed"
  # policy-rc.d: the postgresql and openssh-server packages must not start their system
  # services (the benchmarks run private ones); removed again right after
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && RC_ADDED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    fail "apt-get install ${missing[*]} failed"
  [ "$RC_ADDED" = 0 ] || { rm -f /usr/sbin/policy-rc.d; RC_ADDED=0; }
fi
mkdir -p /run/sshd
PY=python3
info "autossh 1.4g: $(/usr/lib/autossh/autossh -V 2>&1 | head -1); $(ssh -V 2>&1); $($PY --version)"

# --- builds
BIN="$BENCH_WORK/bin"
mkdir -p "$BIN"
if [ "$CLASSIC" = 1 ]; then
  say "building release binaries (cargo build --release --workspace)"
  (cd "$ROOT" && cargo build --release --workspace -q) || fail "cargo build failed"
  [ -x "$ROOT/target/release/autossh" ] && [ -x "$ROOT/target/release/autossh-echo" ] ||
    fail "target/release/autossh or autossh-echo missing after the build"
  gcc -O2 -Wall -o "$BIN/minimal_echo" "$BENCH_DIR/minimal_echo.c" || fail "gcc minimal_echo.c"
  gcc -O2 -Wall -o "$BIN/loadgen" "$BENCH_DIR/loadgen.c" || fail "gcc loadgen.c"
  info "built autossh, autossh-echo, minimal_echo, loadgen"
else
  say "building the release binary (cargo build --release -p autossh)"
  (cd "$ROOT" && cargo build --release -p autossh -q) || fail "cargo build failed"
  [ -x "$ROOT/target/release/autossh" ] || fail "target/release/autossh missing after the build"
fi
if [ "$RELAY" = 1 ]; then
  gcc -O2 -Wall -o "$BIN/minimal_echo" "$BENCH_DIR/minimal_echo.c" || fail "gcc minimal_echo.c"
  gcc -O2 -Wall -o "$BIN/relay_tool" "$BENCH_DIR/relay_tool.c" || fail "gcc relay_tool.c"
  info "built minimal_echo, relay_tool"
fi

# the source the binaries were built from (read now: a commit made during the run is not it)
commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$ROOT" && git status --porcelain -- src echo-server Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes in src/ or echo-server/)"
fi

# --- limits: 10,000 clients need 10,000+ descriptors in the load generator and in the server
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
info "open files limit: $(ulimit -n) (wanted 65536; the hard limit here is $(ulimit -Hn))"
[ "$CLASSIC" = 0 ] || [ "$(ulimit -n)" -ge 10100 ] || info "WARNING: fewer than 10100 descriptors: the 10k-client load will fail"

# logs of the benchmarks about to run are replaced; those of the others stay
mkdir -p "$BENCH_DIR/logs"
if [ "$CLASSIC" = 1 ]; then
  find "$BENCH_DIR/logs" -mindepth 1 -maxdepth 1 ! -name recovery ! -name app ! -name field ! -name fleet ! -name http ! -name relay ! -name agent -exec rm -rf {} +
fi
[ "$RECOVERY" = 0 ] || rm -rf "$BENCH_DIR/logs/recovery"
[ "$APP" = 0 ] || rm -rf "$BENCH_DIR/logs/app"
[ "$FIELD" = 0 ] || rm -rf "$BENCH_DIR/logs/field"
[ "$FLEET" = 0 ] || rm -rf "$BENCH_DIR/logs/fleet"
[ "$HTTP" = 0 ] || rm -rf "$BENCH_DIR/logs/http"
[ "$RELAY" = 0 ] || rm -rf "$BENCH_DIR/logs/relay"
[ "$AGENT" = 0 ] || rm -rf "$BENCH_DIR/logs/agent"

# --- benchmarks (each one bounded; a failing one is reported, the others still run)
status=0
run_step() { # name, timeout seconds, command...
  local name=$1 limit=$2
  shift 2
  say "$name"
  # timeout makes itself a process group leader: recording its pid lets cleanup kill the group
  timeout --signal=TERM --kill-after=10 "$limit" "$@" &
  local pid=$!
  echo "$pid" >>"$BENCH_WORK/pids"
  if ! wait "$pid"; then
    info "WARNING: $name failed or timed out (limit ${limit} s)"
    status=1
  fi
}
# Each benchmark runs in a private network namespace (unshare -n, loopback only): other work on
# this host (its sockets, its TIME_WAIT pile) stays out of the measurements, and no benchmark
# leaves sockets behind for the next. BENCH_NETNS=0 runs in the host's namespace instead.
NETNS=()
NETNS_NOTE="no: the host's network namespace"
if { [ "$CLASSIC" = 1 ] || [ "$FLEET" = 1 ] || [ "$HTTP" = 1 ] || [ "$RELAY" = 1 ] || [ "$AGENT" = 1 ]; } && [ "${BENCH_NETNS:-1}" != 0 ]; then
  if unshare -n sh -c 'ip link set lo up' 2>/dev/null; then
    NETNS=(unshare -n sh -c 'ip link set lo up && exec "$@"' netns)
    NETNS_NOTE="yes: each benchmark in its own (unshare -n, loopback only); the host had $(($(cat /proc/net/tcp /proc/net/tcp6 | wc -l) - 2)) TCP sockets of other work"
    info "benchmarks run in private network namespaces (host has $(($(cat /proc/net/tcp /proc/net/tcp6 | wc -l) - 2)) TCP sockets)"
  else
    info "WARNING: cannot create a network namespace; running in the host's (noisier)"
  fi
fi
cd "$BENCH_DIR"
for b in $ONLY; do
  case $b in
    freeze) run_step "1. freeze recovery: ours vs 1.4g, echo and loop mode, R=$REPEAT" $((80 * REPEAT + 60)) \
      "${NETNS[@]}" $PY tunnel_bench.py freeze --repeat "$REPEAT" --seed "$SEED" --out "$BENCH_WORK/freeze.json" ;;
    cost) run_step "2. supervisor cost: ours vs 1.4g, POLL=2, R=$REPEAT (+1 with 10k idle connections)" \
      $((30 * REPEAT + 70)) "${NETNS[@]}" $PY tunnel_bench.py cost --repeat "$REPEAT" --seconds 15 \
      --bin "$BIN" --busy 10000 --out "$BENCH_WORK/cost.json" ;;
    echo) run_step "3. echo servers under paced probe load, R=$REPEAT" $((80 * REPEAT + 60)) \
      "${NETNS[@]}" $PY echo_bench.py --repeat "$REPEAT" --bin "$BIN" --out "$BENCH_WORK/echo.json" ;;
    recovery)
      # not in a private namespace: it makes its own (two per run, joined by a veth pair)
      qa=()
      [ -z "${BENCH_RECOVERY_QUICK:-}" ] || qa=(--quick)
      run_step "4. recovery: outages at default settings, faults at POLL=4, ours vs 1.4g (~6 min)" 660 \
        $PY recovery_bench.py run --out "$BENCH_WORK/recovery.json" "${qa[@]}" ;;
    app)
      # not in a private namespace: it makes its own (two per run, joined by a veth pair).
      # /usr/bin/python3: Debian's python3-psycopg2 is installed for it
      a_rep=${APP_BENCH_REPEAT:-1}
      a_give=${APP_BENCH_GIVEUP:-60}
      case $a_rep in '' | *[!0-9]* | 0) fail "APP_BENCH_REPEAT must be a positive integer" ;; esac
      case $a_give in '' | *[!0-9]* | 0) fail "APP_BENCH_GIVEUP must be a positive integer (seconds)" ;; esac
      run_step "5. application: psycopg2 through the tunnel, freeze / sshd restart / black hole, ours vs 1.4g, R=$a_rep (~5-7 min)" \
        $((a_rep * 6 * (a_give + 110) + 120)) /usr/bin/python3 app_bench.py run --out "$BENCH_WORK/app.json" ;;
    field)
      # not in a private namespace: it makes its own (two per run, joined by a veth pair)
      f_rep=${FIELD_BENCH_REPEAT:-1}
      f_give=${FIELD_BENCH_GIVEUP:-60}
      case $f_rep in '' | *[!0-9]* | 0) fail "FIELD_BENCH_REPEAT must be a positive integer" ;; esac
      case $f_give in '' | *[!0-9]* | 0) fail "FIELD_BENCH_GIVEUP must be a positive integer (seconds)" ;; esac
      run_step "6. field: jump host, connection sharing, -M 0 black hole, address change, reverse tunnel black hole, remote port held; ours vs 1.4g, R=$f_rep (~5-6 min)" \
        $((f_rep * (6 * f_give + 480) + 120)) $PY field_bench.py run --out "$BENCH_WORK/field.json" ;;
    fleet)
      # in a private namespace (loopback only): one sshd, N tunnels per program, the programs
      # (and monitor modes) one after the other. Bound: per phase 2 give-ups + ~200 s
      fl_give=${FLEET_BENCH_GIVEUP:-180}
      case $fl_give in '' | *[!0-9]* | 0) fail "FLEET_BENCH_GIVEUP must be a positive integer (seconds)" ;; esac
      fl_phases=$(($(echo "${FLEET_BENCH_MONITOR:-loop echo zero}" | tr , ' ' | wc -w) * $(echo "${FLEET_BENCH_PROGS:-ours 1.4g}" | tr , ' ' | wc -w)))
      fl_n=${FLEET_BENCH_TUNNELS:-100}
      [ -z "${FLEET_BENCH_QUICK:-}" ] || [ "${FLEET_BENCH_QUICK}" = 0 ] || fl_n=${FLEET_BENCH_TUNNELS:-20}
      run_step "7. fleet: $fl_n tunnels to one sshd, one autossh --tunnels vs 1.4g x N, $fl_phases phases (~12-15 min)" \
        $((fl_phases * (2 * fl_give + 200) + 60)) "${NETNS[@]}" $PY fleet_bench.py run --out "$BENCH_WORK/fleet.json" ;;
    http)
      # in a private namespace (loopback only): one sshd, N tunnels, two CPU windows, the
      # healthz rounds. Bound: the start's give-up + 2 windows + ~200 s
      h_n=${HTTP_BENCH_TUNNELS:-100}
      [ -z "${HTTP_BENCH_QUICK:-}" ] || [ "${HTTP_BENCH_QUICK}" = 0 ] || h_n=${HTTP_BENCH_TUNNELS:-20}
      run_step "8. http: $h_n tunnels in one autossh --tunnels, quiet then 100 GET /metrics a second; /healthz after a kill (~4 min)" \
        600 "${NETNS[@]}" $PY http_bench.py run --out "$BENCH_WORK/http.json" ;;
    relay)
      # in a private namespace (loopback only): one sshd, three tunnels taking turns, then the
      # held restart. Bound: generous per-repetition costs (expected: ~3-4 min; quick ~1 min)
      r_rep=${RELAY_BENCH_REPEAT:-5} r_mib=${RELAY_BENCH_BULK_MIB:-256} r_rr=${RELAY_BENCH_RR:-10000}
      r_conn=${RELAY_BENCH_CONNECTS:-3000} r_hold=${RELAY_BENCH_HOLD_CONNS:-10000}
      if [ -n "${RELAY_BENCH_QUICK:-}" ] && [ "${RELAY_BENCH_QUICK}" != 0 ]; then
        r_rep=${RELAY_BENCH_REPEAT:-2} r_mib=${RELAY_BENCH_BULK_MIB:-16} r_rr=${RELAY_BENCH_RR:-300}
        r_conn=${RELAY_BENCH_CONNECTS:-200} r_hold=${RELAY_BENCH_HOLD_CONNS:-500}
      fi
      for v in "$r_rep" "$r_mib" "$r_rr" "$r_conn" "$r_hold"; do
        case $v in '' | *[!0-9]* | 0) fail "RELAY_BENCH_* counts must be positive integers" ;; esac
      done
      run_step "9. relay: plain ssh -L vs ours (held) vs AUTOSSH_HOLD=no, R=$r_rep, ${r_mib} MiB, $r_hold held (~4 min)" \
        $((300 + r_rep * 3 * (10 + r_mib / 10 + r_rr / 500 + r_conn / 100))) \
        "${NETNS[@]}" $PY relay_bench.py run --bin "$BIN" --out "$BENCH_WORK/relay.json" ;;
    agent)
      # in a private namespace (loopback only): three sshds, three tunnels; every wait bounded
      # by AGENT_BENCH_WAIT. Bound: (start + restarts + the SIGKILL run) x that, per program
      a_r=${AGENT_BENCH_RESTARTS:-5}
      [ -z "${AGENT_BENCH_QUICK:-}" ] || [ "${AGENT_BENCH_QUICK}" = 0 ] || a_r=${AGENT_BENCH_RESTARTS:-2}
      a_w=${AGENT_BENCH_WAIT:-60}
      case $a_r in '' | *[!0-9]* | 0) fail "AGENT_BENCH_RESTARTS must be a positive integer" ;; esac
      case $a_w in '' | *[!0-9]* | 0) fail "AGENT_BENCH_WAIT must be a positive integer (seconds)" ;; esac
      run_step "10. agent: a passphrase key through $a_r restarts, ours (own ssh-agent) vs 1.4g vs ours with a plain key (~2 min)" \
        $((3 * (a_r + 3) * (a_w + 10) + 120)) "${NETNS[@]}" $PY agent_bench.py run --out "$BENCH_WORK/agent.json" ;;
    *) fail "unknown benchmark '$b' in BENCH_ONLY (freeze, cost, echo, recovery, app, field, fleet, http, relay, agent)" ;;
  esac
done

# --- report
say "results"
$PY - "$BENCH_WORK/facts.json" <<EOF
import json, sys
json.dump({
  "date": "$(date -u '+%Y-%m-%d %H:%M:%S UTC')",
  "nproc": "$(nproc)",
  "kernel": "$(uname -sr)",
  "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
  "memory": "$(free -m | awk '/Mem:/ {print $2 " MiB"}')",
  "os": "$(. /etc/os-release && echo "$PRETTY_NAME")",
  "loadavg_at_start": "$LOADAVG (other work on the host adds noise to latencies)",
  "ulimit_n": "$(ulimit -n)",
  "private_netns": "$NETNS_NOTE",
  "ssh": "$(ssh -V 2>&1)",
  "autossh_14g": "/usr/lib/autossh/autossh ($(dpkg-query -W -f='${Version}' autossh 2>/dev/null))",
  "rustc": "$(rustc --version 2>/dev/null)",
  "commit": "$commit",
  "repeat": "$REPEAT",
  "seed": "$SEED",
  "duration_s": "$(($(date +%s) - T_START)) (whole run, before this report)",
}, open(sys.argv[1], "w"))
EOF
if [ "$CLASSIC" = 1 ]; then
  $PY report.py --dir "$BENCH_WORK" --md "$BENCH_DIR/results.md" --facts "$BENCH_WORK/facts.json" ||
    fail "report failed"
  for f in freeze cost echo facts; do
    [ ! -f "$BENCH_WORK/$f.json" ] || cp "$BENCH_WORK/$f.json" "$BENCH_DIR/logs/"
  done
fi
if [ "$RECOVERY" = 1 ]; then
  $PY recovery_report.py --json "$BENCH_WORK/recovery.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-recovery.md" || fail "recovery report failed"
  mkdir -p "$BENCH_DIR/logs/recovery"
  cp "$BENCH_WORK/recovery.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/recovery/" 2>/dev/null || true
fi
if [ "$APP" = 1 ]; then
  /usr/bin/python3 app_bench.py report --json "$BENCH_WORK/app.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-app.md" || fail "app report failed"
  mkdir -p "$BENCH_DIR/logs/app"
  cp "$BENCH_WORK/app.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/app/" 2>/dev/null || true
fi
if [ "$FIELD" = 1 ]; then
  $PY field_bench.py report --json "$BENCH_WORK/field.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-field.md" || fail "field report failed"
  mkdir -p "$BENCH_DIR/logs/field"
  cp "$BENCH_WORK/field.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/field/" 2>/dev/null || true
fi
if [ "$FLEET" = 1 ]; then
  $PY fleet_bench.py report --json "$BENCH_WORK/fleet.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-fleet.md" || fail "fleet report failed"
  mkdir -p "$BENCH_DIR/logs/fleet"
  cp "$BENCH_WORK/fleet.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/fleet/" 2>/dev/null || true
fi
if [ "$HTTP" = 1 ]; then
  $PY http_bench.py report --json "$BENCH_WORK/http.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-http.md" || fail "http report failed"
  mkdir -p "$BENCH_DIR/logs/http"
  cp "$BENCH_WORK/http.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/http/" 2>/dev/null || true
fi
if [ "$RELAY" = 1 ]; then
  $PY relay_bench.py report --json "$BENCH_WORK/relay.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-relay.md" || fail "relay report failed"
  mkdir -p "$BENCH_DIR/logs/relay"
  cp "$BENCH_WORK/relay.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/relay/" 2>/dev/null || true
fi
if [ "$AGENT" = 1 ]; then
  $PY agent_bench.py report --json "$BENCH_WORK/agent.json" --facts "$BENCH_WORK/facts.json" \
    --md "$BENCH_DIR/results-agent.md" || fail "agent report failed"
  mkdir -p "$BENCH_DIR/logs/agent"
  cp "$BENCH_WORK/agent.json" "$BENCH_WORK/facts.json" "$BENCH_DIR/logs/agent/" 2>/dev/null || true
fi
info "raw results and autossh logs: $BENCH_DIR/logs/"
info "total time: $(($(date +%s) - T_START)) s"
exit $status
