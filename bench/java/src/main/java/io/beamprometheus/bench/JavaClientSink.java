package io.beamprometheus.bench;

import io.prometheus.metrics.exporter.pushgateway.Format;
import io.prometheus.metrics.exporter.pushgateway.PushGateway;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.CounterSnapshot.CounterDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot.GaugeDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot.InfoDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import io.prometheus.metrics.model.snapshots.SummarySnapshot;
import io.prometheus.metrics.model.snapshots.SummarySnapshot.SummaryDataPointSnapshot;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.StringSetResult;

/**
 * The runner-side alternative: a Beam sink written with the Prometheus Java client
 * (prometheus-metrics-core snapshots + prometheus-metrics-exporter-pushgateway). Each
 * writeMetrics converts the results to the client's snapshots — the same families, names,
 * labels and values as ours — and pushes them synchronously with PUT, as {@code PushGateway.push()}
 * does. The job is the grouping key, as ours.
 */
public final class JavaClientSink {
  private final JavaMapping naming;
  private final PushGateway gateway;
  private volatile MetricQueryResults current;

  public JavaClientSink(String address, String job, Format format) {
    this.naming = new JavaMapping("beam", job);
    PrometheusRegistry registry = new PrometheusRegistry();
    registry.register((MultiCollector) () -> convert(current));
    this.gateway = PushGateway.builder().address(address).job(job).registry(registry).format(format).build();
  }

  public void writeMetrics(MetricQueryResults results) throws IOException {
    current = results;
    gateway.push();
  }

  public void delete() throws IOException {
    gateway.delete();
  }

  /** As src/naming.rs: beam_metric exactly when sanitizing changed the metric's name. */
  private Labels labels(MetricKey k) {
    String step = k.stepName() == null ? "" : k.stepName();
    String name = k.metricName().getName();
    String ns = JavaMapping.labelValue(k.metricName().getNamespace());
    if (!naming.metricName(name, "").equals("beam_" + name)) {
      return Labels.of(
          new String[] {"beam_metric", "namespace", "result", "step"},
          new String[] {JavaMapping.labelValue(name), ns, "attempted", JavaMapping.labelValue(step)});
    }
    return Labels.of(new String[] {"namespace", "result", "step"}, new String[] {ns, "attempted", JavaMapping.labelValue(step)});
  }

  /** The client's snapshots of {@code r}: one per family, data points in the runner's order. */
  MetricSnapshots convert(MetricQueryResults r) {
    Map<String, CounterSnapshot.Builder> counters = new HashMap<>();
    Map<String, SummarySnapshot.Builder> summaries = new HashMap<>();
    Map<String, GaugeSnapshot.Builder> gauges = new HashMap<>();
    Map<String, InfoSnapshot.Builder> infos = new HashMap<>();
    for (MetricResult<Long> m : r.getCounters()) {
      String name = m.getKey().metricName().getName();
      counters
          .computeIfAbsent(naming.metricName(name, ""), n -> CounterSnapshot.builder().name(n).help("Beam counter " + name))
          .dataPoint(CounterDataPointSnapshot.builder().labels(labels(m.getKey())).value(m.getAttempted()).build());
    }
    for (MetricResult<DistributionResult> m : r.getDistributions()) {
      String name = m.getKey().metricName().getName();
      DistributionResult d = m.getAttempted();
      Labels labels = labels(m.getKey());
      summaries
          .computeIfAbsent(
              naming.metricName(name, "_distribution"), n -> SummarySnapshot.builder().name(n).help("Beam distribution " + name))
          .dataPoint(SummaryDataPointSnapshot.builder().labels(labels).count(d.getCount()).sum(d.getSum()).build());
      if (d.getCount() > 0) {
        gauge(gauges, naming.metricName(name, "_distribution_min"), "Beam distribution " + name + " (minimum)", labels, d.getMin());
        gauge(gauges, naming.metricName(name, "_distribution_max"), "Beam distribution " + name + " (maximum)", labels, d.getMax());
      }
    }
    for (MetricResult<GaugeResult> m : r.getGauges()) {
      GaugeResult g = m.getAttempted();
      long ts = g.getTimestamp().getMillis();
      if (ts == 0) continue;
      String name = m.getKey().metricName().getName();
      Labels labels = labels(m.getKey());
      gauge(gauges, naming.metricName(name, "_gauge"), "Beam gauge " + name, labels, g.getValue());
      gauge(
          gauges,
          naming.metricName(name, "_gauge_timestamp_seconds"),
          "When Beam gauge " + name + " was last set (Unix seconds)",
          labels,
          ts / 1000.0);
    }
    for (MetricResult<StringSetResult> m : r.getStringSets()) {
      String name = m.getKey().metricName().getName();
      Labels labels = labels(m.getKey());
      InfoSnapshot.Builder b =
          infos.computeIfAbsent(
              naming.metricName(name, "_string_set"),
              n -> InfoSnapshot.builder().name(n).help("Beam string set " + name + ": one series per element"));
      int cap = 100;
      for (String e : new TreeSet<>(m.getAttempted().getStringSet())) {
        if (cap-- == 0) break;
        b.dataPoint(InfoDataPointSnapshot.builder().labels(labels.add("value", JavaMapping.labelValue(e))).build());
      }
    }
    List<MetricSnapshot> all = new ArrayList<>(counters.size() + summaries.size() + gauges.size() + infos.size());
    counters.values().forEach(b -> all.add(b.build()));
    summaries.values().forEach(b -> all.add(b.build()));
    gauges.values().forEach(b -> all.add(b.build()));
    infos.values().forEach(b -> all.add(b.build()));
    return new MetricSnapshots(all);
  }

  private static void gauge(Map<String, GaugeSnapshot.Builder> gauges, String name, String help, Labels labels, double value) {
    gauges
        .computeIfAbsent(name, n -> GaugeSnapshot.builder().name(n).help(help))
        .dataPoint(GaugeDataPointSnapshot.builder().labels(labels).value(value).build());
  }
}
