package io.beamprometheus;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
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
import org.junit.Test;

/** The Java encoder produces exactly the bytes of every shared vector (tests/vectors). */
public class VectorsTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Test
  public void javaEncoderMatchesEveryVector() throws Exception {
    File dir = new File(System.getProperty("beamprometheus.vectors", "../tests/vectors"));
    File[] files = dir.listFiles((d, n) -> n.endsWith(".json"));
    assertTrue("no vectors in " + dir.getAbsolutePath(), files != null && files.length >= 3);
    Arrays.sort(files);
    for (File f : files) {
      JsonNode doc = JSON.readTree(f);
      JsonNode snap = doc.get("snapshot");
      MetricQueryResults results = build(snap.get("metrics"), doc.get("java_histograms"));
      byte[] bytes = SnapshotEncoder.encode(results, snap.get("time_ms").asLong());
      assertEquals(f.getName(), doc.get("hex").asText(), hex(bytes));
    }
  }

  /** Avoids MetricResult.create(MetricKey, Boolean, T), which a null committed value can select. */
  static <T> MetricResult<T> result(MetricKey key, T committed, T attempted) {
    return committed == null ? MetricResult.attempted(key, attempted) : MetricResult.create(key, committed, attempted);
  }

  static String hex(byte[] b) {
    StringBuilder sb = new StringBuilder();
    for (byte x : b) {
      sb.append(String.format("%02x", x));
    }
    return sb.toString();
  }

  private static MetricQueryResults build(JsonNode metrics, JsonNode javaHistograms) {
    List<MetricResult<Long>> counters = new ArrayList<>();
    List<MetricResult<DistributionResult>> distributions = new ArrayList<>();
    List<MetricResult<GaugeResult>> gauges = new ArrayList<>();
    List<MetricResult<StringSetResult>> sets = new ArrayList<>();
    List<MetricResult<BoundedTrieResult>> tries = new ArrayList<>();
    List<MetricResult<HistogramData>> histograms = new ArrayList<>();
    for (JsonNode m : metrics) {
      Map<String, String> labels = new LinkedHashMap<>();
      for (JsonNode l : m.get("labels")) {
        labels.put(l.get(0).asText(), l.get(1).asText());
      }
      MetricName name =
          labels.isEmpty()
              ? MetricName.named(m.get("namespace").asText(), m.get("name").asText())
              : MetricName.named(m.get("namespace").asText(), m.get("name").asText(), labels);
      MetricKey key = MetricKey.create(m.get("step").asText(), name);
      JsonNode a = m.get("attempted");
      JsonNode c = m.get("committed");
      switch (m.get("kind").asText()) {
        case "counter":
          Long committed = c.isNull() ? null : Long.valueOf(c.asLong());
          counters.add(result(key, committed, Long.valueOf(a.asLong())));
          break;
        case "distribution":
          distributions.add(result(key, c.isNull() ? null : dist(c), dist(a)));
          break;
        case "gauge":
          gauges.add(result(key, c.isNull() ? null : gauge(c), gauge(a)));
          break;
        case "string_set":
          sets.add(result(key, c.isNull() ? null : set(c), set(a)));
          break;
        case "bounded_trie":
          tries.add(result(key, c.isNull() ? null : trie(c), trie(a)));
          break;
        case "histogram":
          JsonNode spec = javaHistograms.get(m.get("name").asText());
          HistogramData h =
              HistogramData.linear(
                  spec.get("start").asDouble(), spec.get("width").asDouble(), spec.get("buckets").asInt());
          for (JsonNode v : spec.get("record")) {
            h.record(v.asDouble());
          }
          histograms.add(result(key, null, h));
          break;
        default:
          throw new AssertionError("unknown kind " + m.get("kind"));
      }
    }
    return results(counters, distributions, gauges, sets, tries, histograms);
  }

  /** MetricQueryResults.create drops histograms in Beam 2.70, so the test supplies its own. */
  static MetricQueryResults results(
      List<MetricResult<Long>> counters,
      List<MetricResult<DistributionResult>> distributions,
      List<MetricResult<GaugeResult>> gauges,
      List<MetricResult<StringSetResult>> sets,
      List<MetricResult<BoundedTrieResult>> tries,
      List<MetricResult<HistogramData>> histograms) {
    return new MetricQueryResults() {
      @Override
      public Iterable<MetricResult<Long>> getCounters() {
        return counters;
      }

      @Override
      public Iterable<MetricResult<DistributionResult>> getDistributions() {
        return distributions;
      }

      @Override
      public Iterable<MetricResult<GaugeResult>> getGauges() {
        return gauges;
      }

      @Override
      public Iterable<MetricResult<StringSetResult>> getStringSets() {
        return sets;
      }

      @Override
      public Iterable<MetricResult<BoundedTrieResult>> getBoundedTries() {
        return tries;
      }

      @Override
      public Iterable<MetricResult<HistogramData>> getHistograms() {
        return histograms;
      }
    };
  }

  private static DistributionResult dist(JsonNode j) {
    return DistributionResult.create(
        j.get("sum").asLong(), j.get("count").asLong(), j.get("min").asLong(), j.get("max").asLong());
  }

  private static GaugeResult gauge(JsonNode j) {
    return GaugeResult.create(j.get("value").asLong(), new Instant(j.get("timestamp_ms").asLong()));
  }

  private static StringSetResult set(JsonNode j) {
    Set<String> s = new LinkedHashSet<>();
    j.forEach(e -> s.add(e.asText()));
    return StringSetResult.create(s);
  }

  private static BoundedTrieResult trie(JsonNode j) {
    Set<List<String>> paths = new LinkedHashSet<>();
    for (JsonNode p : j) {
      List<String> path = new ArrayList<>();
      p.get("segments").forEach(s -> path.add(s.asText()));
      path.add(String.valueOf(p.get("truncated").asBoolean()));
      paths.add(path);
    }
    return BoundedTrieResult.create(paths);
  }

  static List<String> list(String... s) {
    return Collections.unmodifiableList(Arrays.asList(s));
  }
}
