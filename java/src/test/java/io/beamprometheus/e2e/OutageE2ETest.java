package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsSink;
import java.io.File;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Assume;
import org.junit.Test;

/**
 * The fault suite of issue 14, against the real Prometheus of tests/run_all.sh: outages of
 * several minutes time-compressed (every duration of the defaults divided by the same factor), a
 * JVM killed with SIGKILL during an outage with the disk buffer then restarted on the same
 * directory, a truncated buffer file, a full disk. Each asserts the exact samples Prometheus holds.
 */
public class OutageE2ETest {
  static PrometheusMetricsSink sink(String url, String job, String... extra) {
    List<String> args = new ArrayList<>(List.of(
        "--prometheusRemoteWriteUrl=" + url + "/api/v1/write", "--prometheusJobName=" + job,
        "--prometheusTimeoutMillis=1000", "--prometheusSelfMetrics=false"));
    args.addAll(List.of(extra));
    return new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).create().as(MetricsOptions.class));
  }

  static List<Double> range(int from, int to) {
    List<Double> l = new ArrayList<>();
    for (int i = from; i <= to; i++) {
      l.add((double) i);
    }
    return l;
  }

  /**
   * The case compressed 60 times: a 10-minute outage (here 10 s) while a pipeline pushes
   * every 5 s (here every 83 ms: 120 pushes), with the default 15-minute budget and 5 s backoff
   * scaled alike (15 s, 83 ms). Nothing is lost, every sample arrives in order.
   */
  @Test
  public void aTenMinuteOutageCompressedLosesNothing() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "outage10_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job, "--prometheusRetryBudgetMillis=15000",
            "--prometheusMinBackoffMillis=1", "--prometheusMaxBackoffMillis=83")) {
      proxy.mode(FaultProxy.Mode.RESET);
      long t0 = System.nanoTime();
      for (int i = 1; i <= 120; i++) {
        sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("outage10", Integer.toString(i)));
        Thread.sleep(83);
      }
      double outage = (System.nanoTime() - t0) / 1e9;
      Map<String, Long> during = sink.stats();
      assertTrue(during.toString(), during.get("samples_sent") == 0 && during.get("requests_failed") > 50);
      assertTrue("the outage took " + outage + " s, longer than the budget", outage < 14);
      proxy.mode(FaultProxy.Mode.FORWARD);
      assertTrue("not delivered: " + sink.stats(), sink.flush(30_000));
      String sel = "beam_outage10_total{job=\"" + job + "\"}";
      awaitValue(Servers.prometheus(), sel, 120, 30);
      assertEquals(range(1, 120), DeliveryFaultsE2ETest.rawSamples(sel));
      Map<String, Long> s = sink.stats();
      assertEquals(s.toString(), 0L, s.get("samples_rejected") + s.get("samples_dropped"));
      System.out.println("outage of " + outage + " s (10 minutes / 60): " + s.get("requests_failed") + " failed attempts, 120 of 120 samples delivered");
    }
  }

  /**
   * An outage twice as long as the budget (8 s against 4 s, pushes every 100 ms): the requests
   * older than the budget are given up, oldest first, and counted; Prometheus holds exactly the
   * rest, a contiguous and ordered tail ending with the newest value.
   */
  @Test
  public void anOutageLongerThanTheBudgetKeepsTheNewestTail() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "outage_budget_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job, "--prometheusRetryBudgetMillis=4000",
            "--prometheusMinBackoffMillis=1", "--prometheusMaxBackoffMillis=100")) {
      proxy.mode(FaultProxy.Mode.RESET);
      for (int i = 1; i <= 80; i++) {
        sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("budget", Integer.toString(i)));
        Thread.sleep(100);
      }
      proxy.mode(FaultProxy.Mode.FORWARD);
      assertTrue("not delivered: " + sink.stats(), sink.flush(30_000));
      Map<String, Long> s = sink.stats();
      long rejected = s.get("samples_rejected");
      assertTrue("the budget gave up too little or too much: " + s, rejected >= 30 && rejected <= 60);
      assertEquals(s.toString(), 80 - rejected, (long) s.get("samples_sent"));
      String sel = "beam_budget_total{job=\"" + job + "\"}";
      awaitValue(Servers.prometheus(), sel, 80, 30);
      assertEquals(range((int) rejected + 1, 80), DeliveryFaultsE2ETest.rawSamples(sel));
      System.out.println("8 s outage, 4 s budget: " + rejected + " of 80 samples given up, the newest " + (80 - rejected) + " delivered");
    }
  }

  /** A child JVM writing through a sink with a disk buffer (see {@link BufferedWriter}). */
  static final class Child implements AutoCloseable {
    final Process process;
    final StringBuffer out = new StringBuffer();

    Child(String url, String job, Path dir, int from, int to, String mode) throws Exception {
      String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
      process = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), BufferedWriter.class.getName(),
              url, job, dir.toString(), Integer.toString(from), Integer.toString(to), mode)
          .redirectErrorStream(true).start();
      Thread t = new Thread(() -> {
        try (InputStream in = process.getInputStream()) {
          byte[] b = new byte[4096];
          for (int n; (n = in.read(b)) > 0; ) {
            out.append(new String(b, 0, n, StandardCharsets.UTF_8));
          }
        } catch (Exception e) {
          out.append("reader: ").append(e);
        }
      }, "child-output");
      t.setDaemon(true);
      t.start();
    }

    void awaitLine(String prefix, int seconds) throws Exception {
      long deadline = System.currentTimeMillis() + seconds * 1000L;
      while (!out.toString().contains(prefix)) {
        if (System.currentTimeMillis() > deadline || !process.isAlive()) {
          Thread.sleep(200); // the last output of an ended child
          assertTrue("child did not print " + prefix + " within " + seconds + " s:\n" + out, out.toString().contains(prefix));
        }
        Thread.sleep(50);
      }
    }

    void send(String line) throws Exception {
      OutputStream o = process.getOutputStream();
      o.write((line + "\n").getBytes(StandardCharsets.UTF_8));
      o.flush();
    }

    int awaitExit(int seconds) throws Exception {
      assertTrue("child did not exit:\n" + out, process.waitFor(seconds, TimeUnit.SECONDS));
      return process.exitValue();
    }

    @Override
    public void close() throws Exception {
      process.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
    }
  }

  /** Writes counters from..to through a sink with --prometheusBufferDir, then holds or flushes. */
  public static final class BufferedWriter {
    public static void main(String[] a) throws Exception {
      PrometheusMetricsSink s = new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
          "--prometheusRemoteWriteUrl=" + a[0] + "/api/v1/write", "--prometheusJobName=" + a[1],
          "--prometheusBufferDir=" + a[2], "--prometheusSelfMetrics=false", "--prometheusTimeoutMillis=1000",
          "--prometheusMaxBackoffMillis=200").create().as(MetricsOptions.class));
      for (int i = Integer.parseInt(a[3]); i <= Integer.parseInt(a[4]); i++) {
        s.writeMetrics(PushgatewayLifecycleE2ETest.counters("crash", Integer.toString(i)));
        Thread.sleep(20);
      }
      // Every request is on disk once writeMetrics returned.
      System.out.println("WRITTEN " + s.stats());
      System.out.flush();
      if (a[5].equals("hold")) {
        Thread.sleep(120_000); // killed by the test long before
        System.exit(3);
      }
      if (a[5].equals("go")) {
        new java.io.BufferedReader(new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
      }
      boolean flushed = s.flush(30_000);
      System.out.println("FLUSHED " + flushed + " " + s.stats());
      s.close();
      System.exit(flushed ? 0 : 2);
    }
  }

  static String deadUrl() throws Exception {
    return "http://127.0.0.1:" + RestartE2ETest.freePort();
  }

  static List<Path> segments(Path dir) throws Exception {
    try (Stream<Path> s = Files.list(dir)) {
      return s.filter(p -> p.getFileName().toString().endsWith(".log")).sorted().collect(Collectors.toList());
    }
  }

  /** Writes 1..n during an outage, is killed with SIGKILL, and a new JVM on the directory writes n+1. */
  static void killedDuringAnOutage(String job, Path dir, int n) throws Exception {
    try (Child first = new Child(deadUrl(), job, dir, 1, n, "hold")) {
      first.awaitLine("WRITTEN", 60);
      // Another JVM (this one) cannot take the directory while the child holds it.
      try (PrometheusMetricsSink other = sink(deadUrl(), job, "--prometheusBufferDir=" + dir)) {
        org.junit.Assert.fail("a second exporter opened " + dir);
      } catch (IllegalArgumentException expected) {
        assertTrue(expected.getMessage(), expected.getMessage().startsWith("--prometheusBufferDir: '" + dir + "' is in use by another exporter (process "));
      }
      Thread.sleep(300); // mid-retry
      first.process.destroyForcibly(); // SIGKILL on Linux: no shutdown hook, no close
      assertEquals("killed by SIGKILL", 137, first.awaitExit(30));
      assertTrue(first.out.toString(), !first.out.toString().contains("FLUSHED"));
    }
  }

  @Test
  public void aJvmKilledDuringAnOutageDeliversItsHistoryAfterARestart() throws Exception {
    String job = "crash_" + System.nanoTime();
    Path dir = Files.createTempDirectory("buffer-crash");
    killedDuringAnOutage(job, dir, 20);
    assertTrue(segments(dir).toString(), !segments(dir).isEmpty());
    try (Child second = new Child(Servers.prometheus(), job, dir, 21, 21, "exit")) {
      assertEquals(second.out.toString(), 0, second.awaitExit(60));
      assertTrue(second.out.toString(), second.out.toString().contains("delivering first 20 requests"));
    }
    String sel = "beam_crash_total{job=\"" + job + "\"}";
    awaitValue(Servers.prometheus(), sel, 21, 30);
    // The history first, in order, once each; then the new run's value.
    assertEquals(range(1, 21), DeliveryFaultsE2ETest.rawSamples(sel));
    assertEquals("all delivered: nothing left to replay", List.of(), segments(dir));
    deleteTree(dir);
  }

  static void deleteTree(Path dir) throws Exception {
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : s.sorted(java.util.Comparator.reverseOrder()).collect(Collectors.toList())) {
        Files.delete(p);
      }
    }
  }

  @Test
  public void aTruncatedBufferFileLosesOnlyItsTornRecord() throws Exception {
    String job = "torn_" + System.nanoTime();
    Path dir = Files.createTempDirectory("buffer-torn");
    killedDuringAnOutage(job, dir, 10);
    List<Path> segs = segments(dir);
    Path last = segs.get(segs.size() - 1);
    long len = Files.size(last);
    // Power loss in the middle of the newest record.
    try (java.nio.channels.FileChannel c = java.nio.channels.FileChannel.open(last, java.nio.file.StandardOpenOption.WRITE)) {
      c.truncate(len - 7);
    }
    try (Child second = new Child(Servers.prometheus(), job, dir, 11, 11, "exit")) {
      assertEquals(second.out.toString(), 0, second.awaitExit(60));
      assertTrue(second.out.toString(), second.out.toString().contains("corrupt or truncated buffer file, truncated record"));
    }
    String sel = "beam_crash_total{job=\"" + job + "\"}";
    awaitValue(Servers.prometheus(), sel, 11, 30);
    List<Double> want = range(1, 9);
    want.add(11.0);
    assertEquals(want, DeliveryFaultsE2ETest.rawSamples(sel));
    deleteTree(dir);
  }

  /**
   * The buffer directory on a 12 KiB tmpfs (the lock file, the ledger and one page of records) (mounted here: needs root): once it is full, writes
   * fail, requests stay in memory (warned once), and when the receiver is back every sample
   * arrives, in order.
   */
  @Test
  public void aFullDiskKeepsRequestsInMemoryAndLosesNothing() throws Exception {
    Path dir = Files.createTempDirectory("buffer-full");
    Process m = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", dir.toString()).redirectErrorStream(true).start();
    String mountOut = new String(m.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    Assume.assumeTrue("a tmpfs cannot be mounted here (needs root): " + mountOut, m.waitFor(30, TimeUnit.SECONDS) && m.exitValue() == 0);
    URI prom = URI.create(Servers.prometheus());
    String job = "fulldisk_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort())) {
      proxy.mode(FaultProxy.Mode.RESET);
      try (Child c = new Child(proxy.url(), job, dir, 1, 60, "go")) {
        c.awaitLine("WRITTEN", 60);
        assertTrue(c.out.toString(), c.out.toString().contains("cannot write to --prometheusBufferDir (No space left on device"));
        // Warned once, not per request.
        assertEquals(c.out.toString(), 1, c.out.toString().split("cannot write to --prometheusBufferDir", -1).length - 1);
        proxy.mode(FaultProxy.Mode.FORWARD);
        c.send("go");
        assertEquals(c.out.toString(), 0, c.awaitExit(60));
      }
      String sel = "beam_crash_total{job=\"" + job + "\"}";
      awaitValue(Servers.prometheus(), sel, 60, 30);
      assertEquals(range(1, 60), DeliveryFaultsE2ETest.rawSamples(sel));
    } finally {
      new ProcessBuilder("umount", dir.toString()).start().waitFor(30, TimeUnit.SECONDS);
      deleteTree(dir);
    }
  }
}
