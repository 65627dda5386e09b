#!/usr/bin/env bash
# The consumer's view: publishes the artifact into java/build/repo (`gradle publishToRepoFolder`, README
# "Publishing"), checks what was published (POM, jars, both native libraries and their glibc
# floor), then builds examples/wordcount with Maven, resolving beam-prometheus from that folder
# only, and runs it on the direct runner (poller) and the Flink runner (--metricsSink) against the
# real Prometheus, asserting the pipeline's metrics with PromQL.
# Run by tests/run_all.sh after start_servers; by hand: bash tests/examples.sh (starts its own).
# Last line: `examples: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BEAMPROM_PROMETHEUS_URL:-}" ]; then
  . tests/servers.sh
  ensure_packages
  start_servers
fi
command -v mvn >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven >/dev/null; }

passed=0; failed=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

version=$(sed -n 's/^version=//p' java/gradle.properties)
repo=java/build/repo
art=$repo/io/beamprometheus/beam-prometheus/$version
rm -rf "$repo"
echo "== gradle publishToRepoFolder (io.beamprometheus:beam-prometheus:$version into $repo)"
(cd java && gradle --no-daemon -q publishToRepoFolder)

check "published: version agrees in gradle.properties, Cargo.toml and CHANGELOG.md" \
  python3 tests/check_published.py versions "$version"
check "published: POM (name, description, license, SCM, developers; Beam provided, SLF4J API the only runtime dependency)" \
  python3 tests/check_published.py pom "$art/beam-prometheus-$version.pom"
check "published: main, sources and javadoc jars with checksums" \
  python3 tests/check_published.py jars "$art" "$version"
check "published: jar carries linux-x86_64 and linux-aarch64 libraries, each needing at most GLIBC_2.17" \
  python3 tests/check_published.py natives "$art/beam-prometheus-$version.jar"

# Maven keeps what it resolved in ~/.m2 and would never look at a rebuilt 0.1.0 again: drop our
# own artifact (only it) so this run resolves the jar just published, from the folder.
rm -rf "${HOME}/.m2/repository/io/beamprometheus"
work=$(mktemp -d /tmp/beamprom-examples.XXXXXX)
python3 tests/check_published.py input "$work/input.txt" > "$work/expected.json"

run_example() { # runner profile extra-args...
  local runner=$1 profile=$2; shift 2
  local job="example_wordcount_${runner,,}_$$"
  echo "== examples/wordcount on $runner (-P$profile)"
  local args="--runner=$runner --inputFile=$work/input.txt --output=$work/out-$runner/counts --metricsPushPeriod=1"
  args+=" --prometheusRemoteWriteUrl=$BEAMPROM_PROMETHEUS_URL/api/v1/write --prometheusJobName=$job $*"
  if (cd examples/wordcount && mvn -B -q -P"$profile" compile exec:exec \
        -Dpipeline.args="$args") >"$work/mvn-$runner.log" 2>&1; then
    check "examples/wordcount on $runner: beam-prometheus resolved from $repo" \
      grep -q "beam-prometheus-local" "$HOME/.m2/repository/io/beamprometheus/beam-prometheus/$version/_remote.repositories"
    if [ "$runner" = FlinkRunner ]; then
      check "examples/wordcount on $runner: the sink exported (MetricsPusher), the poller waited for its push" \
        grep -q "FlinkRunner exports through --metricsSink once the job has ended; the poller waits for that push" "$work/mvn-$runner.log"
    fi
    check "examples/wordcount on $runner: PromQL sees the words, empty lines and line lengths the input holds" \
      python3 tests/check_published.py promql "$BEAMPROM_PROMETHEUS_URL" "$job" "$work/expected.json"
  else
    grep -E "Caused by|Exception:" "$work/mvn-$runner.log" | head -n 20
    tail -n 40 "$work/mvn-$runner.log"
    check "examples/wordcount on $runner: the Maven run" false
  fi
}
run_example DirectRunner direct-runner --blockOnRun=false
run_example FlinkRunner flink-runner --metricsSink=io.beamprometheus.PrometheusMetricsSink

rm -rf "$work"
echo "examples: $passed passed, $failed failed"
