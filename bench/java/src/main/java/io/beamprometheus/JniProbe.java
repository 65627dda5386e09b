package io.beamprometheus;

/**
 * The benchmarks' door to the package-private JNI functions of {@link NativeExporter}, to time the
 * crossing apart from the work behind it (BENCHMARKS.md, "JNI crossing"). Bench code only.
 */
public final class JniProbe {
  private JniProbe() {}

  public static long handle(PrometheusExporterOptions options) {
    return NativeExporter.acquire(options);
  }

  public static void export(long handle, byte[] snapshot) {
    NativeExporter.export(handle, snapshot);
  }

  public static long[] stats(long handle) {
    return NativeExporter.stats(handle);
  }

  public static byte[] encode(org.apache.beam.sdk.metrics.MetricQueryResults results, long timeMillis) {
    return SnapshotEncoder.encode(results, timeMillis);
  }
}
