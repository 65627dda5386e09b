package io.beamprometheus;

import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Issue 19, from the review of item 3: the last user's release closes the exporter outside the
 * class lock, and an acquire with equal options in that window (a sink written again after its
 * idle expiry, or the next pipeline run with the same options) must not start a second exporter
 * of the same identity beside the closing one: with --prometheusBufferDir it was refused ("in use
 * by another exporter"), and with --prometheusDeleteOnEnd the old DELETE could land after the new
 * PUT. The acquire waits for the close instead (bounded by the close's own budget).
 */
public class ReleaseRaceTest {
  @Test(timeout = 60_000)
  public void anAcquireWhileEqualOptionsCloseWaitsForTheCloseAndGetsAFreshExporter() throws Exception {
    Path dir = Files.createTempDirectory("release-race");
    try (ExitBudgetTest.HungReceiver receiver = new ExitBudgetTest.HungReceiver()) {
      PrometheusExporterOptions o =
          PipelineOptionsFactory.fromArgs(
                  "--prometheusRemoteWriteUrl=http://127.0.0.1:" + receiver.server.getLocalPort() + "/api/v1/write",
                  "--prometheusJobName=release_race",
                  "--prometheusBufferDir=" + dir,
                  "--prometheusTimeoutMillis=500")
              .as(PrometheusExporterOptions.class);
      long first = NativeExporter.acquire(o);
      ContractWriter w = new ContractWriter();
      w.u32(0);
      // Self-metrics make even an empty snapshot a request, which the receiver never answers.
      NativeExporter.export(first, w.snapshot(System.currentTimeMillis()));
      AtomicBoolean closed = new AtomicBoolean();
      Thread releasing =
          new Thread(
              () -> {
                NativeExporter.release(first, 2_000);
                closed.set(true);
              },
              "releasing");
      releasing.start();
      Thread.sleep(300); // the release is now closing against the hung receiver
      assertFalse("still closing", closed.get());
      long second = NativeExporter.acquire(o); // before the fix: refused, the buffer dir still locked
      assertTrue("acquire returned before the closing exporter of equal options had closed", closed.get());
      assertNotEquals("a fresh exporter, not the closed one", first, second);
      NativeExporter.release(second, 100);
      releasing.join(5_000);
    } finally {
      io.beamprometheus.e2e.ManyPipelinesE2ETest.deleteTree(dir);
    }
  }
}
