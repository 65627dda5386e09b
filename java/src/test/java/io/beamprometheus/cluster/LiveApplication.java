package io.beamprometheus.cluster;

import java.nio.file.Paths;
import java.util.Arrays;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;

/**
 * The user program of the application-mode test: LivePipeline on the Flink runner from inside
 * the JobManager ({@code --flinkMaster} left at its default, [auto]). Arguments: the tally file,
 * then pipeline options.
 */
public final class LiveApplication {
  private LiveApplication() {}

  public static void main(String[] args) {
    PipelineOptions o =
        PipelineOptionsFactory.fromArgs(Arrays.copyOfRange(args, 1, args.length)).withValidation().create();
    LivePipeline.build(Pipeline.create(o), FlinkClusterE2ETest.RATE, Paths.get(args[0])).run().waitUntilFinish();
  }
}
