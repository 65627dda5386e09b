package io.beamprometheus;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricName;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;

/**
 * What the Beam on the classpath offers, found once at class load. The jar is compiled against a
 * recent Beam, but runs on every release from {@link #OLDEST_SUPPORTED}: the accessors newer
 * releases added are looked up as method handles, and the kinds a release lacks are left out of
 * the snapshot. Anything else missing cannot be bridged: {@link #requireSupported()} fails the
 * sink's or poller's construction, naming the Beam version, instead of the first export failing.
 *
 * <p>Per Beam's sources: string sets from 2.58.0, bounded tries from 2.63.0, histograms in the
 * query results and metric labels from 2.64.0.
 */
final class BeamApi {
  static final String OLDEST_SUPPORTED = "2.50.0";

  enum Kind {
    COUNTER,
    DISTRIBUTION,
    GAUGE,
    STRING_SET,
    BOUNDED_TRIE,
    HISTOGRAM
  }

  /** The Beam version on the classpath, as its sdk.properties says ("unknown" if unreadable). */
  static final String VERSION = version();
  /** MetricQueryResults.getStringSets(), getBoundedTries(), getHistograms(), or null when absent. */
  static final MethodHandle STRING_SETS = accessor(MetricQueryResults.class, "getStringSets", Iterable.class);
  static final MethodHandle BOUNDED_TRIES = accessor(MetricQueryResults.class, "getBoundedTries", Iterable.class);
  static final MethodHandle HISTOGRAMS = histograms();
  /** MetricName.getLabels(), or null before labels existed. */
  static final MethodHandle LABELS = accessor(MetricName.class, "getLabels", Map.class);
  static final Set<Kind> KINDS = kinds();
  /** Accessors the encoder calls directly that this Beam lacks; empty on every supported release. */
  static final List<String> MISSING = missing();

  private BeamApi() {}

  /** Fails when the Beam on the classpath is older than the oldest supported or lacks an accessor. */
  static void requireSupported() {
    String problem = problem(VERSION, MISSING);
    if (problem != null) {
      throw new IllegalStateException(problem);
    }
  }

  /** The construction-time error for a Beam version and its missing accessors, or null if none. */
  static String problem(String version, List<String> missing) {
    if (!missing.isEmpty()) {
      return "beam-prometheus supports Apache Beam " + OLDEST_SUPPORTED + " and newer; the Beam on the classpath ("
          + version + ") lacks " + String.join(", ", missing);
    }
    if (compare(version, OLDEST_SUPPORTED) < 0) {
      return "beam-prometheus supports Apache Beam " + OLDEST_SUPPORTED + " and newer; the classpath has Beam " + version;
    }
    return null;
  }

  /** Compares dotted release numbers; an unparsable version (a snapshot build) counts as new. */
  static int compare(String a, String b) {
    int[] x = parse(a);
    int[] y = parse(b);
    if (x == null || y == null) {
      return x == null ? 1 : -1;
    }
    for (int i = 0; i < 3; i++) {
      if (x[i] != y[i]) {
        return Integer.compare(x[i], y[i]);
      }
    }
    return 0;
  }

  private static int[] parse(String v) {
    String[] parts = v.split("[.-]");
    if (parts.length < 3) {
      return null;
    }
    int[] out = new int[3];
    try {
      for (int i = 0; i < 3; i++) {
        out[i] = Integer.parseInt(parts[i]);
      }
    } catch (NumberFormatException e) {
      return null;
    }
    return out;
  }

  @SuppressWarnings("unchecked")
  static Map<String, String> labels(MetricName name) {
    if (LABELS == null) {
      return Collections.emptyMap();
    }
    try {
      return (Map<String, String>) LABELS.invoke(name);
    } catch (RuntimeException | Error e) {
      throw e;
    } catch (Throwable t) {
      throw new IllegalStateException(t);
    }
  }

  /** The results of an optional accessor (null handle: the kind is absent, so nothing). */
  @SuppressWarnings("unchecked")
  static <T> Iterable<MetricResult<T>> results(MethodHandle accessor, MetricQueryResults results) {
    if (accessor == null) {
      return Collections.emptyList();
    }
    try {
      return (Iterable<MetricResult<T>>) accessor.invoke(results);
    } catch (RuntimeException | Error e) {
      throw e;
    } catch (Throwable t) {
      throw new IllegalStateException(t);
    }
  }

  private static String version() {
    try {
      return org.apache.beam.sdk.util.ReleaseInfo.getReleaseInfo().getVersion();
    } catch (RuntimeException | LinkageError e) {
      return "unknown";
    }
  }

  private static MethodHandle accessor(Class<?> owner, String name, Class<?> returns) {
    try {
      return MethodHandles.publicLookup().findVirtual(owner, name, MethodType.methodType(returns));
    } catch (NoSuchMethodException | IllegalAccessException | LinkageError e) {
      return null;
    }
  }

  /** Histograms need getHistograms() and HistogramData.getMean() (the sum), both in 2.64.0+. */
  private static MethodHandle histograms() {
    MethodHandle h = accessor(MetricQueryResults.class, "getHistograms", Iterable.class);
    if (h == null) {
      return null;
    }
    try {
      Class<?> data = Class.forName("org.apache.beam.sdk.util.HistogramData");
      return accessor(data, "getMean", double.class) == null ? null : h;
    } catch (ClassNotFoundException | LinkageError e) {
      return null;
    }
  }

  private static Set<Kind> kinds() {
    Set<Kind> k = EnumSet.of(Kind.COUNTER, Kind.DISTRIBUTION, Kind.GAUGE);
    if (STRING_SETS != null) {
      k.add(Kind.STRING_SET);
    }
    if (BOUNDED_TRIES != null) {
      k.add(Kind.BOUNDED_TRIE);
    }
    if (HISTOGRAMS != null) {
      k.add(Kind.HISTOGRAM);
    }
    return Collections.unmodifiableSet(k);
  }

  private static List<String> missing() {
    Object[][] required = {
      {MetricQueryResults.class, "getCounters", Iterable.class},
      {MetricQueryResults.class, "getDistributions", Iterable.class},
      {MetricQueryResults.class, "getGauges", Iterable.class},
      {MetricResult.class, "getKey", MetricKey.class},
      {MetricResult.class, "getAttempted", Object.class},
      {MetricResult.class, "getCommittedOrNull", Object.class},
      {MetricKey.class, "stepName", String.class},
      {MetricKey.class, "metricName", MetricName.class},
      {MetricName.class, "getNamespace", String.class},
      {MetricName.class, "getName", String.class},
      {DistributionResult.class, "getSum", long.class},
      {DistributionResult.class, "getCount", long.class},
      {DistributionResult.class, "getMin", long.class},
      {DistributionResult.class, "getMax", long.class},
      {GaugeResult.class, "getValue", long.class},
      {GaugeResult.class, "getTimestamp", org.joda.time.Instant.class},
    };
    List<String> out = new ArrayList<>();
    for (Object[] r : required) {
      Class<?> owner = (Class<?>) r[0];
      if (accessor(owner, (String) r[1], (Class<?>) r[2]) == null) {
        out.add(owner.getSimpleName() + "." + r[1] + "()");
      }
    }
    return Collections.unmodifiableList(out);
  }
}
