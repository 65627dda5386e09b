package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.beamprometheus.PrometheusMetricsSink;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * TLS (server and client certificates) and basic auth against Prometheus and the Pushgateway
 * started with --web.config.file by tests/servers.sh, with certificates it generated.
 */
public class SecurityE2ETest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private final ByteArrayOutputStream captured = new ByteArrayOutputStream();
  private PrintStream originalErr;
  private final List<String> exceptionMessages = new ArrayList<>();

  static String pki(String file) {
    return Servers.env("BEAMPROM_PKI") + "/" + file;
  }

  static String password() throws Exception {
    return Files.readString(Path.of(pki("password"))).trim();
  }

  @Before
  public void captureLogs() {
    originalErr = System.err;
    System.setErr(new PrintStream(new TeeStream(originalErr, captured), true));
  }

  @After
  public void restoreLogs() {
    System.setErr(originalErr);
  }

  /** Writes to both streams: logs stay visible and are searched for secrets. */
  static final class TeeStream extends java.io.OutputStream {
    private final java.io.OutputStream a;
    private final java.io.OutputStream b;

    TeeStream(java.io.OutputStream a, java.io.OutputStream b) {
      this.a = a;
      this.b = b;
    }

    @Override
    public synchronized void write(int x) throws java.io.IOException {
      a.write(x);
      b.write(x);
    }

    @Override
    public synchronized void write(byte[] buf, int off, int len) throws java.io.IOException {
      a.write(buf, off, len);
      b.write(buf, off, len);
    }
  }

  static PipelineOptions options(String job, String... extra) {
    List<String> args = new ArrayList<>(List.of(
        "--prometheusRemoteWriteUrl=" + Servers.env("BEAMPROM_SECURE_PROMETHEUS_URL") + "/api/v1/write",
        "--prometheusJobName=" + job,
        "--prometheusSelfMetrics=false",
        "--prometheusMaxAttempts=1000",
        "--prometheusMaxBackoffMillis=300"));
    args.addAll(List.of(extra));
    return PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).create();
  }

  static PrometheusMetricsSink sink(PipelineOptions o) {
    return new PrometheusMetricsSink(o.as(MetricsOptions.class));
  }

  /** PromQL against the TLS + client-certificate + basic-auth Prometheus, through curl. */
  static List<Double> secureQuery(String promql) throws Exception {
    Process p = new ProcessBuilder(
            "curl", "-fsS", "--max-time", "10", "--cacert", pki("ca.pem"), "--cert", pki("client.pem"),
            "--key", pki("client.key"), "-u", "beam:" + password(),
            Servers.env("BEAMPROM_SECURE_PROMETHEUS_URL") + "/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8))
        .redirectErrorStream(true).start();
    String body = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(body, 0, p.waitFor());
    List<Double> out = new ArrayList<>();
    for (JsonNode r : JSON.readTree(body).get("data").get("result")) {
      out.add(Double.parseDouble(r.get("value").get(1).asText()));
    }
    return out;
  }

  static void awaitSecure(String promql, double expected) throws Exception {
    long deadline = System.currentTimeMillis() + 30_000;
    List<Double> last = null;
    while (System.currentTimeMillis() < deadline) {
      last = secureQuery(promql);
      if (last.size() == 1 && last.get(0) == expected) {
        return;
      }
      Thread.sleep(250);
    }
    fail(promql + " on the TLS Prometheus gave " + last);
  }

  static String[] mtls() {
    return new String[] {"--prometheusTlsCaFile=" + pki("ca.pem"), "--prometheusTlsCertFile=" + pki("client.pem"), "--prometheusTlsKeyFile=" + pki("client.key")};
  }

  static String[] concat(String[] a, String... b) {
    List<String> l = new ArrayList<>(List.of(a));
    l.addAll(List.of(b));
    return l.toArray(new String[0]);
  }

  @Test
  public void mutualTlsAndBasicAuthDeliver() throws Exception {
    String job = "sec_ok_" + System.nanoTime();
    PipelineOptions o = options(job, concat(mtls(), "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password")));
    try (PrometheusMetricsSink s = sink(o)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("secure", "11"));
      assertTrue(s.lastError(), s.flush(20_000));
      awaitSecure("beam_secure_total{job=\"" + job + "\"}", 11);
    }
    assertNoSecrets(o);
  }

  @Test
  public void wrongPasswordFailsClearlyThenARotatedFileDeliversTheSameBatch() throws Exception {
    String job = "sec_pw_" + System.nanoTime();
    Path pw = Files.createTempFile("pw", ".txt");
    Files.writeString(pw, "wrong-password\n");
    PipelineOptions o = options(job, concat(mtls(), "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pw));
    try (PrometheusMetricsSink s = sink(o)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("rotated", "21"));
      long deadline = System.currentTimeMillis() + 10_000;
      while (s.lastError() == null && System.currentTimeMillis() < deadline) {
        Thread.sleep(50);
      }
      assertNotNull(s.lastError());
      assertTrue(s.lastError(), s.lastError().contains("HTTP 401") && s.lastError().contains("--prometheusBasicAuth"));
      // The native warning reached SLF4J (slf4j-simple writes to the captured stderr).
      long logDeadline = System.currentTimeMillis() + 5_000;
      while (!captured.toString(StandardCharsets.UTF_8).contains("io.beamprometheus.native") && System.currentTimeMillis() < logDeadline) {
        Thread.sleep(50);
      }
      String logs = captured.toString(StandardCharsets.UTF_8);
      assertTrue(logs, logs.contains("io.beamprometheus.native") && logs.contains("delivery failing") && logs.contains("HTTP 401"));
      Files.writeString(pw, password() + "\n");
      assertTrue(s.lastError(), s.flush(20_000));
      awaitSecure("beam_rotated_total{job=\"" + job + "\"}", 21);
      assertEquals(0L, (long) s.stats().get("samples_rejected"));
    }
    assertNoSecrets(o);
  }

  @Test
  public void anUnknownCaIsNamed() throws Exception {
    String job = "sec_ca_" + System.nanoTime();
    PipelineOptions o = options(job, "--prometheusTlsCaFile=" + pki("other-ca.pem"),
        "--prometheusTlsCertFile=" + pki("client.pem"), "--prometheusTlsKeyFile=" + pki("client.key"),
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password"));
    try (PrometheusMetricsSink s = sink(o)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("ca", "1"));
      assertFalse(s.flush(1_500));
      assertTrue(s.lastError(), s.lastError().contains("unknown CA"));
    }
    assertNoSecrets(o);
  }

  @Test
  public void aMissingClientCertificateIsNamed() throws Exception {
    String job = "sec_cert_" + System.nanoTime();
    PipelineOptions o = options(job, "--prometheusTlsCaFile=" + pki("ca.pem"),
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password"));
    try (PrometheusMetricsSink s = sink(o)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("cert", "1"));
      assertFalse(s.flush(1_500));
      assertTrue(s.lastError(), s.lastError().toLowerCase().contains("certificate"));
    }
    assertNoSecrets(o);
  }

  @Test
  public void aServerNameOverrideVerifiesAgainstThatName() throws Exception {
    String job = "sec_sni_" + System.nanoTime();
    // The certificate is valid for prometheus.test; 127.0.0.1 would also pass, so check a wrong name fails.
    PipelineOptions wrong = options(job, concat(mtls(), "--prometheusTlsServerName=not-in-the.cert",
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password")));
    try (PrometheusMetricsSink s = sink(wrong)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("sni", "1"));
      assertFalse(s.flush(1_500));
      assertTrue(s.lastError(), s.lastError().contains("name mismatch"));
    }
    PipelineOptions right = options(job, concat(mtls(), "--prometheusTlsServerName=prometheus.test",
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password")));
    try (PrometheusMetricsSink s = sink(right)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("sni", "2"));
      assertTrue(s.lastError(), s.flush(20_000));
      awaitSecure("beam_sni_total{job=\"" + job + "\"}", 2);
    }
  }

  @Test
  public void theTlsPushgatewayWithBasicAuthIsScraped() throws Exception {
    String job = "sec_pg_" + System.nanoTime();
    PipelineOptions o = PipelineOptionsFactory.fromArgs(
        "--prometheusPushgatewayUrl=" + Servers.env("BEAMPROM_SECURE_PUSHGATEWAY_URL"),
        "--prometheusJobName=" + job, "--prometheusTlsCaFile=" + pki("ca.pem"),
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordEnv=BEAMPROM_TEST_PASSWORD_UNSET").create();
    try {
      sink(o);
      fail("an unset password variable was accepted");
    } catch (IllegalArgumentException e) {
      exceptionMessages.add(e.getMessage());
      assertTrue(e.getMessage(), e.getMessage().startsWith("--prometheusBasicAuthPasswordEnv:"));
    }
    PipelineOptions ok = PipelineOptionsFactory.fromArgs(
        "--prometheusPushgatewayUrl=" + Servers.env("BEAMPROM_SECURE_PUSHGATEWAY_URL"),
        "--prometheusJobName=" + job, "--prometheusTlsCaFile=" + pki("ca.pem"),
        "--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile=" + pki("password")).create();
    try (PrometheusMetricsSink s = sink(ok)) {
      s.writeMetrics(PushgatewayLifecycleE2ETest.counters("gw", "5"));
      assertTrue(s.lastError(), s.flush(20_000));
    }
    awaitValue(Servers.prometheus(), "beam_gw_total{job=\"" + job + "\"}", 5, 30);
    assertNoSecrets(ok);
  }

  @Test
  public void badSecurityOptionsFailNamingTheOption() {
    String[][] cases = {
      {"--prometheusTlsCertFile=" + pki("client.pem"), "--prometheusTlsKeyFile"},
      {"--prometheusTlsCaFile=/nonexistent/ca.pem", "--prometheusTlsCaFile"},
      {"--prometheusBasicAuthUser=beam", "--prometheusBasicAuthPasswordFile"},
      {"--prometheusHeaders={\"Content-Type\":\"text/plain\"}", "--prometheusHeaders"},
      {"--prometheusHeaders={\"Authorization\":\"Bearer x\"}", "--prometheusHeaders"},
      {"--prometheusProxyUrl=socks9://x", "--prometheusProxyUrl"},
    };
    for (String[] c : cases) {
      try {
        sink(options("sec_bad", c[0]));
        fail(c[0] + " was accepted");
      } catch (IllegalArgumentException e) {
        exceptionMessages.add(e.getMessage());
        assertTrue(c[0] + " -> " + e.getMessage(), e.getMessage().startsWith(c[1] + ":"));
      }
    }
  }

  /** The password appears nowhere: logs, exception messages, last errors, serialized options. */
  private void assertNoSecrets(PipelineOptions o) throws Exception {
    String secret = password();
    String serialized = JSON.writeValueAsString(o);
    String logs = captured.toString(StandardCharsets.UTF_8);
    assertTrue("the check itself must see the logs", logs.length() > 0 || serialized.length() > 0);
    assertFalse("password in serialized options", serialized.contains(secret));
    assertFalse("password in options.toString()", o.toString().contains(secret));
    assertFalse("password in logs", logs.contains(secret));
    for (String m : exceptionMessages) {
      assertFalse("password in an exception", m.contains(secret));
    }
  }
}
