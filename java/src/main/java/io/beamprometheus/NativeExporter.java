package io.beamprometheus;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The native exporter: loads the library (NativeLibraryLoader: from the jar, or from {@code
 * beamprometheus.library.path}), declares the JNI functions, and shares one native exporter
 * among all sinks with equal options, since runners may build a sink per pipeline run.
 */
public final class NativeExporter {
  private static final Logger LOG = LoggerFactory.getLogger("io.beamprometheus.native");
  public static final String LIBRARY_PATH_PROPERTY = "beamprometheus.library.path";
  /** How long closing waits for queued metrics at JVM exit. */
  public static final long SHUTDOWN_FLUSH_MILLIS = 10_000;

  /** One native exporter per distinct options, with how many sinks and pollers use it. */
  private static final Map<ByteBuffer, Entry> HANDLES = new LinkedHashMap<>();
  /** Registered while this class loader has exporters, so a finished job's loader is not pinned. */
  private static Thread shutdownHook;
  private static boolean loaded;
  private static NativeLibraryLoader.NativeLoadException loadFailure;
  private static boolean disabledLogged;
  /** The handle of a sink or poller that exports nothing (no native library, DISABLE). */
  static final long DISABLED = 0;

  private NativeExporter() {}

  static native void init(int logLevel);

  static native long create(byte[] options);

  /**
   * Hands one snapshot of {@code pipeline} (its {@code PipelineOptions.getOptionsId()}) to the
   * exporter, which pushes the latest snapshot of every pipeline that wrote to it, combined: an
   * exporter is one job, shared by pipelines with equal options.
   */
  static native void export(long handle, long pipeline, byte[] snapshot);

  /** For callers with one pipeline (tests, the benchmarks' JniProbe). */
  static void export(long handle, byte[] snapshot) {
    export(handle, -1, snapshot);
  }

  static native boolean flush(long handle, long timeoutMillis);

  static native boolean close(long handle, long timeoutMillis);

  static native long[] stats(long handle);

  static native String statNames();

  static native String lastError(long handle);

  /** Called by native code for Rust `log` records (level: 1 error … 5 trace). */
  static void log(int level, String target, String message) {
    switch (level) {
      case 1:
        LOG.error("{}", message);
        break;
      case 2:
        LOG.warn("{}", message);
        break;
      case 3:
        LOG.info("{}", message);
        break;
      case 4:
        LOG.debug("{}", message);
        break;
      default:
        LOG.trace("{}", message);
    }
  }

  /**
   * Loads the native library once; {@code explicitPath} (or the system property) wins over the
   * jar's. A failure is remembered and thrown again (same message) to every later caller, so a
   * JVM tries once; it is a {@link NativeLibraryLoader.NativeLoadException} saying why and what to do.
   */
  public static synchronized void load(String explicitPath) {
    if (loaded) {
      return;
    }
    if (loadFailure != null) {
      throw new NativeLibraryLoader.NativeLoadException(loadFailure.getMessage(), loadFailure);
    }
    String path = explicitPath != null ? explicitPath : System.getProperty(LIBRARY_PATH_PROPERTY);
    try {
      if (path != null && !path.isEmpty()) {
        NativeLibraryLoader.loadPath(path);
      } else {
        NativeLibraryLoader.loadFromJar();
      }
    } catch (NativeLibraryLoader.NativeLoadException e) {
      loadFailure = e;
      throw e;
    }
    int level =
        LOG.isTraceEnabled() ? 5 : LOG.isDebugEnabled() ? 4 : LOG.isInfoEnabled() ? 3 : LOG.isWarnEnabled() ? 2 : 1;
    init(level);
    loaded = true;
  }

  /**
   * The shared native exporter for these options, counted as one more user; throws
   * IllegalArgumentException naming a bad option. When the native library cannot be loaded it
   * throws (default, {@code --prometheusOnNativeLoadFailure=FAIL}) or, with {@code DISABLE}, logs
   * the reason once per JVM and returns {@link #DISABLED}: the caller then exports nothing.
   */
  static long acquireOrDisabled(PrometheusExporterOptions options) {
    try {
      load(options.getPrometheusNativeLibraryPath());
    } catch (NativeLibraryLoader.NativeLoadException e) {
      if (options.getPrometheusOnNativeLoadFailure() != PrometheusExporterOptions.OnNativeLoadFailure.DISABLE) {
        throw new NativeLibraryLoader.NativeLoadException(
            e.getMessage() + ". To run pipelines without exporting metrics instead, set"
                + " --prometheusOnNativeLoadFailure=DISABLE",
            e);
      }
      synchronized (NativeExporter.class) {
        if (!disabledLogged) {
          disabledLogged = true;
          LOG.error("metrics are not exported (--prometheusOnNativeLoadFailure=DISABLE): {}", e.getMessage());
        }
      }
      return DISABLED;
    }
    return acquire(options);
  }

  /**
   * The shared native exporter for these options, counted as one more user; throws
   * IllegalArgumentException naming a bad option.
   */
  static long acquire(PrometheusExporterOptions options) {
    return acquire(encodeOptions(options), options.getPrometheusNativeLibraryPath());
  }

  /** A native exporter shared by the users of equal options. */
  private static final class Entry {
    final long handle;
    int users;
    /** Set when the last user left: counted down once the exporter has closed. */
    java.util.concurrent.CountDownLatch closing;

    Entry(long handle) {
      this.handle = handle;
    }
  }

  /**
   * The same for options already encoded as (name, value) pairs: the Flink reporter's, which
   * come from Flink's configuration and must not need Beam's classes.
   *
   * <p>When the exporter of equal options is still closing (its last user left; final delivery,
   * group deletion, disk-buffer lock), this waits for that close, outside the class lock and at
   * most its budget, before creating the next one: two exporters of one identity never overlap,
   * so the old DELETE cannot land after the new PUT and the buffer directory is free.
   */
  static long acquire(byte[] encoded, String libraryPath) {
    load(libraryPath);
    ByteBuffer key = ByteBuffer.wrap(encoded);
    long deadline = System.currentTimeMillis() + SHUTDOWN_FLUSH_MILLIS + 2_000;
    while (true) {
      java.util.concurrent.CountDownLatch closing;
      synchronized (NativeExporter.class) {
        Entry entry = HANDLES.get(key);
        if (entry != null && entry.closing != null && System.currentTimeMillis() >= deadline) {
          LOG.warn("an exporter of equal options is still closing after {} ms; starting a new one", SHUTDOWN_FLUSH_MILLIS + 2_000);
          HANDLES.remove(key);
          entry = null;
        }
        if (entry == null) {
          entry = new Entry(create(encoded));
          HANDLES.put(key, entry);
          hookIfNeeded();
        }
        if (entry.closing == null) {
          entry.users++;
          return entry.handle;
        }
        closing = entry.closing;
      }
      try {
        closing.await(Math.max(1, deadline - System.currentTimeMillis()), java.util.concurrent.TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while the previous exporter of these options closed", e);
      }
    }
  }

  /**
   * One user less; the last one closes the exporter (final delivery, at most timeoutMillis). The
   * wait happens outside the class lock, so other pipelines' acquire and the shutdown hook never
   * queue behind a slow receiver; the entry stays (as closing) until the close has ended.
   */
  static boolean release(long handle, long timeoutMillis) {
    ByteBuffer key = null;
    Entry last = null;
    synchronized (NativeExporter.class) {
      for (Map.Entry<ByteBuffer, Entry> e : HANDLES.entrySet()) {
        Entry entry = e.getValue();
        if (entry.handle == handle && entry.closing == null && --entry.users <= 0) {
          entry.closing = new java.util.concurrent.CountDownLatch(1);
          key = e.getKey();
          last = entry;
        }
      }
    }
    if (last == null) {
      return flush(handle, timeoutMillis);
    }
    try {
      return close(handle, timeoutMillis);
    } finally {
      synchronized (NativeExporter.class) {
        HANDLES.remove(key, last);
        unhookIfUnused();
      }
      last.closing.countDown();
    }
  }

  /** Under the class lock: the JVM-exit hook, registered with the first exporter. */
  private static void hookIfNeeded() {
    if (shutdownHook == null) {
      Thread hook =
          new Thread(
              () -> {
                // The push Beam's Flink runner makes only once a job has ended must not come
                // after the exporters closed (FirstPushes); whatever that wait meets, they close.
                try {
                  FirstPushes.awaitFirstPushes(FirstPushes.FIRST_PUSH_AT_EXIT_MILLIS);
                } catch (Throwable t) {
                  // e.g. a class loader closed under the hook: the final delivery matters more
                } finally {
                  closeAll(SHUTDOWN_FLUSH_MILLIS);
                }
              },
              "beam-prometheus-shutdown");
      try {
        Runtime.getRuntime().addShutdownHook(hook);
        shutdownHook = hook;
      } catch (IllegalStateException shuttingDown) {
        // the JVM is exiting: nothing to register
      }
    }
  }

  /** Under the class lock: removes the hook once no exporter is left, unpinning this class loader. */
  private static void unhookIfUnused() {
    if (shutdownHook != null && HANDLES.isEmpty()) {
      try {
        Runtime.getRuntime().removeShutdownHook(shutdownHook);
      } catch (IllegalStateException shuttingDown) {
        // called from the hook itself, or during exit
      }
      shutdownHook = null;
    }
  }

  /** How many users hold exporters whose job name is {@code job} (tests). */
  static synchronized int users(String job) {
    int n = 0;
    for (Map.Entry<ByteBuffer, Entry> e : HANDLES.entrySet()) {
      String opts = new String(e.getKey().array(), java.nio.charset.StandardCharsets.ISO_8859_1);
      if (opts.contains("prometheusJobName") && opts.contains(job)) {
        n += e.getValue().users;
      }
    }
    return n;
  }

  /** Whether this class loader has registered its JVM-exit hook (tests). */
  static synchronized boolean hooked() {
    return shutdownHook != null;
  }

  /**
   * Flushes and closes every exporter of this JVM, all within one {@code timeoutMillis}: each
   * closes on a thread of its own, so a hung receiver of one does not eat the others' budget. The
   * class lock is held only to take the list.
   */
  public static boolean closeAll(long timeoutMillis) {
    long deadline = System.currentTimeMillis() + timeoutMillis;
    List<Long> handles = new ArrayList<>();
    List<java.util.concurrent.CountDownLatch> released = new ArrayList<>();
    synchronized (NativeExporter.class) {
      for (Entry e : HANDLES.values()) {
        if (e.closing == null) {
          handles.add(e.handle);
        } else {
          released.add(e.closing); // closing already: its releaser finishes it, waited for below
        }
      }
      HANDLES.clear();
      unhookIfUnused();
    }
    java.util.concurrent.atomic.AtomicBoolean all = new java.util.concurrent.atomic.AtomicBoolean(true);
    List<Thread> closing = new ArrayList<>();
    for (long h : handles) {
      Thread t =
          new Thread(
              () -> {
                if (!close(h, Math.max(0, deadline - System.currentTimeMillis()))) {
                  all.set(false);
                }
              },
              "beam-prometheus-close");
      t.setDaemon(true);
      t.start();
      closing.add(t);
    }
    for (Thread t : closing) {
      try {
        t.join(Math.max(1, deadline - System.currentTimeMillis()));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
      all.compareAndSet(true, !t.isAlive());
    }
    for (java.util.concurrent.CountDownLatch r : released) {
      try {
        // A release's thread is a daemon: the JVM would not wait for its final delivery.
        all.compareAndSet(true, r.await(Math.max(1, deadline - System.currentTimeMillis()), java.util.concurrent.TimeUnit.MILLISECONDS));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
    return all.get();
  }

  /** The options as the (name, value) pairs the native side parses; names are the option names. */
  static byte[] encodeOptions(PrometheusExporterOptions o) {
    List<String[]> pairs = new ArrayList<>();
    add(pairs, "prometheusRemoteWriteUrl", o.getPrometheusRemoteWriteUrl());
    add(pairs, "prometheusPushgatewayUrl", o.getPrometheusPushgatewayUrl());
    String job = o.getPrometheusJobName();
    if (job == null || job.isEmpty()) {
      job = o.as(org.apache.beam.sdk.options.ApplicationNameOptions.class).getAppName();
    }
    add(pairs, "prometheusJobName", job);
    add(pairs, "prometheusMetricPrefix", o.getPrometheusMetricPrefix());
    addMap(pairs, "prometheusLabels", o.getPrometheusLabels());
    addMap(pairs, "prometheusGroupingKey", o.getPrometheusGroupingKey());
    add(pairs, "prometheusMetricValues", o.getPrometheusMetricValues());
    add(pairs, "prometheusTimeoutMillis", o.getPrometheusTimeoutMillis());
    add(pairs, "prometheusPushMethod", o.getPrometheusPushMethod());
    add(pairs, "prometheusPushgatewayFormat", o.getPrometheusPushgatewayFormat());
    add(pairs, "prometheusRemoteWriteProtocol", o.getPrometheusRemoteWriteProtocol());
    add(pairs, "prometheusUtf8Names", o.getPrometheusUtf8Names());
    add(pairs, "prometheusDeleteOnEnd", o.getPrometheusDeleteOnEnd());
    add(pairs, "prometheusMaxBufferedSamples", o.getPrometheusMaxBufferedSamples());
    add(pairs, "prometheusMaxAttempts", o.getPrometheusMaxAttempts());
    add(pairs, "prometheusRetryBudgetMillis", o.getPrometheusRetryBudgetMillis());
    add(pairs, "prometheusBufferDir", o.getPrometheusBufferDir());
    add(pairs, "prometheusBufferDirMaxBytes", o.getPrometheusBufferDirMaxBytes());
    add(pairs, "prometheusSetCap", o.getPrometheusSetCap());
    add(pairs, "prometheusMinBackoffMillis", o.getPrometheusMinBackoffMillis());
    add(pairs, "prometheusMaxBackoffMillis", o.getPrometheusMaxBackoffMillis());
    add(pairs, "prometheusMaxSamplesPerRequest", o.getPrometheusMaxSamplesPerRequest());
    add(pairs, "prometheusStaleOnEnd", o.getPrometheusStaleOnEnd());
    add(pairs, "prometheusSelfMetrics", o.getPrometheusSelfMetrics());
    add(pairs, "prometheusTlsCaFile", o.getPrometheusTlsCaFile());
    add(pairs, "prometheusTlsCertFile", o.getPrometheusTlsCertFile());
    add(pairs, "prometheusTlsKeyFile", o.getPrometheusTlsKeyFile());
    add(pairs, "prometheusTlsServerName", o.getPrometheusTlsServerName());
    add(pairs, "prometheusTlsInsecureSkipVerify", o.getPrometheusTlsInsecureSkipVerify());
    add(pairs, "prometheusBasicAuthUser", o.getPrometheusBasicAuthUser());
    add(pairs, "prometheusBasicAuthPasswordFile", o.getPrometheusBasicAuthPasswordFile());
    add(pairs, "prometheusBasicAuthPasswordEnv", o.getPrometheusBasicAuthPasswordEnv());
    add(pairs, "prometheusBearerTokenFile", o.getPrometheusBearerTokenFile());
    add(pairs, "prometheusBearerTokenEnv", o.getPrometheusBearerTokenEnv());
    addMap(pairs, "prometheusHeaders", o.getPrometheusHeaders());
    add(pairs, "prometheusProxyUrl", o.getPrometheusProxyUrl());
    return ContractWriter.pairs(pairs);
  }

  private static void add(List<String[]> pairs, String name, Object value) {
    if (value != null) {
      pairs.add(new String[] {name, value.toString()});
    }
  }

  private static void addMap(List<String[]> pairs, String name, Map<String, String> map) {
    if (map != null) {
      for (Map.Entry<String, String> e : map.entrySet()) {
        pairs.add(new String[] {name + "." + e.getKey(), e.getValue() == null ? "" : e.getValue()});
      }
    }
  }
}
