package io.beamprometheus;

import java.util.concurrent.ScheduledFuture;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.metrics.MetricsSink;

/**
 * A Beam {@link MetricsSink} exporting to Prometheus: set {@code
 * --metricsSink=io.beamprometheus.PrometheusMetricsSink} on a runner that runs Beam's
 * MetricsPusher (Flink, Spark). Each {@link #writeMetrics} encodes the results and hands them to
 * the native exporter in one call, which queues them and returns; delivery runs in the background.
 *
 * <p>MetricsPusher never closes its sink and stops pushing when the pipeline ends, so a sink
 * that has not been written for {@code --prometheusIdleCloseSeconds} releases its share of the
 * exporter (the last share closes it: final delivery, staleness markers, group deletion). A
 * later write takes a share again.
 */
public class PrometheusMetricsSink implements MetricsSink, AutoCloseable {
  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(PrometheusMetricsSink.class);
  private final PrometheusExporterOptions options;
  /** The pipeline's id: MetricsPusher passes the pipeline's own options (a view of them). */
  private final long pipeline;
  private final long idleMillis;
  private long handle;
  /** The native library could not be loaded and --prometheusOnNativeLoadFailure=DISABLE. */
  private final boolean disabled;
  private boolean closed;
  private long lastWrite;
  /** Encodes this sink's snapshots, its buffer and string table kept between them. */
  private final ContractWriter writer = new ContractWriter();
  private ScheduledFuture<?> watch;
  /** Built once its pipeline had ended (attached Flink): its id in FirstPushes, else 0. */
  private final long firstPushDue;

  /**
   * The constructor MetricsPusher calls; bad options fail here, naming the option, and so does a
   * Beam older than the oldest supported (see {@link BeamApi}), and so does a native library that
   * cannot be loaded (unless {@code --prometheusOnNativeLoadFailure=DISABLE}: then this sink
   * exports nothing).
   */
  public PrometheusMetricsSink(MetricsOptions options) {
    BeamApi.requireSupported();
    this.options = options.as(PrometheusExporterOptions.class);
    this.pipeline = options.getOptionsId();
    this.idleMillis = idleMillis(this.options);
    this.handle = NativeExporter.acquireOrDisabled(this.options);
    this.disabled = handle == NativeExporter.DISABLED;
    this.lastWrite = System.currentTimeMillis();
    this.firstPushDue =
        !disabled && RunnerModes.pusherStartsAfterEnd(options) && builtByMetricsPusher() ? FirstPushes.firstPushDue(pipeline) : 0;
    if (!disabled) {
      watchIdleness();
    }
    RunnerModes.warnIfExportOnlyAtEnd(options);
  }

  /**
   * Whether Beam's MetricsPusher is building this sink (its pushes are the ones a returning main
   * races); one built by user code, e.g. for {@link #stats}, may never push.
   */
  private static boolean builtByMetricsPusher() {
    return StackWalker.getInstance()
        .walk(frames -> frames.anyMatch(f -> f.getClassName().equals("org.apache.beam.runners.core.metrics.MetricsPusher")));
  }

  /** False when the native library could not be loaded and the sink exports nothing (DISABLE). */
  public boolean isActive() {
    return !disabled;
  }

  static long idleMillis(PrometheusExporterOptions o) {
    Long idle = o.getPrometheusIdleCloseSeconds();
    if (idle != null && idle < 0) {
      throw new IllegalArgumentException("--prometheusIdleCloseSeconds: " + idle + " is negative (0 disables)");
    }
    long period = o.getMetricsPushPeriod() == null ? 5 : o.getMetricsPushPeriod();
    if (idle == null) {
      return Math.max(30, 6 * period) * 1000;
    }
    if (idle > 0 && idle < 2 * period) {
      // Shorter, a push a little late finds the exporter closed: its series ended (staleness
      // markers, group deletion) between two pushes of a live pipeline. Raised, not refused: on
      // attached Flink the sink is built once the job has ended, and a refusal would lose its
      // only push.
      LOG.warn(
          "--prometheusIdleCloseSeconds={} is less than twice --metricsPushPeriod ({} s), so the exporter would close"
              + " between pushes; using {}",
          idle, period, 2 * period);
      return 2 * period * 1000;
    }
    return idle * 1000;
  }

  private void watchIdleness() {
    if (idleMillis > 0) {
      watch = IdleExpiry.watch(this::expireIfIdle, Math.max(100, Math.min(idleMillis / 4, 5_000)));
    }
  }

  private void expireIfIdle() {
    long h;
    synchronized (this) {
      if (closed || handle == 0 || System.currentTimeMillis() - lastWrite < idleMillis) {
        return;
      }
      h = handle;
      handle = 0;
      watch.cancel(false);
    }
    FirstPushes.done(firstPushDue);
    // Outside the lock, on a thread of its own: a write meanwhile takes a fresh share (acquire
    // waits for this close if it was the last share), and other sinks' checks do not queue behind
    // a final delivery of up to SHUTDOWN_FLUSH_MILLIS.
    IdleExpiry.release(() -> NativeExporter.release(h, NativeExporter.SHUTDOWN_FLUSH_MILLIS));
  }

  @Override
  public void writeMetrics(MetricQueryResults metricQueryResults) {
    try {
      long h;
      synchronized (this) {
        if (closed || disabled) {
          return;
        }
        if (handle == 0) {
          handle = NativeExporter.acquire(options);
          watchIdleness();
        }
        lastWrite = System.currentTimeMillis();
        h = handle;
      }
      // Taken after acquire: a new exporter's samples come after the staleness markers of the
      // one it replaced (acquire waits for that close), which Prometheus would otherwise reject.
      NativeExporter.export(h, pipeline, SnapshotEncoder.encode(writer, metricQueryResults, System.currentTimeMillis()));
    } finally {
      // Also when it failed: a poller or the exit hook waiting for this push stops waiting.
      FirstPushes.done(firstPushDue);
    }
  }

  /** Waits until everything queued so far is delivered (or dropped); false on timeout. */
  public boolean flush(long timeoutMillis) {
    long h;
    synchronized (this) {
      h = handle;
    }
    return h == 0 || NativeExporter.flush(h, timeoutMillis);
  }

  /** The exporter's own counters, by name (see README, Self-metrics). */
  public java.util.Map<String, Long> stats() {
    if (disabled) {
      return java.util.Collections.emptyMap();
    }
    String[] names = NativeExporter.statNames().split(",");
    long[] values = NativeExporter.stats(currentHandle());
    java.util.Map<String, Long> out = new java.util.LinkedHashMap<>();
    for (int i = 0; i < names.length; i++) {
      out.put(names[i], values[i]);
    }
    return out;
  }

  /** The newest delivery error (status and server message, or network/TLS reason), or null. */
  public String lastError() {
    if (disabled) {
      return null;
    }
    return NativeExporter.lastError(currentHandle());
  }

  private synchronized long currentHandle() {
    if (handle == 0) {
      throw new IllegalStateException("the sink released its exporter after --prometheusIdleCloseSeconds without a push");
    }
    return handle;
  }

  /**
   * Releases this sink's share of the exporter that sinks and pollers with equal options share;
   * the last one closes it: final delivery (staleness markers and the group deletion, when
   * configured) waiting at most {@link NativeExporter#SHUTDOWN_FLUSH_MILLIS}. Without it, idle
   * expiry or JVM shutdown does the same. Idempotent.
   */
  @Override
  public void close() {
    long h;
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      if (watch != null) {
        watch.cancel(false);
      }
      h = handle;
      handle = 0;
    }
    FirstPushes.done(firstPushDue);
    if (h != 0) {
      NativeExporter.release(h, NativeExporter.SHUTDOWN_FLUSH_MILLIS);
    }
  }
}
