#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, one command: bash bench/run.sh
# Builds what it needs (the main jar with its native library, bench/java, bench/rust, bench/go),
# runs every comparison on 1k, 10k and 100k series against local servers (tests/servers.sh,
# loopback only) and prints the table of ratios; everything lands in bench/out/.
# Knobs: BENCH_SIZES="1000 10000 100000", BENCH_SAMPLES=11 (timed samples per encode figure),
# BENCH_PUSHES=20 (pushes of the memory check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
OUT="$BENCH/out"
SIZES=(${BENCH_SIZES:-1000 10000 100000})
LARGEST="${SIZES[${#SIZES[@]}-1]}"
PUSHES="${BENCH_PUSHES:-20}"
export BENCH_SAMPLES="${BENCH_SAMPLES:-11}"
# One heap size for every JVM, fixed and touched up front, so RSS moves only with native memory.
JAVA_FLAGS=(-Xms2g -Xmx2g -XX:+AlwaysPreTouch -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)
START=$SECONDS
phase() { echo "[bench $((SECONDS - START))s] $*" >&2; }

source "$ROOT/tests/servers.sh"   # set -euo pipefail, ensure_packages, start_servers
ensure_packages
command -v go >/dev/null || { echo "bench/run.sh needs go (Debian: golang-go)" >&2; exit 1; }

phase "building: main jar (with the native library), bench/java, bench/rust, bench/go"
(cd "$ROOT/java" && gradle -q jar) 2>&1 | grep -v -E '^(openjdk|OpenJDK)' >&2 || true
[ -f "$ROOT/java/build/libs/beam-prometheus-0.1.0.jar" ] || { echo "main jar missing" >&2; exit 1; }
(cd "$BENCH/java" && gradle -q writeClasspath) 2>&1 | grep -v -E '^(openjdk|OpenJDK)' >&2 || true
CP="$(cat "$BENCH/java/build/classpath.txt")"
cargo build -q --release --manifest-path "$BENCH/rust/Cargo.toml"
RUSTBENCH="$BENCH/rust/target/release/beam-prometheus-bench"
(cd "$BENCH/go" && go build -o bench-go .)
# The builds' Gradle daemons would otherwise idle beside the timings, on a machine of 2 cores.
gradle --stop -q >/dev/null 2>&1 || true

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
run() { "$@" | tee -a "$RESULTS" >&2; }

phase "1. encode: pure Java (writes the snapshots and its bodies)"
run java "${JAVA_FLAGS[@]}" -cp "$CP" io.beamprometheus.bench.Bench encode "$OUT" "${SIZES[@]}"
phase "1. encode: Rust core"
run "$RUSTBENCH" encode "$OUT" "${SIZES[@]}"
phase "1. encode: Go (prompb + golang/snappy)"
run "$BENCH/go/bench-go" "$OUT" "${SIZES[@]}"
phase "1. remote-write 2.0 against 1.0 (Rust core, same snapshots)"
run "$RUSTBENCH" protocols "$OUT" "${SIZES[@]}"
phase "1. equivalence: Rust, Java and Go bodies decoded and compared"
run "$RUSTBENCH" check "$OUT" "${SIZES[@]}"

phase "starting Prometheus, Pushgateway, VictoriaMetrics on loopback"
start_servers >&2
phase "2+3. whole writeMetrics calls, heap allocation, JNI crossing (its closed port logs refused connections and a full buffer: expected)"
run java "${JAVA_FLAGS[@]}" -cp "$CP" io.beamprometheus.bench.Bench server "$OUT" "${SIZES[@]}"
SMALLEST="${SIZES[0]}"
phase "2. writeMetrics latency at $SMALLEST series, receivers up, down and hung (the last two log failed deliveries and take 10 s each to close: expected)"
run java "${JAVA_FLAGS[@]}" -cp "$CP" io.beamprometheus.bench.Bench latency "$OUT" "$SMALLEST" 100
phase "4. memory: VmRSS of the JVM over $PUSHES pushes of $LARGEST series both ways"
# glibc's mmap threshold fixed at its default start (128 KiB): left dynamic, the first large
# buffer freed raises it, and the JVM's RSS keeps one step of about 20 MiB at a random push
# (at push 5 to 17 in 6 of 8 runs; never in 3 with the threshold fixed). That step is glibc
# keeping freed memory, not growth; this check is for growth. See BENCHMARKS.md, Method.
MALLOC_MMAP_THRESHOLD_=131072 run java "${JAVA_FLAGS[@]}" -cp "$CP" io.beamprometheus.bench.Bench memory "$OUT" "$LARGEST" "$PUSHES"
phase "4. memory: VmRSS of a native-only process over $PUSHES pushes"
run "$RUSTBENCH" rss "$OUT" "$LARGEST" "$PUSHES" "$BEAMPROM_PROMETHEUS_URL/api/v1/write" "$BEAMPROM_PUSHGATEWAY_URL"

phase "done; the table (also in bench/out/table.md):"
python3 "$BENCH/report.py" "$RESULTS" | tee "$OUT/table.md"
echo "[bench] total $((SECONDS - START)) s" >&2
