package io.beamprometheus.matrix;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsSink;
import io.beamprometheus.e2e.Servers;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * One runner/engine/Beam combination per JVM (build.gradle "version matrix"): a real pipeline on
 * the Flink runner (embedded) or the Spark runner (local[2]), whose MetricsPusher drives
 * PrometheusMetricsSink, exporting both ways (remote write, and Pushgateway scraped by
 * Prometheus); every kind the release offers asserted with its exact value.
 */
public class RunnerSinkMatrixTest {
  static final int N = 200;

  /** The engine's own version, read from its classes: Flink's EnvironmentInformation, Spark's package object. */
  static String engineVersion(String runner) throws ReflectiveOperationException {
    if (runner.equals("flink")) {
      return (String) Class.forName("org.apache.flink.runtime.util.EnvironmentInformation").getMethod("getVersion").invoke(null);
    }
    Class<?> pkg = Class.forName("org.apache.spark.package$");
    return (String) pkg.getMethod("SPARK_VERSION").invoke(pkg.getField("MODULE$").get(null));
  }

  @Test
  public void metricsPusherDrivesTheSinkBothWays() throws Exception {
    String beam = MatrixPipeline.beamVersion();
    String runner = System.getProperty("beamprometheus.matrix.runner");
    String engine = System.getProperty("beamprometheus.matrix.engine");
    assertEquals(System.getProperty("beamprometheus.matrix.beam"), beam);
    String actualEngine = engineVersion(runner);
    assertTrue(runner + " " + actualEngine + " is not " + engine, actualEngine.equals(engine) || actualEngine.startsWith(engine + "."));
    String job = "matrix_" + runner + "_" + beam.replace('.', '_') + "_" + System.nanoTime();
    List<String> args = new ArrayList<>();
    if (runner.equals("flink")) {
      args.addAll(Arrays.asList("--runner=FlinkRunner", "--flinkMaster=[local]", "--parallelism=1"));
    } else {
      args.addAll(Arrays.asList("--runner=SparkRunner", "--sparkMaster=local[2]"));
    }
    args.addAll(Arrays.asList(
        "--metricsSink=" + PrometheusMetricsSink.class.getName(),
        "--metricsPushPeriod=1",
        "--prometheusJobName=" + job,
        "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl(),
        "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
        "--prometheusGroupingKey={\"instance\":\"matrix\"}"));
    PipelineOptions o = PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).withValidation().create();
    assertEquals(PipelineResult.State.DONE, MatrixPipeline.everyKind(Pipeline.create(o), N).run().waitUntilFinish());

    String prom = Servers.prometheus();
    String ns = "job=\"" + job + "\",namespace=\"" + MatrixPipeline.NS + "\",result=\"attempted\"";
    // Remote write: no instance label; through the gateway: instance="matrix".
    for (String sel : new String[] {"{" + ns + ",instance=\"\"}", "{" + ns + ",instance=\"matrix\"}"}) {
      awaitValue(prom, "beam_elements_total" + sel, N, 90);
      awaitValue(prom, "beam_element_value_distribution_sum" + sel, N * (N + 1) / 2, 30);
      awaitValue(prom, "beam_element_value_distribution_count" + sel, N, 30);
      awaitValue(prom, "beam_element_value_distribution_min" + sel, 1, 30);
      awaitValue(prom, "beam_element_value_distribution_max" + sel, N, 30);
      awaitValue(prom, "beam_max_element_gauge" + sel, N, 30);
      if (MatrixPipeline.hasStringSets()) {
        List<Servers.Sample> parity = await(prom, "beam_parity_string_set_info" + sel, r -> r.size() == 2, 30);
        Set<String> values = new HashSet<>();
        parity.forEach(s -> values.add(s.label("value") + "|" + s.value));
        assertEquals(new HashSet<>(Arrays.asList("odd|1.0", "even|1.0")), values);
      }
      if (MatrixPipeline.hasBoundedTries()) {
        List<Servers.Sample> paths = await(prom, "beam_lineage_bounded_trie_info" + sel, r -> r.size() == 2, 30);
        Set<String> trie = new HashSet<>();
        paths.forEach(s -> trie.add(s.label("path") + "|" + s.label("truncated") + "|" + s.value));
        assertEquals(new HashSet<>(Arrays.asList("source/odd|false|1.0", "source/even|false|1.0")), trie);
      }
    }
    System.err.println("Beam " + beam + " " + runner + " " + actualEngine + ": sink exported counter, distribution, gauge"
        + (MatrixPipeline.hasStringSets() ? ", string set" : "") + (MatrixPipeline.hasBoundedTries() ? ", bounded trie" : "") + " both ways");
  }
}
