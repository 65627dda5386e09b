package io.beamprometheus.e2e;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URLEncoder;
import java.lang.ref.WeakReference;
import java.lang.management.ManagementFactory;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.beam.runners.core.metrics.MetricsContainerStepMap;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Issue 19 item 2: a JVM that outlives many pipelines. A child JVM runs 50 pipelines one after
 * another, each in a class loader of its own that loads this library's classes itself (as a Flink
 * session cluster's per-job loaders do), half with an explicit --prometheusNativeLibraryPath and
 * half with the library from the jar's resources. Nobody closes the sinks (Beam's MetricsPusher
 * does not): each exporter must end on its own once its pipeline has, with its end-of-pipeline
 * actions (staleness markers, group deletion) done per pipeline. After each pipeline the child
 * prints what it holds; the figures must stay flat.
 */
public class ManyPipelinesE2ETest {
  static final int PIPELINES = Integer.getInteger("beamprometheus.manyPipelines", 50);
  static final int ELEMENTS = 1000;
  /** Step maps by job: in a class both loaders share, so the DoFn finds its run's map. */
  public static final Map<String, MetricsContainerStepMap> STEP_MAPS = new ConcurrentHashMap<>();

  /**
   * Counts into the step map of its run. It lives here, in the JVM's loader with Beam, as the
   * pipeline's code would live with Beam in a job jar: Beam caches DoFn classes for good
   * (DoFnSignatures), which would otherwise hold every job's loader.
   */
  public static final class CountFn extends org.apache.beam.sdk.transforms.DoFn<Integer, Integer> {
    private final String run;
    private final org.apache.beam.sdk.metrics.Counter elements = org.apache.beam.sdk.metrics.Metrics.counter("many", "elements");

    public CountFn(String run) {
      this.run = run;
    }

    @ProcessElement
    public void process(@Element Integer x) throws Exception {
      try (java.io.Closeable scope =
          org.apache.beam.sdk.metrics.MetricsEnvironment.scopedMetricsContainer(STEP_MAPS.get(run).getContainer("Count"))) {
        elements.inc();
      }
    }
  }

  /**
   * Starts Beam's MetricsPusher as a runner outside the job would: with the JVM's loader as
   * context and none of the job's frames on the stack. Beam 2.70's MetricsPusher never shuts its
   * executor down, and its parked thread keeps its creator's context loader and the protection
   * domains of the frames that created it, which would hold the job's loader for good.
   */
  @SuppressWarnings("removal")
  public static void startOutsideTheJob(org.apache.beam.runners.core.metrics.MetricsPusher pusher) {
    Thread t = Thread.currentThread();
    ClassLoader job = t.getContextClassLoader();
    t.setContextClassLoader(ManyPipelinesE2ETest.class.getClassLoader());
    try {
      java.security.AccessController.doPrivileged(
          (java.security.PrivilegedAction<Void>)
              () -> {
                pusher.start();
                return null;
              });
    } finally {
      t.setContextClassLoader(job);
    }
  }

  /** Loads io.beamprometheus.* itself (child first), everything else from the parent. */
  static final class JobClassLoader extends URLClassLoader {
    JobClassLoader(URL[] urls, ClassLoader parent) {
      super(urls, parent);
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
      if (!name.startsWith("io.beamprometheus.") || name.startsWith("io.beamprometheus.e2e.")) {
        return super.loadClass(name, resolve);
      }
      synchronized (getClassLoadingLock(name)) {
        Class<?> c = findLoadedClass(name);
        if (c == null) {
          c = findClass(name);
        }
        if (resolve) {
          resolveClass(c);
        }
        return c;
      }
    }

    @Override
    public URL getResource(String name) {
      URL own = findResource(name); // the native library and service files from the job's own jar
      return own != null ? own : super.getResource(name);
    }
  }

  /** The child JVM: args = pushgateway, remote-write URL, explicit library path, job prefix, class-loader classpath. */
  public static void main(String[] args) throws Exception {
    String pushgateway = args[0];
    String remoteWrite = args[1];
    String library = args[2];
    String prefix = args[3];
    List<URL> urls = new ArrayList<>();
    for (String entry : args[4].split(File.pathSeparator)) {
      urls.add(new File(entry).toURI().toURL());
    }
    List<WeakReference<ClassLoader>> loaders = new ArrayList<>();
    for (int i = 1; i <= PIPELINES; i++) {
      String job = prefix + i;
      JobClassLoader loader = new JobClassLoader(urls.toArray(new URL[0]), ManyPipelinesE2ETest.class.getClassLoader());
      loaders.add(new WeakReference<>(loader));
      // As Flink runs a job: its loader is the thread's context loader, which Beam's options
      // factory and ServiceLoader use to find the job's option interfaces.
      Thread.currentThread().setContextClassLoader(loader);
      PipelineOptionsFactory.resetCache(); // registers what the job's loader finds
      try {
        Class<?> driver = Class.forName("io.beamprometheus.ManyPipelinesDriver", true, loader);
        driver
            .getMethod("run", String.class, String.class, String.class, String.class, int.class, long.class)
            .invoke(null, job, pushgateway, remoteWrite, i % 2 == 1 ? library : null, ELEMENTS, 30_000L);
      } finally {
        Thread.currentThread().setContextClassLoader(ManyPipelinesE2ETest.class.getClassLoader());
      }
      loader.close();
      loader = null;
      // Beam's options factory and Jackson's shared type cache (Beam's options serialization)
      // keep the option types they saw, each loader's PrometheusExporterOptions among them: cleared
      // here, as a JVM that keeps Beam and Jackson outside its jobs' loaders must, so what remains
      // is this library's doing. (A job jar that carries Beam, as Flink's usually do, has them in
      // the job's loader, which they do not hold.)
      PipelineOptionsFactory.resetCache();
      com.fasterxml.jackson.databind.type.TypeFactory.defaultInstance().clearCache();
      // Every deserialized PipelineOptions stays in this map of Beam's for the JVM's life.
      java.lang.reflect.Field optionsMap =
          org.apache.beam.sdk.options.ValueProvider.RuntimeValueProvider.class.getDeclaredField("optionsMap");
      optionsMap.setAccessible(true);
      ((Map<?, ?>) optionsMap.get(null)).clear();
      for (int g = 0; g < 3; g++) {
        System.gc();
        Thread.sleep(20);
      }
      int alive = 0;
      for (WeakReference<ClassLoader> w : loaders) {
        alive += w.get() == null ? 0 : 1;
      }
      int pushers = 0;
      int ours = 0;
      for (Thread t : Thread.getAllStackTraces().keySet()) {
        pushers += t.getName().startsWith("MetricsPusher-thread") ? 1 : 0;
        if (t.getName().startsWith("beam-prometheus")) {
          ours++;
          System.out.println("THREAD " + i + " " + t.getName());
        }
      }
      System.out.println(
          "PIPELINE " + i + " metaspaceKiB=" + metaspaceKiB() + " tasks=" + tasks() + " jvmThreads=" + ManagementFactory.getThreadMXBean().getThreadCount()
              + " metricsPusherThreads=" + pushers + " ourJavaThreads=" + ours + " rssKiB=" + rssKiB()
              + " libraryCopies=" + libraryCopies() + " tmpFiles=" + tmpFiles() + " loadersAlive=" + alive);
    }
    String dump = System.getProperty("beamprometheus.heapDump");
    if (dump != null) {
      ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class).dumpHeap(dump, true);
    }
    System.out.println("DONE");
  }

  static int tasks() throws IOException {
    try (Stream<Path> s = Files.list(Paths.get("/proc/self/task"))) {
      return (int) s.count();
    }
  }

  static long metaspaceKiB() {
    for (java.lang.management.MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
      if (pool.getName().equals("Metaspace")) {
        return pool.getUsage().getUsed() / 1024;
      }
    }
    return -1;
  }

  static long rssKiB() throws IOException {
    for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
      if (line.startsWith("VmRSS:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }

  /** Distinct files (device and inode) named beam_prometheus mapped into this process. */
  static int libraryCopies() throws IOException {
    Set<String> ids = new HashSet<>();
    for (String line : Files.readAllLines(Paths.get("/proc/self/maps"))) {
      if (line.contains("beam_prometheus")) {
        String[] f = line.trim().split("\\s+");
        ids.add(f[3] + ":" + f[4]);
      }
    }
    return ids.size();
  }

  /** Every file under this JVM's own java.io.tmpdir (the test gives it a fresh one). */
  static long tmpFiles() throws IOException {
    try (Stream<Path> s = Files.walk(Paths.get(System.getProperty("java.io.tmpdir")))) {
      return s.filter(Files::isRegularFile).count();
    }
  }

  /** Removes a folder a test made, with everything in it. */
  public static void deleteTree(Path dir) throws IOException {
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : (Iterable<Path>) s.sorted(java.util.Comparator.reverseOrder())::iterator) {
        Files.deleteIfExists(p);
      }
    }
  }

  /** One PIPELINE line, parsed. */
  static Map<String, Long> parse(String line) {
    Map<String, Long> m = new TreeMap<>();
    for (String kv : line.substring(line.indexOf(' ', 9) + 1).split(" ")) {
      String[] p = kv.split("=");
      m.put(p[0], Long.parseLong(p[1]));
    }
    return m;
  }

  @Test(timeout = 600_000)
  public void fiftyPipelinesInOneJvmEachInItsOwnClassLoader() throws Exception {
    Path tmp = Files.createTempDirectory("many-pipelines");
    try {
      fiftyPipelines(tmp);
    } finally {
      deleteTree(tmp); // the child's java.io.tmpdir: its perf data and the extracted library
    }
  }

  private void fiftyPipelines(Path tmp) throws Exception {
    String cp = System.getProperty("beamprometheus.testClasspath");
    String jobCp = System.getProperty("beamprometheus.jobClasspath");
    String library = System.getProperty("beamprometheus.nativeLibrary");
    assertNotNull("build.gradle passes the classpaths and the library", cp);
    assertTrue(library + " exists", new File(library).isFile());
    String prefix = "many_" + Long.toHexString(System.nanoTime()) + "_";
    String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
    Process p =
        new ProcessBuilder(
                java, "-Xms256m", "-Xmx256m", "-XX:+AlwaysPreTouch", "-Djava.io.tmpdir=" + tmp,
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp, ManyPipelinesE2ETest.class.getName(),
                Servers.pushgateway(), Servers.remoteWriteUrl(), library, prefix, jobCp)
            .redirectErrorStream(true)
            .start();
    List<Map<String, Long>> rows = new ArrayList<>();
    List<String> output = new ArrayList<>();
    boolean done = false;
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        if (line.startsWith("PIPELINE ")) {
          rows.add(parse(line));
          System.out.println("[many-pipelines] " + line);
        } else if (line.equals("DONE")) {
          done = true;
        } else {
          if (line.startsWith("THREAD ")) {
            System.out.println("[many-pipelines] " + line);
          } else if (output.size() < 200) {
            output.add(line);
          }
        }
      }
    }
    assertTrue("the child JVM ends", p.waitFor(60, TimeUnit.SECONDS));
    assertTrue("all " + PIPELINES + " pipelines ran; child output:\n" + String.join("\n", output), done && rows.size() == PIPELINES);
    assertEquals("child exit code; output:\n" + String.join("\n", output), 0, p.exitValue());

    Map<String, Long> warm = rows.get(9);
    Map<String, Long> last = rows.get(PIPELINES - 1);
    for (Map<String, Long> row : rows.subList(1, PIPELINES)) {
      // One copy of each file (the explicit one and the jar's), whatever the number of loaders.
      assertEquals("library copies mapped " + row, 2L, (long) row.get("libraryCopies"));
      // Nothing of ours runs once its pipeline's exporter has closed.
      assertTrue("our Java threads " + row, row.get("ourJavaThreads") <= 3);
    }
    for (Map<String, Long> row : rows.subList(9, PIPELINES)) {
      assertEquals("temporary files " + row, (long) warm.get("tmpFiles"), (long) row.get("tmpFiles"));
      // Threads: flat but for Beam's own MetricsPusher, which cancels its task and never shuts
      // its executor down (one parked thread per pipeline, Beam 2.70's MetricsPusher.tearDown).
      long otherThreads = row.get("tasks") - row.get("metricsPusherThreads");
      long warmOther = warm.get("tasks") - warm.get("metricsPusherThreads");
      assertTrue("threads other than Beam's MetricsPusher: " + row + " vs " + warm, Math.abs(otherThreads - warmOther) <= 3);
    }
    // Flat memory: the heap is fixed and touched up front, so RSS moves with native memory and
    // class metadata; 40 pipelines after warm-up may not add what one leaked exporter costs.
    assertTrue("RSS growth " + warm.get("rssKiB") + " -> " + last.get("rssKiB") + " KiB",
        last.get("rssKiB") - warm.get("rssKiB") < 32 * 1024);
    // No class loader is pinned by the library, its shutdown hook or its threads, but the newest
    // (its class receives the native log records until the next loader's init).
    assertTrue("class loaders still reachable " + last, last.get("loadersAlive") <= 2);

    // End-of-pipeline actions, per pipeline: every pipeline's count arrived both ways (remote-
    // written: no instance label; scraped from the gateway: its grouping key's instance), and
    // every series ended when its exporter closed: staleness markers for the remote-written ones,
    // the group's deletion for the scraped ones (gone from the gateway's next scrape).
    for (String way : new String[] {"instance=\"\"", "instance=\"many-pipelines\""}) {
      String series = "beam_elements_total{job=~\"" + prefix + ".*\"," + way + "}";
      List<Servers.Sample> finals =
          Servers.await("max_over_time(" + series + "[10m]) == " + ELEMENTS, s -> s.size() == PIPELINES, 30);
      if (finals.size() != PIPELINES) {
        // What each job that fell short holds, sample by sample, and what the child logged
        // (delivery errors are logged at warn), so that a failure says where the count was lost.
        StringBuilder why = new StringBuilder();
        for (Servers.Sample s : Servers.query("max_over_time(" + series + "[10m]) != " + ELEMENTS)) {
          why.append(s.metric.get("job").asText()).append(" max ").append(s.value).append('\n');
        }
        why.append("raw: ").append(Servers.get(Servers.prometheus() + "/api/v1/query?query="
            + URLEncoder.encode(series + "[10m]", StandardCharsets.UTF_8)));
        fail("pipelines whose final count reached Prometheus (" + way + "): " + finals.size() + " of " + PIPELINES
            + "\n" + why + "\nchild output:\n" + String.join("\n", output));
      }
      assertEquals("series still live, not ended (" + way + ")", 0, Servers.await(series, List::isEmpty, 15).size());
    }
    String groups = Servers.get(Servers.pushgateway() + "/api/v1/metrics").toString();
    assertTrue("no group of these jobs left on the gateway", !groups.contains(prefix));
  }
}
