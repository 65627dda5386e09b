package io.beamprometheus;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
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

/**
 * A sink's writer keeps its string table between snapshots (ContractWriter#snapshot): each
 * snapshot must still say exactly what a fresh encoding of the same results says, an unchanged
 * snapshot must keep its bytes (the exporter compares them to reuse its mapping), and the table
 * must stay within about twice what a snapshot uses.
 */
public class ContractWriterReuseTest {

  /**
   * The snapshot read back with every reference resolved: one line per metric (kind, key,
   * labels, values; a string set's elements by content), and the table's size.
   */
  static final class Read {
    final List<String> metrics = new ArrayList<>();
    int strings;
    final Set<Integer> used = new LinkedHashSet<>();
  }

  static Read read(byte[] bytes) {
    ByteBuffer b = ByteBuffer.wrap(bytes);
    byte[] magic = new byte[4];
    b.get(magic);
    assertEquals("BPM1", new String(magic, StandardCharsets.US_ASCII));
    b.getLong();
    Read r = new Read();
    r.strings = b.getInt();
    List<String> table = new ArrayList<>();
    for (int i = 0; i < r.strings; i++) {
      byte[] s = new byte[b.getInt()];
      b.get(s);
      table.add(new String(s, StandardCharsets.UTF_8));
    }
    int n = b.getInt();
    for (int m = 0; m < n; m++) {
      StringBuilder line = new StringBuilder();
      int kind = b.get();
      line.append(kind);
      for (int k = 0; k < 3; k++) {
        line.append('|').append(ref(b, table, r));
      }
      int labels = b.getInt();
      for (int l = 0; l < labels; l++) {
        line.append("|").append(ref(b, table, r)).append('=').append(ref(b, table, r));
      }
      int presence = b.get();
      line.append("|p").append(presence);
      for (int v = 0; v < Integer.bitCount(presence); v++) {
        switch (kind) {
          case 1:
            line.append('|').append(b.getLong());
            break;
          case 2:
            line.append('|').append(b.getLong()).append(',').append(b.getLong()).append(',').append(b.getLong()).append(',').append(b.getLong());
            break;
          case 3:
            line.append('|').append(b.getLong()).append('@').append(b.getLong());
            break;
          case 4:
            int e = b.getInt();
            List<String> elements = new ArrayList<>();
            for (int i = 0; i < e; i++) {
              elements.add(ref(b, table, r));
            }
            line.append('|').append(elements);
            break;
          default:
            fail("kind " + kind + " is not written by this test");
        }
      }
      r.metrics.add(line.toString());
    }
    assertEquals("trailing bytes", 0, b.remaining());
    return r;
  }

  static String ref(ByteBuffer b, List<String> table, Read r) {
    int i = b.getInt();
    assertTrue("ref " + i + " outside a table of " + table.size(), i >= 0 && i < table.size());
    r.used.add(i);
    return table.get(i);
  }

  /**
   * Counters, a distribution, a gauge and a string set; {@code round} changes the values and, with
   * {@code churn}, the string set's elements and a counter's name (metrics that come and go).
   */
  static MetricQueryResults results(int round, boolean churn) {
    List<MetricResult<Long>> counters = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      String name = churn && i == 0 ? "short_lived_" + round : "counter_" + i;
      counters.add(MetricResult.attempted(MetricKey.create("Step" + (i % 3), MetricName.named("org.example.Fn", name)), (long) (round * 100 + i)));
    }
    List<MetricResult<DistributionResult>> distributions =
        Collections.singletonList(
            MetricResult.create(MetricKey.create("Step1", MetricName.named("org.example.Fn", "latency")), DistributionResult.create(round, 1, 0, round), DistributionResult.create(2L * round, 2, 0, round)));
    List<MetricResult<GaugeResult>> gauges =
        Collections.singletonList(MetricResult.attempted(MetricKey.create("Step2", MetricName.named("org.example.Other", "queue")), GaugeResult.create(round, new Instant(1000L + round))));
    Set<String> elements = new LinkedHashSet<>();
    for (int i = 0; i < 10; i++) {
      elements.add("gs://bucket/file-" + (churn ? round * 10 + i : i));
    }
    List<MetricResult<StringSetResult>> sets =
        Collections.singletonList(MetricResult.attempted(MetricKey.create("Step0", MetricName.named("org.example.Fn", "files")), StringSetResult.create(elements)));
    return MetricQueryResults.create(
        counters, distributions, gauges, sets, Collections.<MetricResult<BoundedTrieResult>>emptyList(), Collections.<MetricResult<HistogramData>>emptyList());
  }

  @Test
  public void aKeptTableChangesNothingTheSnapshotsSay() {
    ContractWriter w = new ContractWriter();
    byte[] previous = null;
    for (int round = 0; round < 6; round++) {
      MetricQueryResults r = results(1, false);
      byte[] fresh = SnapshotEncoder.encode(r, 5000);
      byte[] kept = SnapshotEncoder.encode(w, r, 5000);
      // The table is in first-use order both ways: the same results give the same bytes, every
      // time, so the exporter finds the structure unchanged and refreshes its mapping.
      assertArrayEquals("round " + round, fresh, kept);
      if (previous != null) {
        assertArrayEquals(previous, kept);
      }
      previous = kept;
    }
    // New values, same metrics: the same table; only the numbers differ.
    byte[] next = SnapshotEncoder.encode(w, results(2, false), 6000);
    assertEquals(read(SnapshotEncoder.encode(results(2, false), 6000)).metrics, read(next).metrics);
    assertEquals(read(previous).strings, read(next).strings);
  }

  @Test
  public void metricsThatComeAndGoKeepTheTableWithinTwiceWhatIsUsed() {
    ContractWriter w = new ContractWriter();
    int resets = 0;
    int last = 0;
    for (int round = 0; round < 40; round++) {
      MetricQueryResults r = results(round, true);
      Read kept = read(SnapshotEncoder.encode(w, r, 5000 + round));
      Read fresh = read(SnapshotEncoder.encode(r, 5000 + round));
      assertEquals("round " + round, fresh.metrics, kept.metrics);
      // Checked after each snapshot: a table can carry up to twice what is used, plus 64, plus
      // the strings the snapshot itself adds (11 a round here).
      assertTrue(
          "round " + round + ": " + kept.strings + " strings for " + kept.used.size() + " used",
          kept.strings <= 2 * kept.used.size() + 64 + 11);
      if (kept.strings < last) {
        resets++;
      }
      last = kept.strings;
    }
    // 11 new strings a round against about 35 used: the table starts afresh several times.
    assertTrue("resets: " + resets, resets >= 3);
  }

  @Test
  public void aSnapshotAfterAFailedOneIsWhole() {
    ContractWriter w = new ContractWriter();
    MetricQueryResults good = results(1, false);
    byte[] before = SnapshotEncoder.encode(w, good, 5000);
    List<MetricResult<Long>> counters = new ArrayList<>();
    good.getCounters().forEach(counters::add);
    counters.add(new FailingResult(MetricKey.create("Step9", MetricName.named("org.example.Fn", "added_then_failed"))));
    MetricQueryResults bad =
        MetricQueryResults.create(
            counters, good.getDistributions(), good.getGauges(), good.getStringSets(), Collections.<MetricResult<BoundedTrieResult>>emptyList(), Collections.<MetricResult<HistogramData>>emptyList());
    try {
      SnapshotEncoder.encode(w, bad, 5000);
      fail("the failing result should have thrown");
    } catch (IllegalStateException expected) {
      // Thrown half-way: the counters before it and its key's strings are written.
    }
    Read after = read(SnapshotEncoder.encode(w, good, 5000));
    assertEquals(read(before).metrics, after.metrics);
  }

  /** A counter whose value cannot be read. */
  static final class FailingResult extends MetricResult<Long> {
    private final MetricKey key;

    FailingResult(MetricKey key) {
      this.key = key;
    }

    @Override
    public MetricKey getKey() {
      return key;
    }

    @Override
    public Long getCommittedOrNull() {
      return null;
    }

    @Override
    public Long getAttempted() {
      throw new IllegalStateException("value unavailable");
    }
  }
}
