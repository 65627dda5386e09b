package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.beamprometheus.PrometheusMetricsPoller;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.Reshuffle;
import org.apache.beam.sdk.transforms.ParDo;
import org.joda.time.Duration;
import org.junit.Test;

/** The direct runner has no MetricsPusher: PrometheusMetricsPoller exports instead. */
public class DirectRunnerPollerE2ETest {
  static PipelineOptions options(String job, String... extra) {
    List<String> args = new ArrayList<>(List.of(
        "--runner=DirectRunner",
        "--metricsPushPeriod=1",
        "--prometheusJobName=" + job,
        "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl()));
    args.addAll(List.of(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
  }

  @Test
  public void committedAndAttemptedValuesThroughThePoller() {
    String job = "e2e_direct_" + System.nanoTime();
    PipelineOptions o = options(job, "--prometheusMetricValues=BOTH");
    Pipeline p = MetricsPipelines.everyKind(Pipeline.create(o), 300);
    PipelineResult.State state = PrometheusMetricsPoller.exportUntilFinish(p.run(), o);
    assertEquals(PipelineResult.State.DONE, state);
    String base = "{job=\"" + job + "\",namespace=\"" + MetricsPipelines.NS + "\",step=\"" + FlinkSinkE2ETest.COUNT_STEP + "\",result=\"";
    awaitValue(Servers.prometheus(), "beam_elements_total" + base + "attempted\"}", 300, 30);
    awaitValue(Servers.prometheus(), "beam_elements_total" + base + "committed\"}", 300, 30);
    awaitValue(Servers.prometheus(), "beam_element_value_distribution_sum" + base + "committed\"}", 45150, 30);
  }

  /** Slow work: each element takes 800 ms, so the count rises across push periods. */
  public static class SlowCountFn extends DoFn<Integer, Integer> {
    private final Counter ticks = Metrics.counter(MetricsPipelines.NS, "ticks");

    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) throws InterruptedException {
      Thread.sleep(800);
      ticks.inc();
      out.output(x);
    }
  }

  @Test
  public void valuesRiseOverSeveralPushPeriods() throws Exception {
    String job = "e2e_stream_" + System.nanoTime();
    // The direct runner blocks in run() unless told not to: the poller must run alongside.
    PipelineOptions o = options(job, "--targetParallelism=1", "--blockOnRun=false");
    Pipeline p = Pipeline.create(o);
    // One element per bundle after the reshuffle; the direct runner updates metrics per bundle.
    p.apply(Create.of(MetricsPipelines.range(8)))
        .apply(Reshuffle.viaRandomKey())
        .apply("Tick", ParDo.of(new SlowCountFn()));
    long start = System.currentTimeMillis() / 1000 - 1;
    PipelineResult result = p.run();
    try (PrometheusMetricsPoller poller = PrometheusMetricsPoller.start(result, o)) {
      assertEquals(PipelineResult.State.DONE, result.waitUntilFinish(Duration.standardSeconds(120)));
      poller.finish();
    }
    String sel = "beam_ticks_total{job=\"" + job + "\",result=\"attempted\"}";
    awaitValue(Servers.prometheus(), sel, 8, 30);
    long end = System.currentTimeMillis() / 1000 + 1;
    JsonNode doc = Servers.get(Servers.prometheus() + "/api/v1/query_range?query="
        + URLEncoder.encode(sel, StandardCharsets.UTF_8) + "&start=" + start + "&end=" + end + "&step=1");
    JsonNode values = doc.get("data").get("result").get(0).get("values");
    List<Double> distinct = new ArrayList<>();
    for (JsonNode v : values) {
      double d = Double.parseDouble(v.get(1).asText());
      if (distinct.isEmpty() || distinct.get(distinct.size() - 1) != d) {
        distinct.add(d);
      }
    }
    assertTrue("values over time: " + distinct, distinct.size() >= 3);
    for (int i = 1; i < distinct.size(); i++) {
      assertTrue("not rising: " + distinct, distinct.get(i) > distinct.get(i - 1));
    }
    assertEquals(8.0, distinct.get(distinct.size() - 1), 0);
    // The same metrics push after push: once the counter exists, pushes reuse the mapping
    // (self-metrics of the final push, sent with it).
    double mappings = Servers.await(Servers.prometheus(), "beam_exporter_mappings_total{job=\"" + job + "\"}", r -> r.size() == 1, 30).get(0).value;
    double requests = Servers.await(Servers.prometheus(), "beam_exporter_requests_sent_total{job=\"" + job + "\"}", r -> r.size() == 1, 30).get(0).value;
    System.err.println("mapped afresh " + mappings + " times; requests sent before the final push: " + requests);
    assertTrue("mapped afresh " + mappings + " times in " + requests + " earlier requests", mappings >= 1 && mappings * 2 <= requests);
  }
}
