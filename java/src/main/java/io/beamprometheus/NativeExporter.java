package io.beamprometheus;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The native exporter: loads the library from the jar (or from {@code
 * beamprometheus.library.path}), declares the JNI functions, and shares one native exporter
 * among all sinks with equal options, since runners may build a sink per pipeline run.
 */
public final class NativeExporter {
  private static final Logger LOG = LoggerFactory.getLogger("io.beamprometheus.native");
  public static final String LIBRARY_PATH_PROPERTY = "beamprometheus.library.path";
  /** How long closing waits for queued metrics at JVM exit. */
  public static final long SHUTDOWN_FLUSH_MILLIS = 10_000;

  /** One native exporter per distinct options, with how many sinks and pollers use it. */
  private static final Map<ByteBuffer, long[]> HANDLES = new LinkedHashMap<>();
  private static boolean loaded;

  private NativeExporter() {}

  static native void init(int logLevel);

  static native long create(byte[] options);

  static native void export(long handle, byte[] snapshot);

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

  /** Loads the native library once; {@code explicitPath} (or the system property) wins. */
  public static synchronized void load(String explicitPath) {
    if (loaded) {
      return;
    }
    String path = explicitPath != null ? explicitPath : System.getProperty(LIBRARY_PATH_PROPERTY);
    if (path != null && !path.isEmpty()) {
      System.load(Path.of(path).toAbsolutePath().toString());
    } else {
      System.load(extract().toString());
    }
    int level =
        LOG.isTraceEnabled() ? 5 : LOG.isDebugEnabled() ? 4 : LOG.isInfoEnabled() ? 3 : LOG.isWarnEnabled() ? 2 : 1;
    init(level);
    Runtime.getRuntime()
        .addShutdownHook(new Thread(() -> closeAll(SHUTDOWN_FLUSH_MILLIS), "beam-prometheus-shutdown"));
    loaded = true;
  }

  private static Path extract() {
    String os = System.getProperty("os.name").toLowerCase();
    String arch = System.getProperty("os.arch").toLowerCase();
    String file = os.contains("mac") ? "libbeam_prometheus.dylib" : os.contains("win") ? "beam_prometheus.dll" : "libbeam_prometheus.so";
    String platform = (os.contains("mac") ? "macos" : os.contains("win") ? "windows" : "linux") + "-" + (arch.equals("amd64") ? "x86_64" : arch);
    String resource = "/native/" + platform + "/" + file;
    try (InputStream in = NativeExporter.class.getResourceAsStream(resource)) {
      if (in == null) {
        throw new UnsatisfiedLinkError(
            "beam-prometheus has no native library for " + platform + " in its jar (" + resource
                + "); build it and set -D" + LIBRARY_PATH_PROPERTY + "=/path/to/" + file);
      }
      Path tmp = Files.createTempFile("beam_prometheus", file.substring(file.lastIndexOf('.')));
      tmp.toFile().deleteOnExit();
      Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
      return tmp;
    } catch (IOException e) {
      throw new UnsatisfiedLinkError("cannot extract the beam-prometheus native library: " + e);
    }
  }

  /**
   * The shared native exporter for these options, counted as one more user; throws
   * IllegalArgumentException naming a bad option.
   */
  static synchronized long acquire(PrometheusExporterOptions options) {
    return acquire(encodeOptions(options), options.getPrometheusNativeLibraryPath());
  }

  /**
   * The same for options already encoded as (name, value) pairs: the Flink reporter's, which
   * come from Flink's configuration and must not need Beam's classes.
   */
  static synchronized long acquire(byte[] encoded, String libraryPath) {
    load(libraryPath);
    ByteBuffer key = ByteBuffer.wrap(encoded);
    long[] entry = HANDLES.get(key);
    if (entry == null) {
      entry = new long[] {create(encoded), 0};
      HANDLES.put(key, entry);
    }
    entry[1]++;
    return entry[0];
  }

  /** One user less; the last one closes the exporter (final delivery, at most timeoutMillis). */
  static boolean release(long handle, long timeoutMillis) {
    synchronized (NativeExporter.class) {
      java.util.Iterator<long[]> it = HANDLES.values().iterator();
      boolean last = false;
      while (it.hasNext()) {
        long[] e = it.next();
        if (e[0] == handle && --e[1] <= 0) {
          it.remove();
          last = true;
        }
      }
      if (!last) {
        return flush(handle, timeoutMillis);
      }
    }
    return close(handle, timeoutMillis);
  }

  /** Flushes and closes every exporter of this JVM, all within one {@code timeoutMillis}. */
  public static synchronized boolean closeAll(long timeoutMillis) {
    long deadline = System.currentTimeMillis() + timeoutMillis;
    boolean all = true;
    for (long[] e : HANDLES.values()) {
      all &= close(e[0], Math.max(0, deadline - System.currentTimeMillis()));
    }
    HANDLES.clear();
    return all;
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
