package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import java.io.File;
import java.net.ServerSocket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.Reshuffle;
import org.joda.time.Duration;
import org.junit.Test;

/**
 * Servers of its own that the test stops and restarts (real processes, loopback ports), a JVM
 * that exits right after writing, concurrent writers, and staleness markers.
 */
public class RestartE2ETest {
  static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** A Prometheus (remote-write receiver) of this test, restartable on the same port and data. */
  static final class OwnPrometheus implements AutoCloseable {
    final int port;
    final Path dir;
    Process process;

    OwnPrometheus() throws Exception {
      port = freePort();
      dir = Files.createTempDirectory("own-prom");
      Files.writeString(dir.resolve("prometheus.yml"), "global:\n  scrape_interval: 1h\n");
    }

    String url() {
      return "http://127.0.0.1:" + port;
    }

    void start() throws Exception {
      process = new ProcessBuilder("prometheus", "--config.file=" + dir.resolve("prometheus.yml"),
              "--storage.tsdb.path=" + dir.resolve("data"), "--web.listen-address=127.0.0.1:" + port,
              "--web.enable-remote-write-receiver")
          .redirectErrorStream(true).redirectOutput(dir.resolve("log").toFile()).start();
      long deadline = System.currentTimeMillis() + 60_000;
      while (true) {
        try {
          Servers.get(url() + "/api/v1/status/buildinfo");
          return;
        } catch (AssertionError e) {
          if (System.currentTimeMillis() > deadline) {
            throw new AssertionError("own Prometheus did not start: " + Files.readString(dir.resolve("log")));
          }
          Thread.sleep(200);
        }
      }
    }

    void stop() throws Exception {
      process.destroy();
      assertTrue(process.waitFor(30, TimeUnit.SECONDS));
    }

    @Override
    public void close() throws Exception {
      if (process != null && process.isAlive()) {
        process.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
      }
    }
  }

  @Test
  public void receiverDownAtStartThenRestartedMidPipelineLosesNoFinalValue() throws Exception {
    try (OwnPrometheus prom = new OwnPrometheus()) {
      String job = "restart_" + System.nanoTime();
      PipelineOptions o = PipelineOptionsFactory.fromArgs(
              "--runner=DirectRunner", "--blockOnRun=false", "--targetParallelism=1", "--metricsPushPeriod=1",
              "--prometheusJobName=" + job, "--prometheusRemoteWriteUrl=" + prom.url() + "/api/v1/write",
              "--prometheusMaxBackoffMillis=500", "--prometheusTimeoutMillis=2000")
          .create();
      Pipeline p = Pipeline.create(o);
      p.apply(Create.of(MetricsPipelines.range(10))).apply(Reshuffle.viaRandomKey())
          .apply("Tick", ParDo.of(new DirectRunnerPollerE2ETest.SlowCountFn()));
      // Nothing listens yet: the pipeline starts anyway and the exporter buffers.
      PipelineResult result = p.run();
      try (PrometheusMetricsPoller poller = PrometheusMetricsPoller.start(result, o)) {
        Thread.sleep(2500);
        prom.start();
        Thread.sleep(2500);
        prom.stop();
        Thread.sleep(2000);
        prom.start();
        assertEquals(PipelineResult.State.DONE, result.waitUntilFinish(Duration.standardSeconds(120)));
        poller.finish();
      }
      String sel = "beam_ticks_total{job=\"" + job + "\",result=\"attempted\"}";
      awaitValue(prom.url(), sel, 10, 30);
      JsonNode doc = Servers.get(prom.url() + "/api/v1/query?query=" + URLEncoder.encode(sel + "[10m]", StandardCharsets.UTF_8));
      List<Double> values = new ArrayList<>();
      double lastT = 0;
      for (JsonNode v : doc.get("data").get("result").get(0).get("values")) {
        assertTrue("timestamps not increasing", v.get(0).asDouble() > lastT);
        lastT = v.get(0).asDouble();
        values.add(Double.parseDouble(v.get(1).asText()));
      }
      for (int i = 1; i < values.size(); i++) {
        assertTrue("out of order: " + values, values.get(i) >= values.get(i - 1));
      }
      assertTrue("too few samples kept through the outages: " + values, values.size() >= 8);
      assertEquals(10.0, values.get(values.size() - 1), 0);
    }
  }

  @Test
  public void aRestartedPushgatewayGetsTheNewestValues() throws Exception {
    int port = freePort();
    String url = "http://127.0.0.1:" + port;
    // Its own persistence file (Debian's default is shared): the restart reloads what it held.
    String persistence = "--persistence.file=" + Files.createTempDirectory("own-pg").resolve("data");
    Process gw = new ProcessBuilder("prometheus-pushgateway", "--web.listen-address=127.0.0.1:" + port, persistence)
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    try {
      waitUp(url);
      String job = "pg_restart_" + System.nanoTime();
      try (PrometheusMetricsSink s = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
              "--prometheusPushgatewayUrl=" + url, "--prometheusJobName=" + job, "--prometheusMaxAttempts=1000",
              "--prometheusMaxBackoffMillis=300", "--prometheusSelfMetrics=false").create().as(MetricsOptions.class))) {
        s.writeMetrics(PushgatewayLifecycleE2ETest.counters("g", "1"));
        assertTrue(s.flush(10_000));
        gw.destroy();
        gw.waitFor(30, TimeUnit.SECONDS);
        s.writeMetrics(PushgatewayLifecycleE2ETest.counters("g", "2"));
        s.writeMetrics(PushgatewayLifecycleE2ETest.counters("g", "3"));
        Thread.sleep(1000);
        assertTrue(s.stats().toString(), s.stats().get("pushes_failed") > 0);
        gw = new ProcessBuilder("prometheus-pushgateway", "--web.listen-address=127.0.0.1:" + port, persistence)
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        waitUp(url);
        assertTrue(s.lastError(), s.flush(20_000));
      }
      String text = new String(new java.net.URL(url + "/metrics").openStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(text, text.contains("job=\"" + job + "\",namespace=\"ns\",result=\"attempted\",step=\"step\"} 3"));
    } finally {
      gw.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
    }
  }

  static void waitUp(String url) throws Exception {
    long deadline = System.currentTimeMillis() + 30_000;
    while (true) {
      try {
        Servers.get(url + "/api/v1/status");
        return;
      } catch (AssertionError e) {
        if (System.currentTimeMillis() > deadline) {
          throw e;
        }
        Thread.sleep(100);
      }
    }
  }

  @Test
  public void concurrentWritersAndSinksInOneJvm() throws Exception {
    String job = "concurrent_" + System.nanoTime();
    List<PrometheusMetricsSink> sinks = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      sinks.add(new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
              "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(), "--prometheusJobName=" + job,
              "--prometheusLabels={\"sink\":\"s" + i + "\"}", "--prometheusSelfMetrics=false")
          .create().as(MetricsOptions.class)));
    }
    ExecutorService pool = Executors.newFixedThreadPool(6);
    List<Future<?>> futures = new ArrayList<>();
    for (int t = 0; t < 6; t++) {
      PrometheusMetricsSink s = sinks.get(t % 3);
      futures.add(pool.submit(() -> {
        for (int i = 1; i <= 100; i++) {
          s.writeMetrics(PushgatewayLifecycleE2ETest.counters("concurrent", Integer.toString(i)));
        }
      }));
    }
    for (Future<?> f : futures) {
      f.get(60, TimeUnit.SECONDS);
    }
    pool.shutdown();
    for (PrometheusMetricsSink s : sinks) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("concurrent", "1000"));
      assertTrue(s.flush(30_000));
      assertEquals(s.stats().toString(), 0L, (long) s.stats().get("samples_rejected"));
      s.close();
    }
    await("beam_concurrent_total{job=\"" + job + "\"}", r -> r.size() == 3 && r.stream().allMatch(x -> x.value == 1000), 30);
  }

  @Test
  public void aJvmThatExitsRightAfterWritingStillDelivers() throws Exception {
    String job = "exit_" + System.nanoTime();
    String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
    Process child = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
            ExitingWriter.class.getName(), Servers.remoteWriteUrl(), job)
        .redirectErrorStream(true).start();
    String out = new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue("child did not exit", child.waitFor(60, TimeUnit.SECONDS));
    assertEquals(out, 0, child.exitValue());
    awaitValue(Servers.prometheus(), "beam_at_exit_total{job=\"" + job + "\"}", 42, 30);
  }

  /** Writes once and exits at once: the shutdown hook must deliver. */
  public static final class ExitingWriter {
    public static void main(String[] args) {
      PrometheusMetricsSink s = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
          "--prometheusRemoteWriteUrl=" + args[0], "--prometheusJobName=" + args[1]).create().as(MetricsOptions.class));
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("at_exit", "42"));
      System.exit(0);
    }
  }

  @Test
  public void stalenessMarkersEndSeriesAtClose() throws Exception {
    String job = "stale_" + System.nanoTime();
    PrometheusMetricsSink s = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
        "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(), "--prometheusJobName=" + job,
        "--prometheusStaleOnEnd=true", "--prometheusSelfMetrics=false").create().as(MetricsOptions.class));
    s.writeMetrics(PushgatewayLifecycleE2ETest.counters("ending", "8"));
    assertTrue(s.flush(10_000));
    awaitValue(Servers.prometheus(), "beam_ending_total{job=\"" + job + "\"}", 8, 30);
    s.close();
    // Without the marker the series would stay in instant queries for 5 minutes.
    await("beam_ending_total{job=\"" + job + "\"}", List::isEmpty, 15);
  }

  @Test
  public void closingOneSinkLeavesAnotherWithTheSameOptionsWorking() throws Exception {
    String job = "shared_" + System.nanoTime();
    String[] args = {"--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(), "--prometheusJobName=" + job, "--prometheusSelfMetrics=false"};
    PrometheusMetricsSink a = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(args).create().as(MetricsOptions.class));
    PrometheusMetricsSink b = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(args).create().as(MetricsOptions.class));
    a.writeMetrics(PushgatewayLifecycleE2ETest.counters("shared", "1"));
    a.close();
    a.close(); // idempotent: must not release b's share
    b.writeMetrics(PushgatewayLifecycleE2ETest.counters("shared", "2"));
    assertTrue(b.flush(10_000));
    // Two sinks of two options objects are two pipelines of one job: a's last value stays in the
    // job's total after a closed (TwoPipelinesE2ETest).
    awaitValue(Servers.prometheus(), "beam_shared_total{job=\"" + job + "\"}", 3, 30);
    b.close();
    // Calls after the last close (MetricsPusher's after the shutdown hook) are ignored quietly.
    b.writeMetrics(PushgatewayLifecycleE2ETest.counters("shared", "3"));
    assertTrue(b.flush(1_000));
  }
}
