package io.beamprometheus;

import java.util.Map;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;

/**
 * Options of the Prometheus exporter. Set at least one of {@code --prometheusRemoteWriteUrl} and
 * {@code --prometheusPushgatewayUrl}; with both, every push goes both ways.
 */
public interface PrometheusExporterOptions extends MetricsOptions {
  @Description(
      "Prometheus remote-write endpoint, e.g. http://localhost:9090/api/v1/write (Prometheus with"
          + " --web.enable-remote-write-receiver), Mimir, Cortex, Thanos or VictoriaMetrics.")
  String getPrometheusRemoteWriteUrl();

  void setPrometheusRemoteWriteUrl(String value);

  @Description("Pushgateway base URL, e.g. http://localhost:9091")
  String getPrometheusPushgatewayUrl();

  void setPrometheusPushgatewayUrl(String value);

  @Description(
      "Value of the job label (remote-write) and of the Pushgateway's job grouping key."
          + " Defaults to --appName; keep it stable across runs so that runs replace each other.")
  String getPrometheusJobName();

  void setPrometheusJobName(String value);

  @Description("Prefix of every metric name; empty for none.")
  @Default.String("beam")
  String getPrometheusMetricPrefix();

  void setPrometheusMetricPrefix(String value);

  @Description("Constant labels added to every series, as JSON: {\"env\":\"prod\"}")
  Map<String, String> getPrometheusLabels();

  void setPrometheusLabels(Map<String, String> value);

  @Description(
      "Pushgateway grouping key besides job, as JSON: {\"instance\":\"worker-1\"}."
          + " Pipelines with different grouping keys never replace each other's metrics.")
  Map<String, String> getPrometheusGroupingKey();

  void setPrometheusGroupingKey(Map<String, String> value);

  /** Which of Beam's values to export. */
  enum MetricValues {
    ATTEMPTED,
    COMMITTED,
    BOTH
  }

  @Description(
      "ATTEMPTED (default), COMMITTED (where the runner supports them) or BOTH; the label"
          + " result=\"attempted\"|\"committed\" tells them apart.")
  @Default.Enum("ATTEMPTED")
  MetricValues getPrometheusMetricValues();

  void setPrometheusMetricValues(MetricValues value);

  @Description("Total time one HTTP request may take, in milliseconds (connect: at most 5000).")
  @Default.Long(10000)
  Long getPrometheusTimeoutMillis();

  void setPrometheusTimeoutMillis(Long value);

  /** How pushes reach the Pushgateway. */
  enum PushMethod {
    PUT,
    POST
  }

  @Description(
      "PUT (default) replaces the whole group with each push, right for Beam's cumulative"
          + " snapshots; POST replaces only the metric families pushed.")
  @Default.Enum("PUT")
  PushMethod getPrometheusPushMethod();

  void setPrometheusPushMethod(PushMethod value);

  @Description(
      "Remote-write protocol: 1.0 (default; every receiver takes it) or 2.0"
          + " (io.prometheus.write.v2.Request: Prometheus 3 and newer receivers). A receiver that"
          + " refuses 2.0 makes the exporter fall back to 1.0 once.")
  @Default.String("1.0")
  String getPrometheusRemoteWriteProtocol();

  void setPrometheusRemoteWriteProtocol(String value);

  @Description(
      "Export Beam metric and label names verbatim (UTF-8) instead of sanitizing them, for"
          + " remote-write receivers that accept them (Prometheus 3). Not with the Pushgateway.")
  @Default.Boolean(false)
  Boolean getPrometheusUtf8Names();

  void setPrometheusUtf8Names(Boolean value);

  /** The body format of Pushgateway pushes. */
  enum PushgatewayFormat {
    PROTOBUF,
    TEXT
  }

  @Description(
      "PROTOBUF (default): delimited protobuf MetricFamily messages, which the Pushgateway"
          + " takes 1.5-1.8x faster than TEXT (exposition format 0.0.4).")
  @Default.Enum("PROTOBUF")
  PushgatewayFormat getPrometheusPushgatewayFormat();

  void setPrometheusPushgatewayFormat(PushgatewayFormat value);

  @Description(
      "Delete the Pushgateway group when the exporter closes (pipeline end / JVM exit)."
          + " Off by default: a batch job's final values stay visible until the next run"
          + " replaces them.")
  @Default.Boolean(false)
  Boolean getPrometheusDeleteOnEnd();

  void setPrometheusDeleteOnEnd(Boolean value);

  @Description(
      "Remote-write samples buffered while the receiver is unreachable; beyond it the oldest"
          + " buffered samples are dropped (counted) and every series keeps its newest value."
          + " About 24 bytes each (compressed requests): a 10-minute outage of 10k series pushed every 5 s fits.")
  @Default.Long(2000000)
  Long getPrometheusMaxBufferedSamples();

  void setPrometheusMaxBufferedSamples(Long value);

  @Description("Optional bound on the attempts of one request failing with 5xx, 429, 401/403 or a network"
      + " error; unset or 0: retried until --prometheusRetryBudgetMillis.")
  Integer getPrometheusMaxAttempts();

  void setPrometheusMaxAttempts(Integer value);

  @Description("How long a request failing with 5xx, 429, 401/403 or a network error is retried after it"
      + " was queued before it is dropped (counted).")
  @Default.Long(900000)
  Long getPrometheusRetryBudgetMillis();

  void setPrometheusRetryBudgetMillis(Long value);

  @Description("Directory of an optional disk buffer for remote-write requests: written before writeMetrics"
      + " returns, delivered first by the next exporter on the directory after a crash or restart. One"
      + " process per directory (lock file).")
  String getPrometheusBufferDir();

  void setPrometheusBufferDir(String value);

  @Description("Bound of --prometheusBufferDir in bytes; beyond it the oldest requests are dropped (counted).")
  @Default.Long(1073741824)
  Long getPrometheusBufferDirMaxBytes();

  void setPrometheusBufferDirMaxBytes(Long value);

  @Description("First retry delay in milliseconds; doubles up to --prometheusMaxBackoffMillis, with jitter.")
  @Default.Long(30)
  Long getPrometheusMinBackoffMillis();

  void setPrometheusMinBackoffMillis(Long value);

  @Description("Longest retry delay in milliseconds.")
  @Default.Long(5000)
  Long getPrometheusMaxBackoffMillis();

  void setPrometheusMaxBackoffMillis(Long value);

  @Description("Most samples in one remote-write request.")
  @Default.Integer(2000)
  Integer getPrometheusMaxSamplesPerRequest();

  void setPrometheusMaxSamplesPerRequest(Integer value);

  @Description("Most elements of one string set or paths of one bounded trie exported per push.")
  @Default.Integer(100)
  Integer getPrometheusSetCap();

  void setPrometheusSetCap(Integer value);

  @Description(
      "Send Prometheus staleness markers for every remote-written series when the exporter"
          + " closes, so ended pipelines' series end at once instead of after 5 minutes.")
  @Default.Boolean(false)
  Boolean getPrometheusStaleOnEnd();

  void setPrometheusStaleOnEnd(Boolean value);

  @Description("Export the exporter's own metrics (beam_exporter_*) with the pipeline's.")
  @Default.Boolean(true)
  Boolean getPrometheusSelfMetrics();

  void setPrometheusSelfMetrics(Boolean value);

  // Security. Secrets are given as files or environment variables only, so that no secret value
  // is ever part of the options that runners display, log and ship to workers.

  @Description("PEM file of CA certificates trusted besides the system roots.")
  String getPrometheusTlsCaFile();

  void setPrometheusTlsCaFile(String value);

  @Description("PEM client certificate for mutual TLS (with --prometheusTlsKeyFile).")
  String getPrometheusTlsCertFile();

  void setPrometheusTlsCertFile(String value);

  @Description("PEM private key of the client certificate.")
  String getPrometheusTlsKeyFile();

  void setPrometheusTlsKeyFile(String value);

  @Description("Name to verify the server certificate against instead of the URL's host.")
  String getPrometheusTlsServerName();

  void setPrometheusTlsServerName(String value);

  @Description("DANGEROUS: do not verify server certificates (logged loudly at start).")
  @Default.Boolean(false)
  Boolean getPrometheusTlsInsecureSkipVerify();

  void setPrometheusTlsInsecureSkipVerify(Boolean value);

  @Description("Basic-auth user; the password comes from --prometheusBasicAuthPasswordFile or --prometheusBasicAuthPasswordEnv.")
  String getPrometheusBasicAuthUser();

  void setPrometheusBasicAuthUser(String value);

  @Description("File holding the basic-auth password (read at each request: rotation applies at once).")
  String getPrometheusBasicAuthPasswordFile();

  void setPrometheusBasicAuthPasswordFile(String value);

  @Description("Name of the environment variable holding the basic-auth password.")
  String getPrometheusBasicAuthPasswordEnv();

  void setPrometheusBasicAuthPasswordEnv(String value);

  @Description("File holding a bearer token (read at each request: rotation applies at once).")
  String getPrometheusBearerTokenFile();

  void setPrometheusBearerTokenFile(String value);

  @Description("Name of the environment variable holding a bearer token.")
  String getPrometheusBearerTokenEnv();

  void setPrometheusBearerTokenEnv(String value);

  @Description(
      "Extra HTTP headers, as JSON: {\"X-Scope-OrgID\":\"tenant-1\"}. The protocol's own headers"
          + " and Authorization cannot be overridden.")
  Map<String, String> getPrometheusHeaders();

  void setPrometheusHeaders(Map<String, String> value);

  @Description("HTTP(S) proxy for every request, e.g. http://proxy:3128 (default: none; HTTPS_PROXY is honoured).")
  String getPrometheusProxyUrl();

  void setPrometheusProxyUrl(String value);

  @Description(
      "Seconds without a push after which a PrometheusMetricsSink ends its pipeline's share of the"
          + " exporter (final delivery, --prometheusStaleOnEnd, --prometheusDeleteOnEnd): Beam's"
          + " MetricsPusher never closes its sink, and stops pushing when the pipeline ends. Default:"
          + " 6 x --metricsPushPeriod, at least 30; a value under 2 x --metricsPushPeriod is raised to"
          + " that; 0 keeps the share until JVM exit.")
  Long getPrometheusIdleCloseSeconds();

  void setPrometheusIdleCloseSeconds(Long value);

  @Description(
      "Path of the native library to load instead of the one inside the jar (also: system"
          + " property beamprometheus.library.path).")
  String getPrometheusNativeLibraryPath();

  void setPrometheusNativeLibraryPath(String value);

  /** What a sink or poller does when no native library can be loaded on this machine. */
  enum OnNativeLoadFailure {
    /** Fail at construction with the reason (for MetricsPusher runners: in pipeline.run()). */
    FAIL,
    /** Log the reason once per JVM and export nothing: the pipeline runs without metrics. */
    DISABLE
  }

  @Description(
      "When the native library cannot be loaded (platform not in the jar, glibc older than 2.17,"
          + " no directory to extract it to): FAIL the sink or poller at construction with the reason,"
          + " or DISABLE them (the reason logged once; the pipeline runs without exported metrics).")
  @Default.Enum("FAIL")
  OnNativeLoadFailure getPrometheusOnNativeLoadFailure();

  void setPrometheusOnNativeLoadFailure(OnNativeLoadFailure value);
}
