//! Prototype of the src changes recommended in BENCHMARKS.md ("Profile"): the whole native
//! remote-write path — contract bytes to snappy bodies — without a per-sample allocation.
//!
//! What src does today (naming.rs, contract.rs, remote_write.rs, delivery.rs) and what this does
//! instead:
//! - `contract::decode` clones a `String` out of the string table for every namespace, name and
//!   step of every metric; here the table is a `Vec<&str>` borrowed from the buffer and metrics
//!   keep `u32` indices.
//! - `naming::map` calls `metric_name` (several `String`s each) two or more times per metric, keys
//!   its clash groups with a SipHash of an owned name and two long strings, allocates a family-name
//!   `String` per sample for the `BTreeMap` lookup, a `format!` help per metric, and clones every
//!   label name and value into each sample (about 10 allocations a sample, all freed again after
//!   the push — freeing them is a quarter of the time). Here the stem is computed once per distinct
//!   Beam name (`metric_name(p, n, s)` is `metric_name(p, n, "") + s` for every suffix the mapping
//!   uses), groups and families are keyed by small integers with an Fx-style hash, and a sample is
//!   a suffix, a value and a range in one arena of borrowed `(&str, &str)` label pairs.
//! - `remote_write::series` clones every string again into prost's owned structs, delivery clones
//!   each chunk once more (`chunk.to_vec()`) and every label set for staleness markers; here the
//!   protobuf is written straight from the borrowed pairs (as in direct.rs).
//!
//! The bodies are byte for byte those of the current path; the bench asserts it on every run.
//! Prototype limits: bounded tries, histograms, Beam metric labels (`MetricName.getLabels`) and
//! label values over 1024 bytes return `None` (src would keep its general path for those, or
//! own those few strings in an arena); self-metrics are not added.

use beam_prometheus::naming::{metric_name, FamilyType, NamingConfig, Selection, MAX_LABEL_VALUE_LEN};
use beam_prometheus::remote_write::wire_value;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// rustc's Fx hash: a multiply and a rotate a word; keys here are a few small integers.
#[derive(Default)]
struct Fx(u64);
impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64)
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64)
    }
}
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}
impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min) <= self.b.len() - self.p).then_some(n)
    }
}

#[derive(Clone, Copy)]
enum V {
    Counter(i64),
    Dist { sum: i64, count: i64, min: i64, max: i64 },
    Gauge { value: i64, ts: i64 },
    /// Range in `Snap::set_refs`.
    Set(u32, u32),
}

struct M {
    kind: u8,
    ns: u32,
    name: u32,
    step: u32,
    att: Option<V>,
    com: Option<V>,
}

struct Snap<'a> {
    time_ms: i64,
    strings: Vec<&'a str>,
    metrics: Vec<M>,
    set_refs: Vec<u32>,
}

fn decode(buf: &[u8]) -> Option<Snap<'_>> {
    let mut r = Rd { b: buf, p: 0 };
    if r.take(4)? != b"BPM1" {
        return None;
    }
    let time_ms = r.i64()?;
    let n = r.count(4)?;
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32()? as usize;
        strings.push(std::str::from_utf8(r.take(len)?).ok()?);
    }
    // Equal strings at different indices (a writer that does not intern) get one index, so that
    // grouping by index is grouping by content.
    let mut first: FxMap<&str, u32> = FxMap::default();
    let canon: Vec<u32> = strings.iter().enumerate().map(|(i, s)| *first.entry(s).or_insert(i as u32)).collect();
    let nm = r.count(18)?;
    let mut metrics = Vec::with_capacity(nm);
    let mut set_refs = Vec::new();
    let sref = |r: &mut Rd| -> Option<u32> { canon.get(r.u32()? as usize).copied() };
    for _ in 0..nm {
        let kind = r.u8()?;
        let (ns, name, step) = (sref(&mut r)?, sref(&mut r)?, sref(&mut r)?);
        if r.u32()? != 0 {
            return None; // Beam metric labels: not in the prototype
        }
        let flags = r.u8()?;
        if flags == 0 || flags & !3 != 0 {
            return None;
        }
        let mut val = |r: &mut Rd| -> Option<V> {
            Some(match kind {
                1 => V::Counter(r.i64()?),
                2 => V::Dist { sum: r.i64()?, count: r.i64()?, min: r.i64()?, max: r.i64()? },
                3 => V::Gauge { value: r.i64()?, ts: r.i64()? },
                4 => {
                    let n = r.count(4)?;
                    let start = set_refs.len() as u32;
                    for _ in 0..n {
                        set_refs.push(sref(r)?);
                    }
                    V::Set(start, n as u32)
                }
                _ => return None, // bounded tries, histograms: not in the prototype
            })
        };
        let att = if flags & 1 != 0 { Some(val(&mut r)?) } else { None };
        let com = if flags & 2 != 0 { Some(val(&mut r)?) } else { None };
        metrics.push(M { kind, ns, name, step, att, com });
    }
    (r.p == buf.len()).then_some(Snap { time_ms, strings, metrics, set_refs })
}

/// Family suffixes (index = id) and, per family kind, its type.
const FAM: [(&str, FamilyType); 7] = [
    ("_total", FamilyType::Counter),
    ("_distribution", FamilyType::Summary),
    ("_distribution_min", FamilyType::Gauge),
    ("_distribution_max", FamilyType::Gauge),
    ("_gauge", FamilyType::Gauge),
    ("_gauge_timestamp_seconds", FamilyType::Gauge),
    ("_string_set_info", FamilyType::Info),
];

struct S {
    /// The sample's name is the family's stem + this.
    suffix: &'static str,
    labels: u32,
    nlabels: u32,
    value: f64,
}

struct Fam {
    name: String,
    stem: u32,
    typ: FamilyType,
    help: String,
    samples: Vec<S>,
    order: u32,
}

fn cmp_str(a: &str, b: &str) -> Ordering {
    if a.as_ptr() == b.as_ptr() && a.len() == b.len() {
        Ordering::Equal
    } else {
        a.cmp(b)
    }
}

fn cmp_labels(a: &[(&str, &str)], b: &[(&str, &str)]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp_str(x.0, y.0).then_with(|| cmp_str(x.1, y.1));
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// The remote-write bodies of a contract buffer, `chunk` samples each, metadata in the first;
/// `None` where the prototype does not cover the input (see the module doc).
pub fn encode(buf: &[u8], cfg: &NamingConfig, chunk: usize) -> Option<Vec<Vec<u8>>> {
    let snap = decode(buf)?;
    let st = &snap.strings;
    let ok = |s: &str| s.len() <= MAX_LABEL_VALUE_LEN;
    if !ok(&cfg.job) || cfg.const_labels.iter().any(|(_, v)| !ok(v)) {
        return None;
    }
    // Stems, once per distinct name; stem ids equal when stems are equal.
    let mut stem_of: FxMap<u32, u32> = FxMap::default();
    let mut stem_ids: HashMap<String, u32> = HashMap::new();
    let mut stems: Vec<String> = Vec::new();
    for m in &snap.metrics {
        if !stem_of.contains_key(&m.name) {
            let stem = metric_name(&cfg.prefix, st[m.name as usize], "");
            let next = stems.len() as u32;
            let id = *stem_ids.entry(stem.clone()).or_insert(next);
            if id == next {
                stems.push(stem);
            }
            stem_of.insert(m.name, id);
        }
    }
    // Clash groups: (kind, stem, namespace, step) -> first name, and whether another name joined.
    let mut groups: FxMap<(u8, u32, u32, u32), (u32, bool)> = FxMap::default();
    for m in &snap.metrics {
        let e = groups.entry((m.kind, stem_of[&m.name], m.ns, m.step)).or_insert((m.name, false));
        e.1 |= e.0 != m.name;
    }
    let mut fams: Vec<Fam> = Vec::new();
    let mut fam_of: FxMap<(u32, u8), u32> = FxMap::default();
    let mut arena: Vec<(&str, &str)> = Vec::with_capacity(snap.metrics.len() * 6);
    let mut base: Vec<(&str, &str)> = Vec::with_capacity(16);
    let consts: Vec<(&str, &str)> = cfg.const_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for m in &snap.metrics {
        let (ns, name, step) = (st[m.ns as usize], st[m.name as usize], st[m.step as usize]);
        if !ok(ns) || !ok(step) || !ok(name) {
            return None;
        }
        let stem = stem_of[&m.name];
        let clash = groups[&(m.kind, stem, m.ns, m.step)].1;
        let sel = [
            (cfg.selection != Selection::Committed, m.att, "attempted"),
            (cfg.selection != Selection::Attempted, m.com, "committed"),
        ];
        for (wanted, v, result) in sel {
            let (true, Some(v)) = (wanted, v) else { continue };
            base.clear();
            base.extend_from_slice(&consts);
            base.push(("job", cfg.job.as_str()));
            base.push(("namespace", ns));
            base.push(("step", step));
            base.push(("result", result));
            if clash {
                base.push(("beam_metric", name));
            }
            base.retain(|(_, v)| !v.is_empty());
            base.sort_unstable_by(|a, b| a.0.cmp(b.0)); // names are unique
            let mut push = |fam: u8, help: &dyn Fn() -> String, suffix: &'static str, extra: Option<(&'static str, &'static str, u32)>, value: f64| {
                let fi = *fam_of.entry((stem, fam)).or_insert_with(|| {
                    fams.push(Fam {
                        name: format!("{}{}", stems[stem as usize], FAM[fam as usize].0),
                        stem,
                        typ: FAM[fam as usize].1,
                        help: help(),
                        samples: Vec::new(),
                        order: fams.len() as u32,
                    });
                    fams.len() as u32 - 1
                });
                let start = arena.len() as u32;
                match extra {
                    Some((k, _, idx)) if !st[idx as usize].is_empty() => {
                        let at = base.partition_point(|(n, _)| *n < k);
                        arena.extend_from_slice(&base[..at]);
                        arena.push((k, st[idx as usize]));
                        arena.extend_from_slice(&base[at..]);
                    }
                    _ => arena.extend_from_slice(&base),
                }
                let nlabels = arena.len() as u32 - start;
                fams[fi as usize].samples.push(S { suffix, labels: start, nlabels, value });
            };
            match v {
                V::Counter(c) => push(0, &|| format!("Beam counter {}", name), "_total", None, c as f64),
                V::Dist { sum, count, min, max } => {
                    let help = || format!("Beam distribution {}", name);
                    push(1, &help, "_distribution_sum", None, sum as f64);
                    push(1, &help, "_distribution_count", None, count as f64);
                    if count > 0 {
                        push(2, &|| format!("Beam distribution {} (minimum)", name), "_distribution_min", None, min as f64);
                        push(3, &|| format!("Beam distribution {} (maximum)", name), "_distribution_max", None, max as f64);
                    }
                }
                V::Gauge { value, ts } => {
                    if ts != 0 {
                        push(4, &|| format!("Beam gauge {}", name), "_gauge", None, value as f64);
                        let help = || format!("When Beam gauge {} was last set (Unix seconds)", name);
                        push(5, &help, "_gauge_timestamp_seconds", None, ts as f64 / 1000.0);
                    }
                }
                V::Set(start, n) => {
                    let mut entries: Vec<u32> = snap.set_refs[start as usize..(start + n) as usize].to_vec();
                    if entries.iter().any(|e| !ok(st[*e as usize])) {
                        return None;
                    }
                    entries.sort_unstable_by(|a, b| st[*a as usize].cmp(st[*b as usize]));
                    entries.dedup();
                    entries.truncate(cfg.set_cap);
                    let help = || format!("Beam string set {}: one series per element", name);
                    for e in entries {
                        push(6, &help, "_string_set_info", Some(("value", "", e)), 1.0);
                    }
                }
            }
        }
    }
    fams.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.order.cmp(&b.order)));
    if fams.windows(2).any(|w| w[0].name == w[1].name) {
        return None; // two (stem, kind) pairs spelling one family name: src's general path merges them
    }
    for f in &mut fams {
        let labels = |s: &S| &arena[s.labels as usize..(s.labels + s.nlabels) as usize];
        f.samples.sort_by(|a, b| a.suffix.cmp(b.suffix).then_with(|| cmp_labels(labels(a), labels(b))));
        f.samples.dedup_by(|a, b| a.suffix == b.suffix && cmp_labels(labels(a), labels(b)) == Ordering::Equal);
    }
    Some(write(&fams, &stems, &arena, snap.time_ms, chunk))
}

fn varint_len(v: u64) -> usize {
    ((64 - (v | 1).leading_zeros() as usize) + 6) / 7
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn str_len(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

fn put_strs(out: &mut Vec<u8>, tag: u8, parts: &[&str]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > 0 {
        out.push(tag);
        put_varint(out, len as u64);
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
    }
}

fn sample_len(v: f64, ts: i64) -> usize {
    (if v != 0.0 { 9 } else { 0 }) + (if ts != 0 { 1 + varint_len(ts as u64) } else { 0 })
}

fn type_id(t: FamilyType) -> u64 {
    match t {
        FamilyType::Counter => 1,
        FamilyType::Gauge => 2,
        FamilyType::Histogram => 3,
        FamilyType::Summary => 5,
        FamilyType::Info => 6,
    }
}

fn write(fams: &[Fam], stems: &[String], arena: &[(&str, &str)], ts: i64, chunk: usize) -> Vec<Vec<u8>> {
    let all: Vec<(&Fam, &S)> = fams.iter().flat_map(|f| f.samples.iter().map(move |s| (f, s))).collect();
    let mut raw = Vec::new();
    let mut enc = snap::raw::Encoder::new();
    let mut bodies = Vec::with_capacity(all.len().div_ceil(chunk));
    for (i, part) in all.chunks(chunk).enumerate() {
        raw.clear();
        for (f, s) in part {
            let stem = stems[f.stem as usize].as_str();
            let labels = &arena[s.labels as usize..(s.labels + s.nlabels) as usize];
            let at = labels.partition_point(|(k, _)| *k < "__name__");
            let name_len = stem.len() + s.suffix.len();
            let label_len = |k: &str, v_len: usize| str_len(k.len()) + str_len(v_len);
            let value = wire_value(s.value);
            let mut len = field_len(label_len("__name__", name_len)) + field_len(sample_len(value, ts));
            for (k, v) in labels {
                len += field_len(label_len(k, v.len()));
            }
            raw.push(0x0a);
            put_varint(&mut raw, len as u64);
            let put = |raw: &mut Vec<u8>, k: &str, v: &[&str]| {
                let vl: usize = v.iter().map(|p| p.len()).sum();
                raw.push(0x0a);
                put_varint(raw, label_len(k, vl) as u64);
                put_strs(raw, 0x0a, &[k]);
                put_strs(raw, 0x12, v);
            };
            for (k, v) in &labels[..at] {
                put(&mut raw, k, &[v]);
            }
            put(&mut raw, "__name__", &[stem, s.suffix]);
            for (k, v) in &labels[at..] {
                put(&mut raw, k, &[v]);
            }
            raw.push(0x12);
            put_varint(&mut raw, sample_len(value, ts) as u64);
            if value != 0.0 {
                raw.push(0x09);
                raw.extend_from_slice(&value.to_bits().to_le_bytes());
            }
            if ts != 0 {
                raw.push(0x10);
                put_varint(&mut raw, ts as u64);
            }
        }
        if i == 0 {
            for f in fams {
                let typ = type_id(f.typ);
                let len = 1 + varint_len(typ) + str_len(f.name.len()) + str_len(f.help.len());
                raw.push(0x1a);
                put_varint(&mut raw, len as u64);
                raw.push(0x08);
                put_varint(&mut raw, typ);
                put_strs(&mut raw, 0x12, &[&f.name]);
                put_strs(&mut raw, 0x22, &[&f.help]);
            }
        }
        let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
        let n = enc.compress(&raw, &mut out).unwrap_or(0);
        out.truncate(n);
        bodies.push(out);
    }
    bodies
}
