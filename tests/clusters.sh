# Real clusters on loopback for the cluster suites: a Flink session cluster (JobManager and
# TaskManager, each its own JVM) and a Spark standalone cluster (Master and Worker, each its own
# JVM; the Worker starts executor JVMs). Source it after tests/servers.sh; call
# start_flink_cluster / start_spark_cluster after `gradle clusterClasspaths`; they stop with the
# servers (stop_clusters is chained into the EXIT trap).
#
# The cluster JVMs run from the runners' own dependencies (java/build/*-classpath.txt), as a
# distribution's lib/ and jars/ would; the pipelines' classes travel with the job as a jar
# (BEAMPROM_JOB_JAR), as a user's would.

CLUSTER_PIDS=()
stop_clusters() {
  local pid deadline
  for pid in "${CLUSTER_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # Bounded: a JVM that ignores SIGTERM for 30 s is killed.
  deadline=$((SECONDS + 30))
  for pid in "${CLUSTER_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  CLUSTER_PIDS=()
  # Executors the Spark worker started are its children; catch any it left behind (the pattern is
  # this run's own mktemp directory).
  [ -n "${CLUSTER_DIR:-}" ] && pkill -f "$CLUSTER_DIR" 2>/dev/null || true
  [ -n "${CLUSTER_DIR:-}" ] && rm -rf "$CLUSTER_DIR"
  # What later steps run (an embedded Flink, a local Spark) must not read the clusters' settings.
  unset FLINK_CONF_DIR SPARK_HOME SPARK_CONF_DIR SPARK_LOCAL_DIRS SPARK_SCALA_VERSION SPARK_LOCAL_IP \
    BEAMPROM_FLINK_MASTER BEAMPROM_SPARK_MASTER
  return 0
}

cluster_dir() {
  if [ -z "${CLUSTER_DIR:-}" ]; then
    CLUSTER_DIR=$(mktemp -d /tmp/beamprom-clusters.XXXXXX)
    trap 'stop_clusters; stop_servers' EXIT
  fi
}

# The JDK module opens Flink and Spark need on Java 17 (the same list build.gradle passes).
JDK_OPENS=(--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED
  --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED
  --add-opens=java.base/sun.util.calendar=ALL-UNNAMED)

# The job jar: the pipelines (test classes) and this project's classes with the native library.
make_job_jar() {
  cluster_dir
  local j="$CLUSTER_DIR/beamprom-e2e-job.jar"
  (cd java/build && jar cf "$j" -C classes/java/main . -C resources/main . -C classes/java/test .)
  export BEAMPROM_JOB_JAR="$j"
}

wait_port_log() { # file pattern seconds name
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$4 did not start within $3 s; its log:" >&2
      tail -n 40 "$1" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# Flink session cluster: StandaloneSessionClusterEntrypoint + TaskManagerRunner, loopback only.
start_flink_cluster() {
  cluster_dir
  local d="$CLUSTER_DIR/flink" cp rpc rest
  mkdir -p "$d/conf" "$d/tmp"
  # Our jar sits in the cluster's classpath, as in a distribution's lib/, for the reporter.
  cp="$(cat java/build/main-jar.txt):$(cat java/build/flink-classpath.txt)"
  local ports
  ports=$(free_ports 2) || return 1
  read -r rpc rest <<<"$ports"
  cat > "$d/conf/flink-conf.yaml" <<YML
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $rpc
jobmanager.bind-host: 127.0.0.1
jobmanager.memory.process.size: 1000m
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $rest
taskmanager.host: 127.0.0.1
taskmanager.bind-host: 127.0.0.1
taskmanager.numberOfTaskSlots: 4
# Flink's start scripts derive these for TaskManagerRunner; without them it refuses to start.
taskmanager.cpu.cores: 2
taskmanager.memory.framework.heap.size: 128m
taskmanager.memory.task.heap.size: 384m
taskmanager.memory.managed.size: 128m
taskmanager.memory.framework.off-heap.size: 128m
taskmanager.memory.task.off-heap.size: 0m
taskmanager.memory.network.min: 64m
taskmanager.memory.network.max: 64m
taskmanager.memory.jvm-metaspace.size: 256m
taskmanager.memory.jvm-overhead.min: 192m
taskmanager.memory.jvm-overhead.max: 192m
state.savepoints.dir: file://$d/savepoints
# Beam metrics live from inside the cluster: our reporter in every JobManager and TaskManager.
metrics.reporter.beamprom.factory.class: io.beamprometheus.FlinkMetricsReporterFactory
metrics.reporter.beamprom.interval: 1 SECONDS
metrics.reporter.beamprom.prometheusRemoteWriteUrl: $BEAMPROM_PROMETHEUS_URL/api/v1/write
metrics.reporter.beamprom.prometheusPushgatewayUrl: $BEAMPROM_PUSHGATEWAY_URL
io.tmp.dirs: $d/tmp
web.tmpdir: $d/tmp
blob.storage.directory: $d/tmp
YML
  export FLINK_CONF_DIR="$d/conf"
  java "${JDK_OPENS[@]}" -Xmx700m -cp "$cp" -Dlog.file="$d/jm.log" \
    org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint --configDir "$d/conf" \
    >"$d/jobmanager.log" 2>&1 &
  CLUSTER_PIDS+=($!)
  java "${JDK_OPENS[@]}" -Xmx512m -XX:MaxDirectMemorySize=256m -XX:MaxMetaspaceSize=256m -cp "$cp" \
    org.apache.flink.runtime.taskexecutor.TaskManagerRunner --configDir "$d/conf" \
    >"$d/taskmanager.log" 2>&1 &
  CLUSTER_PIDS+=($!)
  export BEAMPROM_FLINK_MASTER="127.0.0.1:$rest"
  export BEAMPROM_FLINK_LOGS="$d"
  # Ready when the REST API lists one TaskManager.
  local deadline=$((SECONDS + 120))
  until curl -fsS --max-time 5 "http://127.0.0.1:$rest/taskmanagers" 2>/dev/null | grep -q '"id"'; do
    if [ $SECONDS -ge $deadline ]; then
      echo "the Flink cluster did not come up within 120 s:" >&2
      tail -n 40 "$d/jobmanager.log" "$d/taskmanager.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "flink session cluster: REST $BEAMPROM_FLINK_MASTER (JobManager and TaskManager JVMs)"
}

# Spark standalone cluster: Master + Worker; the worker launches executor JVMs from SPARK_HOME,
# here a directory whose jars/ links the Spark runner's dependencies.
start_spark_cluster() {
  cluster_dir
  local d="$CLUSTER_DIR/spark" cp port
  mkdir -p "$d/home/jars" "$d/work" "$d/conf"
  cp=$(cat java/build/spark-classpath.txt)
  local IFS=:
  for f in $cp; do
    case "$f" in *.jar) ln -sf "$f" "$d/home/jars/$(basename "$f")" ;; esac
  done
  unset IFS
  local ports master_ui worker_ui
  ports=$(free_ports 3) || return 1
  read -r port master_ui worker_ui <<<"$ports"
  # SPARK_SCALA_VERSION: the launcher that builds executor command lines looks for a source
  # build without it.
  export SPARK_SCALA_VERSION=2.12 SPARK_HOME="$d/home" SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$d/work" SPARK_CONF_DIR="$d/conf"
  java "${JDK_OPENS[@]}" -Xmx512m -cp "$d/home/jars/*" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$port" --webui-port "$master_ui" >"$d/master.log" 2>&1 &
  CLUSTER_PIDS+=($!)
  wait_port_log "$d/master.log" "I have been elected leader" 90 spark-master
  java "${JDK_OPENS[@]}" -Xmx512m -cp "$d/home/jars/*" -Dspark.worker.ui.port=0 \
    org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores 2 --memory 1500m \
    --work-dir "$d/work" --webui-port "$worker_ui" "spark://127.0.0.1:$port" >"$d/worker.log" 2>&1 &
  CLUSTER_PIDS+=($!)
  wait_port_log "$d/worker.log" "Successfully registered with master" 90 spark-worker
  export BEAMPROM_SPARK_MASTER="spark://127.0.0.1:$port"
  export BEAMPROM_SPARK_LOGS="$d"
  echo "spark standalone cluster: $BEAMPROM_SPARK_MASTER (Master and Worker JVMs)"
}
