# Shared by tests/run_all.sh and demo.sh: installs and starts the real servers on free loopback
# ports with temporary data dirs, and stops them on exit. Source it; then call start_servers.
set -euo pipefail

ensure_packages() {
  local missing=()
  command -v gradle >/dev/null || missing+=(gradle)
  # The prometheus package brings promtool too (tests/run_all.sh checks monitoring/ with it).
  { command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  # The Debian packages start their own services where an init system runs; ours use other ports.
  python3 -c 'import bcrypt' 2>/dev/null || pip install -q bcrypt
}

# Test PKI: a CA, a server certificate for 127.0.0.1 / localhost / prometheus.test, a client
# certificate, and a second CA nobody uses (for "unknown CA" tests); a basic-auth password file.
make_pki() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=beam-prometheus test CA" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=some other CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=prometheus.test" 2>/dev/null
    printf 'subjectAltName=DNS:prometheus.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=beam-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
    python3 -c 'import secrets; print("pw-" + secrets.token_hex(12))' > password
    python3 -c 'import bcrypt,sys; print(bcrypt.hashpw(open("password").read().strip().encode(), bcrypt.gensalt(10)).decode())' > password.bcrypt
  )
}

# Prometheus 3 is not in Debian: built from the Go module proxy (about 8 min on 2 cores) into a
# cache directory keyed by its version, so a machine that keeps ~/.cache builds it once.
PROMETHEUS3_VERSION=v0.316.0   # the Go module version of Prometheus 3.16.0
ensure_prometheus3() {
  local dir="${BEAMPROM_CACHE:-$HOME/.cache/beam-prometheus}/prometheus-$PROMETHEUS3_VERSION"
  PROMETHEUS3="$dir/prometheus"
  [ -x "$PROMETHEUS3" ] && return 0
  # Debian's golang-go (1.19) is too old for Prometheus 3; this image ships a current Go in /usr/local/go.
  [ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || { echo "Prometheus 3 needs a Go toolchain (1.24 or newer) to build; none found" >&2; return 1; }
  echo "building Prometheus 3 ($PROMETHEUS3_VERSION) into $dir (once per cache)"
  mkdir -p "$dir"
  GOBIN="$dir" go install "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS3_VERSION"
}

# A free port below the kernel's ephemeral range (ip_local_port_range), so no connection a
# server or test opens meanwhile can take it before its server binds it (port 0 picks one inside
# the range: a start of the servers once failed on "address already in use"). Distinct ports in
# one call: free_ports 3.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
held = []
# Port 0 (the kernel's pick) where the ephemeral range leaves too little below it.
candidates = random.sample(range(10000, lo), lo - 10000) if lo > 11000 else [0] * 1000
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    held.append(s)
    if len(held) == int(sys.argv[1]):
        break
if len(held) < int(sys.argv[1]):
    sys.exit("free_ports: found %d free ports of %s" % (len(held), sys.argv[1]))
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
free_port() {
  free_ports 1
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
  local pp gp vp sp sgp pki
  local p3p p3v1p
  local ports
  ports=$(free_ports 7) || return 1
  read -r pp gp vp sp sgp p3p p3v1p <<<"$ports"
  pki="$SERVER_DIR/pki"
  make_pki "$pki"
  cat > "$SERVER_DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$gp']
  - job_name: secure-pushgateway
    honor_labels: true
    scheme: https
    tls_config:
      ca_file: $pki/ca.pem
    basic_auth:
      username: beam
      password_file: $pki/password
    static_configs:
      - targets: ['127.0.0.1:$sgp']
YML
  cat > "$SERVER_DIR/secure-prometheus-web.yml" <<YML
tls_server_config:
  cert_file: $pki/server.pem
  key_file: $pki/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: $pki/ca.pem
basic_auth_users:
  beam: $(cat "$pki/password.bcrypt")
YML
  cat > "$SERVER_DIR/secure-pushgateway-web.yml" <<YML
tls_server_config:
  cert_file: $pki/server.pem
  key_file: $pki/server.key
basic_auth_users:
  beam: $(cat "$pki/password.bcrypt")
YML
  printf 'global:\n  scrape_interval: 1h\n' > "$SERVER_DIR/secure-prometheus.yml"
  prometheus --config.file="$SERVER_DIR/secure-prometheus.yml" --storage.tsdb.path="$SERVER_DIR/secure-prom-data" \
    --web.listen-address="127.0.0.1:$sp" --web.enable-remote-write-receiver \
    --web.config.file="$SERVER_DIR/secure-prometheus-web.yml" >"$SERVER_DIR/secure-prometheus.log" 2>&1 &
  SERVER_PIDS+=($!)
  # Debian's gateway persists to one shared file by default: every instance gets its own.
  prometheus-pushgateway --web.listen-address="127.0.0.1:$sgp" --persistence.file="$SERVER_DIR/secure-pushgateway.data" \
    --web.config.file="$SERVER_DIR/secure-pushgateway-web.yml" >"$SERVER_DIR/secure-pushgateway.log" 2>&1 &
  SERVER_PIDS+=($!)
  prometheus-pushgateway --web.listen-address="127.0.0.1:$gp" --persistence.file="$SERVER_DIR/pushgateway.data" >"$SERVER_DIR/pushgateway.log" 2>&1 &
  SERVER_PIDS+=($!)
  prometheus --config.file="$SERVER_DIR/prometheus.yml" --storage.tsdb.path="$SERVER_DIR/prom-data" \
    --web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver --web.enable-admin-api \
    >"$SERVER_DIR/prometheus.log" 2>&1 &
  SERVER_PIDS+=($!)
  # Prometheus 3 (only after ensure_prometheus3; demo.sh does without): its receiver takes
  # remote-write 1.0 and 2.0 (the default of --web.remote-write-receiver.accepted-protobuf-messages);
  # it scrapes the same Pushgateway.
  if [ -n "${PROMETHEUS3:-}" ]; then
    "$PROMETHEUS3" --config.file="$SERVER_DIR/prometheus.yml" --storage.tsdb.path="$SERVER_DIR/prom3-data" \
      --web.listen-address="127.0.0.1:$p3p" --web.enable-remote-write-receiver \
      >"$SERVER_DIR/prometheus3.log" 2>&1 &
    SERVER_PIDS+=($!)
    # One that takes 1.0 only (answers 415 to 2.0), for the fallback test.
    printf 'global:\n  scrape_interval: 1h\n' > "$SERVER_DIR/prometheus3-v1.yml"
    "$PROMETHEUS3" --config.file="$SERVER_DIR/prometheus3-v1.yml" --storage.tsdb.path="$SERVER_DIR/prom3-v1-data" \
      --web.listen-address="127.0.0.1:$p3v1p" --web.enable-remote-write-receiver \
      --web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest \
      >"$SERVER_DIR/prometheus3-v1.log" 2>&1 &
    SERVER_PIDS+=($!)
    export BEAMPROM_PROMETHEUS3_URL="http://127.0.0.1:$p3p"
    export BEAMPROM_PROMETHEUS3_V1_URL="http://127.0.0.1:$p3v1p"
  fi
  victoria-metrics -httpListenAddr="127.0.0.1:$vp" -storageDataPath="$SERVER_DIR/vm-data" \
    -search.latencyOffset=0s >"$SERVER_DIR/victoria.log" 2>&1 &
  SERVER_PIDS+=($!)
  export BEAMPROM_PROMETHEUS_URL="http://127.0.0.1:$pp"
  export BEAMPROM_PUSHGATEWAY_URL="http://127.0.0.1:$gp"
  export BEAMPROM_VICTORIA_URL="http://127.0.0.1:$vp"
  export BEAMPROM_SERVER_DIR="$SERVER_DIR"
  export BEAMPROM_SECURE_PROMETHEUS_URL="https://127.0.0.1:$sp"
  export BEAMPROM_SECURE_PUSHGATEWAY_URL="https://127.0.0.1:$sgp"
  export BEAMPROM_PKI="$pki"
  wait_ready "$BEAMPROM_PROMETHEUS_URL/-/ready" 60 prometheus
  wait_ready "$BEAMPROM_PUSHGATEWAY_URL/-/ready" 60 pushgateway
  wait_ready "$BEAMPROM_VICTORIA_URL/health" 60 victoria
  [ -z "${PROMETHEUS3:-}" ] || wait_ready "$BEAMPROM_PROMETHEUS3_URL/-/ready" 60 prometheus3
  [ -z "${PROMETHEUS3:-}" ] || wait_ready "$BEAMPROM_PROMETHEUS3_V1_URL/-/ready" 60 prometheus3-v1
  local auth=(--cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" -u "beam:$(cat "$pki/password")")
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "${auth[@]}" "$BEAMPROM_SECURE_PROMETHEUS_URL/-/ready" 2>/dev/null \
      && curl -fsS -o /dev/null --cacert "$pki/ca.pem" -u "beam:$(cat "$pki/password")" "$BEAMPROM_SECURE_PUSHGATEWAY_URL/-/ready" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "the TLS servers did not become ready:" >&2
      tail -n 20 "$SERVER_DIR/secure-prometheus.log" "$SERVER_DIR/secure-pushgateway.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "servers: Prometheus $BEAMPROM_PROMETHEUS_URL, Prometheus 3 ${BEAMPROM_PROMETHEUS3_URL:-not started}, Pushgateway $BEAMPROM_PUSHGATEWAY_URL, VictoriaMetrics $BEAMPROM_VICTORIA_URL"
}
