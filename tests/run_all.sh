#!/usr/bin/env bash
# Every test: the Rust core (cargo test), the Java unit tests, and the end-to-end suites against
# real Prometheus, Pushgateway and VictoriaMetrics servers this script starts and stops; the
# published artifact in the Maven example (tests/examples.sh); the core's tests for aarch64 under
# qemu (scripts/native.sh qemu-test).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/servers.sh
. tests/clusters.sh
ensure_packages
ensure_prometheus3
python3 -c 'import prometheus_client' 2>/dev/null || pip install -q prometheus_client

start_servers

# The rules in monitoring/: promtool's syntax check and its unit tests (series in our naming).
echo "== promtool check rules, promtool test rules"
promtool_passed=0; promtool_failed=0
for args in "check rules monitoring/beam-prometheus.rules.yml" "test rules monitoring/beam-prometheus.rules.test.yml"; do
  # shellcheck disable=SC2086
  if promtool $args; then promtool_passed=$((promtool_passed + 1)); else promtool_failed=$((promtool_failed + 1)); fi
done

cargo_log=$(mktemp /tmp/beamprom-cargo.XXXXXX)
# --include-ignored: the tests that need the real servers started above run too.
echo "== cargo test"
set +e
cargo test -- --include-ignored 2>&1 | tee "$cargo_log"
cargo_rc=${PIPESTATUS[0]}
set -e
rust_passed=$(grep -Eo '[0-9]+ passed' "$cargo_log" | awk '{s+=$1} END {print s+0}')
rust_failed=$(grep -Eo '[0-9]+ failed' "$cargo_log" | awk '{s+=$1} END {print s+0}')
echo "== gradle test e2eTest sparkE2eTest versionMatrixTest"
rm -rf java/build/test-results   # only this run's results are counted
set +e
(cd java && gradle --no-daemon -q test e2eTest sparkE2eTest versionMatrixTest --continue)
gradle_rc=$?
set -e
# Real clusters on loopback (tests/clusters.sh): a Flink session cluster and a Spark standalone
# cluster, each process its own JVM; pipelines are submitted to them from the test JVMs.
echo "== clusters: gradle flinkClusterTest sparkClusterTest"
set +e
(cd java && gradle --no-daemon -q clusterClasspaths) && make_job_jar && start_flink_cluster && start_spark_cluster \
  && (cd java && gradle --no-daemon -q flinkClusterTest sparkClusterTest --continue)
cluster_rc=$?
set -e
stop_clusters
java_passed=0; java_failed=0; java_skipped=0
for f in java/build/test-results/test/*.xml java/build/test-results/e2eTest/*.xml java/build/test-results/sparkE2eTest/*.xml \
    java/build/test-results/flinkClusterTest/*.xml java/build/test-results/sparkClusterTest/*.xml \
    java/build/test-results/matrix*/*.xml; do
  [ -f "$f" ] || continue
  read -r t fl er sk < <(python3 - "$f" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
print(r.get('tests'), r.get('failures'), r.get('errors'), r.get('skipped'))
PY
)
  java_passed=$((java_passed + t - fl - er - sk)); java_failed=$((java_failed + fl + er)); java_skipped=$((java_skipped + sk))
done
# The version matrix (java/build.gradle): one line per Beam release / runner combination.
echo "== version matrix"
python3 - java/build/test-results <<'PY'
import glob, os, sys, xml.etree.ElementTree as ET
for d in sorted(glob.glob(os.path.join(sys.argv[1], 'matrix*'))):
    t = f = 0
    said = []
    for x in glob.glob(os.path.join(d, '*.xml')):
        r = ET.parse(x).getroot()
        t += int(r.get('tests')); f += int(r.get('failures')) + int(r.get('errors'))
        err = r.find('system-err')
        said += [l for l in (err.text or '').splitlines() if l.startswith('Beam ')] if err is not None else []
    print('%-34s %-7s %s' % (os.path.basename(d), 'FAILED' if f or not t else 'passed', '; '.join(said)))
PY
# The published artifact as a Maven user gets it: examples/wordcount on the direct and Flink runners.
echo "== tests/examples.sh"
ex_log=$(mktemp /tmp/beamprom-examples.XXXXXX)
set +e
bash tests/examples.sh 2>&1 | tee "$ex_log"
ex_rc=${PIPESTATUS[0]}
set -e
ex_passed=$(sed -n 's/^examples: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$ex_log" | tail -1)
ex_failed=$(sed -n 's/^examples: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$ex_log" | tail -1)
[ -n "$ex_passed" ] || { ex_passed=0; ex_failed=1; }
# The Rust core's tests cross-built for linux-aarch64 (glibc 2.17) and run under qemu.
echo "== scripts/native.sh qemu-test (aarch64 under emulation)"
arm_log=$(mktemp /tmp/beamprom-aarch64.XXXXXX)
set +e
bash scripts/native.sh qemu-test 2>&1 | tee "$arm_log"
arm_rc=${PIPESTATUS[0]}
set -e
arm_passed=$(grep -Eo '[0-9]+ passed' "$arm_log" | awk '{s+=$1} END {print s+0}')
arm_failed=$(grep -Eo '[0-9]+ failed' "$arm_log" | awk '{s+=$1} END {print s+0}')
[ "$arm_rc" -eq 0 ] || [ "$arm_failed" -gt 0 ] || arm_failed=1
[ "$ex_rc" -eq 0 ] || [ "$ex_failed" -gt 0 ] || ex_failed=1
passed=$((rust_passed + java_passed + promtool_passed + ex_passed + arm_passed)); failed=$((rust_failed + java_failed + promtool_failed + ex_failed + arm_failed))
ls -d java/build/test-results/matrix* >/dev/null 2>&1 || { echo "the version matrix did not run"; failed=$((failed + 1)); }
for suite in flinkClusterTest sparkClusterTest; do
  ls java/build/test-results/$suite/*.xml >/dev/null 2>&1 || { echo "the $suite suite did not run"; failed=$((failed + 1)); }
done
grep -ho '\[freshness\].*' java/build/test-results/*ClusterTest/*.xml 2>/dev/null || true
python3 -c 'import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); print("fault suite OutageE2ETest: %s tests in %s s" % (r.get("tests"), r.get("time")))' \
  java/build/test-results/e2eTest/TEST-io.beamprometheus.e2e.OutageE2ETest.xml 2>/dev/null || true
echo "rust: $rust_passed passed, $rust_failed failed; java: $java_passed passed, $java_failed failed, $java_skipped skipped; promtool: $promtool_passed passed, $promtool_failed failed; examples: $ex_passed passed, $ex_failed failed; aarch64 (qemu): $arm_passed passed, $arm_failed failed"
echo "$passed passed, $failed failed, $java_skipped skipped"
[ "$cargo_rc" -eq 0 ] && [ "$gradle_rc" -eq 0 ] && [ "$cluster_rc" -eq 0 ] && [ "$ex_rc" -eq 0 ] && [ "$arm_rc" -eq 0 ] && [ "$failed" -eq 0 ]
