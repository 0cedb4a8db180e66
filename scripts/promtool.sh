#!/usr/bin/env bash
# Prints the path of a promtool: the one on PATH, else the one taken out of Debian's prometheus
# package into $CARGO_TARGET_DIR/tools (default target/tools) without installing the package
# (installing it would pull ~35 packages with recommends and start a Prometheus server). The
# download is 19 MB, a few seconds, once. Used by scripts/check-alerts.sh and the HTTP
# endpoint's test (`promtool check metrics`).
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
      || { echo "promtool: cannot download Debian's prometheus package" >&2; return 1; }
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/usr/bin/promtool" "$dest.part.$$"
  mv "$dest.part.$$" "$dest"
}

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool=$(realpath -m "${CARGO_TARGET_DIR:-target}/tools/promtool")
  if [ ! -x "$promtool" ]; then
    echo "promtool: fetching it from Debian's prometheus package" >&2
    fetch_promtool "$promtool"
  fi
fi
echo "$promtool"
