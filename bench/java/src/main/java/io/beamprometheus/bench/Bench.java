package io.beamprometheus.bench;

import io.beamprometheus.JniProbe;
import io.beamprometheus.PrometheusExporterOptions;
import io.beamprometheus.PrometheusMetricsSink;
import io.prometheus.metrics.exporter.pushgateway.Format;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.options.PipelineOptionsFactory;

/**
 * The Java harness of the benchmarks (BENCHMARKS.md). Modes:
 *
 * <ul>
 *   <li>{@code encode OUT N...}: builds the workloads, writes OUT/snapshot-N.bin (the contract
 *       bytes the Rust bench reads) and OUT/enc/java-N-I.bin, times the pure-Java remote-write
 *       encoder;
 *   <li>{@code server OUT N...}: the whole writeMetrics call against the local servers (ours to
 *       the Pushgateway and by remote-write, the Java client to the Pushgateway, pure Java by
 *       remote-write), heap allocated per call, and the JNI crossing;
 *   <li>{@code memory OUT N PUSHES}: VmRSS of this JVM after each of PUSHES exports both ways.
 *   <li>{@code latency OUT N CALLS}: writeMetrics alone (no flush), as the runner's thread sees
 *       it, with the receivers up, down (a closed port) and hung (a socket that accepts and never
 *       answers): median and worst of CALLS calls after JIT warm-up.
 * </ul>
 *
 * <p>Every timing is a median of samples taken after warm-up; results are printed as
 * tab-separated lines that bench/report.py reads.
 */
public final class Bench {
  /** The timestamp of the snapshots written for the encode comparison (same in every language). */
  static final long T0 = 1_700_000_000_000L;

  private static final com.sun.management.ThreadMXBean THREADS =
      (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
  private static final HttpClient HTTP =
      HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();

  interface Op {
    void run() throws Exception;
  }

  static final class Timing {
    double median, p25, p75;
    int samples;
  }

  private static int samplesFor(int n) {
    String s = System.getenv("BENCH_SAMPLES");
    return s != null ? Integer.parseInt(s) : 11;
  }

  private static int perSample(int n) {
    return Math.max(1, 10_000 / n);
  }

  static Timing measure(int samples, int warmup, int perSample, Op op) throws Exception {
    double[] t = new double[samples];
    for (int i = 0; i < warmup + samples; i++) {
      long start = System.nanoTime();
      for (int k = 0; k < perSample; k++) op.run();
      double ns = (System.nanoTime() - start) / (double) perSample;
      if (i >= warmup) t[i - warmup] = ns;
    }
    return stats(t);
  }

  static Timing stats(double[] t) {
    double[] s = t.clone();
    Arrays.sort(s);
    Timing r = new Timing();
    r.median = s[(int) Math.round((s.length - 1) * 0.5)];
    r.p25 = s[(int) Math.round((s.length - 1) * 0.25)];
    r.p75 = s[(int) Math.round((s.length - 1) * 0.75)];
    r.samples = s.length;
    return r;
  }

  static void report(String impl, String op, int n, Timing t, String extra) {
    System.out.printf(
        "result\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%d\t%s%n", impl, op, n, t.median, t.p25, t.p75, t.samples, extra);
    System.out.flush();
  }

  static long allocated() {
    return THREADS.getThreadAllocatedBytes(Thread.currentThread().getId());
  }

  static int[] sizes(String[] args, int from) {
    int[] n = new int[args.length - from];
    for (int i = from; i < args.length; i++) n[i - from] = Integer.parseInt(args[i]);
    return n;
  }

  static int seriesOf(MetricQueryResults r) {
    int n = 0;
    for (JavaMapping.Family f : new JavaMapping("beam", "x").map(r)) n += f.samples.size();
    return n;
  }

  // ---------------------------------------------------------------- encode

  static void encode(Path out, int[] sizes) throws Exception {
    Path enc = out.resolve("enc");
    Files.createDirectories(enc);
    JavaRemoteWrite rw = new JavaRemoteWrite("bench", null);
    JavaMapping mapping = new JavaMapping("beam", "bench");
    Map<Integer, MetricQueryResults> workloads = new LinkedHashMap<>();
    for (int n : sizes) {
      MetricQueryResults r = Workload.create(n);
      workloads.put(n, r);
      Files.write(out.resolve("snapshot-" + n + ".bin"), JniProbe.encode(r, T0));
      List<byte[]> bodies = rw.encode(r, T0);
      for (int i = 0; i < bodies.size(); i++) {
        Files.write(enc.resolve("java-" + n + "-" + i + ".bin"), bodies.get(i));
      }
    }
    // JIT warm-up on the smaller workloads before anything is measured.
    warmUp(() -> rw.encode(workloads.get(sizes[0]), T0), 4000);
    for (int n : sizes) {
      MetricQueryResults r = workloads.get(n);
      List<JavaMapping.Family> mapped = mapping.map(r);
      int series = 0;
      for (JavaMapping.Family f : mapped) series += f.samples.size();
      int k = perSample(n);
      int s = samplesFor(n);
      String info = "series=" + series + ";metrics=" + Workload.metricCount(r);
      report("java", "encode_from_mapped", n, measure(s, 2, k, () -> JavaRemoteWrite.encode(mapped, T0)), info);
      report("java", "map_encode", n, measure(s, 2, k, () -> rw.encode(r, T0)), info);
      report("java", "map", n, measure(s, 2, k, () -> mapping.map(r)), info);
    }
  }

  static void warmUp(Op op, long millis) throws Exception {
    long end = System.currentTimeMillis() + millis;
    while (System.currentTimeMillis() < end) op.run();
  }

  // ---------------------------------------------------------------- servers

  static PrometheusExporterOptions options(String job, String rwUrl, String pgUrl, String... extra) {
    List<String> args = new ArrayList<>(List.of(extra));
    args.add("--prometheusJobName=" + job);
    args.add("--prometheusSelfMetrics=false");
    if (rwUrl != null) args.add("--prometheusRemoteWriteUrl=" + rwUrl);
    if (pgUrl != null) args.add("--prometheusPushgatewayUrl=" + pgUrl);
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).as(PrometheusExporterOptions.class);
  }

  static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) throw new IllegalStateException(name + " is not set: source tests/servers.sh and start_servers");
    return v;
  }

  static String get(String url) throws IOException, InterruptedException {
    HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() / 100 != 2) throw new IOException("GET " + url + ": HTTP " + r.statusCode() + " " + r.body());
    return r.body();
  }

  static final String PROTOBUF = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
  static final String TEXT = "text/plain; version=0.0.4; charset=utf-8";

  static void putRaw(String url, byte[] body, String contentType) throws IOException, InterruptedException {
    HttpRequest req =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(60))
            .header("Content-Type", contentType)
            .PUT(HttpRequest.BodyPublishers.ofByteArray(body))
            .build();
    HttpResponse<String> r = HTTP.send(req, HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() / 100 != 2) throw new IOException("PUT " + url + ": HTTP " + r.statusCode() + " " + r.body());
  }

  static void deleteGroup(String pg, String job) throws IOException, InterruptedException {
    HttpResponse<String> r =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(pg + "/metrics/job/" + job)).timeout(Duration.ofSeconds(60)).DELETE().build(),
            HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() / 100 != 2) throw new IOException("DELETE group " + job + ": HTTP " + r.statusCode());
  }

  /** One implementation of "writeMetrics as a runner sees it": the call and, for ours, the flush. */
  static final class Impl {
    final String name;
    final Op call;
    final Op after;
    final List<Double> times = new ArrayList<>();
    final List<Double> allocs = new ArrayList<>();

    Impl(String name, Op call, Op after) {
      this.name = name;
      this.call = call;
      this.after = after;
    }

    void once(boolean record) throws Exception {
      long a0 = allocated();
      long t0 = System.nanoTime();
      call.run();
      long t1 = System.nanoTime();
      long a1 = allocated();
      if (record) {
        times.add((double) (t1 - t0));
        allocs.add((double) (a1 - a0));
      }
      after.run();
    }
  }

  static void server(Path out, int[] sizes) throws Exception {
    String prom = env("BEAMPROM_PROMETHEUS_URL");
    String pg = env("BEAMPROM_PUSHGATEWAY_URL");
    String rwUrl = prom + "/api/v1/write";
    String pgAddress = pg.replaceFirst("^https?://", "");
    for (int n : sizes) {
      MetricQueryResults r = Workload.create(n);
      int series = seriesOf(r);
      String info = "series=" + series;
      String oursPgJob = "bench_ours_pg_" + n, oursRwJob = "bench_ours_rw_" + n, oursTextJob = "bench_ours_pgtext_" + n;
      String textJob = "bench_jcli_text_" + n, protoJob = "bench_jcli_proto_" + n, javaRwJob = "bench_java_rw_" + n;
      PrometheusMetricsSink oursPg = new PrometheusMetricsSink(options(oursPgJob, null, pg));
      PrometheusMetricsSink oursRw = new PrometheusMetricsSink(options(oursRwJob, rwUrl, null));
      PrometheusMetricsSink oursText = new PrometheusMetricsSink(options(oursTextJob, null, pg, "--prometheusPushgatewayFormat=TEXT"));
      JavaClientSink text = new JavaClientSink(pgAddress, textJob, Format.PROMETHEUS_TEXT);
      JavaClientSink proto = new JavaClientSink(pgAddress, protoJob, Format.PROMETHEUS_PROTOBUF);
      JavaRemoteWrite javaRw = new JavaRemoteWrite(javaRwJob, rwUrl);
      // The gateway's own share: our protobuf body of the same snapshot (written by the Rust
      // bench), PUT as it is.
      byte[] pgBody = Files.readAllBytes(out.resolve("enc").resolve("pg-" + n + ".pb"));
      byte[] pgText = Files.readAllBytes(out.resolve("enc").resolve("pg-" + n + ".txt"));
      String floorJob = "bench_floor_" + n, floorTextJob = "bench_floor_text_" + n;
      List<Impl> impls =
          List.of(
              new Impl("ours_pushgateway", () -> { oursPg.writeMetrics(r); flushOrFail(oursPg); }, () -> deleteGroup(pg, oursPgJob)),
              new Impl("ours_pushgateway_text", () -> { oursText.writeMetrics(r); flushOrFail(oursText); }, () -> deleteGroup(pg, oursTextJob)),
              new Impl("javaclient_pushgateway_text", () -> text.writeMetrics(r), () -> deleteGroup(pg, textJob)),
              new Impl("javaclient_pushgateway_protobuf", () -> proto.writeMetrics(r), () -> deleteGroup(pg, protoJob)),
              new Impl("gateway_alone_protobuf", () -> putRaw(pg + "/metrics/job/" + floorJob, pgBody, PROTOBUF), () -> deleteGroup(pg, floorJob)),
              new Impl("gateway_alone_text", () -> putRaw(pg + "/metrics/job/" + floorTextJob, pgText, TEXT), () -> deleteGroup(pg, floorTextJob)),
              new Impl("ours_remote_write", () -> { oursRw.writeMetrics(r); flushOrFail(oursRw); }, () -> {}),
              new Impl("java_remote_write", () -> javaRw.write(r), () -> {}));
      // Warm-up; the first round also checks that every implementation delivered the same series.
      int warm = n >= 100_000 ? 2 : n >= 10_000 ? 3 : 10;
      for (int w = 0; w < warm; w++) {
        for (Impl i : impls) {
          if (w == 0 && i.name.contains("pushgateway")) {
            i.call.run();
          } else {
            i.once(false);
          }
        }
        if (w == 0) {
          checkGateway(pg, series, oursPgJob, textJob, protoJob, oursTextJob, n);
          for (String job : List.of(oursPgJob, textJob, protoJob, oursTextJob)) deleteGroup(pg, job);
          checkPrometheus(prom, series, oursRwJob, javaRwJob, n);
        }
      }
      checkBalanced(impls.size());
      int reps = Integer.parseInt(System.getenv().getOrDefault("BENCH_WHOLE_REPS", n >= 100_000 ? "16" : n >= 10_000 ? "32" : "48"));
      // Between rounds, a pause (untimed) that lets the servers settle: the first call of a round
      // follows that pause, not the previous round's last call. Each implementation is first
      // once per cycle, so each gets the pause once, as each gets every other one.
      long pauseMillis = n >= 100_000 ? 1000 : n >= 10_000 ? 250 : 100;
      for (int rep = 0; rep < reps; rep++) {
        // Interleaved, so drift hits every implementation alike; in the order of a balanced
        // Latin square, so the load a push leaves behind (Prometheus ingesting a remote-write,
        // the gateway's scrape, the JVM's garbage) falls on every implementation alike: each
        // follows each other one once in every impls.size() rounds.
        Thread.sleep(pauseMillis);
        for (int k : balancedOrder(impls.size(), rep)) impls.get(k).once(true);
      }
      for (Impl i : impls) {
        report(i.name, "whole_call", n, stats(unbox(i.times)), info);
        // Every timed call in round order, for a closer look than the median (bench/out/results.tsv).
        System.out.printf("times\t%s\t%d\t%s%n", i.name, n, i.times.stream().map(t -> String.format(java.util.Locale.ROOT, "%.2f", t / 1e6)).collect(java.util.stream.Collectors.joining(",")));
        System.out.printf("alloc\t%s\t%d\t%.0f%n", i.name, n, stats(unbox(i.allocs)).median);
      }
      jni(n, r, info);
    }
  }

  /**
   * Round {@code round} of a Williams design: a Latin square whose rows (for an even {@code n};
   * for an odd one, the rows and their reverses) put every ordered pair side by side exactly once.
   * Shifting one order's start each round would not: the same implementation would still come
   * before each one, but at the wrap. Across rounds, the last of one and the first of the next
   * are not balanced: a pause between rounds stands between them (see server()).
   */
  static int[] balancedOrder(int n, int round) {
    int[] first = new int[n];
    for (int k = 1, lo = 1, hi = n - 1; k < n; k++) first[k] = k % 2 == 1 ? lo++ : hi--;
    int shift = round % n;
    boolean reverse = n % 2 == 1 && (round / n) % 2 == 1;
    int[] order = new int[n];
    for (int k = 0; k < n; k++) order[reverse ? n - 1 - k : k] = (first[k] + shift) % n;
    return order;
  }

  /** Fails unless every ordered pair is side by side exactly once per full cycle of rounds. */
  static void checkBalanced(int n) {
    int rounds = n % 2 == 0 ? n : 2 * n;
    int[][] seen = new int[n][n];
    for (int r = 0; r < rounds; r++) {
      int[] o = balancedOrder(n, r);
      if (Arrays.stream(o).distinct().count() != n) throw new IllegalStateException("round " + r + " is not an order: " + Arrays.toString(o));
      for (int k = 1; k < n; k++) seen[o[k - 1]][o[k]]++;
    }
    for (int a = 0; a < n; a++) {
      for (int b = 0; b < n; b++) {
        if (a != b && seen[a][b] != (n % 2 == 0 ? 1 : 2)) throw new IllegalStateException(a + " before " + b + ": " + seen[a][b] + " times");
      }
    }
  }

  static void flushOrFail(PrometheusMetricsSink sink) {
    if (!sink.flush(120_000)) throw new IllegalStateException("flush timed out");
    Map<String, Long> st = sink.stats();
    if (st.get("requests_failed") + st.get("pushes_failed") + st.get("samples_rejected") + st.get("samples_dropped") > 0) {
      throw new IllegalStateException("delivery failed: " + st);
    }
  }

  static double[] unbox(List<Double> l) {
    double[] d = new double[l.size()];
    for (int i = 0; i < d.length; i++) d[i] = l.get(i);
    return d;
  }

  /** The gateway holds the same series for each pusher: same lines, job label aside. */
  static void checkGateway(String pg, int series, String ours, String text, String proto, String oursText, int n) throws Exception {
    Map<String, TreeSet<String>> byJob = new HashMap<>();
    for (String line : get(pg + "/metrics").split("\n")) {
      if (line.startsWith("#") || line.startsWith("push_") || !line.contains("job=\"bench_")) continue;
      int open = line.indexOf('{'), close = line.lastIndexOf('}');
      String job = null;
      List<String> kept = new ArrayList<>();
      for (String l : splitLabels(line.substring(open + 1, close))) {
        if (l.startsWith("job=")) job = l.substring(5, l.length() - 1);
        else kept.add(l);
      }
      kept.sort(null);
      byJob.computeIfAbsent(job, j -> new TreeSet<>()).add(line.substring(0, open) + "{" + String.join(",", kept) + "}" + line.substring(close + 1));
    }
    TreeSet<String> a = byJob.getOrDefault(ours, new TreeSet<>());
    for (String other : List.of(text, proto, oursText)) {
      TreeSet<String> b = byJob.getOrDefault(other, new TreeSet<>());
      boolean same = a.equals(b) && a.size() == series;
      System.out.printf("check\tpushgateway %s vs %s\t%d\t%s\tseries=%d;%s=%d;%s=%d%n", ours, other, n, same ? "equivalent" : "DIFFERENT", series, ours, a.size(), other, b.size());
      if (!same) {
        TreeSet<String> onlyA = new TreeSet<>(a);
        onlyA.removeAll(b);
        TreeSet<String> onlyB = new TreeSet<>(b);
        onlyB.removeAll(a);
        System.err.println("only ours: " + (onlyA.isEmpty() ? "-" : onlyA.first()) + "\nonly " + other + ": " + (onlyB.isEmpty() ? "-" : onlyB.first()));
        throw new IllegalStateException("the Pushgateway holds different series for " + ours + " and " + other);
      }
    }
  }

  static List<String> splitLabels(String s) {
    List<String> out = new ArrayList<>();
    int start = 0;
    boolean quoted = false;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\') i++;
      else if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) {
        out.add(s.substring(start, i));
        start = i + 1;
      }
    }
    if (start < s.length()) out.add(s.substring(start));
    return out;
  }

  /** Prometheus received as many series from ours as from the pure-Java path (and no fewer than mapped). */
  static void checkPrometheus(String prom, int series, String ours, String javaJob, int n) throws Exception {
    long[] counts = new long[2];
    String[] jobs = {ours, javaJob};
    for (int i = 0; i < 2; i++) {
      String q = URLEncoder.encode("count({job=\"" + jobs[i] + "\"})", StandardCharsets.UTF_8);
      String body = get(prom + "/api/v1/query?query=" + q);
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"value\":\\[[0-9.]+,\"([0-9]+)\"\\]").matcher(body);
      counts[i] = m.find() ? Long.parseLong(m.group(1)) : -1;
    }
    boolean same = counts[0] == series && counts[1] == series;
    System.out.printf("check\tprometheus %s vs %s\t%d\t%s\tseries=%d;%s=%d;%s=%d%n", ours, javaJob, n, same ? "equivalent" : "DIFFERENT", series, ours, counts[0], javaJob, counts[1]);
    if (!same) throw new IllegalStateException("Prometheus holds different series counts for " + ours + " and " + javaJob);
  }

  // ---------------------------------------------------------------- JNI crossing

  static int closedPort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  static void jni(int n, MetricQueryResults r, String info) throws Exception {
    // An exporter whose receiver is a closed loopback port: export does all its native work
    // (decode, map, encode, queue) and the worker only backs off, dropping beyond the buffer.
    PrometheusExporterOptions o = options("bench_jni_" + n, "http://127.0.0.1:" + closedPort() + "/api/v1/write", null);
    o.setPrometheusMaxBufferedSamples(300_000L);
    long handle = JniProbe.handle(o);
    byte[] bytes = JniProbe.encode(r, System.currentTimeMillis());
    byte[] badSame = bytes.clone();
    badSame[0] = 'X'; // bad magic: the native side copies the array, then refuses it at byte 0
    byte[] badTiny = Arrays.copyOf(badSame, 16);
    int k = perSample(n), s = samplesFor(n);
    String inf = info + ";snapshot_bytes=" + bytes.length;
    // As the sink encodes: its writer, with the string table, kept from one snapshot to the next.
    Object writer = JniProbe.writer();
    report("ours", "java_snapshot_encode", n, measure(s, 2, k, () -> JniProbe.encode(writer, r, T0)), inf);
    report("ours", "jni_export_call", n, measure(s, 2, 1000, () -> refused(handle, badTiny)), inf);
    report("ours", "jni_export_copy", n, measure(s, 2, k, () -> refused(handle, badSame)), inf);
    report("ours", "jni_stats_call", n, measure(s, 2, 1000, () -> JniProbe.stats(handle)), inf);
    report("ours", "jni_export_full", n, measure(s, 2, k, () -> JniProbe.export(handle, bytes)), inf);
  }

  static void refused(long handle, byte[] b) {
    try {
      JniProbe.export(handle, b);
      throw new AssertionError("a bad buffer was accepted");
    } catch (IllegalArgumentException expected) {
      // the cost of the crossing and the copy, plus the exception
    }
  }

  // ---------------------------------------------------------------- memory

  static long vmRssKib() throws IOException {
    for (String l : Files.readAllLines(Paths.get("/proc/self/status"))) {
      if (l.startsWith("VmRSS:")) return Long.parseLong(l.replaceAll("[^0-9]", ""));
    }
    return -1;
  }

  static void memory(Path out, int n, int pushes) throws Exception {
    String prom = env("BEAMPROM_PROMETHEUS_URL");
    String pg = env("BEAMPROM_PUSHGATEWAY_URL");
    MetricQueryResults r = Workload.create(n);
    String job = "bench_rss_jvm";
    PrometheusExporterOptions o = options(job, prom + "/api/v1/write", pg);
    // Prometheus here also scrapes the gateway (honor_labels): without a grouping label of its
    // own, the scraped copy would be the remote-written series, and the scrape's later samples
    // make remote-write's "out of order" (see BENCHMARKS.md).
    o.setPrometheusGroupingKey(Map.of("instance", "bench"));
    PrometheusMetricsSink sink = new PrometheusMetricsSink(o);
    for (int i = 1; i <= pushes; i++) {
      sink.writeMetrics(r);
      flushOrFail(sink);
      System.gc(); // the heap is fixed and pre-touched; what moves is native memory
      System.out.printf("rss\tjvm\t%d\t%d\t%d%n", n, i, vmRssKib());
      System.out.flush();
    }
    deleteGroup(pg, job + "/instance/bench");
  }

  // ---------------------------------------------------------------- writeMetrics latency

  /**
   * A loopback receiver that accepts connections and never answers (nor reads): a hung
   * Prometheus or Pushgateway. Closed, with every connection it holds, by {@link #close}.
   */
  static final class HungServer implements AutoCloseable {
    final ServerSocket socket;
    final List<java.net.Socket> held = java.util.Collections.synchronizedList(new ArrayList<>());
    final Thread acceptor;

    HungServer() throws IOException {
      socket = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());
      acceptor =
          new Thread(
              () -> {
                while (!socket.isClosed()) {
                  try {
                    held.add(socket.accept());
                  } catch (IOException closed) {
                    return;
                  }
                }
              },
              "hung-receiver");
      acceptor.setDaemon(true);
      acceptor.start();
    }

    String url() {
      return "http://127.0.0.1:" + socket.getLocalPort();
    }

    @Override
    public void close() throws Exception {
      socket.close();
      acceptor.join(5_000);
      synchronized (held) {
        for (java.net.Socket c : held) c.close();
      }
    }
  }

  /**
   * writeMetrics as the runner's thread sees it (no flush: delivery is the exporter's background
   * work), with the exporter's defaults (self-metrics on) and both ways configured, as a new user
   * sets it up. JIT-warm: {@code warmMillis} of calls first. Calls are {@code gapMillis} apart so
   * the background sender runs between them, as between a runner's pushes.
   */
  static void latency(Path out, int n, int calls) throws Exception {
    String prom = env("BEAMPROM_PROMETHEUS_URL");
    String pg = env("BEAMPROM_PUSHGATEWAY_URL");
    MetricQueryResults r = Workload.create(n);
    String info = "series=" + seriesOf(r);
    long warmMillis = Long.parseLong(System.getenv().getOrDefault("BENCH_LATENCY_WARM_MS", "3000"));
    long gapMillis = Long.parseLong(System.getenv().getOrDefault("BENCH_LATENCY_GAP_MS", "25"));
    String closed = "http://127.0.0.1:" + closedPort();
    try (HungServer hung = new HungServer()) {
      String[][] states = {
        {"up", prom + "/api/v1/write", pg},
        {"down", closed + "/api/v1/write", closed},
        {"hung", hung.url() + "/api/v1/write", hung.url()},
      };
      for (String[] st : states) {
        String job = "bench_latency_" + st[0];
        PrometheusExporterOptions o = PipelineOptionsFactory.fromArgs(
                "--prometheusJobName=" + job, "--prometheusRemoteWriteUrl=" + st[1], "--prometheusPushgatewayUrl=" + st[2])
            .as(PrometheusExporterOptions.class);
        // Prometheus also scrapes the gateway here: an instance label of its own keeps the
        // scraped copy apart from the remote-written series (see BENCHMARKS.md).
        o.setPrometheusGroupingKey(Map.of("instance", "bench"));
        PrometheusMetricsSink sink = new PrometheusMetricsSink(o);
        long end = System.currentTimeMillis() + warmMillis;
        while (System.currentTimeMillis() < end) {
          sink.writeMetrics(r);
          Thread.sleep(1);
        }
        double[] t = new double[calls];
        for (int i = 0; i < calls; i++) {
          Thread.sleep(gapMillis);
          long t0 = System.nanoTime();
          sink.writeMetrics(r);
          t[i] = System.nanoTime() - t0;
        }
        Timing tm = stats(t);
        double worst = Arrays.stream(t).max().orElse(0);
        report("ours", "write_metrics_" + st[0], n, tm, info + ";calls=" + calls + ";worst_ns=" + (long) worst);
        double[] sorted = t.clone();
        Arrays.sort(sorted);
        System.err.printf("[latency] %s: slowest calls (us) %s%n", st[0], Arrays.toString(Arrays.stream(Arrays.copyOfRange(sorted, calls - 6, calls)).mapToLong(x -> (long) (x / 1e3)).toArray()));
        // The same schedule with the Java-side encoding alone (no native call): what the machine's
        // noise does to any code on the runner's thread in this state, as a reference for the worst call.
        double[] e = new double[calls];
        Object writer = JniProbe.writer();
        JniProbe.encode(writer, r, System.currentTimeMillis());
        for (int i = 0; i < calls; i++) {
          Thread.sleep(gapMillis);
          long t0 = System.nanoTime();
          JniProbe.encode(writer, r, System.currentTimeMillis());
          e[i] = System.nanoTime() - t0;
        }
        report("ours", "java_encode_" + st[0], n, stats(e), info + ";calls=" + calls + ";worst_ns=" + (long) Arrays.stream(e).max().orElse(0));
        long closeStart = System.nanoTime();
        sink.close();
        System.err.printf("[latency] %s: close took %d ms%n", st[0], (System.nanoTime() - closeStart) / 1_000_000);
        if (st[0].equals("up")) deleteGroup(pg, job + "/instance/bench");
      }
    }
  }

  public static void main(String[] args) throws Exception {
    Path out = Paths.get(args[1]);
    switch (args[0]) {
      case "encode":
        encode(out, sizes(args, 2));
        break;
      case "server":
        server(out, sizes(args, 2));
        break;
      case "memory":
        memory(out, Integer.parseInt(args[2]), Integer.parseInt(args[3]));
        break;
      case "latency":
        latency(out, Integer.parseInt(args[2]), Integer.parseInt(args[3]));
        break;
      default:
        throw new IllegalArgumentException("mode: encode | server | memory | latency");
    }
    System.exit(0); // the exporters' shutdown hook flushes what is left
  }
}
