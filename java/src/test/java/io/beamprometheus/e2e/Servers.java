package io.beamprometheus.e2e;

import static org.junit.Assert.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

/**
 * The real servers tests/run_all.sh started, and PromQL over Prometheus' HTTP API. A missing
 * address fails the test: an end-to-end test never passes without its server.
 */
public final class Servers {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private static final ObjectMapper JSON = new ObjectMapper();

  private Servers() {}

  public static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      fail(name + " is not set: run the end-to-end tests through tests/run_all.sh, which starts the servers");
    }
    return v;
  }

  /** Prometheus base URL (remote-write receiver, and scraper of the Pushgateway). */
  public static String prometheus() {
    return env("BEAMPROM_PROMETHEUS_URL");
  }

  /** Prometheus 3 (remote-write 1.0 and 2.0 receiver, scraper of the same Pushgateway). */
  public static String prometheus3() {
    return env("BEAMPROM_PROMETHEUS3_URL");
  }

  public static String pushgateway() {
    return env("BEAMPROM_PUSHGATEWAY_URL");
  }

  public static String victoriaMetrics() {
    return env("BEAMPROM_VICTORIA_URL");
  }

  public static String remoteWriteUrl() {
    return prometheus() + "/api/v1/write";
  }

  /** One instant-vector sample: its labels and value. */
  public static final class Sample {
    public final JsonNode metric;
    public final double value;

    Sample(JsonNode metric, double value) {
      this.metric = metric;
      this.value = value;
    }

    public String label(String name) {
      JsonNode v = metric.get(name);
      return v == null ? null : v.asText();
    }

    @Override
    public String toString() {
      return metric + "=" + value;
    }
  }

  public static JsonNode get(String url) {
    try {
      HttpRequest req = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET().build();
      HttpResponse<String> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() != 200) {
        throw new AssertionError(url + " answered " + resp.statusCode() + ": " + resp.body());
      }
      return JSON.readTree(resp.body());
    } catch (java.io.IOException | InterruptedException e) {
      throw new AssertionError("GET " + url + " failed: " + e, e);
    }
  }

  /** An instant query against the given Prometheus-compatible base URL. */
  public static List<Sample> query(String base, String promql) {
    JsonNode doc = get(base + "/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8));
    List<Sample> out = new ArrayList<>();
    for (JsonNode r : doc.get("data").get("result")) {
      out.add(new Sample(r.get("metric"), Double.parseDouble(r.get("value").get(1).asText())));
    }
    return out;
  }

  public static List<Sample> query(String promql) {
    return query(prometheus(), promql);
  }

  /** Polls until the query's result satisfies {@code done}, at most {@code seconds}. */
  public static List<Sample> await(String base, String promql, Predicate<List<Sample>> done, int seconds) {
    long deadline = System.nanoTime() + seconds * 1_000_000_000L;
    List<Sample> last = null;
    while (System.nanoTime() < deadline) {
      last = query(base, promql);
      if (done.test(last)) {
        return last;
      }
      try {
        Thread.sleep(250);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    throw new AssertionError("after " + seconds + " s, " + promql + " on " + base + " gave " + last);
  }

  public static List<Sample> await(String promql, Predicate<List<Sample>> done, int seconds) {
    return await(prometheus(), promql, done, seconds);
  }

  /** The single value of a query that must return exactly one series. */
  public static double awaitValue(String base, String promql, double expected, int seconds) {
    List<Sample> r = await(base, promql, s -> s.size() == 1 && s.get(0).value == expected, seconds);
    return r.get(0).value;
  }
}
