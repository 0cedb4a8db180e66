#!/usr/bin/env bash
# Checks the service files of packaging/ as far as Linux can: the launchd plists parse
# (python3's plistlib) and say what packaging/README.md promises (a label, an absolute program,
# started at load, KeepAlive off, no stdout/stderr file: the unified log), the LaunchAgent's
# sh -c line parses (sh -n); the FreeBSD and OpenBSD rc.d scripts parse (sh -n) and, sourced
# with a stand-in for /etc/rc.subr, set what rc.subr needs (rcvar, the command, the tunnels
# file as --tunnels' argument, the account, the reload signal), defaults and rc.conf overrides
# alike. With a built autossh (AUTOSSH_BIN, default target/debug/autossh), every command line
# is tried against a missing tunnels file: autossh must get as far as reading it (its options
# parse). Not checked here: launchd, rc.subr and rcctl themselves (no macOS or BSD machine).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${AUTOSSH_BIN:-target/debug/autossh}
failed=0
fail() { echo "check-service-files: $*" >&2; failed=1; }

# argv_parses ARGS...: autossh with these arguments, the tunnels file replaced by a missing
# one (so nothing ever starts), says it cannot read that file (the options were accepted) and
# exits 1.
argv_parses() {
  [ -x "$bin" ] || return 0
  local out rc=0 a prev="" args=()
  for a in "$@"; do
    if [ "$prev" = --tunnels ]; then a=$tmp/missing.toml; fi
    args+=("$a")
    prev=$a
  done
  out=$("$bin" "${args[@]}" 2>&1) || rc=$?
  case "$rc:$out" in
    1:*"cannot read"*) ;;
    *) fail "autossh $*: exit $rc: $out" ;;
  esac
}

# The plists: parsed, their keys checked; each program's argv printed one a line.
for plist in packaging/launchd/*.plist; do
  if ! python3 - "$plist" >"$tmp/argv" <<'PY'
import plistlib, sys
path = sys.argv[1]
with open(path, "rb") as f:
    d = plistlib.load(f)
errors = []
def need(cond, what):
    if not cond:
        errors.append(what)
need(isinstance(d.get("Label"), str) and d["Label"].startswith("org.autossh-rs."), "Label")
argv = d.get("ProgramArguments", [])
need(argv and argv[0].startswith("/"), "ProgramArguments[0] absolute")
need(d.get("RunAtLoad") is True, "RunAtLoad true")
need(d.get("KeepAlive") is False, "KeepAlive false (autossh supervises)")
need("StandardErrorPath" not in d and "StandardOutPath" not in d, "no log file (unified log)")
env = d.get("EnvironmentVariables", {})
need(env.get("AUTOSSH_GATETIME") == "0", "AUTOSSH_GATETIME=0")
# launchd names the job there itself; set as well, autossh's test for a launchd job holds.
need(env.get("XPC_SERVICE_NAME") == d.get("Label"), "XPC_SERVICE_NAME = Label")
need(any("--tunnels" in a for a in argv), "--tunnels")
if errors:
    sys.exit(f"{path}: " + ", ".join(errors))
print("\n".join(argv))
PY
  then
    fail "$plist"
    continue
  fi
  mapfile -t argv <"$tmp/argv"
  if [ "${argv[0]}" = /bin/sh ]; then
    sh -n -c "${argv[2]}" || fail "$plist: its sh -c line does not parse"
    # The line as sh runs it, with a home of our own and the tunnels file missing.
    line=${argv[2]/exec \/usr\/local\/bin\/autossh/exec \"\$AUTOSSH_BIN_ABS\"}
    if [ -x "$bin" ]; then
      out=$(HOME=$tmp/home AUTOSSH_BIN_ABS=$(realpath "$bin") sh -c "$line" 2>&1) || true
      case $out in *"cannot read"*) ;; *) fail "$plist: $out" ;; esac
    fi
  else
    argv_parses "${argv[@]:1}"
  fi
  echo "check-service-files: $plist ok"
done

# A stand-in for FreeBSD's /etc/rc.subr: rc.conf's values, and what run_rc_command was left.
cat >"$tmp/rc.subr" <<'SH'
load_rc_config() { [ -f "$RC_CONF" ] && . "$RC_CONF"; :; }
run_rc_command() {
  printf 'rcvar=%s\ncommand=%s\nargs=%s\nenv=%s\nuser=%s\nreload=%s\npre=%s\n' \
    "$rcvar" "$command" "$command_args" "$autossh_env" "$autossh_user" "$sig_reload" \
    "$(type "$start_precmd" >/dev/null 2>&1 && echo defined)"
}
SH
freebsd() {
  sed "s|^\. /etc/rc.subr|. $tmp/rc.subr|" packaging/freebsd/autossh >"$tmp/freebsd"
  RC_CONF=$1 sh "$tmp/freebsd" start
}
fb=packaging/freebsd/autossh
sh -n "$fb" || fail "$fb does not parse"
out=$(freebsd /nonexistent)
for want in "rcvar=autossh_enable" "command=/usr/local/bin/autossh" \
  "args=-f --tunnels /usr/local/etc/autossh/tunnels.toml" "user=autossh" "reload=HUP" \
  "pre=defined" "env=AUTOSSH_PIDFILE=/var/run/autossh/autossh.pid"; do
  grep -qF -- "$want" <<<"$out" || fail "$fb: no '$want' in: $out"
done
printf 'autossh_tunnels=/etc/t.toml\nautossh_user=tun\nautossh_env="AUTOSSH_POLL=60"\n' >"$tmp/rc.conf"
out=$(freebsd "$tmp/rc.conf")
for want in "args=-f --tunnels /etc/t.toml" "user=tun" "AUTOSSH_POLL=60"; do
  grep -qF -- "$want" <<<"$out" || fail "$fb with rc.conf: no '$want' in: $out"
done
args=$(sed -n 's/^args=//p' <<<"$out")
# shellcheck disable=SC2086 # the arguments as rc.subr passes them, split on spaces
argv_parses $args
echo "check-service-files: $fb ok"

# A stand-in for OpenBSD's /etc/rc.d/rc.subr: what rc_cmd was left.
cat >"$tmp/rc.d.subr" <<'SH'
rc_cmd() {
  printf 'daemon=%s\nflags=%s\nuser=%s\nreload=%s\npre=%s\n' "$daemon" "$daemon_flags" \
    "$daemon_user" "$rc_reload_signal" "$(type rc_pre >/dev/null 2>&1 && echo defined)"
}
SH
ob=packaging/openbsd/autossh
sh -n "$ob" || fail "$ob does not parse"
sed "s|^\. /etc/rc.d/rc.subr|. $tmp/rc.d.subr|" "$ob" >"$tmp/openbsd"
out=$(sh "$tmp/openbsd" start)
for want in "daemon=/usr/local/bin/autossh -f" "flags=--tunnels /etc/autossh/tunnels.toml" \
  "user=_autossh" "reload=HUP" "pre=defined"; do
  grep -qF -- "$want" <<<"$out" || fail "$ob: no '$want' in: $out"
done
# shellcheck disable=SC2046 # the command line as rc.subr makes it
argv_parses -f $(sed -n 's/^flags=//p' <<<"$out")
echo "check-service-files: $ob ok"

exit "$failed"
