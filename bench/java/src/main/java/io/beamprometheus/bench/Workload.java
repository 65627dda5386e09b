package io.beamprometheus.bench;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.apache.beam.sdk.metrics.BoundedTrieResult;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricName;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.StringSetResult;
import org.apache.beam.sdk.util.HistogramData;
import org.joda.time.Instant;

/**
 * Synthetic {@link MetricQueryResults} of about {@code n} Prometheus series, the same for a
 * given {@code n} on every run: 80% of the series from counters, 10% from distributions (4
 * series each), 5% from gauges (2 each), 5% from string sets (3 elements each). Keys look like a
 * big Beam pipeline's: namespaces are DoFn class names ({@code
 * org.example.pipeline.WordCount$ExtractWordsFn}), steps are full transform paths ({@code
 * Stage12-ExtractWords/ParDo(ExtractWords)/ParMultiDo(ExtractWords)}), about 40 metrics a step.
 */
public final class Workload {
  private static final String[] PACKAGES = {
    "org.example.pipeline", "com.acme.etl.orders", "io.company.analytics.sessions",
    "org.apache.beam.examples.complete.game", "net.shop.recommendations.features",
  };
  private static final String[] PIPELINES = {
    "WordCount", "OrdersEnrichment", "SessionizeClicks", "LeaderBoard", "FeatureExtraction",
  };
  private static final String[] FNS = {
    "ExtractWords", "FormatAsText", "ParseEvent", "EnrichWithCustomer", "FilterInvalid",
    "ComputeSessionStats", "WriteToBigQuery", "ReadFromKafka", "DeduplicateByKey",
    "AssignEventTimestamps", "ToTableRow", "JoinWithInventory", "ScoreUser", "ValidateSchema",
  };
  private static final String[] WRAPPERS = {
    "%s/ParDo(%s)/ParMultiDo(%s)",
    "%s/MapElements/Map/ParMultiDo(Anonymous)",
    "%s/Combine.perKey(Sum)/Combine.GroupedValues/ParDo(Anonymous)/ParMultiDo(Anonymous)",
    "%s/Window.Into()/Window.Assign",
  };
  private static final String[] NAMES = {
    "elementsProcessed", "emptyLines", "word.length", "records_parsed_ok", "records-failed",
    "bytesRead", "latencyMs", "cache.hits", "cache.misses", "retries", "nullFields",
    "lateElements", "outputRows", "droppedDuplicates", "keysSeen", "http.requests.5xx",
  };

  private Workload() {}

  /** Distinct metrics kept by step: about 40, as a busy DoFn reports. */
  private static final int METRICS_PER_STEP = 40;

  public static MetricQueryResults create(int n) {
    SplittableRandom rnd = new SplittableRandom(7_000_003L + n);
    int counters = (int) Math.round(0.80 * n);
    int distributions = (int) Math.round(0.10 * n / 4);
    int gauges = (int) Math.round(0.05 * n / 2);
    int stringSets = (int) Math.round(0.05 * n / 3);
    int metrics = counters + distributions + gauges + stringSets;
    List<MetricKey> keys = keys(metrics, rnd);
    Collections.shuffle(keys, new java.util.Random(n));
    int k = 0;
    long now = 1_700_000_000_000L;
    List<MetricResult<Long>> c = new ArrayList<>(counters);
    for (int i = 0; i < counters; i++) {
      c.add(MetricResult.attempted(keys.get(k++), rnd.nextLong(1, 5_000_000_000L)));
    }
    List<MetricResult<DistributionResult>> d = new ArrayList<>(distributions);
    for (int i = 0; i < distributions; i++) {
      long count = rnd.nextLong(1, 10_000_000);
      long min = rnd.nextLong(0, 100);
      long max = min + rnd.nextLong(0, 100_000);
      long sum = count * (min + (max - min) / 3);
      d.add(MetricResult.attempted(keys.get(k++), DistributionResult.create(sum, count, min, max)));
    }
    List<MetricResult<GaugeResult>> g = new ArrayList<>(gauges);
    for (int i = 0; i < gauges; i++) {
      GaugeResult v = GaugeResult.create(rnd.nextLong(-1000, 1_000_000), new Instant(now - rnd.nextLong(0, 60_000)));
      g.add(MetricResult.attempted(keys.get(k++), v));
    }
    List<MetricResult<StringSetResult>> s = new ArrayList<>(stringSets);
    for (int i = 0; i < stringSets; i++) {
      Set<String> set = new LinkedHashSet<>();
      while (set.size() < 3) {
        set.add(
            rnd.nextBoolean()
                ? "bigquery:analytics-prod.sessions_" + rnd.nextInt(200) + ".events"
                : "gs://example-landing-zone/raw/2024/05/part-" + String.format("%05d", rnd.nextInt(100_000)) + ".avro");
      }
      s.add(MetricResult.attempted(keys.get(k++), StringSetResult.create(set)));
    }
    return MetricQueryResults.create(
        c, d, g, s, Collections.<MetricResult<BoundedTrieResult>>emptyList(), Collections.<MetricResult<HistogramData>>emptyList());
  }

  /** Distinct (namespace, name, step) keys, about 40 a step. */
  private static List<MetricKey> keys(int count, SplittableRandom rnd) {
    List<MetricKey> keys = new ArrayList<>(count);
    int steps = (count + METRICS_PER_STEP - 1) / METRICS_PER_STEP;
    for (int st = 0; st < steps && keys.size() < count; st++) {
      String fn = FNS[st % FNS.length];
      String pkg = PACKAGES[(st / FNS.length) % PACKAGES.length];
      String pipeline = PIPELINES[(st / 3) % PIPELINES.length];
      String namespace = pkg + "." + pipeline + "$" + fn + "Fn";
      String stage = "Stage" + st + "-" + fn;
      String step = String.format(WRAPPERS[st % WRAPPERS.length], stage, fn, fn);
      for (int m = 0; m < METRICS_PER_STEP && keys.size() < count; m++) {
        String base = NAMES[m % NAMES.length];
        String name = m < NAMES.length ? base : base + "_" + (m / NAMES.length) + "_" + rnd.nextInt(10);
        keys.add(MetricKey.create(step, MetricName.named(namespace, name)));
      }
    }
    return keys;
  }

  /** Counts of the Beam metrics in {@code r}, for the report. */
  public static int metricCount(MetricQueryResults r) {
    int n = 0;
    for (Object o : r.getCounters()) n++;
    for (Object o : r.getDistributions()) n++;
    for (Object o : r.getGauges()) n++;
    for (Object o : r.getStringSets()) n++;
    return n;
  }
}
