package io.beamprometheus.matrix;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.e2e.Servers;
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
 * One Beam release per JVM (a Gradle task per release, build.gradle "version matrix"): a real
 * pipeline on that release's direct runner, exported by PrometheusMetricsPoller from the one jar
 * (compiled against Beam 2.70.0) to the real Prometheus, every kind the release offers asserted
 * with its exact value, and the kinds it lacks asserted absent.
 */
public class DirectRunnerMatrixTest {
  static final int N = 100;

  @Test
  public void pollerExportsEveryKindThisBeamOffers() {
    String beam = MatrixPipeline.beamVersion();
    // The classpath is the release the task names, not the Beam the jar was compiled against.
    assertEquals(System.getProperty("beamprometheus.matrix.beam"), beam);
    String job = "matrix_direct_" + beam.replace('.', '_') + "_" + System.nanoTime();
    PipelineOptions o =
        PipelineOptionsFactory.fromArgs(
                "--runner=DirectRunner",
                "--metricsPushPeriod=1",
                "--prometheusMetricValues=BOTH",
                "--prometheusJobName=" + job,
                "--prometheusRemoteWriteUrl=" + Servers.remoteWriteUrl())
            .withValidation()
            .create();
    Pipeline p = MatrixPipeline.everyKind(Pipeline.create(o), N);
    assertEquals(PipelineResult.State.DONE, PrometheusMetricsPoller.exportUntilFinish(p.run(), o));

    String prom = Servers.prometheus();
    for (String result : new String[] {"attempted", "committed"}) {
      String sel = "{job=\"" + job + "\",namespace=\"" + MatrixPipeline.NS + "\",step=\"" + MatrixPipeline.STEP + "\",result=\"" + result + "\"}";
      awaitValue(prom, "beam_elements_total" + sel, N, 30);
      awaitValue(prom, "beam_element_value_distribution_sum" + sel, N * (N + 1) / 2, 30);
      awaitValue(prom, "beam_element_value_distribution_count" + sel, N, 30);
      awaitValue(prom, "beam_element_value_distribution_min" + sel, 1, 30);
      awaitValue(prom, "beam_element_value_distribution_max" + sel, N, 30);
      awaitValue(prom, "beam_max_element_gauge" + sel, N, 30);
    }
    String attempted = "{job=\"" + job + "\",namespace=\"" + MatrixPipeline.NS + "\",result=\"attempted\"}";
    // Everything above arrived with the final export; so would any string set or trie.
    List<String> kinds = new java.util.ArrayList<>();
    if (MatrixPipeline.hasStringSets()) {
      List<Servers.Sample> parity = await(prom, "beam_parity_string_set_info" + attempted, r -> r.size() == 2, 30);
      Set<String> values = new HashSet<>();
      for (Servers.Sample s : parity) {
        assertEquals(s.toString(), 1.0, s.value, 0);
        values.add(s.label("value"));
      }
      assertEquals(new HashSet<>(Arrays.asList("odd", "even")), values);
      kinds.add("string set");
    }
    if (MatrixPipeline.hasBoundedTries()) {
      List<Servers.Sample> paths = await(prom, "beam_lineage_bounded_trie_info" + attempted, r -> r.size() == 2, 30);
      Set<String> trie = new HashSet<>();
      for (Servers.Sample s : paths) {
        trie.add(s.label("path") + "|" + s.label("truncated") + "|" + s.value);
      }
      assertEquals(new HashSet<>(Arrays.asList("source/odd|false|1.0", "source/even|false|1.0")), trie);
      kinds.add("bounded trie");
    }
    // Exactly the series this release can report: 6 per result for counter, distribution (4)
    // and gauge (+ its timestamp series), plus 2 string-set and 2 trie series where offered.
    int expected = 7 * 2 + (MatrixPipeline.hasStringSets() ? 4 : 0) + (MatrixPipeline.hasBoundedTries() ? 4 : 0);
    await(prom, "{job=\"" + job + "\",namespace=\"" + MatrixPipeline.NS + "\"}", r -> r.size() == expected, 30);
    System.err.println("Beam " + beam + " direct runner: counter, distribution, gauge" + (kinds.isEmpty() ? "" : ", " + String.join(", ", kinds)) + " exported");
  }
}
