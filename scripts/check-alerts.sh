#!/usr/bin/env bash
# Checks the Prometheus alerting rules docs/autossh-alerts.yml: `promtool check rules` (syntax,
# expressions, templates), then `promtool test rules docs/autossh-alerts.test.yml` (fixture
# series: every alert fires when it should, and not for the series beside it).
#
# promtool: the one on PATH, else taken out of Debian's prometheus package into
# $CARGO_TARGET_DIR/tools (default target/tools) without installing the package: installing it
# would pull ~35 packages (with recommends) and start a Prometheus server. The download is
# 19 MB, a few seconds, once.
set -euo pipefail
cd "$(dirname "$0")/.."

fetch_promtool() {
  local dest=$1 tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  local download=(apt-get -q -o APT::Sandbox::User=root download prometheus)
  if ! (cd "$tmp" && "${download[@]}" >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && "${download[@]}" >/dev/null) \
      || { echo "check-alerts: cannot download Debian's prometheus package" >&2; return 1; }
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/usr/bin/promtool" "$dest"
}

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool=${CARGO_TARGET_DIR:-target}/tools/promtool
  if [ ! -x "$promtool" ]; then
    echo "check-alerts: fetching promtool from Debian's prometheus package" >&2
    fetch_promtool "$promtool"
  fi
fi
"$promtool" --version 2>&1 | head -n1 >&2

"$promtool" check rules docs/autossh-alerts.yml
"$promtool" test rules docs/autossh-alerts.test.yml
echo "check-alerts: ok" >&2
