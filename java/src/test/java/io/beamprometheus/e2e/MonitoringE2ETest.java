package io.beamprometheus.e2e;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.beamprometheus.PrometheusMetricsPoller;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.Reshuffle;
import org.joda.time.Duration;
import org.junit.Test;
import org.snakeyaml.engine.v2.api.Load;
import org.snakeyaml.engine.v2.api.LoadSettings;

/**
 * The dashboard and rules of monitoring/ on real data: a real pipeline (direct runner, poller)
 * exports both ways into the real Prometheus and Pushgateway; then every panel query of the
 * dashboard, with its variables resolved as Grafana would, and every recording rule must answer
 * for that job. An outage of the remote-write receiver makes the delivery alerts' expressions
 * true (their self-metrics reach Prometheus through the gateway). Nothing falls back to a
 * default: a series the mapping renamed leaves a query empty and fails here.
 */
public class MonitoringE2ETest {
  static final String[] DELIVERY_ALERTS = {
    "BeamExporterDeliveryFailing", "BeamExporterNoSuccessfulDelivery", "BeamExporterSamplesRejected",
    "BeamExporterSamplesDropped", "BeamExporterQueueNearBound",
  };
  /** Grafana variables: ${name} or $name; anything else with a `$` ($1 in label_replace) stays. */
  static final Pattern VARIABLE = Pattern.compile("\\$\\{(\\w+)\\}|\\$([A-Za-z_]\\w*)");
  static final Pattern LABEL_VALUES = Pattern.compile("^label_values\\((.*),\\s*([A-Za-z_]+)\\)$", Pattern.DOTALL);

  static Path monitoring(String file) {
    String dir = System.getProperty("beamprometheus.monitoring");
    if (dir == null) {
      fail("-Dbeamprometheus.monitoring is not set: run through gradle e2eTest");
    }
    return Paths.get(dir, file);
  }

  static JsonNode dashboard() throws IOException {
    return new ObjectMapper().readTree(monitoring("beam-prometheus.dashboard.json").toFile());
  }

  /** Every rule of the rules file, in file order: {"record" or "alert": name, "expr": ...}. */
  @SuppressWarnings("unchecked")
  static List<Map<String, Object>> rules() throws IOException {
    String text = new String(Files.readAllBytes(monitoring("beam-prometheus.rules.yml")), StandardCharsets.UTF_8);
    Map<String, Object> doc = (Map<String, Object>) new Load(LoadSettings.builder().build()).loadFromString(text);
    List<Map<String, Object>> out = new ArrayList<>();
    for (Map<String, Object> group : (List<Map<String, Object>>) doc.get("groups")) {
      out.addAll((List<Map<String, Object>>) group.get("rules"));
    }
    return out;
  }

  static String interpolate(String expr, Map<String, String> vars) {
    Matcher m = VARIABLE.matcher(expr);
    StringBuffer sb = new StringBuffer();
    while (m.find()) {
      String name = m.group(1) != null ? m.group(1) : m.group(2);
      String value = vars.get(name);
      if (value == null) {
        fail("unknown variable $" + name + " in " + expr);
      }
      m.appendReplacement(sb, Matcher.quoteReplacement(value));
    }
    m.appendTail(sb);
    return sb.toString();
  }

  static List<String> labelValues(String selector, String label) {
    JsonNode doc = Servers.get(Servers.prometheus() + "/api/v1/label/" + label + "/values?match%5B%5D="
        + URLEncoder.encode(selector, StandardCharsets.UTF_8));
    List<String> out = new ArrayList<>();
    doc.get("data").forEach(v -> out.add(v.asText()));
    return out;
  }

  static boolean hasJob(List<Servers.Sample> r, String job) {
    return r.stream().anyMatch(s -> job.equals(s.label("job")));
  }

  static PipelineOptions options(String job, String instance, String... extra) {
    List<String> args = new ArrayList<>(List.of(
        "--runner=DirectRunner",
        "--blockOnRun=false",
        "--targetParallelism=1",
        "--metricsPushPeriod=1",
        "--prometheusJobName=" + job,
        "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
        "--prometheusGroupingKey={\"instance\":\"" + instance + "\"}"));
    args.addAll(List.of(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
  }

  /** Runs the pipeline with the poller exporting until it ends (bounded). */
  static void runWithPoller(Pipeline p, PipelineOptions o, int maxSeconds) {
    PipelineResult result = p.run();
    try (PrometheusMetricsPoller poller = PrometheusMetricsPoller.start(result, o)) {
      assertEquals(PipelineResult.State.DONE, result.waitUntilFinish(Duration.standardSeconds(maxSeconds)));
      poller.finish();
    }
  }

  @Test
  public void everyPanelQueryAndRecordingRuleAnswersOnRealData() throws Exception {
    String job = "e2e_monitor_" + System.nanoTime();
    String instance = "monitor";
    PipelineOptions o = options(job, instance,
        "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(), "--prometheusMetricValues=BOTH");
    Pipeline p = Pipeline.create(o);
    // Every metric kind (step FlinkSinkE2ETest.COUNT_STEP), and a slow branch so the run spans
    // several push periods: one element per bundle after the reshuffle, 0.5 s each.
    p.apply("Numbers", Create.of(MetricsPipelines.range(1000)))
        .apply("Count", ParDo.of(new MetricsPipelines.EveryKind()));
    p.apply("Slow", Create.of(MetricsPipelines.range(6)))
        .apply(Reshuffle.viaRandomKey())
        .apply("Tick", ParDo.of(new SlowTicks()));
    long started = System.nanoTime();
    runWithPoller(p, o, 120);
    System.err.println("monitoring pipeline ran and exported in " + (System.nanoTime() - started) / 1_000_000 + " ms");
    // Both copies are in: the remote-written one (no instance) and the gateway's, scraped.
    String count = "job=\"" + job + "\",namespace=\"" + MetricsPipelines.NS + "\",step=\"" + FlinkSinkE2ETest.COUNT_STEP + "\",result=\"committed\"";
    Servers.awaitValue(Servers.prometheus(), "beam_elements_total{" + count + ",instance=\"\"}", 1000, 30);
    Servers.awaitValue(Servers.prometheus(), "beam_elements_total{" + count + ",instance=\"" + instance + "\"}", 1000, 30);
    double requests = Servers.await("beam_exporter_requests_sent_total{job=\"" + job + "\",instance=\"\"}", r -> r.size() == 1, 30).get(0).value;
    System.err.println("remote-write requests before the final push: " + requests);

    // The variables, resolved in dashboard order as Grafana does: each query variable's
    // label_values() against the real Prometheus, with the variables before it substituted.
    JsonNode dash = dashboard();
    Map<String, String> vars = new HashMap<>();
    vars.put("__rate_interval", "1m"); // Grafana: at least four scrape intervals; 1 s here
    Map<String, List<String>> choices = new LinkedHashMap<>();
    Map<String, String> mustOffer = Map.of(
        "job", job, "namespace", MetricsPipelines.NS, "step", FlinkSinkE2ETest.COUNT_STEP, "counter", "beam_elements_total");
    for (JsonNode v : dash.get("templating").get("list")) {
      String name = v.get("name").asText();
      switch (v.get("type").asText()) {
        case "datasource":
          assertEquals("prometheus", v.get("query").asText());
          vars.put(name, "prometheus");
          break;
        case "custom":
          vars.put(name, v.get("current").get("value").asText());
          break;
        case "query":
          Matcher m = LABEL_VALUES.matcher(v.get("query").asText());
          assertTrue("variable " + name + ": " + v.get("query"), m.matches());
          List<String> values = labelValues(interpolate(m.group(1), vars), m.group(2));
          assertTrue("variable " + name + " offers " + values, values.contains(mustOffer.get(name)));
          choices.put(name, values);
          // The test's job alone; every other variable at "All", as the dashboard opens.
          vars.put(name, name.equals("job") ? job : v.get("allValue").asText());
          break;
        default:
          fail("unexpected variable type " + v);
      }
    }
    assertEquals(mustOffer.keySet(), new java.util.HashSet<>(choices.keySet()));
    assertEquals("attempted", vars.get("result"));

    // Every panel, rows included; a repeated panel once per value of its variable.
    List<JsonNode> panels = new ArrayList<>();
    for (JsonNode pn : dash.get("panels")) {
      panels.add(pn);
      if (pn.has("panels")) {
        pn.get("panels").forEach(panels::add);
      }
    }
    List<String> empty = new ArrayList<>();
    int queries = 0;
    int withTargets = 0;
    for (JsonNode panel : panels) {
      if (panel.get("type").asText().equals("row")) {
        continue;
      }
      assertTrue(panel.get("title") + " has no query", panel.has("targets") && panel.get("targets").size() > 0);
      withTargets++;
      List<Map<String, String>> instances = new ArrayList<>();
      if (panel.has("repeat")) {
        for (String value : choices.get(panel.get("repeat").asText())) {
          Map<String, String> one = new HashMap<>(vars);
          one.put(panel.get("repeat").asText(), value);
          instances.add(one);
        }
      } else {
        instances.add(vars);
      }
      for (Map<String, String> vs : instances) {
        for (JsonNode t : panel.get("targets")) {
          String expr = interpolate(t.get("expr").asText(), vs);
          List<Servers.Sample> r = Servers.query(expr);
          queries++;
          if (!hasJob(r, job)) {
            empty.add(panel.get("title").asText() + ": " + expr + " -> " + r);
          }
        }
      }
    }
    System.err.println(withTargets + " panels, " + queries + " queries evaluated, counters: " + choices.get("counter"));
    assertTrue("panels: " + withTargets, withTargets >= 15);
    assertTrue("queries returned nothing for " + job + ":\n" + String.join("\n", empty), empty.isEmpty());

    // Every recording rule answers for this job; every alert expression is valid PromQL and, on a
    // healthy exporter, false for this job.
    int recorded = 0;
    for (Map<String, Object> rule : rules()) {
      String expr = (String) rule.get("expr");
      List<Servers.Sample> r = Servers.query(expr);
      if (rule.containsKey("record")) {
        recorded++;
        assertTrue(rule.get("record") + " = " + expr + " gave nothing for " + job + ": " + r, hasJob(r, job));
      } else if (List.of(DELIVERY_ALERTS).contains((String) rule.get("alert"))) {
        assertFalse(rule.get("alert") + " is true for a healthy exporter: " + r, hasJob(r, job));
      }
    }
    assertTrue("recording rules: " + recorded, recorded >= 9);
  }

  /** Ticks slowly, so the pipeline keeps exporting over several push periods. */
  public static class SlowTicks extends DoFn<Integer, Integer> {
    private final Counter ticks = Metrics.counter(MetricsPipelines.NS, "ticks");

    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) throws InterruptedException {
      Thread.sleep(500);
      ticks.inc();
      out.output(x);
    }
  }

  @Test
  public void anOutageMakesTheDeliveryAlertsTrue() throws Exception {
    Map<String, String> alerts = new LinkedHashMap<>();
    for (Map<String, Object> rule : rules()) {
      if (rule.containsKey("alert")) {
        alerts.put((String) rule.get("alert"), (String) rule.get("expr"));
      }
    }
    String job = "e2e_outage_" + System.nanoTime();
    URI prom = URI.create(Servers.prometheus());
    // The remote-write receiver accepts connections and never answers; the gateway works and
    // carries the exporter's self-metrics to Prometheus. Two attempts of 1.5 s each, then the
    // request is given up (rejected); a bound of 10 samples is below one push (dropped, full).
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort())) {
      proxy.mode(FaultProxy.Mode.HANG);
      PipelineOptions o = options(job, "outage",
          "--prometheusRemoteWriteUrl=" + proxy.url() + "/api/v1/write",
          "--prometheusTimeoutMillis=1500",
          "--prometheusMaxAttempts=2",
          "--prometheusMaxBufferedSamples=10");
      Pipeline p = Pipeline.create(o);
      p.apply(Create.of(MetricsPipelines.range(120)))
          .apply(Reshuffle.viaRandomKey())
          .apply("Tick", ParDo.of(new SlowTicks()));
      PipelineResult result = p.run();
      long started = System.nanoTime();
      try (PrometheusMetricsPoller poller = PrometheusMetricsPoller.start(result, o)) {
        for (String name : DELIVERY_ALERTS) {
          assertTrue("no alert " + name + " in the rules file", alerts.containsKey(name));
          Servers.await(alerts.get(name), r -> hasJob(r, job), 60);
          System.err.println(name + " true after " + (System.nanoTime() - started) / 1_000_000 + " ms of outage");
        }
        result.cancel();
        // Fail fast from here, so the final export does not wait out the hanging receiver.
        proxy.mode(FaultProxy.Mode.RESET);
        poller.finish();
      }
    }
  }
}
