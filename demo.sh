#!/usr/bin/env bash
# The demo: builds everything, starts a local Prometheus (remote-write receiver, scraping a local
# Pushgateway) on free ports, runs a Beam pipeline on the Flink runner exporting both ways, and
# prints what Prometheus answers to PromQL. DEMO_KEEP=1 keeps the servers up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
. tests/servers.sh
ensure_packages
start_servers
(cd java && gradle --no-daemon -q demo \
  -PdemoArgs="--prometheusRemoteWriteUrl=$BEAMPROM_PROMETHEUS_URL/api/v1/write --prometheusPushgatewayUrl=$BEAMPROM_PUSHGATEWAY_URL" \
  2>&1 | grep -E '^(pipeline|exporter)|beamprometheus|ERROR|Exception' || true)
python3 - "$BEAMPROM_PROMETHEUS_URL" <<'PY'
import json, sys, time, urllib.parse, urllib.request
base = sys.argv[1]
def q(expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
queries = [
    ('remote-write', 'beam_elements_total{job="beam_prometheus_demo",instance=""}'),
    ('pushgateway', 'beam_elements_total{job="beam_prometheus_demo",instance="demo"}'),
    ('remote-write', 'beam_element_value_distribution_sum{job="beam_prometheus_demo",instance=""}'),
    ('remote-write', 'beam_max_element_gauge{job="beam_prometheus_demo",instance=""}'),
    ('remote-write', 'beam_parity_string_set_info{job="beam_prometheus_demo",instance=""}'),
    ('pushgateway', 'push_time_seconds{job="beam_prometheus_demo",instance="demo"}'),
]
deadline = time.time() + 30
while time.time() < deadline and not all(q(e) for _, e in queries[:2]):
    time.sleep(0.5)
ok = True
for path, expr in queries:
    res = q(expr)
    ok &= bool(res)
    for r in res or [{"metric": {}, "value": [0, "(no data)"]}]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items()) if k != "__name__")
        print(f"[{path:12}] {r['metric'].get('__name__', expr)}{{{labels}}} = {r['value'][1]}")
print(f"\nOpen {base}/graph?g0.expr=" + urllib.parse.quote('{job="beam_prometheus_demo"}') + "&g0.tab=1")
sys.exit(0 if ok else 1)
PY
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo "servers stay up; Ctrl-C to stop"
  while sleep 3600; do :; done
fi
