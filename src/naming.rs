//! The one place where Beam metrics become Prometheus families, series names and labels.
//! Both encoders (remote-write and the Pushgateway text format) only serialize what this decides.
//! The mapping is documented in README.md ("Metric mapping").

use crate::model::{Kind, Metric, Snapshot, Value};
use std::collections::{BTreeMap, HashMap};

/// Longest metric name we emit; longer ones are cut and given a hash suffix.
pub const MAX_NAME_LEN: usize = 200;
/// Room kept for suffixes when a name is cut (the longest, "_gauge_timestamp_seconds", has 24).
const MAX_SUFFIX_LEN: usize = 32;
/// Longest label value we emit (bytes); Mimir's default limit is 2048, Cortex' 1024.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;

/// Label names this mapping uses itself; constant labels may not take them.
pub const RESERVED_LABELS: &[&str] =
    &["job", "namespace", "step", "result", "beam_metric", "le", "quantile", "value", "path", "truncated"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    Attempted,
    Committed,
    Both,
}

#[derive(Clone, Debug)]
pub struct NamingConfig {
    pub prefix: String,
    pub job: String,
    /// Already sanitized and checked against `RESERVED_LABELS` by `config`.
    pub const_labels: Vec<(String, String)>,
    pub selection: Selection,
    /// Most entries one string set or bounded trie may export; the rest is counted in `Mapped::capped`.
    pub set_cap: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FamilyType {
    Counter,
    Gauge,
    Summary,
    Histogram,
    /// Info-style series (value 1, the data in labels); a gauge in the 0.0.4 text format.
    Info,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Sorted by name, names unique, values non-empty; `__name__` is not included.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub typ: FamilyType,
    pub help: String,
    pub unit: &'static str,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapped {
    /// Sorted by name; every family name unique.
    pub families: Vec<Family>,
    /// String-set / bounded-trie entries left out by `set_cap`.
    pub capped: u64,
    /// Series that mapped onto an already emitted series and were dropped.
    pub duplicates: u64,
}

impl Mapped {
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

/// FNV-1a: stable across runs and platforms, so a capped name is the same on every push.
pub fn stable_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", (h >> 32) as u32 ^ h as u32)
}

/// Replaces every character outside `[a-zA-Z0-9_]` by `_` and folds runs of `_`.
fn squash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out
}

/// A metric name from the prefix and a Beam name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, without `:`
/// (reserved for recording rules), no runs of `_`, at most `MAX_NAME_LEN` long with `suffix`.
pub fn metric_name(prefix: &str, beam_name: &str, suffix: &str) -> String {
    let mut part = squash(beam_name).trim_matches('_').to_string();
    if part.is_empty() {
        // Nothing of the name survives (e.g. all non-ASCII): keep it distinct and stable.
        part = format!("m{}", stable_hash(beam_name));
    }
    let prefix = squash(prefix).trim_matches('_').to_string();
    let mut name = if prefix.is_empty() { part } else { format!("{}_{}", prefix, part) };
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    // The cut must not depend on the suffix: a family and its samples (`_sum`, `_bucket`, …)
    // need the same stem, so room is kept for the longest suffix the mapping uses.
    let room = MAX_NAME_LEN - suffix.len().max(MAX_SUFFIX_LEN);
    if name.len() > room {
        let h = stable_hash(&name);
        name.truncate(room - h.len() - 1);
        let t = name.trim_end_matches('_').len();
        name.truncate(t);
        name.push('_');
        name.push_str(&h);
    }
    name.push_str(suffix);
    name
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`, never starting with `__`, never empty.
pub fn label_name(raw: &str) -> String {
    let mut s = squash(raw);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if s.is_empty() || s == "_" {
        s = format!("label_{}", stable_hash(raw));
    }
    s
}

/// A label value cut to `MAX_LABEL_VALUE_LEN` bytes (on a char boundary) with a hash suffix.
pub fn label_value(raw: &str) -> String {
    if raw.len() <= MAX_LABEL_VALUE_LEN {
        return raw.to_string();
    }
    let h = stable_hash(raw);
    let mut cut = MAX_LABEL_VALUE_LEN - h.len() - 1;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{}", &raw[..cut], h)
}

struct Builder<'a> {
    cfg: &'a NamingConfig,
    families: BTreeMap<String, Family>,
    capped: u64,
}

impl Builder<'_> {
    fn push(
        &mut self,
        family: &str,
        typ: FamilyType,
        help: &str,
        name: String,
        base: &[(String, String)],
        extra: &[(&str, String)],
        value: f64,
    ) {
        let mut labels: Vec<(String, String)> = Vec::with_capacity(base.len() + extra.len());
        labels.extend(base.iter().cloned());
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), label_value(v))));
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        let f = self.families.entry(family.to_string()).or_insert_with(|| Family {
            name: family.to_string(),
            typ,
            help: help.to_string(),
            unit: "",
            samples: Vec::new(),
        });
        f.samples.push(Sample { name, labels, value });
    }

    fn metric(&mut self, m: &Metric, value: &Value, result: &str, disambiguate: bool) {
        let cfg = self.cfg;
        let key = &m.key;
        let mut base: Vec<(String, String)> =
            cfg.const_labels.iter().map(|(k, v)| (k.clone(), label_value(v))).collect();
        base.push(("job".into(), label_value(&cfg.job)));
        base.push(("namespace".into(), label_value(&key.namespace)));
        base.push(("step".into(), label_value(&key.step)));
        base.push(("result".into(), result.to_string()));
        for (k, v) in &key.labels {
            // Beam metric labels (MetricName.getLabels) keep their names unless the mapping uses them.
            let mut name = label_name(k);
            if RESERVED_LABELS.contains(&name.as_str()) || cfg.const_labels.iter().any(|(c, _)| *c == name) {
                name = format!("label_{}", name.trim_start_matches('_'));
            }
            if !base.iter().any(|(b, _)| *b == name) {
                base.push((name, label_value(v)));
            }
        }
        if disambiguate {
            base.push(("beam_metric".into(), label_value(&key.name)));
        }
        let n = |suffix: &str| metric_name(&cfg.prefix, &key.name, suffix);
        match value {
            Value::Counter(c) => {
                let name = n("_total");
                let help = format!("Beam counter {}", key.name);
                self.push(&name.clone(), FamilyType::Counter, &help, name, &base, &[], *c as f64);
            }
            Value::Distribution { sum, count, min, max } => {
                let fam = n("_distribution");
                let help = format!("Beam distribution {}", key.name);
                self.push(&fam, FamilyType::Summary, &help, n("_distribution_sum"), &base, &[], *sum as f64);
                self.push(&fam, FamilyType::Summary, &help, n("_distribution_count"), &base, &[], *count as f64);
                // Beam reports an empty distribution as min=Long.MAX_VALUE, max=Long.MIN_VALUE.
                if *count > 0 {
                    for (suffix, v, what) in [("_distribution_min", min, "minimum"), ("_distribution_max", max, "maximum")] {
                        let name = n(suffix);
                        let help = format!("Beam distribution {} ({})", key.name, what);
                        self.push(&name.clone(), FamilyType::Gauge, &help, name, &base, &[], *v as f64);
                    }
                }
            }
            Value::Gauge { value, timestamp_ms } => {
                // Beam's empty gauge (never set) has timestamp 0: nothing to report yet.
                if *timestamp_ms == 0 {
                    return;
                }
                let name = n("_gauge");
                let help = format!("Beam gauge {}", key.name);
                self.push(&name.clone(), FamilyType::Gauge, &help, name, &base, &[], *value as f64);
                let name = n("_gauge_timestamp_seconds");
                let help = format!("When Beam gauge {} was last set (Unix seconds)", key.name);
                self.push(&name.clone(), FamilyType::Gauge, &help, name, &base, &[], *timestamp_ms as f64 / 1000.0);
            }
            Value::StringSet(set) => {
                let name = n("_string_set_info");
                let help = format!("Beam string set {}: one series per element", key.name);
                let mut entries: Vec<&String> = set.iter().collect();
                entries.sort();
                entries.dedup();
                if entries.len() > cfg.set_cap {
                    self.capped += (entries.len() - cfg.set_cap) as u64;
                    entries.truncate(cfg.set_cap);
                }
                for e in entries {
                    self.push(&name, FamilyType::Info, &help, name.clone(), &base, &[("value", e.clone())], 1.0);
                }
            }
            Value::BoundedTrie(paths) => {
                let name = n("_bounded_trie_info");
                let help = format!("Beam bounded trie {}: one series per path", key.name);
                let mut entries: Vec<(String, bool)> =
                    paths.iter().map(|p| (p.segments.join("/"), p.truncated)).collect();
                entries.sort();
                entries.dedup();
                if entries.len() > cfg.set_cap {
                    self.capped += (entries.len() - cfg.set_cap) as u64;
                    entries.truncate(cfg.set_cap);
                }
                for (path, truncated) in entries {
                    let extra = [("path", path), ("truncated", truncated.to_string())];
                    self.push(&name, FamilyType::Info, &help, name.clone(), &base, &extra, 1.0);
                }
            }
            Value::Histogram(h) => {
                let fam = n("_histogram");
                let help = format!("Beam histogram {}", key.name);
                let bucket = n("_histogram_bucket");
                let mut cumulative: i64 = 0;
                let mut saw_inf = false;
                for (le, c) in &h.buckets {
                    cumulative = cumulative.saturating_add(*c);
                    saw_inf |= *le == f64::INFINITY;
                    self.push(&fam, FamilyType::Histogram, &help, bucket.clone(), &base, &[("le", format_float(*le))], cumulative as f64);
                }
                if !saw_inf {
                    self.push(&fam, FamilyType::Histogram, &help, bucket, &base, &[("le", "+Inf".into())], cumulative as f64);
                }
                self.push(&fam, FamilyType::Histogram, &help, n("_histogram_sum"), &base, &[], h.sum);
                self.push(&fam, FamilyType::Histogram, &help, n("_histogram_count"), &base, &[], cumulative as f64);
            }
        }
    }
}

/// Formats a float the way Prometheus does in the text format and in `le` labels.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{}", v)
    }
}

/// By name, then labels, with histogram buckets in numeric `le` order (as exposition expects)
/// rather than as strings ("+Inf" < "1" < "10" < "5").
fn sample_order(a: &Sample, b: &Sample) -> std::cmp::Ordering {
    let le = |s: &Sample| s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| parse_le(v));
    let rest = |s: &Sample| s.labels.iter().filter(|(k, _)| k != "le").cloned().collect::<Vec<_>>();
    a.name
        .cmp(&b.name)
        .then_with(|| rest(a).cmp(&rest(b)))
        .then_with(|| match (le(a), le(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
        // A total order even for odd bounds (NaN), so equal series end up adjacent for dedup.
        .then_with(|| a.labels.cmp(&b.labels))
}

fn parse_le(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

/// Maps one snapshot to Prometheus families.
pub fn map(snapshot: &Snapshot, cfg: &NamingConfig) -> Mapped {
    // Two Beam names that sanitize alike (e.g. "a.b" and "a_b") in the same namespace and step
    // would be one series: such metrics all get a `beam_metric` label with the original name.
    let mut groups: HashMap<(Kind, String, &str, &str), Vec<&str>> = HashMap::new();
    for m in &snapshot.metrics {
        if let Some(kind) = m.kind() {
            let e = groups
                .entry((kind, metric_name(&cfg.prefix, &m.key.name, ""), m.key.namespace.as_str(), m.key.step.as_str()))
                .or_default();
            if !e.contains(&m.key.name.as_str()) {
                e.push(m.key.name.as_str());
            }
        }
    }
    let mut b = Builder { cfg, families: BTreeMap::new(), capped: 0 };
    for m in &snapshot.metrics {
        let Some(kind) = m.kind() else { continue };
        let clash = groups[&(kind, metric_name(&cfg.prefix, &m.key.name, ""), m.key.namespace.as_str(), m.key.step.as_str())].len() > 1;
        let wants_attempted = cfg.selection != Selection::Committed;
        let wants_committed = cfg.selection != Selection::Attempted;
        if let (true, Some(v)) = (wants_attempted, &m.attempted) {
            b.metric(m, v, "attempted", clash);
        }
        if let (true, Some(v)) = (wants_committed, &m.committed) {
            b.metric(m, v, "committed", clash);
        }
    }
    let mut duplicates = 0u64;
    let mut families: Vec<Family> = b.families.into_values().collect();
    for f in &mut families {
        // Stable order; an exact duplicate series would make a receiver reject the whole batch.
        f.samples.sort_by(sample_order);
        let before = f.samples.len();
        f.samples.dedup_by(|a, b| a.name == b.name && a.labels == b.labels);
        duplicates += (before - f.samples.len()) as u64;
    }
    Mapped { families, capped: b.capped, duplicates }
}
