package io.beamprometheus;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Issue 19 item 3: no lock held across a network wait. A JVM with two users of one exporter and
 * a receiver that accepts and never answers: while one user's release flushes, another pipeline's
 * acquire returns at once, and System.exit ends the JVM within the shutdown hook's 10 s budget.
 */
public class ExitBudgetTest {
  /** Accepts connections and holds them without a byte of answer. */
  static final class HungReceiver implements AutoCloseable {
    final ServerSocket server;
    final List<Socket> held = new ArrayList<>();

    HungReceiver() throws Exception {
      server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
      Thread t =
          new Thread(
              () -> {
                while (!server.isClosed()) {
                  try {
                    Socket s = server.accept();
                    synchronized (held) {
                      held.add(s);
                    }
                  } catch (Exception e) {
                    return;
                  }
                }
              },
              "hung-receiver");
      t.setDaemon(true);
      t.start();
    }

    @Override
    public void close() throws Exception {
      server.close();
      synchronized (held) {
        for (Socket s : held) {
          s.close();
        }
      }
    }
  }

  /** The child JVM: args[0] is the hung receiver's port. */
  public static void main(String[] args) throws Exception {
    String url = "http://127.0.0.1:" + args[0] + "/api/v1/write";
    PrometheusExporterOptions shared =
        PipelineOptionsFactory.fromArgs("--prometheusRemoteWriteUrl=" + url, "--prometheusJobName=exit_budget")
            .as(PrometheusExporterOptions.class);
    long first = NativeExporter.acquire(shared);
    long second = NativeExporter.acquire(shared);
    if (first != second) {
      throw new AssertionError("equal options did not share an exporter");
    }
    ContractWriter w = new ContractWriter();
    w.u32(0);
    // Self-metrics make even an empty snapshot a request, which the receiver never answers.
    NativeExporter.export(first, w.snapshot(System.currentTimeMillis()));
    Thread releasing = new Thread(() -> NativeExporter.release(first, NativeExporter.SHUTDOWN_FLUSH_MILLIS), "releasing");
    releasing.setDaemon(true);
    releasing.start();
    Thread.sleep(500);
    PrometheusExporterOptions other =
        PipelineOptionsFactory.fromArgs("--prometheusRemoteWriteUrl=" + url, "--prometheusJobName=exit_budget_other")
            .as(PrometheusExporterOptions.class);
    Thread acquiring =
        new Thread(
            () -> {
              long t0 = System.nanoTime();
              NativeExporter.acquire(other);
              System.out.println("ACQUIRE_MS " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
            },
            "acquiring");
    acquiring.setDaemon(true);
    acquiring.start();
    acquiring.join(2_000);
    // Exit while the first user's flush still waits on the receiver.
    System.out.println("EXIT");
    System.out.flush();
    System.exit(0);
  }

  @Test(timeout = 60_000)
  public void exitWithinTheBudgetWhileAUserFlushesAgainstAHungReceiver() throws Exception {
    try (HungReceiver receiver = new HungReceiver()) {
      String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
      String cp = System.getProperty("beamprometheus.testClasspath");
      assertNotNull("build.gradle passes the test classpath", cp);
      Process p =
          new ProcessBuilder(java, "-cp", cp, ExitBudgetTest.class.getName(), String.valueOf(receiver.server.getLocalPort()))
              .redirectErrorStream(true)
              .start();
      long acquireMs = -1;
      long exitAt = -1;
      try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          if (line.startsWith("ACQUIRE_MS ")) {
            acquireMs = Long.parseLong(line.substring(11).trim());
          } else if (line.equals("EXIT")) {
            exitAt = System.nanoTime();
          }
        }
      }
      assertTrue("the child JVM ended", p.waitFor(40, TimeUnit.SECONDS));
      long exitMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - exitAt);
      assertEquals(0, p.exitValue());
      assertTrue("the child never reached System.exit", exitAt > 0);
      System.out.println("acquire during another user's flush: " + acquireMs + " ms; exit: " + exitMs + " ms");
      assertTrue("acquire waited " + acquireMs + " ms (-1: longer than 2 s) behind another user's flush", acquireMs >= 0 && acquireMs < 2_000);
      // The hook's budget, plus JVM teardown.
      assertTrue("exit took " + exitMs + " ms", exitMs < NativeExporter.SHUTDOWN_FLUSH_MILLIS + 2_500);
    }
  }
}
