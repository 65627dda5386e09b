package io.beamprometheus.matrix;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import io.beamprometheus.e2e.Servers;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/** A Beam older than the oldest supported: the poller and the sink refuse it at construction. */
public class OldBeamRefusedTest {
  @Test
  public void pollerAndSinkFailAtConstructionNamingBothVersions() {
    String beam = MatrixPipeline.beamVersion();
    assertEquals(System.getProperty("beamprometheus.matrix.beam"), beam);
    PipelineOptions o =
        PipelineOptionsFactory.fromArgs(
                "--runner=DirectRunner",
                "--prometheusJobName=matrix_refused",
                "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl())
            .withValidation()
            .create();
    PipelineResult result = MatrixPipeline.everyKind(Pipeline.create(o), 10).run();
    String expected = "beam-prometheus supports Apache Beam 2.50.0 and newer; the classpath has Beam " + beam;
    try {
      PrometheusMetricsPoller.start(result, o);
      fail("the poller started on Beam " + beam);
    } catch (IllegalStateException e) {
      assertEquals(expected, e.getMessage());
    }
    try {
      new PrometheusMetricsSink(o.as(MetricsOptions.class));
      fail("the sink was built on Beam " + beam);
    } catch (IllegalStateException e) {
      assertEquals(expected, e.getMessage());
    }
    assertEquals(PipelineResult.State.DONE, result.waitUntilFinish());
    System.err.println("Beam " + beam + " direct runner: poller and sink refused at construction (" + expected + ")");
  }
}
