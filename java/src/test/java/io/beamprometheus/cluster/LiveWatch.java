package io.beamprometheus.cluster;

import static org.junit.Assert.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.beamprometheus.e2e.Servers;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Watches one counter series in Prometheus while a pipeline runs: when each new value first
 * became visible to PromQL. With the pipeline's tally (when the k-th element was counted), that
 * gives freshness: how long a counted element took to show in Prometheus.
 */
final class LiveWatch {
  final String promql;
  /** value -> wall-clock millis when an instant query first returned it. */
  final Map<Double, Long> firstSeen = new LinkedHashMap<>();

  LiveWatch(String promql) {
    this.promql = promql;
  }

  /** One instant query; records the value if it is new. */
  void poll() {
    List<Servers.Sample> r = Servers.query(promql);
    long now = System.currentTimeMillis();
    if (r.size() == 1) {
      firstSeen.putIfAbsent(r.get(0).value, now);
    }
  }

  /** The series' values over [startSec, endSec] at a 1 s step, by a PromQL range query. */
  static List<Double> range(String promql, double startSec, double endSec) {
    JsonNode doc =
        Servers.get(
            Servers.prometheus()
                + "/api/v1/query_range?query="
                + URLEncoder.encode(promql, StandardCharsets.UTF_8)
                + "&start=" + startSec + "&end=" + endSec + "&step=1");
    List<Double> out = new ArrayList<>();
    JsonNode result = doc.get("data").get("result");
    assertTrue(promql + " must be one series over the run, got " + result, result.size() == 1);
    for (JsonNode v : result.get(0).get("values")) {
      out.add(Double.parseDouble(v.get(1).asText()));
    }
    return out;
  }

  /** Asserts a range query over the run shows at least {@code n} distinct values, never decreasing. */
  static List<Double> assertRising(String promql, double startSec, double endSec, int n) {
    List<Double> values = range(promql, startSec, endSec);
    long distinct = values.stream().distinct().count();
    for (int i = 1; i < values.size(); i++) {
      assertTrue(promql + " decreased while running: " + values, values.get(i) >= values.get(i - 1));
    }
    assertTrue(promql + " showed " + distinct + " distinct values while running (want >= " + n + "): " + values, distinct >= n);
    return values;
  }

  /**
   * Freshness in ms for every value seen while running: first-seen time minus the time the
   * element that brought the counter to that value was counted. Sorted ascending.
   */
  long[] freshness(long[] tally) {
    List<Long> out = new ArrayList<>();
    for (Map.Entry<Double, Long> e : firstSeen.entrySet()) {
      int k = (int) Math.round(e.getKey());
      if (k >= 1 && k <= tally.length) {
        out.add(e.getValue() - tally[k - 1]);
      }
    }
    long[] a = out.stream().mapToLong(Long::longValue).toArray();
    Arrays.sort(a);
    return a;
  }

  static String describe(String way, long[] f) {
    if (f.length == 0) {
      return way + ": no values seen";
    }
    return String.format(
        "%s: freshness over %d values: median %d ms, worst %d ms", way, f.length, f[f.length / 2], f[f.length - 1]);
  }
}
