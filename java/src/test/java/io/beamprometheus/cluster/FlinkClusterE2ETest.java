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
import java.nio.file.Files;
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

  /** The id of the running job with this name, waiting at most 60 s for it to start. */
  static String runningJob(String name) throws InterruptedException {
    long deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline) {
      for (JsonNode j : Servers.get(rest("/jobs/overview")).get("jobs")) {
        if (name.equals(j.get("name").asText()) && "RUNNING".equals(j.get("state").asText())) {
          return j.get("jid").asText();
        }
      }
      Thread.sleep(250);
    }
    throw new AssertionError("job " + name + " did not start within 60 s");
  }

  /** Stop with drain: sources end, every operator finishes, so the last values are final. */
  static void drain(String jid) throws Exception {
    HttpResponse<String> r =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create(rest("/jobs/" + jid + "/stop")))
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
