package io.beamprometheus;

import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricResults;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.joda.time.Duration;
import org.junit.Test;

/** The poller stands aside where --metricsSink already exports, so nothing is sent twice. */
public class PollerTest {
  /** A finished pipeline with no metrics. */
  static PipelineResult done() {
    return new PipelineResult() {
      @Override
      public State getState() {
        return State.DONE;
      }

      @Override
      public State cancel() {
        return State.DONE;
      }

      @Override
      public State waitUntilFinish(Duration duration) {
        return State.DONE;
      }

      @Override
      public State waitUntilFinish() {
        return State.DONE;
      }

      @Override
      public MetricResults metrics() {
        throw new UnsupportedOperationException("an idle poller never asks");
      }
    };
  }

  static PipelineOptions options(String runner, boolean sink) {
    return PipelineOptionsFactory.fromArgs(
            "--runner=" + runner,
            "--prometheusRemoteWriteUrl=http://127.0.0.1:9/api/v1/write",
            "--prometheusJobName=poller_test",
            sink ? "--metricsSink=" + PrometheusMetricsSink.class.getName() : "--metricsPushPeriod=5")
        .create();
  }

  @Test
  public void idleWhereMetricsPusherRunsTheSink() {
    try (PrometheusMetricsPoller p = PrometheusMetricsPoller.start(done(), options("FlinkRunner", true))) {
      assertFalse(p.isActive());
    }
  }

  @Test
  public void activeOnTheDirectRunnerEvenWithTheSinkSet() {
    PrometheusMetricsPoller p = PrometheusMetricsPoller.start(done(), options("DirectRunner", true));
    assertTrue(p.isActive());
  }

  @Test
  public void activeOnFlinkWithoutOurSink() {
    PrometheusMetricsPoller p = PrometheusMetricsPoller.start(done(), options("FlinkRunner", false));
    assertTrue(p.isActive());
  }
}
