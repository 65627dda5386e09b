# Shared by tests/run_all.sh and demo.sh: installs and starts the real servers on free loopback
# ports with temporary data dirs, and stops them on exit. Source it; then call start_servers.
set -euo pipefail

ensure_packages() {
  local missing=()
  command -v gradle >/dev/null || missing+=(gradle)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  # The Debian packages start their own services where an init system runs; ours use other ports.
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() { # url seconds name
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$3 did not become ready at $1 within $2 s; its log:" >&2
      tail -n 30 "$SERVER_DIR/$3.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

SERVER_PIDS=()
stop_servers() {
  for pid in "${SERVER_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  [ -n "${SERVER_DIR:-}" ] && rm -rf "$SERVER_DIR"
}

# Starts Prometheus (remote-write receiver, scraping the Pushgateway every second with
# honor_labels), the Pushgateway and VictoriaMetrics; exports BEAMPROM_* for the tests.
start_servers() {
  SERVER_DIR=$(mktemp -d /tmp/beamprom-servers.XXXXXX)
  trap stop_servers EXIT
  local pp gp vp
  pp=$(free_port); gp=$(free_port); vp=$(free_port)
  cat > "$SERVER_DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$gp']
YML
  prometheus-pushgateway --web.listen-address="127.0.0.1:$gp" >"$SERVER_DIR/pushgateway.log" 2>&1 &
  SERVER_PIDS+=($!)
  prometheus --config.file="$SERVER_DIR/prometheus.yml" --storage.tsdb.path="$SERVER_DIR/prom-data" \
    --web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver --web.enable-admin-api \
    >"$SERVER_DIR/prometheus.log" 2>&1 &
  SERVER_PIDS+=($!)
  victoria-metrics -httpListenAddr="127.0.0.1:$vp" -storageDataPath="$SERVER_DIR/vm-data" \
    -search.latencyOffset=0s >"$SERVER_DIR/victoria.log" 2>&1 &
  SERVER_PIDS+=($!)
  export BEAMPROM_PROMETHEUS_URL="http://127.0.0.1:$pp"
  export BEAMPROM_PUSHGATEWAY_URL="http://127.0.0.1:$gp"
  export BEAMPROM_VICTORIA_URL="http://127.0.0.1:$vp"
  export BEAMPROM_SERVER_DIR="$SERVER_DIR"
  wait_ready "$BEAMPROM_PROMETHEUS_URL/-/ready" 60 prometheus
  wait_ready "$BEAMPROM_PUSHGATEWAY_URL/-/ready" 60 pushgateway
  wait_ready "$BEAMPROM_VICTORIA_URL/health" 60 victoria
  echo "servers: Prometheus $BEAMPROM_PROMETHEUS_URL, Pushgateway $BEAMPROM_PUSHGATEWAY_URL, VictoriaMetrics $BEAMPROM_VICTORIA_URL"
}
