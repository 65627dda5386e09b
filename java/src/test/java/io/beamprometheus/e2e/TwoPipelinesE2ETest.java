package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.ApplicationNameOptions;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.Reshuffle;
import org.joda.time.Duration;
import org.junit.Test;

/**
 * Two live pipelines with equal options (the default job name) share one exporter: every push
 * carries both pipelines' metrics (a Pushgateway group never flips between them), a metric both
 * report is their sum, and the end-of-pipeline actions cover both pipelines' series.
 */
public class TwoPipelinesE2ETest {
  /**
   * Equal options without --prometheusJobName. The constant label and the grouping key `instance`
   * keep this test's series and group apart from other tests' (which may use the default job name
   * too) without naming a job.
   */
  static String[] args(String token, String... extra) {
    List<String> a = new ArrayList<>(List.of(
        "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(),
        "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
        "--prometheusLabels={\"twopipes\":\"" + token + "\"}",
        "--prometheusGroupingKey={\"instance\":\"" + token + "\"}",
        "--prometheusSelfMetrics=false"));
    a.addAll(List.of(extra));
    return a.toArray(new String[0]);
  }

  /** This test's samples on the gateway, by metric name (all its series differ in name only). */
  static Map<String, Double> group(String token) throws Exception {
    Map<String, Double> out = new TreeMap<>();
    Matcher m = Pattern.compile("(?m)^(beam_\\w+)\\{([^}]*)\\} (\\S+)$").matcher(PushgatewayLifecycleE2ETest.gatewayText());
    while (m.find()) {
      if (m.group(2).contains("twopipes=\"" + token + "\"")) {
        out.put(m.group(1), Double.parseDouble(m.group(3)));
      }
    }
    return out;
  }

  @Test
  public void twoSinksWithEqualOptionsWritingAlternatelyPushBothEveryTime() throws Exception {
    String token = "sinks" + System.nanoTime();
    String[] args = args(token, "--prometheusStaleOnEnd=true", "--prometheusDeleteOnEnd=true");
    // Two options objects of equal values, as two pipelines' MetricsPushers would build sinks with.
    PipelineOptions oa = PipelineOptionsFactory.fromArgs(args).create();
    PipelineOptions ob = PipelineOptionsFactory.fromArgs(args).create();
    assertTrue(oa.getOptionsId() != ob.getOptionsId());
    String job = oa.as(ApplicationNameOptions.class).getAppName();
    assertEquals(job, ob.as(ApplicationNameOptions.class).getAppName());
    PrometheusMetricsSink a = new PrometheusMetricsSink(oa.as(MetricsOptions.class));
    PrometheusMetricsSink b = new PrometheusMetricsSink(ob.as(MetricsOptions.class));
    int pushes = 0;
    for (int i = 1; i <= 5; i++) {
      a.writeMetrics(PushgatewayLifecycleE2ETest.counters("two_pipes_shared", Integer.toString(i), "two_pipes_a", Integer.toString(100 + i)));
      assertTrue(a.flush(10_000));
      Map<String, Double> g = group(token);
      if (i > 1) {
        // a's newest values with b's last ones.
        Map<String, Double> want = Map.of(
            "beam_two_pipes_shared_total", (double) (i + 2 * (i - 1)),
            "beam_two_pipes_a_total", 100.0 + i,
            "beam_two_pipes_b_total", 200.0 + i - 1);
        assertEquals("the group after a's write " + i, want, g);
        pushes++;
      }
      b.writeMetrics(PushgatewayLifecycleE2ETest.counters("two_pipes_shared", Integer.toString(2 * i), "two_pipes_b", Integer.toString(200 + i)));
      assertTrue(b.flush(10_000));
      Map<String, Double> want = Map.of(
          "beam_two_pipes_shared_total", (double) (3 * i),
          "beam_two_pipes_a_total", 100.0 + i,
          "beam_two_pipes_b_total", 200.0 + i);
      assertEquals("the group after b's write " + i, want, group(token));
      pushes++;
    }
    System.err.println("two sinks, one exporter: " + pushes + " pushes in a row carried both pipelines");
    // Remote-write (no `instance`) and the gateway scraped (`instance`) alike: both pipelines,
    // the shared counter their sum.
    for (String where : new String[] {"instance=\"\"", "instance=\"" + token + "\""}) {
      String sel = "{job=\"" + job + "\",twopipes=\"" + token + "\"," + where + "}";
      awaitValue(Servers.prometheus(), "beam_two_pipes_shared_total" + sel, 15, 30);
      awaitValue(Servers.prometheus(), "beam_two_pipes_a_total" + sel, 105, 30);
      awaitValue(Servers.prometheus(), "beam_two_pipes_b_total" + sel, 205, 30);
    }
    // b ends first: the exporter stays open for a, and b's values stay in the job's total.
    b.close();
    a.writeMetrics(PushgatewayLifecycleE2ETest.counters("two_pipes_shared", "6", "two_pipes_a", "106"));
    assertTrue(a.flush(10_000));
    assertEquals(Map.of("beam_two_pipes_shared_total", 16.0, "beam_two_pipes_a_total", 106.0, "beam_two_pipes_b_total", 205.0), group(token));
    // a ends: the last user closes the exporter. The staleness markers and the group deletion
    // cover both pipelines' series.
    a.close();
    assertFalse("group still on the gateway after close", PushgatewayLifecycleE2ETest.gatewayText().contains(token));
    await("{__name__=~\"beam_two_pipes_.*\",twopipes=\"" + token + "\"}", List::isEmpty, 15);
  }

  /** Counts each element in a counter both pipelines report and in one of its own. */
  public static class CountFn extends DoFn<Integer, Integer> {
    private final Counter shared = Metrics.counter(MetricsPipelines.NS, "two_pipes_elements");
    private final Counter own;

    CountFn(String own) {
      this.own = Metrics.counter(MetricsPipelines.NS, own);
    }

    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) throws InterruptedException {
      Thread.sleep(300);
      shared.inc();
      own.inc();
      out.output(x);
    }
  }

  static PipelineResult run(PipelineOptions o, int n, String own) {
    Pipeline p = Pipeline.create(o);
    // One element per bundle after the reshuffle, so the counts rise across push periods.
    p.apply(Create.of(MetricsPipelines.range(n))).apply(Reshuffle.viaRandomKey()).apply("Count", ParDo.of(new CountFn(own)));
    return p.run();
  }

  @Test
  public void twoDirectRunnerPipelinesWithPollersExportTheirSum() throws Exception {
    String token = "pollers" + System.nanoTime();
    String[] args = args(token, "--runner=DirectRunner", "--metricsPushPeriod=1", "--targetParallelism=1", "--blockOnRun=false");
    PipelineOptions oa = PipelineOptionsFactory.fromArgs(args).create();
    PipelineOptions ob = PipelineOptionsFactory.fromArgs(args).create();
    String job = oa.as(ApplicationNameOptions.class).getAppName();
    PipelineResult ra = run(oa, 8, "two_pipes_only_a");
    PipelineResult rb = run(ob, 12, "two_pipes_only_b");
    try (PrometheusMetricsPoller pa = PrometheusMetricsPoller.start(ra, oa);
        PrometheusMetricsPoller pb = PrometheusMetricsPoller.start(rb, ob)) {
      // Once the group holds both pipelines' metrics, it holds both at every later sample, also
      // after pipeline a has ended (it has fewer elements).
      int both = 0;
      long deadline = System.currentTimeMillis() + 60_000;
      while (!rb.getState().isTerminal() && System.currentTimeMillis() < deadline) {
        Map<String, Double> g = group(token);
        boolean hasBoth = g.containsKey("beam_two_pipes_only_a_total") && g.containsKey("beam_two_pipes_only_b_total");
        assertTrue("the group lost a pipeline after holding both: " + g, hasBoth || both == 0);
        both += hasBoth ? 1 : 0;
        Thread.sleep(200);
      }
      System.err.println("two pollers, one exporter: " + both + " samples of the group in a row held both pipelines");
      assertTrue("the group held both pipelines in " + both + " samples", both >= 5);
      assertEquals(PipelineResult.State.DONE, ra.waitUntilFinish(Duration.standardSeconds(60)));
      assertEquals(PipelineResult.State.DONE, rb.waitUntilFinish(Duration.standardSeconds(60)));
      pa.finish();
      pb.finish();
    }
    String sel = "{job=\"" + job + "\",twopipes=\"" + token + "\",result=\"attempted\",instance=\"\"}";
    awaitValue(Servers.prometheus(), "beam_two_pipes_elements_total" + sel, 20, 30);
    awaitValue(Servers.prometheus(), "beam_two_pipes_only_a_total" + sel, 8, 30);
    awaitValue(Servers.prometheus(), "beam_two_pipes_only_b_total" + sel, 12, 30);
  }
}
