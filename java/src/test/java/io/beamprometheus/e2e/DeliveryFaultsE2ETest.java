package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.beamprometheus.PrometheusMetricsSink;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * The receiver goes away and comes back (a proxy in front of the real Prometheus resets or hangs
 * connections): writeMetrics stays fast, and once the receiver is back every buffered sample
 * arrives, in order, with the final value.
 */
public class DeliveryFaultsE2ETest {
  static PrometheusMetricsSink sink(String url, String job) {
    return new PrometheusMetricsSink(PipelineOptionsFactory.fromArgs(
            "--prometheusRemoteWriteUrl=" + url + "/api/v1/write",
            "--prometheusJobName=" + job,
            "--prometheusTimeoutMillis=1500",
            "--prometheusSelfMetrics=false")
        .create().as(MetricsOptions.class));
  }

  static List<Double> rawSamples(String selector) {
    JsonNode doc = Servers.get(Servers.prometheus() + "/api/v1/query?query="
        + URLEncoder.encode(selector + "[5m]", StandardCharsets.UTF_8));
    List<Double> out = new ArrayList<>();
    JsonNode result = doc.get("data").get("result");
    if (result.size() > 0) {
      for (JsonNode v : result.get(0).get("values")) {
        out.add(Double.parseDouble(v.get(1).asText()));
      }
    }
    return out;
  }

  @Test
  public void outageThenRecoveryDeliversEverySampleInOrder() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "fault_outage_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job)) {
      proxy.mode(FaultProxy.Mode.RESET);
      long worstNanos = 0;
      for (int i = 1; i <= 5; i++) {
        long t0 = System.nanoTime();
        sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("out", Integer.toString(i)));
        worstNanos = Math.max(worstNanos, System.nanoTime() - t0);
        Thread.sleep(300);
      }
      Map<String, Long> during = sink.stats();
      assertTrue(during.toString(), during.get("requests_failed") > 0 && during.get("samples_sent") == 0);
      System.out.println("writeMetrics during the outage: worst " + worstNanos / 1000 + " us");
      assertTrue("writeMetrics took " + worstNanos / 1_000_000 + " ms during the outage", worstNanos < 1_000_000_000L);
      proxy.mode(FaultProxy.Mode.FORWARD);
      assertTrue("not delivered after recovery: " + sink.stats(), sink.flush(30_000));
      awaitValue(Servers.prometheus(), "beam_out_total{job=\"" + job + "\"}", 5, 30);
      assertEquals(List.of(1.0, 2.0, 3.0, 4.0, 5.0), rawSamples("beam_out_total{job=\"" + job + "\"}"));
      assertEquals(0L, (long) sink.stats().get("samples_rejected"));
      assertEquals(0L, (long) sink.stats().get("samples_dropped"));
    }
  }

  @Test
  public void aReceiverThatNeverAnswersTimesOutWithoutStallingTheCaller() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "fault_hang_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job)) {
      proxy.mode(FaultProxy.Mode.HANG);
      long t0 = System.nanoTime();
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("hang", "1"));
      long callNanos = System.nanoTime() - t0;
      assertTrue("writeMetrics took " + callNanos / 1_000_000 + " ms", callNanos < 1_000_000_000L);
      // The 1.5 s request timeout fires; the request is retried, not lost.
      long deadline = System.currentTimeMillis() + 10_000;
      while (sink.stats().get("requests_failed") == 0 && System.currentTimeMillis() < deadline) {
        Thread.sleep(100);
      }
      assertTrue(sink.stats().toString(), sink.stats().get("requests_failed") > 0);
      proxy.mode(FaultProxy.Mode.FORWARD);
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("hang", "2"));
      assertTrue("not delivered: " + sink.stats(), sink.flush(30_000));
      awaitValue(Servers.prometheus(), "beam_hang_total{job=\"" + job + "\"}", 2, 30);
      assertEquals(List.of(1.0, 2.0), rawSamples("beam_hang_total{job=\"" + job + "\"}"));
    }
  }

  @Test
  public void aBurstOf503sIsRetriedAndDelivered() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "fault_503_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job)) {
      proxy.respond(503, "", "overloaded", 4);
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("burst", "3"));
      assertTrue(sink.stats().toString(), sink.flush(30_000));
      assertEquals(4, proxy.responded());
      awaitValue(Servers.prometheus(), "beam_burst_total{job=\"" + job + "\"}", 3, 30);
      Map<String, Long> s = sink.stats();
      assertTrue(s.toString(), s.get("samples_retried") >= 4 && s.get("samples_rejected") == 0);
    }
  }

  @Test
  public void retryAfterOn429IsHonoured() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "fault_429_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job)) {
      proxy.respond(429, "Retry-After: 2\r\n", "slow down", 1);
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("limited", "4"));
      assertTrue(sink.stats().toString(), sink.flush(30_000));
      List<Long> t = proxy.requestTimes();
      assertTrue("requests: " + t.size(), t.size() >= 2);
      double waited = (t.get(1) - t.get(0)) / 1e9;
      System.out.println("Retry-After: 2 -> the retry came after " + waited + " s");
      assertTrue("retried after " + waited + " s", waited >= 1.9 && waited < 6);
      awaitValue(Servers.prometheus(), "beam_limited_total{job=\"" + job + "\"}", 4, 30);
    }
  }

  @Test
  public void a400IsReportedAndNotRetried() throws Exception {
    URI prom = URI.create(Servers.prometheus());
    String job = "fault_400_" + System.nanoTime();
    try (FaultProxy proxy = new FaultProxy(prom.getHost(), prom.getPort());
        PrometheusMetricsSink sink = sink(proxy.url(), job)) {
      proxy.respond(400, "", "invalid sample: something specific", 1);
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("bad", "1"));
      assertTrue(sink.flush(10_000));
      Thread.sleep(500);
      assertEquals("requests after a 400", 1, proxy.requestTimes().size());
      assertEquals(1L, (long) sink.stats().get("samples_rejected"));
      assertTrue(sink.lastError(), sink.lastError().contains("HTTP 400: invalid sample: something specific"));
      // The next snapshot goes through: one rejection stops nothing else.
      sink.writeMetrics(PushgatewayLifecycleE2ETest.counters("bad", "2"));
      assertTrue(sink.flush(10_000));
      awaitValue(Servers.prometheus(), "beam_bad_total{job=\"" + job + "\"}", 2, 30);
    }
  }
}
