package io.beamprometheus;

import java.io.File;
import java.util.Arrays;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;

/**
 * Runs in a child JVM of {@link NativeLoaderTest} (loading a native library is once per JVM):
 * builds two sinks and a poller with the given options and prints what happened, one line each.
 */
public final class NativeLoadProbe {
  public static void main(String[] args) {
    PipelineOptions options = PipelineOptionsFactory.fromArgs(args).create();
    for (String who : new String[] {"sink1", "sink2", "poller"}) {
      try {
        if (who.equals("poller")) {
          try (PrometheusMetricsPoller p = PrometheusMetricsPoller.start(PollerTest.done(), options)) {
            System.out.println(who + " BUILT active=" + p.isActive());
          }
        } else {
          try (PrometheusMetricsSink s = new PrometheusMetricsSink(options.as(PrometheusExporterOptions.class))) {
            s.writeMetrics(org.apache.beam.sdk.metrics.MetricQueryResults.create(
                java.util.Collections.emptyList(), java.util.Collections.emptyList(), java.util.Collections.emptyList(),
                java.util.Collections.emptyList(), java.util.Collections.emptyList(), java.util.Collections.emptyList()));
            System.out.println(who + " BUILT active=" + s.isActive());
          }
        }
      } catch (RuntimeException e) {
        System.out.println(who + " FAILED " + e.getClass().getName() + ": " + e.getMessage().replace('\n', ' '));
      }
    }
    for (String dir : new String[] {System.getProperty("java.io.tmpdir"), System.getenv("XDG_CACHE_HOME")}) {
      if (dir != null) {
        File d = new File(dir, "beam-prometheus-" + System.getProperty("user.name"));
        String[] files = d.list();
        System.out.println("FILES " + dir + " " + (files == null ? "-" : Arrays.toString(files)));
      }
    }
  }
}
