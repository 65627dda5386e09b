package io.beamprometheus.e2e;

import static io.beamprometheus.e2e.Servers.await;
import static io.beamprometheus.e2e.Servers.awaitValue;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import io.beamprometheus.PrometheusMetricsSink;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricName;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.MetricsOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.junit.Test;

/**
 * Pushgateway group lifecycle against the real gateway and the real Prometheus scraping it:
 * grouping keys, replacement on re-run, deletion at the end, push_time_seconds.
 */
public class PushgatewayLifecycleE2ETest {
  static PrometheusMetricsSink sink(String job, String instance, String... extra) {
    List<String> args = new ArrayList<>(List.of(
        "--prometheusPushgatewayUrl=" + Servers.pushgateway(),
        "--prometheusJobName=" + job,
        "--prometheusGroupingKey={\"instance\":\"" + instance + "\"}",
        "--prometheusSelfMetrics=false"));
    args.addAll(List.of(extra));
    return new PrometheusMetricsSink(
        PipelineOptionsFactory.fromArgs(args.toArray(new String[0])).create().as(MetricsOptions.class));
  }

  static MetricQueryResults counters(String... nameValue) {
    List<MetricResult<Long>> list = new ArrayList<>();
    for (int i = 0; i < nameValue.length; i += 2) {
      list.add(MetricResult.attempted(MetricKey.create("step", MetricName.named("ns", nameValue[i])), Long.parseLong(nameValue[i + 1])));
    }
    return MetricQueryResults.create(list, Collections.emptyList(), Collections.emptyList(), Collections.emptyList(), Collections.emptyList(), Collections.emptyList());
  }

  static String gatewayText() throws Exception {
    HttpRequest req = HttpRequest.newBuilder(URI.create(Servers.pushgateway() + "/metrics")).timeout(Duration.ofSeconds(10)).build();
    return HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString()).body();
  }

  static double pushTime(String job, String instance) throws Exception {
    Matcher m = Pattern.compile("push_time_seconds\\{instance=\"" + Pattern.quote(instance) + "\",job=\"" + Pattern.quote(job) + "\"} (\\S+)").matcher(gatewayText());
    assertTrue("no push_time_seconds for " + job + "/" + instance, m.find());
    return Double.parseDouble(m.group(1));
  }

  @Test
  public void twoGroupingKeysDoNotClobberEachOther() {
    String job = "pg_keys_" + System.nanoTime();
    try (PrometheusMetricsSink a = sink(job, "a"); PrometheusMetricsSink b = sink(job, "b")) {
      a.writeMetrics(counters("c", "1"));
      b.writeMetrics(counters("c", "2"));
      assertTrue(a.flush(10_000) && b.flush(10_000));
      awaitValue(Servers.prometheus(), "beam_c_total{job=\"" + job + "\",instance=\"a\"}", 1, 30);
      awaitValue(Servers.prometheus(), "beam_c_total{job=\"" + job + "\",instance=\"b\"}", 2, 30);
    }
  }

  @Test
  public void aRerunWithTheSameKeyReplacesTheOldSeries() {
    String job = "pg_rerun_" + System.nanoTime();
    try (PrometheusMetricsSink first = sink(job, "i")) {
      first.writeMetrics(counters("x", "5", "y", "7"));
      assertTrue(first.flush(10_000));
    }
    awaitValue(Servers.prometheus(), "beam_y_total{job=\"" + job + "\"}", 7, 30);
    try (PrometheusMetricsSink second = sink(job, "i")) {
      second.writeMetrics(counters("x", "9"));
      assertTrue(second.flush(10_000));
    }
    awaitValue(Servers.prometheus(), "beam_x_total{job=\"" + job + "\"}", 9, 30);
    // y disappeared from the gateway; Prometheus marks it stale at the next scrape.
    await("beam_y_total{job=\"" + job + "\"}", List::isEmpty, 30);
  }

  @Test
  public void deleteOnEndRemovesTheGroup() throws Exception {
    String job = "pg_delete_" + System.nanoTime();
    PrometheusMetricsSink s = sink(job, "d", "--prometheusDeleteOnEnd=true");
    s.writeMetrics(counters("z", "3"));
    assertTrue(s.flush(10_000));
    assertTrue(gatewayText().contains("job=\"" + job + "\""));
    s.close();
    assertFalse("group still on the gateway after close", gatewayText().contains("job=\"" + job + "\""));
    await("beam_z_total{job=\"" + job + "\"}", List::isEmpty, 30);
  }

  @Test
  public void pushTimeAdvancesWithEachPush() throws Exception {
    String job = "pg_time_" + System.nanoTime();
    try (PrometheusMetricsSink s = sink(job, "t")) {
      s.writeMetrics(counters("n", "1"));
      assertTrue(s.flush(10_000));
      double t1 = pushTime(job, "t");
      Thread.sleep(1100);
      s.writeMetrics(counters("n", "2"));
      assertTrue(s.flush(10_000));
      double t2 = pushTime(job, "t");
      assertTrue(t1 + " then " + t2, t2 >= t1 + 1.0);
      assertEquals(2.0, await("beam_n_total{job=\"" + job + "\"}", r -> r.size() == 1 && r.get(0).value == 2.0, 30).get(0).value, 0);
    }
  }
}
