package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static io.beamprometheus.e2e.Servers.query;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import io.beamprometheus.PrometheusMetricsSink;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Real Beam pipelines on the Flink runner (embedded, local), whose MetricsPusher drives our sink,
 * exporting to the real Prometheus, Pushgateway and VictoriaMetrics that tests/run_all.sh started.
 */
public class FlinkSinkE2ETest {
  /** Beam's full step names, as MetricKey.stepName() reports them. */
  static final String COUNT_STEP = "Count/ParMultiDo(EveryKind)";
  static final String HOSTILE_STEP = "Hostile names/ParMultiDo(Hostile)";
  static final Pattern METRIC_NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");

  static PipelineOptions options(String job, String... extra) {
    List<String> args =
        new ArrayList<>(
            Arrays.asList(
                "--runner=FlinkRunner",
                "--flinkMaster=[local]",
                "--parallelism=1",
                "--metricsSink=" + PrometheusMetricsSink.class.getName(),
                "--metricsPushPeriod=1",
                "--prometheusJobName=" + job));
    args.addAll(Arrays.asList(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
  }

  static String sel(String job, String step) {
    return "{job=\"" + job + "\",namespace=\"" + MetricsPipelines.NS + "\",step=\"" + step + "\",result=\"attempted\"}";
  }

  static void run(PipelineOptions o, int n) {
    PipelineResult.State state = MetricsPipelines.everyKind(Pipeline.create(o), n).run().waitUntilFinish();
    assertEquals(PipelineResult.State.DONE, state);
  }

  @Test
  public void everyKindReachesPrometheusThroughRemoteWrite() {
    everyKindThroughRemoteWrite(Servers.prometheus(), "e2e_rw_");
  }

  /** The same assertions against Prometheus 3, in remote-write 1.0 and 2.0. */
  @Test
  public void everyKindReachesPrometheus3ThroughRemoteWrite1() {
    everyKindThroughRemoteWrite(Servers.prometheus3(), "e2e_rw3v1_", "--prometheusRemoteWriteProtocol=1.0");
  }

  @Test
  public void everyKindReachesPrometheus3ThroughRemoteWrite2() {
    everyKindThroughRemoteWrite(Servers.prometheus3(), "e2e_rw3v2_", "--prometheusRemoteWriteProtocol=2.0");
  }

  static void everyKindThroughRemoteWrite(String prom, String jobPrefix, String... extra) {
    String job = jobPrefix + System.nanoTime();
    List<String> args = new ArrayList<>(Arrays.asList(extra));
    args.add("--prometheusRemoteWriteUrl=" + prom + "/api/v1/write");
    PipelineOptions o = options(job, args.toArray(new String[0]));
    run(o, 1000);
    String count = sel(job, COUNT_STEP);
    awaitValue(prom, "beam_elements_total" + count, 1000, 60);
    awaitValue(prom, "beam_element_value_distribution_sum" + count, 500500, 30);
    awaitValue(prom, "beam_element_value_distribution_count" + count, 1000, 30);
    awaitValue(prom, "beam_element_value_distribution_min" + count, 1, 30);
    awaitValue(prom, "beam_element_value_distribution_max" + count, 1000, 30);
    awaitValue(prom, "beam_max_element_gauge" + count, 1000, 30);
    double setAt = Servers.await(prom, "beam_max_element_gauge_timestamp_seconds" + count, r -> r.size() == 1, 30).get(0).value;
    double now = System.currentTimeMillis() / 1000.0;
    assertTrue("gauge set time " + setAt + " vs now " + now, setAt > now - 600 && setAt <= now + 1);
    List<Servers.Sample> parity = await(prom, "beam_parity_string_set_info" + count, r -> r.size() == 2, 30);
    Set<String> values = new HashSet<>();
    parity.forEach(s -> values.add(s.label("value")));
    assertEquals(new HashSet<>(Arrays.asList("odd", "even")), values);
    List<Servers.Sample> paths = await(prom, "beam_lineage_bounded_trie_info" + count, r -> r.size() == 2, 30);
    Set<String> trie = new HashSet<>();
    paths.forEach(s -> trie.add(s.label("path") + "|" + s.label("truncated") + "|" + s.value));
    assertEquals(new HashSet<>(Arrays.asList("source/odd|false|1.0", "source/even|false|1.0")), trie);

    // Hostile names: every one arrives as its own valid series with the exact count.
    List<Servers.Sample> hostile =
        await(prom, "{job=\"" + job + "\",step=\"" + HOSTILE_STEP + "\"}", r -> r.size() == MetricsPipelines.HOSTILE_NAMES.length, 30);
    Set<String> names = new HashSet<>();
    for (Servers.Sample s : hostile) {
      String name = s.label("__name__");
      assertTrue(name, METRIC_NAME.matcher(name).matches() && !name.contains("__") && name.length() <= 200);
      assertEquals(s.toString(), 1000.0, s.value, 0);
      assertEquals("hostile \"ns\"\n\\", s.label("namespace"));
      names.add(name + (s.label("beam_metric") == null ? "" : "/" + s.label("beam_metric")));
    }
    assertEquals(MetricsPipelines.HOSTILE_NAMES.length, names.size());
    // A renamed name carries beam_metric, the verbatim one none: both stay distinct.
    assertTrue(names.toString(), names.contains("beam_a_b_total/a.b") && names.contains("beam_a_b_total"));

    // Nothing was rejected by the receiver; the exporter's own counters say so.
    Map<String, Long> stats = new PrometheusMetricsSink(o.as(org.apache.beam.sdk.metrics.MetricsOptions.class)).stats();
    assertEquals(stats.toString(), 0L, (long) stats.get("samples_rejected"));
    assertEquals(stats.toString(), 0L, (long) stats.get("samples_dropped"));
    assertTrue(stats.toString(), stats.get("samples_sent") > 0);
  }

  @Test
  public void victoriaMetricsReceivesTheSameSeries() {
    String job = "e2e_vm_" + System.nanoTime();
    run(options(job, "--prometheusRemoteWriteUrl=" + Servers.victoriaMetrics() + "/api/v1/write"), 200);
    String vm = Servers.victoriaMetrics();
    String count = sel(job, COUNT_STEP);
    awaitValue(vm, "beam_elements_total" + count, 200, 60);
    awaitValue(vm, "beam_element_value_distribution_sum" + count, 20100, 30);
    await(vm, "{job=\"" + job + "\",step=\"" + HOSTILE_STEP + "\"}", r -> r.size() == MetricsPipelines.HOSTILE_NAMES.length, 30);
  }

  @Test
  public void pushgatewayIsScrapedByPrometheus() {
    pushgatewayScrapedBy(Servers.prometheus(), "e2e_pg_");
  }

  @Test
  public void pushgatewayIsScrapedByPrometheus3() {
    pushgatewayScrapedBy(Servers.prometheus3(), "e2e_pg3_");
  }

  static void pushgatewayScrapedBy(String prom, String jobPrefix) {
    String job = jobPrefix + System.nanoTime();
    PipelineOptions o =
        options(job, "--prometheusPushgatewayUrl=" + Servers.pushgateway(), "--prometheusGroupingKey={\"instance\":\"e2e/1\"}");
    run(o, 1000);
    String sel = "{job=\"" + job + "\",instance=\"e2e/1\",namespace=\"" + MetricsPipelines.NS + "\",step=\"" + COUNT_STEP + "\"}";
    awaitValue(prom, "beam_elements_total" + sel, 1000, 60);
    awaitValue(prom, "beam_element_value_distribution_sum" + sel, 500500, 30);
    awaitValue(prom, "beam_element_value_distribution_count" + sel, 1000, 30);
    awaitValue(prom, "beam_element_value_distribution_min" + sel, 1, 30);
    awaitValue(prom, "beam_element_value_distribution_max" + sel, 1000, 30);
    awaitValue(prom, "beam_max_element_gauge" + sel, 1000, 30);
    await(prom, "beam_max_element_gauge_timestamp_seconds" + sel, r -> r.size() == 1 && r.get(0).value > 0, 30);
    await(prom, "beam_parity_string_set_info" + sel, r -> r.size() == 2, 30);
    await(prom, "beam_lineage_bounded_trie_info" + sel, r -> r.size() == 2, 30);
    await(prom, "{job=\"" + job + "\",step=\"" + HOSTILE_STEP + "\"}", r -> r.size() == MetricsPipelines.HOSTILE_NAMES.length, 30);
    await(prom, "push_time_seconds{job=\"" + job + "\",instance=\"e2e/1\"}", r -> r.size() == 1 && r.get(0).value > 0, 30);
  }

  @Test
  public void badOptionFailsAtConstructionNamingTheOption() {
    PipelineOptions o = options("e2e_bad", "--prometheusRemoteWriteUrl=ftp://localhost/x");
    try {
      new PrometheusMetricsSink(o.as(org.apache.beam.sdk.metrics.MetricsOptions.class));
      fail("an ftp URL was accepted");
    } catch (IllegalArgumentException e) {
      assertTrue(e.getMessage(), e.getMessage().startsWith("--prometheusRemoteWriteUrl:"));
    }
    PipelineOptions none = options("e2e_none");
    try {
      new PrometheusMetricsSink(none.as(org.apache.beam.sdk.metrics.MetricsOptions.class));
      fail("no URL was accepted");
    } catch (IllegalArgumentException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("--prometheusRemoteWriteUrl or --prometheusPushgatewayUrl"));
    }
    assertNotNull(PipelineOptionsFactory.describe(new HashSet<>(Arrays.asList(io.beamprometheus.PrometheusExporterOptions.class))));
  }
}
