package io.beamprometheus;

import static org.junit.Assert.assertTrue;

import java.util.Collections;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Issue 19 item 8: once the shutdown hook has closed every exporter, MetricsPusher's last
 * writeMetrics, a flush and the sink's close are ignored quietly instead of throwing.
 */
public class AfterShutdownTest {
  @Test
  public void callsAfterTheShutdownHookAreIgnoredQuietly() {
    MetricsOptions o =
        PipelineOptionsFactory.fromArgs(
                "--prometheusRemoteWriteUrl=http://127.0.0.1:9/api/v1/write", "--prometheusJobName=after_shutdown")
            .as(MetricsOptions.class);
    PrometheusMetricsSink sink = new PrometheusMetricsSink(o);
    // What the shutdown hook runs.
    NativeExporter.closeAll(1_000);
    sink.writeMetrics(
        MetricQueryResults.create(
            Collections.emptyList(), Collections.emptyList(), Collections.emptyList(),
            Collections.emptyList(), Collections.emptyList(), Collections.emptyList()));
    assertTrue("nothing is queued on a closed exporter", sink.flush(1_000));
    sink.close();
  }
}
