package io.beamprometheus;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.util.Arrays;
import java.util.Collections;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricName;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.Metric;
import org.apache.flink.metrics.SimpleCounter;
import org.joda.time.Instant;
import org.junit.Test;

/**
 * The Flink reporter's view of Beam's metrics, with Beam's own gauge classes
 * (FlinkMetricContainerBase) as the Flink runner registers them: which metrics are Beam's, the
 * sum over subtasks, the last values of removed ones exported once, and bytes equal to the Beam
 * sink's encoding of the same values.
 */
public class FlinkBeamMetricsTest {
  static final String NS = "org.example.WordCount";
  static final String STEP = "Extract/ParMultiDo(Extract)";

  /** Beam's own Flink gauge wrappers; their constructors are package-private. */
  static Metric beamGauge(String simpleName, Object value) throws Exception {
    Class<?> c = Class.forName("org.apache.beam.runners.flink.metrics.FlinkMetricContainerBase$" + simpleName);
    Constructor<?> k = c.getDeclaredConstructors()[0];
    k.setAccessible(true);
    return (Metric) k.newInstance(value);
  }

  static SimpleCounter counter(long n) {
    SimpleCounter c = new SimpleCounter();
    c.inc(n);
    return c;
  }

  static FlinkBeamMetrics.Entry entry(Metric m, String flinkName) {
    FlinkBeamMetrics.Entry e = FlinkBeamMetrics.classify(m, flinkName, STEP, '.');
    assertNotNull(flinkName, e);
    return e;
  }

  @Test
  public void onlyBeamsMetricsAreTaken() throws Exception {
    // Flink's own operator metrics have no delimiter in their names, and its gauges are not Beam's.
    assertNull(FlinkBeamMetrics.classify(counter(1), "numRecordsIn", STEP, '.'));
    assertNull(FlinkBeamMetrics.classify((Gauge<Long>) () -> 1L, NS + ".watermark", STEP, '.'));
    assertNull(FlinkBeamMetrics.classify(counter(1), NS + ".lines", null, '.'));
    assertNull(FlinkBeamMetrics.classify(counter(1), "ns.", STEP, '.'));
    FlinkBeamMetrics.Entry e = entry(counter(1), NS + ".lines");
    assertEquals(NS, e.namespace);
    assertEquals("lines", e.name);
    assertEquals(SnapshotEncoder.COUNTER, e.kind);
  }

  @Test
  public void subtasksAreSummedAndBytesMatchTheSinksEncoding() throws Exception {
    FlinkBeamMetrics m = new FlinkBeamMetrics();
    m.add(entry(counter(7), NS + ".lines"));
    m.add(entry(counter(5), NS + ".lines"));
    m.add(entry(beamGauge("FlinkDistributionGauge", DistributionResult.create(10, 2, 3, 7)), NS + ".length"));
    m.add(entry(beamGauge("FlinkDistributionGauge", DistributionResult.create(9, 1, 9, 9)), NS + ".length"));
    Metric older = beamGauge("FlinkGauge", GaugeResult.create(40, new Instant(1000)));
    Metric newer = beamGauge("FlinkGauge", GaugeResult.create(42, new Instant(2000)));
    m.add(entry(older, NS + ".last"));
    m.add(entry(newer, NS + ".last"));

    MetricQueryResults expected =
        MetricQueryResults.create(
            Collections.singletonList(MetricResult.attempted(key("lines"), 12L)),
            Collections.singletonList(MetricResult.attempted(key("length"), DistributionResult.create(19, 3, 3, 9))),
            Collections.singletonList(MetricResult.attempted(key("last"), GaugeResult.create(42, new Instant(2000)))),
            Collections.emptyList(),
            Collections.emptyList(),
            Collections.emptyList());
    assertArrayEquals(SnapshotEncoder.encode(expected, 5000), m.snapshot(5000));
    // The next snapshot, from the writer kept with its string table: the same bytes again.
    assertArrayEquals(SnapshotEncoder.encode(expected, 5000), m.snapshot(5000));
  }

  static byte[] counterSnapshot(long value, long time) {
    return SnapshotEncoder.encode(
        MetricQueryResults.create(
            Collections.singletonList(MetricResult.attempted(key("lines"), value)),
            Collections.emptyList(), Collections.emptyList(), Collections.emptyList(),
            Collections.emptyList(), Collections.emptyList()),
        time);
  }

  /** A subtask that finishes first keeps its count in the step's total: the counter never goes back. */
  @Test
  public void finishedSubtasksStayInTheTotal() throws Exception {
    FlinkBeamMetrics m = new FlinkBeamMetrics();
    SimpleCounter a = counter(3);
    SimpleCounter b = counter(4);
    m.add(entry(a, NS + ".lines"));
    m.add(entry(b, NS + ".lines"));
    b.inc(1);
    m.remove(b);
    assertTrue(m.hasLive());
    assertArrayEquals("the finished subtask's last value counts", counterSnapshot(8, 1), m.snapshot(1));
    assertArrayEquals("and keeps counting on the next push", counterSnapshot(8, 2), m.snapshot(2));
    a.inc(2);
    m.remove(a);
    assertFalse(m.hasLive());
    assertArrayEquals("the job's final value: both subtasks' last values", counterSnapshot(10, 3), m.snapshot(3));
  }

  @Test
  public void theReporterLoadsWithoutBeam() throws Exception {
    // Beam lives in the job's jar, not in Flink's lib/: the reporter's classes must link without it.
    java.net.URL ours = FlinkMetricsReporter.class.getProtectionDomain().getCodeSource().getLocation();
    java.net.URL flink = Metric.class.getProtectionDomain().getCodeSource().getLocation();
    java.net.URL flinkCore = org.apache.flink.configuration.Configuration.class.getProtectionDomain().getCodeSource().getLocation();
    java.net.URL slf4j = org.slf4j.Logger.class.getProtectionDomain().getCodeSource().getLocation();
    try (java.net.URLClassLoader l =
        new java.net.URLClassLoader(new java.net.URL[] {ours, flink, flinkCore, slf4j}, ClassLoader.getPlatformClassLoader())) {
      Class<?> reporter = Class.forName(FlinkMetricsReporter.class.getName(), true, l);
      Object r = Class.forName(FlinkMetricsReporterFactory.class.getName(), true, l)
          .getMethod("createMetricReporter", java.util.Properties.class)
          .invoke(Class.forName(FlinkMetricsReporterFactory.class.getName(), true, l).getConstructor().newInstance(), new java.util.Properties());
      assertEquals(reporter, r.getClass());
      Class<?> counter = Class.forName(SimpleCounter.class.getName(), true, l);
      Method classify = Class.forName(FlinkBeamMetrics.class.getName(), true, l)
          .getDeclaredMethod("classify", Class.forName(Metric.class.getName(), true, l), String.class, String.class, char.class);
      classify.setAccessible(true);
      assertNotNull(classify.invoke(null, counter.getConstructor().newInstance(), NS + ".lines", STEP, '.'));
      assertFalse(Arrays.stream(l.getURLs()).anyMatch(u -> u.toString().contains("beam-sdks")));
    }
  }

  static MetricKey key(String name) {
    return MetricKey.create(STEP, MetricName.named(NS, name));
  }
}
