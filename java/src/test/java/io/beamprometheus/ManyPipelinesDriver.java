package io.beamprometheus;

import io.beamprometheus.e2e.ManyPipelinesE2ETest;
import org.apache.beam.runners.core.metrics.MetricsContainerStepMap;
import org.apache.beam.runners.core.metrics.MetricsPusher;
import org.apache.beam.runners.direct.DirectOptions;
import org.apache.beam.runners.direct.DirectRunner;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.ParDo;

/**
 * One pipeline of {@link ManyPipelinesE2ETest}, loaded by a class loader of its own (with this
 * package's classes, as a Flink job's loader has the job jar's): a direct-runner pipeline counts
 * its elements into a {@link MetricsContainerStepMap}, and Beam's own {@link MetricsPusher} pushes
 * that map through {@link PrometheusMetricsSink} every second until the pipeline is done, as the
 * Flink and Spark runners do. Nobody closes the sink: its idle expiry has to end the exporter.
 */
public final class ManyPipelinesDriver {
  private ManyPipelinesDriver() {}

  /** Runs pipeline {@code job} and returns once its exporter has closed (bounded by maxWaitMillis). */
  public static void run(String job, String pushgateway, String remoteWrite, String libraryPath, int elements, long maxWaitMillis)
      throws Exception {
    PrometheusExporterOptions o = PipelineOptionsFactory.create().as(PrometheusExporterOptions.class);
    o.setRunner(DirectRunner.class);
    o.as(DirectOptions.class).setBlockOnRun(false);
    o.setPrometheusJobName(job);
    o.setPrometheusPushgatewayUrl(pushgateway);
    o.setPrometheusRemoteWriteUrl(remoteWrite);
    o.setPrometheusDeleteOnEnd(true);
    o.setPrometheusStaleOnEnd(true);
    o.setPrometheusIdleCloseSeconds(2L); // the least for a 1 s push period
    o.setPrometheusSelfMetrics(false);
    o.setPrometheusGroupingKey(java.util.Collections.singletonMap("instance", "many-pipelines"));
    if (libraryPath != null) {
      o.setPrometheusNativeLibraryPath(libraryPath);
    }
    MetricsOptions m = o.as(MetricsOptions.class);
    m.setMetricsSink(PrometheusMetricsSink.class);
    m.setMetricsPushPeriod(1L);

    MetricsContainerStepMap stepMap = new MetricsContainerStepMap();
    ManyPipelinesE2ETest.STEP_MAPS.put(job, stepMap);
    try {
      Pipeline p = Pipeline.create(o);
      java.util.List<Integer> xs = new java.util.ArrayList<>();
      for (int i = 0; i < elements; i++) {
        xs.add(i);
      }
      p.apply(Create.of(xs)).apply("Count", ParDo.of(new ManyPipelinesE2ETest.CountFn(job)));
      PipelineResult result = p.run();
      ManyPipelinesE2ETest.startOutsideTheJob(new MetricsPusher(stepMap, m, result));
      result.waitUntilFinish(org.joda.time.Duration.millis(maxWaitMillis));
      // MetricsPusher pushes once more when it sees the end, then nothing: the sink expires idle
      // and its exporter closes (staleness markers, group deletion).
      long deadline = System.currentTimeMillis() + maxWaitMillis;
      while (System.currentTimeMillis() < deadline && (NativeExporter.users(job) > 0 || NativeExporter.hooked())) {
        Thread.sleep(50);
      }
      if (NativeExporter.users(job) > 0 || NativeExporter.hooked()) {
        throw new AssertionError(job + ": the exporter did not close within " + maxWaitMillis + " ms after the pipeline ended");
      }
    } finally {
      ManyPipelinesE2ETest.STEP_MAPS.remove(job);
    }
  }
}
