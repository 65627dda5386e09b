package io.beamprometheus;

import java.util.Collections;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsRegistrar;

/** Registers {@link PrometheusExporterOptions} so that {@code --help} lists them. */
public class PrometheusOptionsRegistrar implements PipelineOptionsRegistrar {
  @Override
  public Iterable<Class<? extends PipelineOptions>> getPipelineOptions() {
    return Collections.singletonList(PrometheusExporterOptions.class);
  }
}
