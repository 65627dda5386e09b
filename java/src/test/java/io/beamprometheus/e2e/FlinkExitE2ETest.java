package io.beamprometheus.e2e;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsPoller;
import io.beamprometheus.PrometheusMetricsSink;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptions;
import org.junit.Test;

/**
 * A batch pipeline on the Flink runner whose JVM exits as soon as {@code main} returns. Beam's
 * Flink runner starts MetricsPusher only once the job has ended; its push of the final values runs
 * on a daemon thread and races the exit, which closes the exporters. Here the sink's first push
 * is held back for a second (a cold JVM, a loaded machine), and the count must still reach
 * Prometheus: through the poller's finish, and, for a {@code main} without the poller, through
 * the exit hook.
 */
public class FlinkExitE2ETest {
  /** A sink whose first push comes a second late, as on a cold or busy JVM. */
  public static final class LateFirstPushSink extends PrometheusMetricsSink {
    /** Set as the first push is handed to the exporter. */
    static volatile boolean pushed;
    private boolean late = true;

    public LateFirstPushSink(MetricsOptions options) {
      super(options);
    }

    @Override
    public void writeMetrics(MetricQueryResults results) {
      synchronized (this) {
        if (late) {
          late = false;
          try {
            Thread.sleep(1_000);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
        }
      }
      // Before the push: the poller's wait ends in super's finally, which must find it set.
      pushed = true;
      super.writeMetrics(results);
    }
  }

  /** The child JVM: args = "poller" or "plain", job name, remote-write URL. */
  public static void main(String[] args) {
    PipelineOptions o = FlinkSinkE2ETest.options(args[1], "--prometheusRemoteWriteUrl=" + args[2]);
    o.as(MetricsOptions.class).setMetricsSink(LateFirstPushSink.class);
    Pipeline p = MetricsPipelines.everyKind(Pipeline.create(o), 1000);
    PipelineResult result = p.run();
    PipelineResult.State state =
        args[0].equals("poller") ? PrometheusMetricsPoller.exportUntilFinish(result, o) : result.waitUntilFinish();
    // With the poller, its finish returns after the sink's push, not merely before the exit hook.
    System.out.println("PUSHED " + LateFirstPushSink.pushed);
    System.out.println("STATE " + state);
    System.out.flush();
    System.exit(0);
  }

  @Test(timeout = 240_000)
  public void theFinalPushOfExportUntilFinishIsNotLostAtExit() throws Exception {
    exitsWithTheFinalCount("poller");
  }

  @Test(timeout = 240_000)
  public void theFinalPushIsNotLostAtExitWithoutThePoller() throws Exception {
    exitsWithTheFinalCount("plain");
  }

  private static void exitsWithTheFinalCount(String mode) throws Exception {
    String job = "e2e_flink_exit_" + mode + "_" + System.nanoTime();
    String cp = System.getProperty("beamprometheus.testClasspath");
    assertNotNull("build.gradle passes the test classpath", cp);
    List<String> cmd = new ArrayList<>();
    cmd.add(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
    // Flink needs the JDK's modules opened as this JVM has them (build.gradle's jdkOpens).
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (a.startsWith("--add-opens") || a.startsWith("--add-exports")) {
        cmd.add(a);
      }
    }
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
    cmd.add("-cp");
    cmd.add(cp);
    cmd.add(FlinkExitE2ETest.class.getName());
    cmd.add(mode);
    cmd.add(job);
    cmd.add(Servers.remoteWriteUrl());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    // Reading to the end waits for the child: a hung one is ended, bounded.
    Thread watchdog =
        new Thread(
            () -> {
              try {
                if (!p.waitFor(150, TimeUnit.SECONDS)) {
                  p.destroyForcibly();
                }
              } catch (InterruptedException e) {
                p.destroyForcibly();
              }
            });
    watchdog.setDaemon(true);
    watchdog.start();
    List<String> output = new ArrayList<>();
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        if (output.size() < 300) {
          output.add(line);
        }
      }
    }
    assertTrue("the child JVM ended", p.waitFor(120, TimeUnit.SECONDS));
    String out = String.join("\n", output);
    assertEquals("child exit code; output:\n" + out, 0, p.exitValue());
    assertTrue(out, output.contains("STATE DONE"));
    if (mode.equals("poller")) {
      assertTrue("exportUntilFinish returned before the sink's push\n" + out, output.contains("PUSHED true"));
    }
    // The wait saw the push; it did not merely run out.
    assertFalse(out, out.contains("did not push") || out.contains("exits before Beam's MetricsPusher pushed"));
    Servers.awaitValue(Servers.prometheus(), "beam_elements_total" + FlinkSinkE2ETest.sel(job, FlinkSinkE2ETest.COUNT_STEP), 1000, 60);
  }
}
