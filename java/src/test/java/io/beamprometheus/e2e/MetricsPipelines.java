package io.beamprometheus.e2e;

import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.metrics.BoundedTrie;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Distribution;
import org.apache.beam.sdk.metrics.Gauge;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.metrics.StringSet;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;

/** Pipelines that report every metric kind with known values, and hostile metric names. */
public final class MetricsPipelines {
  public static final String NS = "io.beamprometheus.e2e.MetricsPipelines";
  /** Names a pipeline may use that Prometheus would reject or mangle if sent as they are. */
  public static final String[] HOSTILE_NAMES = {
    "with space/and:colon", "日本語", "a.b", "a_b", "__reserved", "9starts_with_digit", "x".repeat(300), "-",
  };

  private MetricsPipelines() {}

  /** Counts {@code n} elements 1..n: counter n, distribution sum n(n+1)/2, gauge n, string set odd/even. */
  static class EveryKind extends DoFn<Integer, Integer> {
    private final Counter elements = Metrics.counter(NS, "elements");
    private final Distribution values = Metrics.distribution(NS, "element_value");
    private final Gauge last = Metrics.gauge(NS, "max_element");
    private final StringSet parity = Metrics.stringSet(NS, "parity");
    private final BoundedTrie lineage = Metrics.boundedTrie(NS, "lineage");

    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) {
      elements.inc();
      values.update(x);
      parity.add(x % 2 == 0 ? "even" : "odd");
      lineage.add("source", x % 2 == 0 ? "even" : "odd");
      if (x == 1000) {
        last.set(x);
      }
      out.output(x);
    }
  }

  static class Hostile extends DoFn<Integer, Integer> {
    @ProcessElement
    public void process(@Element Integer x, OutputReceiver<Integer> out) {
      for (String name : HOSTILE_NAMES) {
        Metrics.counter("hostile \"ns\"\n\\", name).inc();
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

  /** 1..n through EveryKind ("Count" step) and Hostile ("Hostile names" step). */
  public static Pipeline everyKind(Pipeline p, int n) {
    p.apply("Numbers", Create.of(range(n)))
        .apply("Count", ParDo.of(new EveryKind()))
        .apply("Hostile names", ParDo.of(new Hostile()));
    return p;
  }
}
