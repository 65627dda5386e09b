package io.beamprometheus;

import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.metrics.MetricsSink;

/**
 * A Beam {@link MetricsSink} exporting to Prometheus: set {@code
 * --metricsSink=io.beamprometheus.PrometheusMetricsSink} on a runner that runs Beam's
 * MetricsPusher (Flink, Spark). Each {@link #writeMetrics} encodes the results and hands them to
 * the native exporter in one call, which queues them and returns; delivery runs in the background.
 */
public class PrometheusMetricsSink implements MetricsSink, AutoCloseable {
  private final long handle;
  private boolean closed;

  /**
   * The constructor MetricsPusher calls; bad options fail here, naming the option, and so does a
   * Beam older than the oldest supported (see {@link BeamApi}), and so does a native library that
   * cannot be loaded (unless {@code --prometheusOnNativeLoadFailure=DISABLE}: then this sink
   * exports nothing).
   */
  public PrometheusMetricsSink(MetricsOptions options) {
    BeamApi.requireSupported();
    this.handle = NativeExporter.acquireOrDisabled(options.as(PrometheusExporterOptions.class));
    RunnerModes.warnIfExportOnlyAtEnd(options);
  }

  /** False when the native library could not be loaded and the sink exports nothing (DISABLE). */
  public boolean isActive() {
    return handle != NativeExporter.DISABLED;
  }

  @Override
  public void writeMetrics(MetricQueryResults metricQueryResults) {
    if (!isActive()) {
      return;
    }
    NativeExporter.export(handle, SnapshotEncoder.encode(metricQueryResults, System.currentTimeMillis()));
  }

  /** Waits until everything queued so far is delivered (or dropped); false on timeout. */
  public boolean flush(long timeoutMillis) {
    if (!isActive()) {
      return true;
    }
    return NativeExporter.flush(handle, timeoutMillis);
  }

  /** The exporter's own counters, by name (see README, Self-metrics). */
  public java.util.Map<String, Long> stats() {
    if (!isActive()) {
      return java.util.Collections.emptyMap();
    }
    String[] names = NativeExporter.statNames().split(",");
    long[] values = NativeExporter.stats(handle);
    java.util.Map<String, Long> out = new java.util.LinkedHashMap<>();
    for (int i = 0; i < names.length; i++) {
      out.put(names[i], values[i]);
    }
    return out;
  }

  /** The newest delivery error (status and server message, or network/TLS reason), or null. */
  public String lastError() {
    if (!isActive()) {
      return null;
    }
    return NativeExporter.lastError(handle);
  }

  /**
   * Releases this sink's share of the exporter that sinks and pollers with equal options share;
   * the last one closes it: final delivery (staleness markers and the group deletion, when
   * configured) waiting at most {@link NativeExporter#SHUTDOWN_FLUSH_MILLIS}. Without it, JVM
   * shutdown does the same. Idempotent.
   */
  @Override
  public synchronized void close() {
    if (!closed) {
      closed = true;
      if (!isActive()) {
        return;
      }
      NativeExporter.release(handle, NativeExporter.SHUTDOWN_FLUSH_MILLIS);
    }
  }
}
