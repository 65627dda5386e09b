package io.beamprometheus.cluster;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import io.beamprometheus.e2e.MetricsPipelines;
import io.beamprometheus.e2e.Servers;
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
import org.apache.beam.sdk.metrics.MetricNameFilter;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.MetricsFilter;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Pipelines submitted from this JVM (the driver) to a real Spark standalone cluster on loopback
 * (Master and Worker JVMs started by tests/clusters.sh; the worker starts the executor JVMs) with
 * {@code --sparkMaster=spark://…}. SparkRunner starts MetricsPusher when the job starts, so the
 * sink exports while a streaming job runs.
 */
public class SparkClusterE2ETest {
  static final int RATE = 10;
  static final long RUN_MILLIS = 35_000;

  static PipelineOptions options(String job, String... extra) throws Exception {
    List<String> args =
        new ArrayList<>(
            Arrays.asList(
                "--runner=SparkRunner",
                "--sparkMaster=" + Servers.env("BEAMPROM_SPARK_MASTER"),
                "--filesToStage=" + Servers.env("BEAMPROM_JOB_JAR"),
                "--metricsSink=" + PrometheusMetricsSink.class.getName(),
                "--metricsPushPeriod=1",
                "--prometheusJobName=" + job,
                "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(),
                "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
                "--prometheusGroupingKey={\"instance\":\"spark-cluster\"}"));
    args.addAll(Arrays.asList(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
  }

  static String[] selectors(String metric, String job) {
    String common = "job=\"" + job + "\",namespace=\"" + LivePipeline.NS + "\",result=\"attempted\"";
    return new String[] {metric + "{" + common + ",instance=\"\"}", metric + "{" + common + ",instance=\"spark-cluster\"}"};
  }

  @Test
  public void streamingJobExportsLiveValuesThroughTheSinkAndFinalValuesThroughThePoller() throws Exception {
    String job = "cluster_spark_live_" + System.nanoTime();
    Path tally = Files.createTempFile("beamprom-tally", ".txt");
    Files.delete(tally);
    Path checkpoints = Files.createTempDirectory("beamprom-spark-checkpoint");
    PipelineOptions o =
        options(job, "--streaming=true", "--batchIntervalMillis=1000", "--checkpointDir=" + checkpoints.toUri());
    long start = System.currentTimeMillis();
    PipelineResult result = LivePipeline.build(Pipeline.create(o), RATE, tally).run();
    // The sink exports while the job runs; the poller, once more after it has stopped: Spark
    // streaming's cancel() marks the result CANCELLED before its graceful stop processes the last
    // batches, and MetricsPusher's last push, following the state, missed them (270 of 280).
    ExecutorService exec = Executors.newSingleThreadExecutor();
    Future<PipelineResult.State> exporting = exec.submit(() -> PrometheusMetricsPoller.exportUntilFinish(result, o));
    String[] sel = selectors("beam_ticks_total", job);
    LiveWatch rw = new LiveWatch(sel[0]);
    LiveWatch gw = new LiveWatch(sel[1]);
    while (System.currentTimeMillis() - start < RUN_MILLIS) {
      rw.poll();
      gw.poll();
      Thread.sleep(200);
    }
    double cancelAt = System.currentTimeMillis() / 1000.0;
    result.cancel();
    PipelineResult.State state = exporting.get(90, TimeUnit.SECONDS);
    exec.shutdown();
    assertTrue("terminal after cancel: " + state, state.isTerminal());
    for (String s : sel) {
      LiveWatch.assertRising(s, start / 1000.0, cancelAt, 3);
    }
    long counted = -1;
    for (MetricResult<Long> c :
        result
            .metrics()
            .queryMetrics(MetricsFilter.builder().addNameFilter(MetricNameFilter.named(LivePipeline.NS, "ticks")).build())
            .getCounters()) {
      counted = c.getAttempted();
    }
    assertTrue("Beam counted " + counted, counted > 0);
    for (String s : sel) {
      awaitValue(Servers.prometheus(), s, counted, 30);
    }
    long[] t = LivePipeline.tally(tally);
    assertEquals("every element counted was exported", t.length, counted);
    System.out.println("[freshness] spark streaming + sink, " + LiveWatch.describe("remote-write", rw.freshness(t)));
    System.out.println("[freshness] spark streaming + sink, " + LiveWatch.describe("pushgateway", gw.freshness(t)));
    Files.deleteIfExists(tally);
  }

  @Test
  public void batchJobKeepsExactFinalValues() throws Exception {
    String job = "cluster_spark_batch_" + System.nanoTime();
    PipelineOptions o = options(job);
    assertEquals(PipelineResult.State.DONE, MetricsPipelines.everyKind(Pipeline.create(o), 1000).run().waitUntilFinish());
    String common = "job=\"" + job + "\",namespace=\"" + MetricsPipelines.NS + "\",result=\"attempted\"";
    for (String inst : new String[] {"", "spark-cluster"}) {
      String s = "{" + common + ",instance=\"" + inst + "\"}";
      awaitValue(Servers.prometheus(), "beam_elements_total" + s, 1000, 60);
      awaitValue(Servers.prometheus(), "beam_element_value_distribution_sum" + s, 500500, 30);
      awaitValue(Servers.prometheus(), "beam_max_element_gauge" + s, 1000, 30);
      awaitValue(Servers.prometheus(), "count(beam_parity_string_set_info" + s + ")", 2, 30);
    }
  }
}
