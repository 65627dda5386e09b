package io.beamprometheus.bench;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.beam.sdk.metrics.DistributionResult;
import org.apache.beam.sdk.metrics.GaugeResult;
import org.apache.beam.sdk.metrics.MetricKey;
import org.apache.beam.sdk.metrics.MetricQueryResults;
import org.apache.beam.sdk.metrics.MetricResult;
import org.apache.beam.sdk.metrics.StringSetResult;

/**
 * The pure-Java side of the comparison: the mapping of src/naming.rs (README "Metric mapping")
 * written in Java, for the kinds the workload has (counters, distributions, gauges, string sets)
 * and attempted values, with the same rules — sanitized names with kind suffixes, job, namespace,
 * step and result labels, label values capped, empty values dropped, clashing names told apart,
 * families sorted by name, samples by name and labels, exact duplicates dropped — so that its
 * remote-write bodies carry exactly the series the Rust core sends.
 */
public final class JavaMapping {
  public static final int COUNTER = 1, GAUGE = 2, HISTOGRAM = 3, SUMMARY = 5, INFO = 6;
  static final int MAX_NAME_LEN = 200, MAX_SUFFIX_LEN = 32, MAX_LABEL_VALUE_LEN = 1024;

  public static final class Sample implements Comparable<Sample> {
    public final String name;
    /** Label names and values, sorted by name; {@code __name__} not included. */
    public final String[] names;
    public final String[] values;
    public final double value;

    Sample(String name, String[] names, String[] values, double value) {
      this.name = name;
      this.names = names;
      this.values = values;
      this.value = value;
    }

    @Override
    public int compareTo(Sample o) {
      int c = name.compareTo(o.name);
      for (int i = 0; c == 0 && i < Math.min(names.length, o.names.length); i++) {
        c = names[i].compareTo(o.names[i]);
        if (c == 0) c = values[i].compareTo(o.values[i]);
      }
      return c != 0 ? c : Integer.compare(names.length, o.names.length);
    }
  }

  public static final class Family {
    public final String name;
    public final int type;
    public final String help;
    public final List<Sample> samples = new ArrayList<>();

    Family(String name, int type, String help) {
      this.name = name;
      this.type = type;
      this.help = help;
    }
  }

  private final String prefix;
  private final String job;

  public JavaMapping(String prefix, String job) {
    this.prefix = squash(prefix);
    this.job = job;
  }

  private static String squash(String s) {
    StringBuilder out = new StringBuilder(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      boolean alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (!alnum) {
        // Non-ASCII characters (surrogate pairs included) become one '_', as Rust's chars() does.
        if (Character.isHighSurrogate(c) && i + 1 < s.length()) i++;
        c = '_';
      }
      if (c == '_' && out.length() > 0 && out.charAt(out.length() - 1) == '_') continue;
      out.append(c);
    }
    return out.toString();
  }

  private static String trimUnderscores(String s) {
    int a = 0, b = s.length();
    while (a < b && s.charAt(a) == '_') a++;
    while (b > a && s.charAt(b - 1) == '_') b--;
    return s.substring(a, b);
  }

  static String stableHash(String s) {
    long h = 0xcbf29ce484222325L;
    for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
      h ^= (b & 0xff);
      h *= 0x100000001b3L;
    }
    return String.format("%08x", (int) (h >>> 32) ^ (int) h);
  }

  String metricName(String beamName, String suffix) {
    String part = trimUnderscores(squash(beamName));
    if (part.isEmpty()) part = "m" + stableHash(beamName);
    String p = trimUnderscores(prefix);
    StringBuilder name = new StringBuilder(p.length() + part.length() + 32);
    if (!p.isEmpty()) name.append(p).append('_');
    name.append(part);
    if (name.charAt(0) >= '0' && name.charAt(0) <= '9') name.insert(0, '_');
    int room = MAX_NAME_LEN - Math.max(suffix.length(), MAX_SUFFIX_LEN);
    if (name.length() > room) {
      String h = stableHash(name.toString());
      name.setLength(room - h.length() - 1);
      while (name.length() > 0 && name.charAt(name.length() - 1) == '_') name.setLength(name.length() - 1);
      name.append('_').append(h);
    }
    return name.append(suffix).toString();
  }

  static String labelValue(String raw) {
    if (raw.length() * 3 <= MAX_LABEL_VALUE_LEN) return raw; // at most 3 UTF-8 bytes a char
    byte[] b = raw.getBytes(StandardCharsets.UTF_8);
    if (b.length <= MAX_LABEL_VALUE_LEN) return raw;
    String h = stableHash(raw);
    int cut = MAX_LABEL_VALUE_LEN - h.length() - 1;
    while ((b[cut] & 0xc0) == 0x80) cut--;
    return new String(b, 0, cut, StandardCharsets.UTF_8) + "_" + h;
  }

  private static final class Group {
    final int kind;
    final String stem, namespace, step;

    Group(int kind, String stem, String namespace, String step) {
      this.kind = kind;
      this.stem = stem;
      this.namespace = namespace;
      this.step = step;
    }

    @Override
    public boolean equals(Object o) {
      Group g = (Group) o;
      return kind == g.kind && stem.equals(g.stem) && namespace.equals(g.namespace) && step.equals(g.step);
    }

    @Override
    public int hashCode() {
      return Objects.hash(kind, stem, namespace, step);
    }
  }

  private final class Builder {
    final TreeMap<String, Family> families = new TreeMap<>();

    void push(String family, int type, String help, String name, String[] base, String extraName, String extraValue, double value) {
      int n = base.length / 2 + (extraName != null ? 1 : 0);
      String[][] pairs = new String[n][];
      int k = 0;
      for (int i = 0; i < base.length; i += 2) {
        if (!base[i + 1].isEmpty()) pairs[k++] = new String[] {base[i], base[i + 1]};
      }
      if (extraName != null) {
        String v = labelValue(extraValue);
        if (!v.isEmpty()) pairs[k++] = new String[] {extraName, v};
      }
      Arrays.sort(pairs, 0, k, (a, b) -> {
        int c = a[0].compareTo(b[0]);
        return c != 0 ? c : a[1].compareTo(b[1]);
      });
      String[] names = new String[k], values = new String[k];
      for (int i = 0; i < k; i++) {
        names[i] = pairs[i][0];
        values[i] = pairs[i][1];
      }
      Family f = families.get(family);
      if (f == null) {
        f = new Family(family, type, help);
        families.put(family, f);
      }
      f.samples.add(new Sample(name, names, values, value));
    }
  }

  /** Maps the attempted values of {@code results}; families sorted by name. */
  public List<Family> map(MetricQueryResults results) {
    Map<Group, List<String>> groups = new HashMap<>();
    group(groups, 1, results.getCounters());
    group(groups, 2, results.getDistributions());
    group(groups, 3, results.getGauges());
    group(groups, 4, results.getStringSets());
    Builder b = new Builder();
    for (MetricResult<Long> r : results.getCounters()) {
      String[] base = base(r.getKey(), clash(groups, 1, r.getKey()));
      String name = r.getKey().metricName().getName();
      String n = metricName(name, "_total");
      b.push(n, COUNTER, "Beam counter " + name, n, base, null, null, (double) r.getAttempted());
    }
    for (MetricResult<DistributionResult> r : results.getDistributions()) {
      String[] base = base(r.getKey(), clash(groups, 2, r.getKey()));
      String name = r.getKey().metricName().getName();
      DistributionResult d = r.getAttempted();
      String fam = metricName(name, "_distribution");
      String help = "Beam distribution " + name;
      b.push(fam, SUMMARY, help, metricName(name, "_distribution_sum"), base, null, null, (double) d.getSum());
      b.push(fam, SUMMARY, help, metricName(name, "_distribution_count"), base, null, null, (double) d.getCount());
      if (d.getCount() > 0) {
        String min = metricName(name, "_distribution_min");
        b.push(min, GAUGE, "Beam distribution " + name + " (minimum)", min, base, null, null, (double) d.getMin());
        String max = metricName(name, "_distribution_max");
        b.push(max, GAUGE, "Beam distribution " + name + " (maximum)", max, base, null, null, (double) d.getMax());
      }
    }
    for (MetricResult<GaugeResult> r : results.getGauges()) {
      GaugeResult g = r.getAttempted();
      long ts = g.getTimestamp().getMillis();
      if (ts == 0) continue;
      String[] base = base(r.getKey(), clash(groups, 3, r.getKey()));
      String name = r.getKey().metricName().getName();
      String n = metricName(name, "_gauge");
      b.push(n, GAUGE, "Beam gauge " + name, n, base, null, null, (double) g.getValue());
      String t = metricName(name, "_gauge_timestamp_seconds");
      b.push(t, GAUGE, "When Beam gauge " + name + " was last set (Unix seconds)", t, base, null, null, ts / 1000.0);
    }
    for (MetricResult<StringSetResult> r : results.getStringSets()) {
      String[] base = base(r.getKey(), clash(groups, 4, r.getKey()));
      String name = r.getKey().metricName().getName();
      String n = metricName(name, "_string_set_info");
      String help = "Beam string set " + name + ": one series per element";
      int cap = 100;
      for (String e : new TreeSet<>(r.getAttempted().getStringSet())) {
        if (cap-- == 0) break;
        b.push(n, INFO, help, n, base, "value", e, 1.0);
      }
    }
    List<Family> out = new ArrayList<>(b.families.values());
    for (Family f : out) {
      f.samples.sort(null);
      for (int i = f.samples.size() - 1; i > 0; i--) {
        if (f.samples.get(i).compareTo(f.samples.get(i - 1)) == 0) f.samples.remove(i);
      }
    }
    return out;
  }

  private <T> void group(Map<Group, List<String>> groups, int kind, Iterable<MetricResult<T>> results) {
    for (MetricResult<T> r : results) {
      MetricKey k = r.getKey();
      String name = k.metricName().getName();
      List<String> names =
          groups.computeIfAbsent(
              new Group(kind, metricName(name, ""), k.metricName().getNamespace(), step(k)), x -> new ArrayList<>(1));
      if (!names.contains(name)) names.add(name);
    }
  }

  /**
   * As src/naming.rs decides it: a metric whose name the sanitizer changed carries it in
   * beam_metric, whatever other metrics exist (so series identity depends on the metric alone).
   */
  private boolean clash(Map<Group, List<String>> groups, int kind, MetricKey k) {
    String name = k.metricName().getName();
    return !metricName(name, "").equals((prefix.isEmpty() ? "" : prefix + "_") + name);
  }

  private static String step(MetricKey k) {
    return k.stepName() == null ? "" : k.stepName();
  }

  /** job, namespace, step, result (and beam_metric on a clash), as name/value pairs. */
  private String[] base(MetricKey k, boolean clash) {
    String[] base = new String[clash ? 10 : 8];
    base[0] = "job";
    base[1] = labelValue(job);
    base[2] = "namespace";
    base[3] = labelValue(k.metricName().getNamespace());
    base[4] = "step";
    base[5] = labelValue(step(k));
    base[6] = "result";
    base[7] = "attempted";
    if (clash) {
      base[8] = "beam_metric";
      base[9] = labelValue(k.metricName().getName());
    }
    return base;
  }
}
