package io.beamprometheus;

import java.util.Properties;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;

/** Flink's entry to {@link FlinkMetricsReporter} ({@code metrics.reporter.<name>.factory.class}). */
public class FlinkMetricsReporterFactory implements MetricReporterFactory {
  @Override
  public MetricReporter createMetricReporter(Properties properties) {
    return new FlinkMetricsReporter();
  }
}
