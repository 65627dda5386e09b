#!/usr/bin/env bash
# Reproduces monitoring/prometheus-graph.png (README, "Dashboard, rules and runbook"): the demo
# pipeline exports both ways into fresh servers, then headless Chromium (Debian `chromium`) shoots
# Prometheus' own graph page for the demo's main series. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/servers.sh
ensure_packages
if ! command -v chromium >/dev/null; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
start_servers
(cd java && gradle --no-daemon -q demo \
  -PdemoArgs="--prometheusRemoteWriteUrl=$BEAMPROM_PROMETHEUS_URL/api/v1/write --prometheusPushgatewayUrl=$BEAMPROM_PUSHGATEWAY_URL" \
  2>&1 | grep -E '^(pipeline|exporter)' || true)
# The gateway's copy is scraped every second: give the graph some width of it.
sleep "${SHOT_WAIT:-30}"
expr='beam_elements_total{job="beam_prometheus_demo"}'
url="$BEAMPROM_PROMETHEUS_URL/graph?g0.expr=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$expr")&g0.tab=0&g0.range_input=1m"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,900 \
  --virtual-time-budget=15000 --screenshot="$PWD/monitoring/prometheus-graph.png" "$url" 2>/dev/null
ls -l monitoring/prometheus-graph.png
