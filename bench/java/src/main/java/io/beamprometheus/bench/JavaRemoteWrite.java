package io.beamprometheus.bench;

import com.google.protobuf.CodedOutputStream;
import io.beamprometheus.bench.JavaMapping.Family;
import io.beamprometheus.bench.JavaMapping.Sample;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.xerial.snappy.Snappy;

/**
 * Remote-write 1.0 in pure Java: the prompb {@code WriteRequest} (remote.proto field 1
 * timeseries, 3 metadata; types.proto TimeSeries 1 labels, 2 samples; Label 1 name, 2 value;
 * Sample 1 value, 2 timestamp; MetricMetadata 1 type, 2 metric_family_name, 4 help, 5 unit)
 * written with protobuf-java's {@link CodedOutputStream}, proto3 defaults left out as generated
 * code does, compressed with snappy-java's block format; 2000 samples a request, metadata in the
 * first, as the Rust exporter sends them.
 */
public final class JavaRemoteWrite {
  public static final int CHUNK = 2000;
  /** Prometheus' ordinary NaN (never its staleness marker). */
  private static final double NORMAL_NAN = Double.longBitsToDouble(0x7ff8000000000001L);

  private final JavaMapping mapping;
  private final HttpClient http;
  private final String url;
  private long lastTime = Long.MIN_VALUE;

  public JavaRemoteWrite(String job, String url) {
    this.mapping = new JavaMapping("beam", job);
    this.url = url;
    this.http =
        url == null
            ? null
            : HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
  }

  /** The request bodies of {@code results}, every sample at {@code timeMillis}. */
  public List<byte[]> encode(MetricQueryResults results, long timeMillis) throws IOException {
    return encode(mapping.map(results), timeMillis);
  }

  /** What a synchronous Java sink would do in writeMetrics: map, encode, POST each request. */
  public void write(MetricQueryResults results) throws IOException, InterruptedException {
    long t = Math.max(System.currentTimeMillis(), lastTime + 1); // strictly later, as ours
    lastTime = t;
    for (byte[] body : encode(results, t)) {
      HttpRequest req =
          HttpRequest.newBuilder(URI.create(url))
              .timeout(Duration.ofSeconds(30))
              .header("Content-Encoding", "snappy")
              .header("Content-Type", "application/x-protobuf")
              .header("X-Prometheus-Remote-Write-Version", "0.1.0")
              .POST(HttpRequest.BodyPublishers.ofByteArray(body))
              .build();
      HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() / 100 != 2) {
        throw new IOException("remote-write: HTTP " + resp.statusCode() + ": " + resp.body());
      }
    }
  }

  private static double wire(double v) {
    return Double.isNaN(v) ? NORMAL_NAN : v;
  }

  private static int strField(int field, String s) {
    return s.isEmpty() ? 0 : CodedOutputStream.computeStringSize(field, s);
  }

  private static int sampleSize(double v, long ts) {
    return (v != 0.0 ? 9 : 0) + (ts != 0 ? CodedOutputStream.computeInt64Size(2, ts) : 0);
  }

  /** Where {@code __name__} goes among the sorted label names. */
  private static int nameAt(Sample s) {
    int i = 0;
    while (i < s.names.length && s.names[i].compareTo("__name__") < 0) i++;
    return i;
  }

  public static List<byte[]> encode(List<Family> families, long ts) throws IOException {
    List<Sample> all = new ArrayList<>();
    for (Family f : families) all.addAll(f.samples);
    List<byte[]> bodies = new ArrayList<>((all.size() + CHUNK - 1) / CHUNK);
    for (int from = 0; from < all.size(); from += CHUNK) {
      int to = Math.min(all.size(), from + CHUNK);
      // Pass 1: sizes (protobuf needs each message's length before its bytes), kept for pass 2.
      int[] seriesSizes = new int[to - from];
      int labels = 0;
      for (int i = from; i < to; i++) labels += all.get(i).names.length + 1;
      int[] labelSizes = new int[labels];
      int li = 0;
      int total = 0;
      for (int i = from; i < to; i++) {
        Sample s = all.get(i);
        int size = CodedOutputStream.computeTagSize(1) * (s.names.length + 2);
        int nameLabel = strField(1, "__name__") + strField(2, s.name);
        labelSizes[li++] = nameLabel;
        size += CodedOutputStream.computeUInt32SizeNoTag(nameLabel) + nameLabel;
        for (int l = 0; l < s.names.length; l++) {
          int ls = strField(1, s.names[l]) + strField(2, s.values[l]);
          labelSizes[li++] = ls;
          size += CodedOutputStream.computeUInt32SizeNoTag(ls) + ls;
        }
        int ss = sampleSize(wire(s.value), ts);
        size += CodedOutputStream.computeUInt32SizeNoTag(ss) + ss;
        seriesSizes[i - from] = size;
        total += 1 + CodedOutputStream.computeUInt32SizeNoTag(size) + size;
      }
      int[] metaSizes = null;
      if (from == 0) {
        metaSizes = new int[families.size()];
        for (int i = 0; i < families.size(); i++) {
          Family f = families.get(i);
          int m = CodedOutputStream.computeInt32Size(1, f.type) + strField(2, f.name) + strField(4, f.help);
          metaSizes[i] = m;
          total += 1 + CodedOutputStream.computeUInt32SizeNoTag(m) + m;
        }
      }
      // Pass 2: the bytes.
      byte[] raw = new byte[total];
      CodedOutputStream out = CodedOutputStream.newInstance(raw);
      li = 0;
      for (int i = from; i < to; i++) {
        Sample s = all.get(i);
        out.writeTag(1, 2);
        out.writeUInt32NoTag(seriesSizes[i - from]);
        int nameSize = labelSizes[li++];
        int at = nameAt(s);
        for (int l = 0; l <= s.names.length; l++) {
          if (l == at) {
            writeLabel(out, nameSize, "__name__", s.name);
          }
          if (l < s.names.length) {
            writeLabel(out, labelSizes[li++], s.names[l], s.values[l]);
          }
        }
        double v = wire(s.value);
        out.writeTag(2, 2);
        out.writeUInt32NoTag(sampleSize(v, ts));
        if (v != 0.0) out.writeDouble(1, v);
        if (ts != 0) out.writeInt64(2, ts);
      }
      if (metaSizes != null) {
        for (int i = 0; i < families.size(); i++) {
          Family f = families.get(i);
          out.writeTag(3, 2);
          out.writeUInt32NoTag(metaSizes[i]);
          out.writeInt32(1, f.type);
          if (!f.name.isEmpty()) out.writeString(2, f.name);
          if (!f.help.isEmpty()) out.writeString(4, f.help);
        }
      }
      out.checkNoSpaceLeft();
      bodies.add(Snappy.compress(raw));
    }
    return bodies;
  }

  private static void writeLabel(CodedOutputStream out, int size, String k, String v) throws IOException {
    out.writeTag(1, 2);
    out.writeUInt32NoTag(size);
    if (!k.isEmpty()) out.writeString(1, k);
    if (!v.isEmpty()) out.writeString(2, v);
  }
}
