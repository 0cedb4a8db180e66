#!/usr/bin/env bash
# Checks the Prometheus alerting rules docs/autossh-alerts.yml: `promtool check rules` (syntax,
# expressions, templates), then `promtool test rules docs/autossh-alerts.test.yml` (fixture
# series: every alert fires when it should, and not for the series beside it; the series as
# node_exporter's textfile collector and as a scrape of AUTOSSH_HTTP's /metrics label them).
#
# promtool: scripts/promtool.sh (the one on PATH, else taken out of Debian's prometheus package
# into $CARGO_TARGET_DIR/tools without installing the package).
set -euo pipefail
cd "$(dirname "$0")/.."

promtool=$(bash scripts/promtool.sh)
"$promtool" --version 2>&1 | head -n1 >&2

"$promtool" check rules docs/autossh-alerts.yml
"$promtool" test rules docs/autossh-alerts.test.yml
"$promtool" check config docs/prometheus-scrape.yml
echo "check-alerts: ok" >&2
