package io.beamprometheus.cluster;

import java.util.Arrays;
import org.apache.flink.client.deployment.application.ApplicationClusterEntryPoint;
import org.apache.flink.client.program.PackagedProgram;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.GlobalConfiguration;
import org.apache.flink.runtime.entrypoint.ClusterEntrypoint;
import org.apache.flink.runtime.resourcemanager.StandaloneResourceManagerFactory;

/**
 * Test harness: a Flink application cluster (the pipeline's main() runs inside the JobManager),
 * as flink-container's StandaloneApplicationClusterEntryPoint starts one; that module is not in
 * the registry this project builds from, its base class (flink-clients) is. Arguments: the
 * configuration directory, the main class, its arguments.
 */
public final class FlinkApplicationEntrypoint extends ApplicationClusterEntryPoint {
  private FlinkApplicationEntrypoint(Configuration configuration, PackagedProgram program) {
    super(configuration, program, StandaloneResourceManagerFactory.getInstance());
  }

  public static void main(String[] args) throws Exception {
    Configuration conf = GlobalConfiguration.loadConfiguration(args[0]);
    PackagedProgram program =
        PackagedProgram.newBuilder()
            .setEntryPointClassName(args[1])
            .setArguments(Arrays.copyOfRange(args, 2, args.length))
            .setConfiguration(conf)
            .build();
    configureExecution(conf, program);
    ClusterEntrypoint.runClusterEntrypoint(new FlinkApplicationEntrypoint(conf, program));
  }
}
