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

  /** A writer as a sink keeps one: its buffer and string table kept between snapshots. */
  public static Object writer() {
    return new ContractWriter();
  }

  /** The next snapshot of {@code writer}'s source, as the sink encodes it. */
  public static byte[] encode(Object writer, org.apache.beam.sdk.metrics.MetricQueryResults results, long timeMillis) {
    return SnapshotEncoder.encode((ContractWriter) writer, results, timeMillis);
  }
}
