package io.beamprometheus;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.Metric;

/**
 * Beam's metrics of one Flink job as Flink's metric system holds them in one TaskManager, turned
 * into snapshots of the binary contract (CONTRACT.md).
 *
 * <p>Beam's Flink runner (FlinkMetricContainerBase) registers each Beam metric in the group of
 * the operator that runs the step, named {@code namespace + delimiter + name}: counters as Flink
 * counters, distributions as a gauge of DistributionResult, gauges as a gauge of Long (its
 * GaugeResult, with the time it was set, in a field). String sets and bounded tries are not
 * registered there. Beam's classes come from the job's class loader, so values are read
 * reflectively: this class needs no Beam class itself.
 */
final class FlinkBeamMetrics {
  /** One registered metric: one step (operator) of one subtask. */
  static final class Entry {
    final Metric metric;
    final int kind;
    final String namespace;
    final String name;
    final String step;

    Entry(Metric metric, int kind, String namespace, String name, String step) {
      this.metric = metric;
      this.kind = kind;
      this.namespace = namespace;
      this.name = name;
      this.step = step;
    }

    String key() {
      return kind + "\u0000" + namespace + "\u0000" + name + "\u0000" + step;
    }
  }

  /** A value aggregated over the subtasks of one step in this TaskManager. */
  static final class Value {
    long counter;
    long sum;
    long count;
    long min = Long.MAX_VALUE;
    long max = Long.MIN_VALUE;
    long gauge;
    long gaugeMillis = -1;

    Value copy() {
      Value v = new Value();
      v.counter = counter;
      v.sum = sum;
      v.count = count;
      v.min = min;
      v.max = max;
      v.gauge = gauge;
      v.gaugeMillis = gaugeMillis;
      return v;
    }
  }

  private static final String BEAM_GAUGE = "FlinkMetricContainerBase$FlinkGauge";
  private static final String BEAM_DISTRIBUTION = "FlinkMetricContainerBase$FlinkDistributionGauge";
  private static final Map<Class<?>, Method[]> DISTRIBUTION_GETTERS = new ConcurrentHashMap<>();

  /**
   * Live metrics by identity, and the final values of the subtasks' metrics already removed:
   * those stay in the step's total for as long as this job lives, so a counter never goes back
   * when one subtask finishes before the others (and a restarted subtask's new counts add to its
   * earlier attempt's, as Beam's attempted values do).
   */
  private final Map<Metric, Entry> live = new LinkedHashMap<>();
  private final Map<String, Value> retired = new LinkedHashMap<>();

  /**
   * The entry for a metric Flink reports, or null when it is not one of Beam's: Beam's names
   * always carry the delimiter between namespace and name (Flink's own never do); the name is
   * what follows the last delimiter (so a Beam name containing the delimiter is cut there).
   */
  static Entry classify(Metric metric, String metricName, String step, char delimiter) {
    int cut = metricName.lastIndexOf(delimiter);
    if (step == null || cut <= 0 || cut == metricName.length() - 1) {
      return null;
    }
    int kind;
    if (metric instanceof Counter) {
      kind = SnapshotEncoder.COUNTER;
    } else if (metric instanceof Gauge && metric.getClass().getName().endsWith(BEAM_DISTRIBUTION)) {
      kind = SnapshotEncoder.DISTRIBUTION;
    } else if (metric instanceof Gauge && metric.getClass().getName().endsWith(BEAM_GAUGE)) {
      kind = SnapshotEncoder.GAUGE;
    } else {
      return null;
    }
    return new Entry(metric, kind, metricName.substring(0, cut), metricName.substring(cut + 1), step);
  }

  void add(Entry e) {
    live.put(e.metric, e);
  }

  /** Keeps the removed metric's last value in its step's total (a subtask that finished). */
  void remove(Metric metric) {
    Entry e = live.remove(metric);
    if (e != null) {
      read(e, retired.computeIfAbsent(e.key(), k -> new Value()));
    }
  }

  boolean hasLive() {
    return !live.isEmpty();
  }

  /** Encodes the snapshots, its buffer and string table kept between them. */
  private final ContractWriter writer = new ContractWriter();

  /** Current values summed over subtasks, finished ones included, as a contract snapshot. */
  byte[] snapshot(long nowMillis) {
    Map<String, Value> values = new LinkedHashMap<>();
    for (Map.Entry<String, Value> r : retired.entrySet()) {
      values.put(r.getKey(), r.getValue().copy());
    }
    for (Entry e : live.values()) {
      read(e, values.computeIfAbsent(e.key(), k -> new Value()));
    }
    List<String> order = new ArrayList<>(values.keySet());
    ContractWriter w = writer;
    w.begin();
    w.u32(order.size());
    for (String k : order) {
      String[] parts = k.split("\u0000", -1);
      int kind = Integer.parseInt(parts[0]);
      Value v = values.get(k);
      w.u8(kind);
      w.ref(parts[1]);
      w.ref(parts[2]);
      w.ref(parts[3]);
      w.u32(0);
      w.u8(1); // attempted only: Flink's metrics are not committed values
      if (kind == SnapshotEncoder.COUNTER) {
        w.i64(v.counter);
      } else if (kind == SnapshotEncoder.DISTRIBUTION) {
        w.i64(v.sum);
        w.i64(v.count);
        w.i64(v.min);
        w.i64(v.max);
      } else {
        w.i64(v.gauge);
        w.i64(v.gaugeMillis < 0 ? 0 : v.gaugeMillis);
      }
    }
    return w.snapshot(nowMillis);
  }

  /** Adds one subtask's current value into {@code into}. */
  private static void read(Entry e, Value into) {
    if (e.kind == SnapshotEncoder.COUNTER) {
      into.counter += ((Counter) e.metric).getCount();
    } else if (e.kind == SnapshotEncoder.DISTRIBUTION) {
      Object d = ((Gauge<?>) e.metric).getValue();
      long[] sccm = distribution(d);
      if (sccm != null && sccm[1] > 0) {
        into.sum += sccm[0];
        into.count += sccm[1];
        into.min = Math.min(into.min, sccm[2]);
        into.max = Math.max(into.max, sccm[3]);
      }
    } else {
      Object g = ((Gauge<?>) e.metric).getValue();
      long at = gaugeMillis(e.metric);
      // Of several subtasks, the value set last wins, as Beam combines gauges.
      if (g instanceof Number && at >= into.gaugeMillis) {
        into.gauge = ((Number) g).longValue();
        into.gaugeMillis = at;
      }
    }
  }

  /** sum, count, min, max of a Beam DistributionResult, or null when it cannot be read. */
  static long[] distribution(Object d) {
    if (d == null) {
      return null;
    }
    try {
      Method[] m =
          DISTRIBUTION_GETTERS.computeIfAbsent(
              d.getClass(),
              c -> {
                try {
                  Method[] r = {c.getMethod("getSum"), c.getMethod("getCount"), c.getMethod("getMin"), c.getMethod("getMax")};
                  for (Method x : r) {
                    x.setAccessible(true);
                  }
                  return r;
                } catch (ReflectiveOperationException | RuntimeException ex) {
                  return new Method[0];
                }
              });
      if (m.length != 4) {
        return null;
      }
      return new long[] {
        ((Number) m[0].invoke(d)).longValue(), ((Number) m[1].invoke(d)).longValue(),
        ((Number) m[2].invoke(d)).longValue(), ((Number) m[3].invoke(d)).longValue()
      };
    } catch (ReflectiveOperationException | RuntimeException ex) {
      return null;
    }
  }

  /** When Beam's gauge was last set (its GaugeResult's timestamp), or 0 when unknown. */
  static long gaugeMillis(Metric gauge) {
    try {
      Field f = gauge.getClass().getDeclaredField("data");
      f.setAccessible(true);
      Object result = f.get(gauge);
      // AutoValue's class is package-private: its public getters need setAccessible.
      Method ts = result.getClass().getMethod("getTimestamp");
      ts.setAccessible(true);
      Object instant = ts.invoke(result);
      Method millis = instant.getClass().getMethod("getMillis");
      millis.setAccessible(true);
      return ((Number) millis.invoke(instant)).longValue();
    } catch (ReflectiveOperationException | RuntimeException ex) {
      return 0;
    }
  }
}
