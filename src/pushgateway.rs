//! The Pushgateway: text exposition format 0.0.4 bodies and grouping-key URLs.
//! API: https://github.com/prometheus/pushgateway#api

use crate::naming::{FamilyType, Mapped};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// As `naming::format_float`, without a String per value.
fn write_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{}", v);
    }
}

fn type_word(t: FamilyType) -> &'static str {
    match t {
        FamilyType::Counter => "counter",
        FamilyType::Gauge | FamilyType::Info => "gauge",
        FamilyType::Summary => "summary",
        FamilyType::Histogram => "histogram",
    }
}

/// Renders the families as one text-format body: one block per family, no timestamps (the
/// gateway rejects them), and without the labels that the grouping key already sets.
pub fn render(mapped: &Mapped, grouping_labels: &[&str]) -> String {
    let mut out = String::new();
    render_into(mapped, grouping_labels, &mut out);
    out
}

/// `render`, appended to `out` (a buffer kept from an earlier body: `reuse::KeptBody`).
pub fn render_into(mapped: &Mapped, grouping_labels: &[&str], out: &mut String) {
    out.reserve(mapped.sample_count() * 96);
    for f in &mapped.families {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape_help(&f.help, out);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(type_word(f.typ));
        out.push('\n');
        for s in crate::naming::prefetched(&f.samples) {
            out.push_str(&s.name);
            let mut first = true;
            for (k, v) in s.labels.iter().filter(|(k, _)| !grouping_labels.contains(&&**k)) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(v, out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            write_float(s.value, out);
            out.push('\n');
        }
    }
}

/// The delimited protobuf exposition format (`io.prometheus.client.MetricFamily`, client_model's
/// metrics.proto): the gateway takes it 1.5–1.8× faster than the same series as text (BENCHMARKS.md).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

mod pb {
    //! Writers for metrics.proto (proto2: set fields are written even when zero).
    pub use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

    pub fn string(tag: u32, s: &str, out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }

    pub fn double(tag: u32, v: f64, out: &mut Vec<u8>) {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn varint(tag: u32, v: u64, out: &mut Vec<u8>) {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }

    /// A nested message: `body` writes it into `scratch`, which is then appended with its length.
    pub fn message(tag: u32, out: &mut Vec<u8>, scratch: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
        scratch.clear();
        body(scratch);
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(scratch.len() as u64, out);
        out.extend_from_slice(scratch);
    }
}

/// A count as metrics.proto's uint64 (Beam's counts are never negative; NaN becomes 0).
fn as_count(v: f64) -> u64 {
    if v > 0.0 { v as u64 } else { 0 }
}

/// The same families as `render`, as delimited `MetricFamily` messages (see `PushPlan`).
pub fn render_protobuf(mapped: &Mapped, grouping_labels: &[&str]) -> Vec<u8> {
    PushPlan::new(mapped, grouping_labels).render(&mapped.values())
}

/// The protobuf body of one mapping with its values left out: every family's header and every
/// `Metric`'s labels encoded once, and where each value comes from (the index of a sample in
/// the mapping's family-by-family order). A summary's `_sum` and `_count` series (a histogram's
/// `_bucket`s, `_sum` and `_count`) with the same labels become one `Metric`, as metrics.proto
/// has them. The exporter keeps the plan while the mapping is reused (`reuse::MappingCache`).
#[derive(Debug, Default)]
pub struct PushPlan {
    families: Vec<PlanFamily>,
    /// `render_into`'s working buffers (every metric's value message and where it ends, every
    /// family's length), kept: each push of a large mapping would otherwise allocate them anew.
    vals: Vec<u8>,
    ends: Vec<usize>,
    family_lens: Vec<usize>,
}

#[derive(Debug)]
struct PlanFamily {
    /// name, help and type fields.
    header: Vec<u8>,
    metrics: Vec<(Vec<u8>, Slot)>,
}

#[derive(Debug)]
enum Slot {
    Counter(usize),
    Gauge(usize),
    Summary { sum: Option<usize>, count: Option<usize> },
    Histogram { sum: Option<usize>, count: Option<usize>, buckets: Vec<(f64, usize)> },
}

impl PushPlan {
    pub fn new(mapped: &Mapped, grouping_labels: &[&str]) -> PushPlan {
        type Labels<'a> = Vec<&'a (crate::naming::Text, crate::naming::Text)>;
        let mut scratch = Vec::new();
        let encode_labels = |labels: &mut dyn Iterator<Item = &(crate::naming::Text, crate::naming::Text)>, scratch: &mut Vec<u8>| {
            let mut out = Vec::new();
            for (k, v) in labels.filter(|(k, _)| !grouping_labels.contains(&&**k)) {
                pb::message(1, &mut out, scratch, |m| {
                    pb::string(1, k, m);
                    pb::string(2, v, m);
                });
            }
            out
        };
        let mut plan = PushPlan::default();
        let mut next = 0usize;
        let mut index: std::collections::HashMap<Labels, usize, crate::naming::FxBuild> = Default::default();
        for f in &mapped.families {
            let mut header = Vec::new();
            pb::string(1, &f.name, &mut header);
            pb::string(2, &f.help, &mut header);
            let typ = match f.typ {
                FamilyType::Counter => 0,
                FamilyType::Gauge | FamilyType::Info => 1,
                FamilyType::Summary => 2,
                FamilyType::Histogram => 4,
            };
            pb::varint(3, typ, &mut header);
            let mut metrics = Vec::with_capacity(f.samples.len());
            match f.typ {
                FamilyType::Counter | FamilyType::Gauge | FamilyType::Info => {
                    for s in crate::naming::prefetched(&f.samples) {
                        let slot = if f.typ == FamilyType::Counter { Slot::Counter(next) } else { Slot::Gauge(next) };
                        metrics.push((encode_labels(&mut s.labels.iter(), &mut scratch), slot));
                        next += 1;
                    }
                }
                FamilyType::Summary | FamilyType::Histogram => {
                    index.clear();
                    for s in crate::naming::prefetched(&f.samples) {
                        let key: Labels = s.labels.iter().filter(|(k, _)| &**k != "le").collect();
                        let at = match index.get(&key) {
                            Some(at) => *at,
                            None => {
                                let labels = encode_labels(&mut key.iter().copied(), &mut scratch);
                                let slot = if f.typ == FamilyType::Summary {
                                    Slot::Summary { sum: None, count: None }
                                } else {
                                    Slot::Histogram { sum: None, count: None, buckets: Vec::new() }
                                };
                                metrics.push((labels, slot));
                                index.insert(key, metrics.len() - 1);
                                metrics.len() - 1
                            }
                        };
                        let suffix = s.name.get(f.name.len()..).unwrap_or("");
                        match (&mut metrics[at].1, suffix) {
                            (Slot::Summary { sum, .. } | Slot::Histogram { sum, .. }, "_sum") => *sum = Some(next),
                            (Slot::Summary { count, .. } | Slot::Histogram { count, .. }, "_count") => *count = Some(next),
                            (Slot::Histogram { buckets, .. }, _) => {
                                let le = s.labels.iter().find(|(k, _)| &**k == "le").map(|(_, v)| &**v).unwrap_or("+Inf");
                                let bound = match le {
                                    "+Inf" => f64::INFINITY,
                                    "-Inf" => f64::NEG_INFINITY,
                                    v => v.parse().unwrap_or(f64::NAN),
                                };
                                buckets.push((bound, next));
                            }
                            // A summary has only _sum and _count series.
                            _ => {}
                        }
                        next += 1;
                    }
                }
            }
            plan.families.push(PlanFamily { header, metrics });
        }
        plan
    }

    /// The body, `values` in the mapping's family-by-family sample order. The value messages
    /// are written first (they are small), so every length is known before the labels, most of
    /// the body, are copied: once, straight into the body.
    pub fn render(&mut self, values: &[f64]) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(values, &mut out);
        out
    }

    /// `render`, appended to `out` (a buffer kept from an earlier body: `reuse::KeptBody`).
    pub fn render_into(&mut self, values: &[f64], out: &mut Vec<u8>) {
        let v = |i: &Option<usize>| i.and_then(|i| values.get(i)).copied().unwrap_or(0.0);
        let (vals, ends, family_lens) = (&mut self.vals, &mut self.ends, &mut self.family_lens);
        vals.clear();
        ends.clear();
        family_lens.clear();
        let (mut inner, mut bucket) = (Vec::new(), Vec::new());
        for f in &self.families {
            let mut len = f.header.len();
            for (labels, slot) in &f.metrics {
                let start = vals.len();
                match slot {
                    Slot::Counter(i) => pb::message(3, vals, &mut inner, |m| pb::double(1, v(&Some(*i)), m)),
                    Slot::Gauge(i) => pb::message(2, vals, &mut inner, |m| pb::double(1, v(&Some(*i)), m)),
                    Slot::Summary { sum, count } => pb::message(4, vals, &mut inner, |m| {
                        pb::varint(1, as_count(v(count)), m);
                        pb::double(2, v(sum), m);
                    }),
                    Slot::Histogram { sum, count, buckets } => pb::message(7, vals, &mut inner, |m| {
                        pb::varint(1, as_count(v(count)), m);
                        pb::double(2, v(sum), m);
                        for (bound, i) in buckets {
                            pb::message(3, m, &mut bucket, |b| {
                                pb::varint(1, as_count(v(&Some(*i))), b);
                                pb::double(2, *bound, b);
                            });
                        }
                    }),
                }
                let metric = labels.len() + vals.len() - start;
                len += 1 + pb::encoded_len_varint(metric as u64) + metric;
                ends.push(vals.len());
            }
            family_lens.push(len);
        }
        let total: usize = family_lens.iter().map(|&l| pb::encoded_len_varint(l as u64) + l).sum();
        let start = out.len();
        out.reserve(total);
        let (mut at, mut ends) = (0, ends.iter().copied());
        for (f, &len) in self.families.iter().zip(family_lens.iter()) {
            pb::encode_varint(len as u64, out);
            out.extend_from_slice(&f.header);
            for (labels, _) in &f.metrics {
                let end = ends.next().unwrap_or(at);
                let value = &vals[at..end];
                at = end;
                pb::encode_key(4, pb::WireType::LengthDelimited, out);
                pb::encode_varint((labels.len() + value.len()) as u64, out);
                out.extend_from_slice(labels);
                out.extend_from_slice(value);
            }
        }
        debug_assert_eq!(out.len() - start, total);
    }
}

/// base64url with padding, as the gateway's `@base64` suffix expects.
pub fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `{base}/metrics/job@base64/{job}/{label}@base64/{value}…`: every value base64url-encoded,
/// which the gateway accepts for any value and which needs no percent-encoding rules
/// (an empty value becomes `=`).
pub fn group_url(base: &str, job: &str, grouping: &[(String, String)]) -> String {
    let enc = |v: &str| if v.is_empty() { "=".to_string() } else { base64url(v.as_bytes()) };
    let mut url = format!("{}/metrics/job@base64/{}", base.trim_end_matches('/'), enc(job));
    for (k, v) in grouping {
        let _ = write!(url, "/{}@base64/{}", k, enc(v));
    }
    url
}
