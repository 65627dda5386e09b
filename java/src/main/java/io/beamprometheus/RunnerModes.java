package io.beamprometheus;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.StreamingOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What each runner does with {@code --metricsSink}, as read in Beam's runner sources and
 * measured on real clusters (README, runner table): who exports, and when nothing is live.
 */
final class RunnerModes {
  private static final Logger LOG = LoggerFactory.getLogger(PrometheusMetricsSink.class);
  /** Runners whose MetricsPusher calls --metricsSink (per Beam's source). */
  static final Set<String> PUSHER_RUNNERS =
      new HashSet<>(
          Arrays.asList(
              "FlinkRunner", "TestFlinkRunner", "SparkRunner", "TestSparkRunner",
              "SparkStructuredStreamingRunner", "SparkRunnerDebugger"));

  private RunnerModes() {}

  /**
   * The runner's simple name, or "" when unset and Beam cannot build its default: without
   * --runner, Beam looks for the direct runner and throws IllegalArgumentException when it is
   * not on the classpath (a sink built from bare options, as the benchmarks do).
   */
  private static String runner(PipelineOptions o) {
    try {
      return o.getRunner() == null ? "" : o.getRunner().getSimpleName();
    } catch (IllegalArgumentException e) {
      return "";
    }
  }

  /**
   * True when the sink exports this pipeline, so a poller would send everything twice. Flink's
   * detached submission never starts MetricsPusher (only the attached path builds one), so there
   * the poller exports even with --metricsSink set.
   */
  static boolean sinkExports(PrometheusExporterOptions o, PipelineResult result) {
    Class<?> sink = metricsSink(o);
    return sink != null && PrometheusMetricsSink.class.isAssignableFrom(sink)
        && PUSHER_RUNNERS.contains(runner(o))
        && !result.getClass().getSimpleName().equals("FlinkDetachedRunnerResult");
  }

  /**
   * --metricsSink, or null when unset and Beam cannot build its default: before about 2.64 the
   * default loads runners-core's NoOpMetricsSink, which the direct runner of those releases only
   * carries shaded, and throws IllegalArgumentException without it (version matrix, Beam 2.50.0).
   */
  private static Class<?> metricsSink(PrometheusExporterOptions o) {
    try {
      return o.getMetricsSink();
    } catch (IllegalArgumentException e) {
      return null;
    }
  }

  /**
   * Beam's Flink runner builds and starts MetricsPusher only once an attached job has ended
   * (FlinkPipelineExecutionEnvironment.createAttachedPipelineResult; a detached job runs none):
   * its first push, at once on a daemon thread, carries the final values and races the JVM's exit.
   */
  static boolean pusherStartsAfterEnd(PipelineOptions o) {
    return runner(o).endsWith("FlinkRunner");
  }

  /**
   * Beam's Flink runner builds MetricsPusher after execute() has returned: in attached mode a
   * streaming job's sink is created only once the job has ended, so nothing was exported while
   * it ran. Say so once per pipeline, with what to use instead.
   */
  static void warnIfExportOnlyAtEnd(PipelineOptions o) {
    if (runner(o).endsWith("FlinkRunner") && o.as(StreamingOptions.class).isStreaming()) {
      LOG.warn(
          "beam-prometheus: the Flink runner starts --metricsSink only after an attached job has ended,"
              + " so this streaming pipeline's metrics were not exported while it ran. For live metrics"
              + " on a Flink cluster, configure " + FLINK_REPORTER + " (README, runners).");
    }
  }

  /**
   * A detached Flink job's result reads Beam's metrics from the job's accumulators, which Beam's
   * Flink runner fills only when tasks end (FlinkMetricContainer.registerMetricsForPipelineResult),
   * so polling it exports final values only.
   */
  static void warnIfPollingIsNotLive(PrometheusExporterOptions o, PipelineResult result) {
    if (result.getClass().getSimpleName().equals("FlinkDetachedRunnerResult")
        && o.as(StreamingOptions.class).isStreaming()) {
      LOG.warn(
          "beam-prometheus: a detached Flink job reports Beam metrics to its result only when its tasks"
              + " end, so the poller exports this streaming pipeline's final values only. For live metrics"
              + " on a Flink cluster, configure " + FLINK_REPORTER + " (README, runners).");
    }
  }

  /** Whether the final metrics may reach the result only after the terminal state (see poller). */
  static boolean finalMetricsMayLag(PipelineResult result) {
    return result.getClass().getSimpleName().equals("FlinkDetachedRunnerResult");
  }

  static final String FLINK_REPORTER =
      "the Flink reporter: metrics.reporter.beamprom.factory.class: io.beamprometheus.FlinkMetricsReporterFactory"
          + " with metrics.reporter.beamprom.prometheusRemoteWriteUrl / prometheusPushgatewayUrl in Flink's"
          + " configuration, this jar in Flink's lib/";
}
