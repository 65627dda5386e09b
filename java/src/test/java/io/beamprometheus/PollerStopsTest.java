package io.beamprometheus;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.concurrent.atomic.AtomicInteger;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricResults;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.joda.time.Duration;
import org.junit.Test;

/** Issue 19 item 6: a final export that throws still stops the poller and releases the exporter. */
public class PollerStopsTest {
  /** A failed pipeline whose metrics() throws, as a failed or cancelled job's result may. */
  static PipelineResult failedWithoutMetrics(AtomicInteger asked) {
    return new PipelineResult() {
      @Override
      public State getState() {
        return State.FAILED;
      }

      @Override
      public State cancel() {
        return State.FAILED;
      }

      @Override
      public State waitUntilFinish(Duration duration) {
        return State.FAILED;
      }

      @Override
      public State waitUntilFinish() {
        return State.FAILED;
      }

      @Override
      public MetricResults metrics() {
        asked.incrementAndGet();
        throw new IllegalStateException("the job failed; its metrics are gone");
      }
    };
  }

  static PipelineOptions options(String job) {
    return PipelineOptionsFactory.fromArgs(
            "--runner=DirectRunner",
            "--prometheusRemoteWriteUrl=http://127.0.0.1:9/api/v1/write",
            "--prometheusJobName=" + job,
            "--metricsPushPeriod=1")
        .create();
  }

  static boolean pollerThreadAlive() {
    return Thread.getAllStackTraces().keySet().stream()
        .anyMatch(t -> t.getName().equals("beam-prometheus-poller") && t.isAlive());
  }

  /** Bounded wait for the poller thread to end. */
  static boolean pollerThreadEnds(long millis) throws InterruptedException {
    long deadline = System.currentTimeMillis() + millis;
    while (pollerThreadAlive() && System.currentTimeMillis() < deadline) {
      Thread.sleep(50);
    }
    return !pollerThreadAlive();
  }

  @Test
  public void backgroundPollerStopsWhenTheFinalExportThrows() throws Exception {
    AtomicInteger asked = new AtomicInteger();
    PrometheusMetricsPoller.start(failedWithoutMetrics(asked), options("poller_stops_bg"));
    // Period 1 s: a poller that never stops asks again every second.
    Thread.sleep(3_500);
    int after = asked.get();
    Thread.sleep(2_500);
    assertEquals("metrics() asked again after the pipeline ended", after, asked.get());
    assertTrue("the poller thread still runs", pollerThreadEnds(2_000));
    assertEquals("the exporter is still held", 0, NativeExporter.users("poller_stops_bg"));
  }

  @Test
  public void exportUntilFinishReturnsTheStateWhenTheFinalExportThrows() throws Exception {
    AtomicInteger asked = new AtomicInteger();
    PipelineResult.State state =
        PrometheusMetricsPoller.exportUntilFinish(failedWithoutMetrics(asked), options("poller_stops_fg"));
    assertEquals(PipelineResult.State.FAILED, state);
    assertEquals("the exporter is still held", 0, NativeExporter.users("poller_stops_fg"));
  }
}
