package io.beamprometheus.cluster;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import io.beamprometheus.e2e.MetricsPipelines;
import io.beamprometheus.e2e.Servers;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.GenerateSequence;
import org.apache.beam.sdk.metrics.MetricNameFilter;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.MetricsFilter;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.ParDo;
import org.joda.time.Duration;
import org.junit.Test;

/**
 * Pipelines submitted from this JVM (the client) to a real Flink session cluster on loopback
 * (JobManager and TaskManager JVMs started by tests/clusters.sh) with {@code --flinkMaster}.
 */
public class FlinkClusterE2ETest {
  static final int RATE = 10;
  static final long RUN_MILLIS = 35_000;

  static PipelineOptions options(String job, String... extra) {
    List<String> args =
        new ArrayList<>(
            Arrays.asList(
                "--runner=FlinkRunner",
                "--flinkMaster=" + Servers.env("BEAMPROM_FLINK_MASTER"),
                "--filesToStage=" + Servers.env("BEAMPROM_JOB_JAR"),
                "--parallelism=1",
                "--metricsPushPeriod=1",
                "--prometheusJobName=" + job,
                "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(),
                "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
                "--prometheusGroupingKey={\"instance\":\"flink-cluster\"}"));
    args.addAll(Arrays.asList(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
  }

  /** Remote-written series carry no instance label; the gateway's carry instance="flink-cluster". */
  static String[] selectors(String metric, String job) {
    String common = "job=\"" + job + "\",namespace=\"" + LivePipeline.NS + "\",result=\"attempted\"";
    return new String[] {metric + "{" + common + ",instance=\"\"}", metric + "{" + common + ",instance=\"flink-cluster\"}"};
  }

  static long beamCounter(PipelineResult result, String ns, String name) {
    long v = -1;
    for (MetricResult<Long> c :
        result
            .metrics()
            .queryMetrics(MetricsFilter.builder().addNameFilter(MetricNameFilter.named(ns, name)).build())
            .getCounters()) {
      v = c.getAttempted();
    }
    return v;
  }

  /** Flink's REST API of the session cluster. */
  static String rest(String path) {
    return "http://" + Servers.env("BEAMPROM_FLINK_MASTER") + path;
  }

  static String runningJob(String name) throws InterruptedException {
    return runningJob("http://" + Servers.env("BEAMPROM_FLINK_MASTER"), name, 60);
  }

  static void drain(String jid) throws Exception {
    drain("http://" + Servers.env("BEAMPROM_FLINK_MASTER"), jid);
  }

  /** The id of the running job with this name, waiting at most {@code seconds} for it to start. */
  static String runningJob(String restBase, String name, int seconds) throws InterruptedException {
    long deadline = System.currentTimeMillis() + seconds * 1000L;
    while (System.currentTimeMillis() < deadline) {
      JsonNode overview;
      try {
        overview = Servers.get(restBase + "/jobs/overview");
      } catch (AssertionError notUpYet) {
        Thread.sleep(500);
        continue;
      }
      for (JsonNode j : overview.get("jobs")) {
        if (name.equals(j.get("name").asText()) && "RUNNING".equals(j.get("state").asText())) {
          return j.get("jid").asText();
        }
      }
      Thread.sleep(250);
    }
    throw new AssertionError("job " + name + " did not start within " + seconds + " s");
  }

  /** Stop with drain: sources end, every operator finishes, so the last values are final. */
  static void drain(String restBase, String jid) throws Exception {
    HttpResponse<String> r =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create(restBase + "/jobs/" + jid + "/stop"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"drain\": true}"))
                    .timeout(java.time.Duration.ofSeconds(10))
                    .build(),
                HttpResponse.BodyHandlers.ofString());
    assertEquals("stop-with-drain of " + jid + ": " + r.body(), 202, r.statusCode());
  }

  /** Watches a job's counter through remote-write and the gateway for RUN_MILLIS. */
  static LiveWatch[] watch(String[] sel, long start) throws InterruptedException {
    LiveWatch[] w = {new LiveWatch(sel[0]), new LiveWatch(sel[1])};
    while (System.currentTimeMillis() - start < RUN_MILLIS) {
      w[0].poll();
      w[1].poll();
      Thread.sleep(200);
    }
    return w;
  }

  /** The reporter's series of a Flink job: job = the Flink job name, the TaskManager as label. */
  static String[] reporterSelectors(String jobName) {
    String common = "job=\"" + jobName + "\",namespace=\"" + LivePipeline.NS + "\",step=\"" + LivePipeline.STEP
        + "\",result=\"attempted\",flink_taskmanager!=\"\"";
    return new String[] {"beam_ticks_total{" + common + ",instance=\"\"}", "beam_ticks_total{" + common + ",instance!=\"\"}"};
  }

  /**
   * The default submission (attached), with the reporter configured in the cluster: the
   * TaskManager exports the job's Beam metrics while it runs, both ways; after a drain the last
   * value is exactly the number of elements counted.
   */
  @Test
  public void reporterExportsLiveValuesOfAnAttachedStreamingJob() throws Exception {
    String name = "cluster_flink_reporter_" + System.nanoTime();
    Path tally = Files.createTempFile("beamprom-tally", ".txt");
    Files.delete(tally);
    PipelineOptions o = options("unused", "--streaming=true", "--jobName=" + name);
    Pipeline p = LivePipeline.build(Pipeline.create(o), RATE, tally);
    long start = System.currentTimeMillis();
    ExecutorService exec = Executors.newSingleThreadExecutor();
    Future<PipelineResult> running = exec.submit(() -> p.run());
    String jid = runningJob(name);
    String[] sel = reporterSelectors(name);
    LiveWatch[] w = watch(sel, start);
    double stopAt = System.currentTimeMillis() / 1000.0;
    drain(jid);
    assertEquals(PipelineResult.State.DONE, running.get(90, TimeUnit.SECONDS).getState());
    exec.shutdown();
    for (String s : sel) {
      LiveWatch.assertRising(s, start / 1000.0, stopAt, 3);
    }
    long[] t = LivePipeline.tally(tally);
    assertTrue("elements counted: " + t.length, t.length > 0);
    for (String s : sel) {
      awaitValue(Servers.prometheus(), s, t.length, 30);
    }
    System.out.println("[freshness] flink reporter (attached), " + LiveWatch.describe("remote-write", w[0].freshness(t)));
    System.out.println("[freshness] flink reporter (attached), " + LiveWatch.describe("pushgateway", w[1].freshness(t)));
    Files.deleteIfExists(tally);
  }

  /**
   * Detached submission with the poller: run() returns at once, but Beam's Flink runner fills the
   * job's accumulators (what the detached result reads) only when tasks end, so the poller's
   * series appear only at the end, with Beam's final count, and the poller warns. The reporter
   * exports the same job live meanwhile.
   */
  @Test
  public void detachedPollerExportsFinalValuesAndTheReporterLiveOnes() throws Exception {
    String job = "cluster_flink_poller_" + System.nanoTime();
    String name = job + "_flink";
    Path tally = Files.createTempFile("beamprom-tally", ".txt");
    Files.delete(tally);
    // --metricsSink stays set, as a user switching modes would leave it: the poller still exports,
    // since a detached submission starts no MetricsPusher.
    PipelineOptions o =
        options(job, "--streaming=true", "--attachedMode=false", "--jobName=" + name,
            "--metricsSink=" + PrometheusMetricsSink.class.getName());
    long start = System.currentTimeMillis();
    PipelineResult result = LivePipeline.build(Pipeline.create(o), RATE, tally).run();
    assertEquals("FlinkDetachedRunnerResult", result.getClass().getSimpleName());
    PrintStream err = System.err;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    System.setErr(new PrintStream(captured, true));
    ExecutorService exec = Executors.newSingleThreadExecutor();
    Future<PipelineResult.State> exporting;
    try {
      exporting = exec.submit(() -> PrometheusMetricsPoller.exportUntilFinish(result, o));
      Thread.sleep(2000);
    } finally {
      System.setErr(err);
    }
    String[] sel = selectors("beam_ticks_total", job);
    watch(reporterSelectors(name), start);
    double cancelAt = System.currentTimeMillis() / 1000.0;
    result.cancel();
    PipelineResult.State state = exporting.get(90, TimeUnit.SECONDS);
    exec.shutdown();
    assertEquals(PipelineResult.State.CANCELLED, state);
    for (String s : reporterSelectors(name)) {
      LiveWatch.assertRising(s, start / 1000.0, cancelAt, 3);
    }
    long counted = beamCounter(result, LivePipeline.NS, "ticks");
    assertTrue("Beam counted " + counted, counted > 0);
    for (String s : sel) {
      assertTrue("the poller exported Beam values while the job ran: " + s,
          rangeOrEmpty(s, start / 1000.0, cancelAt - 1).isEmpty());
      awaitValue(Servers.prometheus(), s, counted, 30);
    }
    String log = captured.toString();
    System.err.print(log);
    assertTrue("the poller warns that a detached Flink job is not live: " + log,
        log.contains("final values only") && log.contains("FlinkMetricsReporterFactory"));
    Files.deleteIfExists(tally);
  }

  /** Attached batch on the cluster: MetricsPusher runs after execute() and exports exact finals. */
  @Test
  public void attachedBatchJobKeepsExactFinalValues() {
    String job = "cluster_flink_batch_" + System.nanoTime();
    PipelineOptions o = options(job, "--metricsSink=" + PrometheusMetricsSink.class.getName());
    PipelineResult.State state = MetricsPipelines.everyKind(Pipeline.create(o), 1000).run().waitUntilFinish();
    assertEquals(PipelineResult.State.DONE, state);
    String common = "job=\"" + job + "\",namespace=\"" + MetricsPipelines.NS + "\",result=\"attempted\"";
    for (String inst : new String[] {"", "flink-cluster"}) {
      String s = "{" + common + ",instance=\"" + inst + "\"}";
      awaitValue(Servers.prometheus(), "beam_elements_total" + s, 1000, 60);
      awaitValue(Servers.prometheus(), "beam_element_value_distribution_sum" + s, 500500, 30);
      awaitValue(Servers.prometheus(), "beam_max_element_gauge" + s, 1000, 30);
      awaitValue(Servers.prometheus(), "count(beam_parity_string_set_info" + s + ")", 2, 30);
    }
  }

  /**
   * Attached streaming: Beam's Flink runner builds MetricsPusher only after execute() returns,
   * so nothing is exported while the job runs. Measured here (no sample before the end), and the
   * sink says so once, with what to use instead.
   */
  @Test
  public void attachedStreamingJobExportsOnlyAtTheEndAndWarns() throws Exception {
    String job = "cluster_flink_attached_" + System.nanoTime();
    PipelineOptions o =
        options(job, "--streaming=true", "--metricsSink=" + PrometheusMetricsSink.class.getName());
    Pipeline p = Pipeline.create(o);
    // 80 elements at 10 a second: a streaming job of about 8 s that ends by itself.
    p.apply("Sequence", GenerateSequence.from(0).to(80).withRate(RATE, Duration.standardSeconds(1)))
        .apply("Tick", ParDo.of(new LivePipeline.Tick(Files.createTempFile("beamprom-tally", ".txt").toString())));
    PrintStream err = System.err;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    long start = System.currentTimeMillis();
    long end;
    System.setErr(new PrintStream(captured, true));
    try {
      PipelineResult r = p.run();
      end = System.currentTimeMillis();
      assertEquals(PipelineResult.State.DONE, r.waitUntilFinish());
      String[] sel = selectors("beam_ticks_total", job);
      for (String s : sel) {
        awaitValue(Servers.prometheus(), s, 80, 60);
        // Nothing while it ran: no sample before run() returned.
        List<Double> during = rangeOrEmpty(s, start / 1000.0, end / 1000.0 - 1);
        assertTrue("attached streaming exported while running? " + during, during.isEmpty());
      }
    } finally {
      System.setErr(err);
    }
    String log = captured.toString();
    System.err.print(log);
    assertTrue("the sink warns that attached streaming exports only at the end: " + log,
        log.contains("not exported while it ran") && log.contains("FlinkMetricsReporterFactory"));
  }

  /**
   * Application mode: main() runs inside the JobManager of an application cluster started here
   * (its own JobManager and TaskManager JVMs, the reporter configured as in the session cluster).
   * The reporter exports live; the sink, built after the attached execute() returned, exports the
   * final values and warns in the JobManager's log.
   */
  @Test
  public void applicationModeReporterLiveAndSinkAtTheEnd() throws Exception {
    String name = "cluster_flink_app_" + System.nanoTime();
    String sinkJob = name + "_sink";
    Path dir = Files.createTempDirectory("beamprom-flink-app");
    Path tally = dir.resolve("tally.txt");
    int rpc = freePort();
    int restPort = freePort();
    String conf = new String(Files.readAllBytes(Paths.get(Servers.env("FLINK_CONF_DIR"), "flink-conf.yaml")), StandardCharsets.UTF_8)
        .replaceAll("(?m)^jobmanager\\.rpc\\.port: .*$", "jobmanager.rpc.port: " + rpc)
        .replaceAll("(?m)^rest\\.port: .*$", "rest.port: " + restPort)
        // Application mode defaults to detached execution, where Beam's attached path (its
        // default, and the only one that builds MetricsPusher) fails when the job ends ("Job was
        // submitted in detached mode"): measured here, and the README's recipe sets this.
        + "execution.attached: true\n";
    Files.createDirectories(dir.resolve("conf"));
    Files.write(dir.resolve("conf/flink-conf.yaml"), conf.getBytes(StandardCharsets.UTF_8));
    String cp = new String(Files.readAllBytes(Paths.get("build/main-jar.txt")), StandardCharsets.UTF_8).trim()
        + java.io.File.pathSeparator + Servers.env("BEAMPROM_JOB_JAR")
        + java.io.File.pathSeparator + new String(Files.readAllBytes(Paths.get("build/flink-classpath.txt")), StandardCharsets.UTF_8).trim();
    List<String> jm = javaCommand(cp, "-Xmx700m");
    jm.addAll(Arrays.asList(FlinkApplicationEntrypoint.class.getName(), dir.resolve("conf").toString(),
        LiveApplication.class.getName(), tally.toString(),
        "--runner=FlinkRunner", "--streaming=true", "--parallelism=1", "--jobName=" + name,
        "--metricsSink=" + PrometheusMetricsSink.class.getName(), "--metricsPushPeriod=1",
        "--prometheusJobName=" + sinkJob, "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl()));
    List<String> tm = javaCommand(cp, "-Xmx512m", "-XX:MaxDirectMemorySize=256m");
    tm.addAll(Arrays.asList("org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "--configDir", dir.resolve("conf").toString()));
    Process jobManager = start(jm, dir.resolve("conf"), dir.resolve("jobmanager.log"));
    Process taskManager = start(tm, dir.resolve("conf"), dir.resolve("taskmanager.log"));
    try {
      long start = System.currentTimeMillis();
      String restBase = "http://127.0.0.1:" + restPort;
      String jid = runningJob(restBase, name, 120);
      // Watched from the job's start: the cluster's own start-up is not the exporter's doing.
      start = System.currentTimeMillis();
      String[] sel = reporterSelectors(name);
      LiveWatch[] w = watch(sel, start);
      double stopAt = System.currentTimeMillis() / 1000.0;
      try {
        drain(restBase, jid);
      } catch (java.io.IOException jobManagerAlreadyGone) {
        // The drain completes and the application cluster shuts down, sometimes before answering.
      }
      // The application's main() returns once the sink has been built and has pushed.
      long deadline = System.currentTimeMillis() + 120_000;
      while (!new String(Files.readAllBytes(dir.resolve("jobmanager.log")), StandardCharsets.UTF_8).contains("Application completed")) {
        assertTrue("the application did not complete within 120 s", System.currentTimeMillis() < deadline);
        Thread.sleep(500);
      }
      for (String s : sel) {
        LiveWatch.assertRising(s, start / 1000.0, stopAt, 3);
      }
      long[] t = LivePipeline.tally(tally);
      assertTrue("elements counted: " + t.length, t.length > 0);
      for (String s : sel) {
        awaitValue(Servers.prometheus(), s, t.length, 30);
      }
      String sinkSel = "beam_ticks_total{job=\"" + sinkJob + "\",namespace=\"" + LivePipeline.NS + "\",result=\"attempted\"}";
      awaitValue(Servers.prometheus(), sinkSel, t.length, 30);
      assertTrue("the sink's series appeared only after the job ended",
          rangeOrEmpty(sinkSel, start / 1000.0, stopAt).isEmpty());
      String log = new String(Files.readAllBytes(dir.resolve("jobmanager.log")), StandardCharsets.UTF_8);
      assertTrue("the sink warns in the JobManager's log", log.contains("not exported while it ran"));
      System.out.println("[freshness] flink reporter (application mode), " + LiveWatch.describe("remote-write", w[0].freshness(t)));
      System.out.println("[freshness] flink reporter (application mode), " + LiveWatch.describe("pushgateway", w[1].freshness(t)));
    } finally {
      jobManager.destroyForcibly();
      taskManager.destroyForcibly();
      taskManager.waitFor(30, TimeUnit.SECONDS);
    }
  }

  static List<String> javaCommand(String cp, String... jvm) {
    List<String> c = new ArrayList<>();
    c.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
    c.addAll(Arrays.asList(jvm));
    for (String p : new String[] {"java.lang", "java.util", "java.net", "java.io", "java.nio", "sun.nio.ch",
        "java.lang.reflect", "java.text", "java.time", "java.util.concurrent", "java.util.concurrent.atomic", "java.lang.invoke"}) {
      c.add("--add-opens=java.base/" + p + "=ALL-UNNAMED");
    }
    c.add("-cp");
    c.add(cp);
    return c;
  }

  static Process start(List<String> command, Path confDir, Path log) throws java.io.IOException {
    ProcessBuilder b = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
    b.environment().put("FLINK_CONF_DIR", confDir.toString());
    return b.start();
  }

  static int freePort() throws java.io.IOException {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  static List<Double> rangeOrEmpty(String promql, double startSec, double endSec) {
    try {
      return LiveWatch.range(promql, startSec, endSec);
    } catch (AssertionError e) {
      if (e.getMessage() != null && e.getMessage().contains("got []")) {
        return new ArrayList<>();
      }
      throw e;
    }
  }
}
