package io.beamprometheus.e2e;

import io.beamprometheus.PrometheusMetricsSink;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptions;

/**
 * The demo (./demo.sh): 1,000 elements through a pipeline reporting every metric kind, on the
 * Flink runner, exported by remote-write and to the Pushgateway at once.
 */
public final class DemoPipeline {
  public static void main(String[] args) throws Exception {
    List<String> extra = new ArrayList<>(Arrays.asList("--prometheusGroupingKey={\"instance\":\"demo\"}"));
    extra.addAll(Arrays.asList(args));
    // The same Flink-runner options as the end-to-end tests.
    PipelineOptions options = FlinkSinkE2ETest.options("beam_prometheus_demo", extra.toArray(new String[0]));
    PipelineResult.State state = MetricsPipelines.everyKind(Pipeline.create(options), 1000).run().waitUntilFinish();
    System.out.println("pipeline " + state);
    // MetricsPusher pushes once more right after the pipeline ends, on its own thread.
    PrometheusMetricsSink sink = new PrometheusMetricsSink(options.as(MetricsOptions.class));
    long deadline = System.currentTimeMillis() + 15_000;
    while (System.currentTimeMillis() < deadline
        && sink.stats().get("requests_sent") + sink.stats().get("pushes_sent") < 2) {
      Thread.sleep(100);
    }
    sink.flush(10_000);
    System.out.println("exporter: " + sink.stats());
    System.exit(state == PipelineResult.State.DONE ? 0 : 1);
  }
}
