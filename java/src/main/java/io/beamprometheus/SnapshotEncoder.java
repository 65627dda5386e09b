package io.beamprometheus;

import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.metrics.BoundedTrieResult;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.StringSetResult;
import org.apache.beam.sdk.util.HistogramData;

/**
 * Encodes a {@link MetricQueryResults} into the binary contract of CONTRACT.md: the kinds the
 * Beam on the classpath offers ({@link BeamApi#KINDS}); those it lacks are absent. The writers of
 * the newer kinds sit in nested classes that load only when their kind exists, so their Beam
 * classes are never resolved on a release without them.
 */
public final class SnapshotEncoder {
  static final int COUNTER = 1;
  static final int DISTRIBUTION = 2;
  static final int GAUGE = 3;
  static final int STRING_SET = 4;
  static final int BOUNDED_TRIE = 5;
  static final int HISTOGRAM = 6;

  private interface ValueWriter<T> {
    void write(ContractWriter w, T value);
  }

  private SnapshotEncoder() {}

  /** One snapshot on its own (tests, vectors): its string table in first-use order. */
  public static byte[] encode(MetricQueryResults results, long timeMillis) {
    return encode(new ContractWriter(), results, timeMillis);
  }

  /**
   * The next snapshot of the source {@code w} writes for (a sink, a poller), with the string table
   * it kept from the previous ones (see {@link ContractWriter#snapshot}).
   */
  static byte[] encode(ContractWriter w, MetricQueryResults results, long timeMillis) {
    synchronized (w) {
      w.begin();
      Iterable<MetricResult<Object>> stringSets = BeamApi.results(BeamApi.STRING_SETS, results);
      Iterable<MetricResult<Object>> boundedTries = BeamApi.results(BeamApi.BOUNDED_TRIES, results);
      Iterable<MetricResult<Object>> histograms = BeamApi.results(BeamApi.HISTOGRAMS, results);
      int count =
          size(results.getCounters())
              + size(results.getDistributions())
              + size(results.getGauges())
              + size(stringSets)
              + size(boundedTries)
              + size(histograms);
      w.u32(count);
      metrics(w, COUNTER, results.getCounters(), (out, v) -> out.i64(v));
      metrics(w, DISTRIBUTION, results.getDistributions(), SnapshotEncoder::distribution);
      metrics(w, GAUGE, results.getGauges(), SnapshotEncoder::gauge);
      if (BeamApi.STRING_SETS != null) {
        metrics(w, STRING_SET, stringSets, StringSets.WRITER);
      }
      if (BeamApi.BOUNDED_TRIES != null) {
        metrics(w, BOUNDED_TRIE, boundedTries, BoundedTries.WRITER);
      }
      if (BeamApi.HISTOGRAMS != null) {
        metrics(w, HISTOGRAM, histograms, Histograms.WRITER);
      }
      return w.snapshot(timeMillis);
    }
  }

  private static int size(Iterable<?> it) {
    int n = 0;
    for (Object ignored : it) {
      n++;
    }
    return n;
  }

  private static <T> void metrics(
      ContractWriter w, int kind, Iterable<MetricResult<T>> results, ValueWriter<T> writer) {
    for (MetricResult<T> r : results) {
      MetricKey key = r.getKey();
      w.u8(kind);
      w.ref(key.metricName().getNamespace());
      w.ref(key.metricName().getName());
      w.ref(key.stepName() == null ? "" : key.stepName());
      Map<String, String> labels = BeamApi.labels(key.metricName());
      w.u32(labels == null ? 0 : labels.size());
      if (labels != null) {
        for (Map.Entry<String, String> e : labels.entrySet()) {
          w.ref(e.getKey());
          w.ref(e.getValue());
        }
      }
      T attempted = r.getAttempted();
      T committed = r.getCommittedOrNull();
      w.u8((attempted != null ? 1 : 0) | (committed != null ? 2 : 0));
      if (attempted != null) {
        writer.write(w, attempted);
      }
      if (committed != null) {
        writer.write(w, committed);
      }
    }
  }

  private static void distribution(ContractWriter w, DistributionResult d) {
    w.i64(d.getSum());
    w.i64(d.getCount());
    w.i64(d.getMin());
    w.i64(d.getMax());
  }

  private static void gauge(ContractWriter w, GaugeResult g) {
    w.i64(g.getValue());
    w.i64(g.getTimestamp().getMillis());
  }

  private static final class StringSets {
    static final ValueWriter<Object> WRITER = (w, v) -> write(w, (StringSetResult) v);

    private static void write(ContractWriter w, StringSetResult s) {
      w.u32(s.getStringSet().size());
      for (String e : s.getStringSet()) {
        w.ref(e);
      }
    }
  }

  private static final class BoundedTries {
    static final ValueWriter<Object> WRITER = (w, v) -> write(w, (BoundedTrieResult) v);

    /** Beam ends each path with "true" or "false": whether the trie was truncated there. */
    private static void write(ContractWriter w, BoundedTrieResult t) {
      w.u32(t.getResult().size());
      for (List<String> path : t.getResult()) {
        int n = path.size();
        boolean hasFlag = n > 0 && ("true".equals(path.get(n - 1)) || "false".equals(path.get(n - 1)));
        int segments = hasFlag ? n - 1 : n;
        w.u32(segments);
        for (int i = 0; i < segments; i++) {
          w.ref(path.get(i));
        }
        w.u8(hasFlag && "true".equals(path.get(n - 1)) ? 1 : 0);
      }
    }
  }

  private static final class Histograms {
    static final ValueWriter<Object> WRITER = (w, v) -> write(w, (HistogramData) v);

    /**
     * Non-cumulative buckets with their upper bounds: the underflow bucket ends at the range's
     * start, bucket i at start + the sizes of buckets 0..i, the overflow bucket at +Inf.
     */
    private static void write(ContractWriter w, HistogramData h) {
      HistogramData.BucketType type = h.getBucketType();
      int n = type.getNumBuckets();
      double sum = h.getMean() * h.getTotalCount();
      w.f64(Double.isNaN(sum) ? 0 : sum);
      w.u32(n + 2);
      double from = type.getRangeFrom();
      w.f64(from);
      w.i64(h.getBottomBucketCount());
      double sizes = 0;
      for (int i = 0; i < n; i++) {
        sizes += type.getBucketSize(i);
        // Linear bounds computed directly (start + width * (i + 1)): summing widths would drift
        // (0.1 + 0.1 + 0.1 = 0.30000000000000004) and give odd `le` values.
        double upper =
            type instanceof HistogramData.LinearBuckets
                ? from + ((HistogramData.LinearBuckets) type).getWidth() * (i + 1)
                : from + sizes;
        w.f64(upper);
        w.i64(h.getCount(i));
      }
      w.f64(Double.POSITIVE_INFINITY);
      w.i64(h.getTopBucketCount());
    }
  }
}
