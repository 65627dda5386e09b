package io.beamprometheus;

import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricsFilter;
import org.apache.beam.sdk.options.PipelineOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Exports a running pipeline's metrics on any runner by polling {@code PipelineResult.metrics()}
 * every {@code --metricsPushPeriod} seconds, with one final export when the pipeline reaches a
 * terminal state. For runners without Beam's MetricsPusher (direct, Dataflow, Prism, Samza, …):
 *
 * <pre>{@code
 * PipelineResult result = pipeline.run();
 * PrometheusMetricsPoller.exportUntilFinish(result, options);   // blocking
 * // or: try (PrometheusMetricsPoller p = PrometheusMetricsPoller.start(result, options)) { ... }
 * }</pre>
 *
 * When {@code --metricsSink} is {@link PrometheusMetricsSink} and the runner runs MetricsPusher
 * (Flink attached, Spark), the sink already exports while the pipeline runs, so the poller does
 * not poll. It exports the final values once more on Spark, where MetricsPusher's push after the
 * end comes at its next period (and can miss a streaming job's last batches), and on attached
 * Flink it waits, bounded, for the sink's one push, made from a daemon thread once the job has
 * ended. A detached Flink submission runs no MetricsPusher, so there the poller exports.
 */
public final class PrometheusMetricsPoller implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(PrometheusMetricsPoller.class);
  private final PipelineResult result;
  private final long handle;
  /** Encodes this poller's snapshots, its buffer and string table kept between them. */
  private final ContractWriter writer = new ContractWriter();
  /** The pipeline's id ({@code PipelineOptions.getOptionsId()}), as its sink would send. */
  private final long pipeline;
  private final ScheduledExecutorService scheduler;
  private final Object lock = new Object();
  /** How long the final export waits for a runner's final metrics to reach the result. */
  static final long FINAL_METRICS_WAIT_MILLIS = 10_000;
  private boolean finished;
  /**
   * Idle beside the sink on attached Flink: the sink whose first push finish() waits for (the
   * pipeline's newest when started), at most a push period and {@link #SINK_PUSH_MARGIN_MILLIS};
   * Beam's MetricsPusher makes it from a daemon thread once the job has ended, and a returning
   * main would race it (FirstPushes). 0: nothing to wait for.
   */
  private final long dueSink;
  private final long pushPeriodMillis;
  static final long SINK_PUSH_MARGIN_MILLIS = 2_000;
  /** Counted down once the exporter is released: a second finish() waits for the first. */
  private final java.util.concurrent.CountDownLatch released = new java.util.concurrent.CountDownLatch(1);
  private static final RuntimeException ALREADY = new RuntimeException("finished before");

  /**
   * {@code active}: polls every period and exports once more at the end; {@code finalOnly}: the
   * sink exports while the pipeline runs, the poller only once more at the end.
   */
  private PrometheusMetricsPoller(
      PipelineResult result, PrometheusExporterOptions options, boolean active, boolean finalOnly) {
    this.result = result;
    this.pipeline = options.getOptionsId();
    long period = Math.max(1, options.getMetricsPushPeriod() == null ? 5 : options.getMetricsPushPeriod());
    this.pushPeriodMillis = period * 1000;
    // run() has returned: on attached Flink the pipeline's sink is built by now.
    this.dueSink = !active && !finalOnly ? FirstPushes.newestDue(pipeline) : 0;
    this.handle = active || finalOnly ? NativeExporter.acquireOrDisabled(options) : NativeExporter.DISABLED;
    if (!active || handle == NativeExporter.DISABLED) {
      this.scheduler = null;
      this.finished = handle == NativeExporter.DISABLED && dueSink == 0;
      if (finished) {
        released.countDown();
      }
      return;
    }
    this.scheduler =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "beam-prometheus-poller");
              t.setDaemon(true);
              return t;
            });
    scheduler.scheduleAtFixedRate(this::poll, 0, period, TimeUnit.SECONDS);
  }

  /** Starts exporting in the background; close the handle (or let the pipeline end) to stop. */
  public static PrometheusMetricsPoller start(PipelineResult result, PipelineOptions options) {
    // A Beam this jar cannot run on fails here, naming its version, not at the first export.
    BeamApi.requireSupported();
    PrometheusExporterOptions o = options.as(PrometheusExporterOptions.class);
    boolean sinkExports = RunnerModes.sinkExports(o, result);
    RunnerModes.warnIfPollingIsNotLive(o, result);
    boolean finalOnly = sinkExports && !RunnerModes.pusherStartsAfterEnd(o);
    if (finalOnly) {
      LOG.info("{} exports through --metricsSink while running; the poller exports the final values", o.getRunner().getSimpleName());
    } else if (sinkExports) {
      LOG.info("{} exports through --metricsSink once the job has ended; the poller waits for that push", o.getRunner().getSimpleName());
    }
    return new PrometheusMetricsPoller(result, o, !sinkExports, finalOnly);
  }

  /**
   * False when the poller exports nothing itself: --metricsSink exports everything on this runner
   * (attached Flink), or the native library could not be loaded and
   * --prometheusOnNativeLoadFailure=DISABLE.
   */
  public boolean isActive() {
    return handle != 0;
  }

  /** Exports until the pipeline ends, then once more; returns its final state. */
  public static PipelineResult.State exportUntilFinish(PipelineResult result, PipelineOptions options) {
    try (PrometheusMetricsPoller poller = start(result, options)) {
      PipelineResult.State state = result.waitUntilFinish();
      poller.finish();
      return state;
    }
  }

  private void poll() {
    boolean terminal;
    try {
      terminal = result.getState().isTerminal();
    } catch (RuntimeException e) {
      // A result that cannot even say its state is a pipeline we can no longer follow.
      LOG.warn("the pipeline's state is unreadable; the poller stops", e);
      terminal = true;
    }
    if (terminal) {
      finish();
      return;
    }
    try {
      exportNow();
    } catch (RuntimeException e) {
      LOG.warn("exporting the pipeline's metrics failed", e);
    }
  }

  private void exportNow() {
    synchronized (lock) {
      if (handle == 0 || finished) {
        return;
      }
      NativeExporter.export(handle, pipeline, SnapshotEncoder.encode(writer, query(), System.currentTimeMillis()));
    }
  }

  private MetricQueryResults query() {
    return result.metrics().queryMetrics(MetricsFilter.builder().build());
  }

  /**
   * The final export. A detached Flink job's metrics reach its result shortly after the job has
   * reached its terminal state (measured on a session cluster: an empty result at CANCELED, the
   * values a moment later), so there an empty result is asked again for a bounded time.
   */
  private void exportFinal() {
    // Called once, after finish() marked the poller finished: no poll exports any more, so the
    // bounded wait below holds no lock.
    if (handle == 0) {
      return;
    }
    MetricQueryResults r = query();
    long deadline = System.currentTimeMillis() + FINAL_METRICS_WAIT_MILLIS;
    while (RunnerModes.finalMetricsMayLag(result) && isEmpty(r) && System.currentTimeMillis() < deadline) {
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      r = query();
    }
    NativeExporter.export(handle, pipeline, SnapshotEncoder.encode(writer, r, System.currentTimeMillis()));
  }

  /**
   * Waits for the first push of the pipeline's sink, if one is due; a pipeline without metrics
   * gets none from Beam's MetricsPusher, so there is nothing to wait for.
   */
  private void awaitSinkPush() {
    if (!FirstPushes.due(dueSink)) {
      return;
    }
    if (isEmpty(query())) {
      FirstPushes.done(dueSink); // MetricsPusher pushes nothing: the exit need not wait either
      return;
    }
    long timeout = pushPeriodMillis + SINK_PUSH_MARGIN_MILLIS;
    if (FirstPushes.awaitFirstPush(dueSink, timeout)) {
      LOG.debug("the sink pushed the pipeline's final metrics");
    } else if (Thread.currentThread().isInterrupted()) {
      LOG.warn("interrupted while waiting for the sink's push of the pipeline's final metrics; they may be missing");
    } else {
      LOG.warn("the sink did not push the pipeline's final metrics within {} ms of its end; they may be missing", timeout);
    }
  }

  private static boolean isEmpty(MetricQueryResults r) {
    return !r.getCounters().iterator().hasNext()
        && !r.getDistributions().iterator().hasNext()
        && !r.getGauges().iterator().hasNext();
  }

  /**
   * The final export (once), then waits for delivery at most NativeExporter.SHUTDOWN_FLUSH_MILLIS.
   * Whatever fails on the way (a failed job's metrics() throwing, an exporter already closed by
   * the shutdown hook) is logged once and never keeps the poller running or the exporter held.
   */
  public void finish() {
    RuntimeException failure = null;
    synchronized (lock) {
      // Taken after any poll's export in progress, which the final export must follow.
      if (finished) {
        failure = ALREADY;
      }
      finished = true;
    }
    if (failure == ALREADY) {
      awaitRelease();
      return;
    }
    if (scheduler != null) {
      scheduler.shutdown();
    }
    try {
      if (dueSink != 0) {
        awaitSinkPush();
      } else {
        exportFinal();
      }
    } catch (RuntimeException e) {
      failure = e;
    }
    if (failure != null) {
      LOG.warn("the final export of the pipeline's metrics failed; the poller stops", failure);
    }
    if (handle != 0) {
      // Delivered (or the wait bounded), and the exporter closed if no one else uses it.
      try {
        NativeExporter.release(handle, NativeExporter.SHUTDOWN_FLUSH_MILLIS);
      } catch (RuntimeException e) {
        LOG.warn("releasing the exporter failed", e);
      }
    }
    released.countDown();
  }

  private void awaitRelease() {
    try {
      released.await(NativeExporter.SHUTDOWN_FLUSH_MILLIS + 1_000, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Stops polling after a final export. The exporter stays open for other users of the same options. */
  @Override
  public void close() {
    finish();
  }
}
