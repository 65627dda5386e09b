package io.beamprometheus.matrix;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Distribution;
import org.apache.beam.sdk.metrics.Gauge;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.util.ReleaseInfo;

/**
 * The version matrix' pipeline: 1..n through one step reporting every kind the Beam on the
 * classpath lets a DoFn report. This source set compiles against the oldest supported Beam
 * (2.50.0), so string sets (2.58.0+) and bounded tries (2.63.0+) are reached by reflection.
 */
public final class MatrixPipeline {
  public static final String NS = "io.beamprometheus.matrix";
  public static final String STEP = "Count/ParMultiDo(EveryKind)";

  private MatrixPipeline() {}

  /** The Beam release on the classpath (its sdk.properties). */
  public static String beamVersion() {
    return ReleaseInfo.getReleaseInfo().getVersion();
  }

  /** Whether {@code version} is at least {@code atLeast} (dotted release numbers). */
  public static boolean atLeast(String version, String atLeast) {
    String[] a = version.split("[.-]");
    String[] b = atLeast.split("[.-]");
    for (int i = 0; i < 3; i++) {
      int x = Integer.parseInt(a[i]);
      int y = Integer.parseInt(b[i]);
      if (x != y) {
        return x > y;
      }
    }
    return true;
  }

  /** Per Beam's sources: Metrics.stringSet from 2.58.0, Metrics.boundedTrie from 2.63.0. */
  public static boolean hasStringSets() {
    return atLeast(beamVersion(), "2.58.0");
  }

  public static boolean hasBoundedTries() {
    return atLeast(beamVersion(), "2.63.0");
  }

  /**
   * Counter n, distribution 1..n, gauge n, string set {odd, even}, bounded trie
   * {source/odd, source/even}: the last two only where this Beam has them.
   */
  static class EveryKind extends DoFn<Integer, Integer> {
    private final int n;
    private final Counter elements = Metrics.counter(NS, "elements");
    private final Distribution values = Metrics.distribution(NS, "element_value");
    private final Gauge last = Metrics.gauge(NS, "max_element");
    private transient Object parity;
    private transient Method parityAdd;
    private transient Object lineage;
    private transient Method lineageAdd;

    EveryKind(int n) {
      this.n = n;
    }

    @Setup
    public void setup() throws ReflectiveOperationException {
      if (hasStringSets()) {
        parity = Metrics.class.getMethod("stringSet", String.class, String.class).invoke(null, NS, "parity");
        parityAdd = Class.forName("org.apache.beam.sdk.metrics.StringSet").getMethod("add", String.class);
      }
      if (hasBoundedTries()) {
        lineage = Metrics.class.getMethod("boundedTrie", String.class, String.class).invoke(null, NS, "lineage");
        lineageAdd = Class.forName("org.apache.beam.sdk.metrics.BoundedTrie").getMethod("add", Iterable.class);
      }
    }

    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) throws ReflectiveOperationException {
      elements.inc();
      values.update(x);
      if (x == n) {
        last.set(x);
      }
      String p = x % 2 == 0 ? "even" : "odd";
      if (parity != null) {
        parityAdd.invoke(parity, p);
      }
      if (lineage != null) {
        lineageAdd.invoke(lineage, java.util.Arrays.asList("source", p));
      }
      out.output(x);
    }
  }

  public static List<Integer> range(int n) {
    List<Integer> l = new ArrayList<>();
    for (int i = 1; i <= n; i++) {
      l.add(i);
    }
    return l;
  }

  public static Pipeline everyKind(Pipeline p, int n) {
    p.apply("Numbers", Create.of(range(n))).apply("Count", ParDo.of(new EveryKind(n)));
    return p;
  }
}
