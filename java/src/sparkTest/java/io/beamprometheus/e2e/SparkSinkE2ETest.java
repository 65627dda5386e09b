package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;

import io.beamprometheus.PrometheusMetricsSink;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * A real Beam pipeline on the Spark runner (local[2]), whose MetricsPusher drives our sink, to
 * the real Prometheus and Pushgateway of tests/run_all.sh. Its own source set and classpath
 * (sparkE2eTest), so Spark's dependencies never meet Flink's.
 */
public class SparkSinkE2ETest {
  @Test
  public void sparkRunnersMetricsPusherExportsBothWays() {
    String job = "e2e_spark_" + System.nanoTime();
    PipelineOptions o =
        PipelineOptionsFactory.fromArgs(
                "--runner=SparkRunner",
                "--sparkMaster=local[2]",
                "--metricsSink=" + PrometheusMetricsSink.class.getName(),
                "--metricsPushPeriod=1",
                "--prometheusJobName=" + job,
                "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(),
                "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
                "--prometheusGroupingKey={\"instance\":\"spark\"}")
            .withValidation()
            .create();
    PipelineResult.State state = MetricsPipelines.everyKind(Pipeline.create(o), 1000).run().waitUntilFinish();
    assertEquals(PipelineResult.State.DONE, state);

    String prom = Servers.prometheus();
    String ns = "namespace=\"" + MetricsPipelines.NS + "\",result=\"attempted\"";
    // Remote-write: samples without an instance label; through the gateway: instance="spark".
    String rw = "{job=\"" + job + "\"," + ns + ",instance=\"\"}";
    String gw = "{job=\"" + job + "\"," + ns + ",instance=\"spark\"}";
    for (String sel : new String[] {rw, gw}) {
      awaitValue(prom, "beam_elements_total" + sel, 1000, 90);
      awaitValue(prom, "beam_element_value_distribution_sum" + sel, 500500, 30);
      awaitValue(prom, "beam_max_element_gauge" + sel, 1000, 30);
      List<Servers.Sample> parity = await(prom, "beam_parity_string_set_info" + sel, r -> r.size() == 2, 30);
      assertEquals(2, parity.size());
    }
  }
}
