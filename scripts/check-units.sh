#!/usr/bin/env bash
# Rates the systemd units' sandboxes and checks they parse: for docs/autossh.service,
# docs/autossh@.service (and its socket, verified), docs/autossh-tunnels.service, docs/autossh-echo.service, and autossh-echo with its port 7 drop-in
# (docs/autossh-echo-port7.conf), autossh.service and autossh@.service with the credential drop-in
# (docs/autossh-credential.conf), prints `systemd-analyze security --offline=yes`'s exposure
# score and fails above 2.0; then `systemd-analyze verify`, which must print nothing (it exits 0
# on unknown keys and bad values, so any message counts as a failure).
#
# Usage: check-units.sh [DIR]   DIR holds the units (default docs/; the package test passes
# /usr/lib/systemd/system while the package is installed). A command the unit runs that is not
# installed on this machine is reported and not counted: the package test verifies with it.
# Needs no running systemd; installs the systemd package when systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-docs}
limit=2.0

if ! command -v systemd-analyze >/dev/null; then
  echo "check-units: installing systemd (for systemd-analyze)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# score NAME ARGS...: rates one unit; fails above the limit or on any warning.
score() {
  local name=$1 out level
  shift
  out=$(systemd-analyze security --offline=yes "$@" 2>"$tmp/err") || true
  level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$level" ]; then
    echo "check-units: $name: no score: $(head -n3 "$tmp/err")" >&2
    failed=1
    return
  fi
  printf 'check-units: %-40s %s\n' "$name" "$level"
  if awk -v l="$level" -v max="$limit" 'BEGIN { exit !(l > max) }'; then
    echo "check-units: $name: exposure $level is above $limit" >&2
    printf '%s\n' "$out" | grep '✗' >&2 || true
    failed=1
  fi
  if [ -s "$tmp/err" ]; then
    echo "check-units: $name: systemd-analyze complained:" >&2
    cat "$tmp/err" >&2
    failed=1
  fi
}

# verify NAME FILE: systemd-analyze verify must say nothing.
verify() {
  local name=$1 file=$2 line exe
  systemd-analyze verify --man=no "$file" >"$tmp/verify" 2>&1 || true
  while IFS= read -r line; do
    exe=$(printf '%s\n' "$line" | sed -n 's/.*Command \(\/[^ ]*\) is not executable: No such file or directory.*/\1/p')
    if [ -n "$exe" ] && [ ! -e "$exe" ]; then
      echo "check-units: $name: $exe is not installed here, not verified" >&2
      continue
    fi
    echo "check-units: $name: $line" >&2
    failed=1
  done <"$tmp/verify"
}

for unit in autossh.service autossh@.service autossh-tunnels.service autossh-echo.service; do
  [ -f "$dir/$unit" ] || { echo "check-units: $dir/$unit is missing" >&2; exit 1; }
  score "$unit" "$dir/$unit"
done

# autossh-echo with the drop-in for port 7 (one capability), as installed under a root.
dropin=docs/autossh-echo-port7.conf
mkdir -p "$tmp/root/etc/systemd/system/autossh-echo.service.d"
cp "$dir/autossh-echo.service" "$tmp/root/etc/systemd/system/"
cp "$dropin" "$tmp/root/etc/systemd/system/autossh-echo.service.d/port7.conf"
score "autossh-echo.service + port7.conf" --root="$tmp/root" autossh-echo.service

# autossh and an autossh@ instance with the key as an encrypted credential.
cred=docs/autossh-credential.conf
for unit in autossh.service autossh@.service; do
  mkdir -p "$tmp/root/etc/systemd/system/$unit.d"
  cp "$dir/$unit" "$tmp/root/etc/systemd/system/"
  cp "$cred" "$tmp/root/etc/systemd/system/$unit.d/credential.conf"
done
score "autossh.service + credential.conf" --root="$tmp/root" autossh.service
score "autossh@db.service + credential.conf" --root="$tmp/root" autossh@db.service

# A template is verified as an instance (the socket with its service beside it).
cp "$dir/autossh@.service" "$tmp/autossh@check.service"
[ -f "$dir/autossh@.socket" ] || { echo "check-units: $dir/autossh@.socket is missing" >&2; exit 1; }
cp "$dir/autossh@.socket" "$tmp/autossh@check.socket"
verify autossh.service "$dir/autossh.service"
verify autossh@check.service "$tmp/autossh@check.service"
verify autossh@check.socket "$tmp/autossh@check.socket"
verify autossh-echo.service "$dir/autossh-echo.service"
verify autossh-tunnels.service "$dir/autossh-tunnels.service"
# The credential drop-in's lines, parsed as part of the unit.
cat "$dir/autossh.service" "$cred" >"$tmp/autossh-cred.service"
verify "autossh.service + credential.conf" "$tmp/autossh-cred.service"

[ "$failed" -eq 0 ] || { echo "check-units: FAILED" >&2; exit 1; }
echo "check-units: ok, every unit at or below $limit" >&2
