//! The one place where Beam metrics become Prometheus families, series names and labels.
//! Both encoders (remote-write and the Pushgateway text format) only serialize what this decides.
//! The mapping is documented in README.md ("Metric mapping").

use crate::model::{Metric, MetricKey, Snapshot, Value};
use crate::parallel;
use crate::series_order;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest metric name we emit; longer ones are cut and given a hash suffix.
pub const MAX_NAME_LEN: usize = 200;
/// Room kept for suffixes when a name is cut (the longest, "_gauge_timestamp_seconds", has 24).
const MAX_SUFFIX_LEN: usize = 32;
/// Longest label value we emit (bytes); Mimir's default limit is 2048, Cortex' 1024.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;

/// The labels a Pushgateway grouping key may take: the mapping then names Beam's own
/// `beam_namespace`, `beam_step`, `beam_result`.
pub const RENAMED_FOR_GROUPING: &[&str] = &["namespace", "step", "result"];

/// Label names a grouping key may not take: the structural ones (`le`, the string-set and trie
/// labels, `beam_metric`) and the names Beam's labels move to.
pub const RESERVED_GROUPING_LABELS: &[&str] =
    &["job", "beam_metric", "le", "quantile", "value", "path", "truncated", "beam_namespace", "beam_step", "beam_result", "exporter_id"];

/// The self-metrics' label naming the exporter instance (delivery.rs).
pub const EXPORTER_ID_LABEL: &str = "exporter_id";

/// Label names this mapping uses itself; constant labels may not take them.
pub const RESERVED_LABELS: &[&str] =
    &["job", "namespace", "step", "result", "beam_metric", "le", "quantile", "value", "path", "truncated", "exporter_id"];

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
    /// Other label names set on every series from outside (the Pushgateway grouping key): Beam
    /// metric labels of these names are renamed like reserved ones, or the gateway's copy would
    /// collide.
    pub taken_labels: Vec<String>,
    /// Beam names and label names exported verbatim (UTF-8), for receivers that accept them
    /// (Prometheus 3); otherwise sanitized to the legacy character set.
    pub utf8_names: bool,
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

/// A series' labels, shared: the series of one metric share one set, and so do the metrics of
/// one step and namespace without labels of their own (most of a pipeline's). A clone is one
/// count, where a list of its own was an allocation and a count per text.
pub type Labels = Arc<[(Text, Text)]>;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: Text,
    /// Sorted by name, names unique, values non-empty; `__name__` is not included.
    pub labels: Labels,
    pub value: f64,
    /// Where `value` comes from, so that the next snapshot of the same structure refreshes it.
    pub source: Source,
}

impl Sample {
    pub fn new(name: Text, labels: impl Into<Labels>, value: f64) -> Sample {
        Sample { name, labels: labels.into(), value, source: Source::Const(value) }
    }
}

/// The origin of a sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// Index into the snapshot's fields: every metric's attempted then committed
    /// `Value::fields`, in metric order (as `contract::split` lists them).
    Field(u32),
    /// Index into the exporter's self-metric values.
    Stat(u32),
    Const(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Shared with its series of the same name (a counter's, a gauge's, an info's).
    pub name: Text,
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

    /// Every series, family by family (the order both encoders write), each label list asked
    /// of the memory a few series ahead (`prefetch`).
    pub fn series(&self) -> Series<'_> {
        let all = || -> SeriesIter<'_> { self.families.iter().flat_map(family_samples as fn(&Family) -> std::slice::Iter<'_, Sample>) };
        let mut ahead = all();
        for s in ahead.by_ref().take(PREFETCH_AHEAD) {
            prefetch(&s.labels);
        }
        Series { current: all(), ahead }
    }

    /// Every sample's value, family by family: the order both encoders write.
    pub fn values(&self) -> Vec<f64> {
        self.families.iter().flat_map(|f| f.samples.iter().map(|s| s.value)).collect()
    }

    /// Takes the pipeline's values from a snapshot of the same structure as the mapped one
    /// (equal `contract::split` skeletons); the exporter's own series keep theirs (`refresh_stats`).
    pub fn refresh(&mut self, fields: &[f64]) {
        for s in self.families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
            match s.source {
                Source::Field(i) => s.value = fields.get(i as usize).copied().unwrap_or(f64::NAN),
                Source::Const(v) => s.value = v,
                Source::Stat(_) => {}
            }
        }
    }

    /// Sets only the values of the exporter's own series (`Source::Stat`).
    pub fn refresh_stats(&mut self, stats: &[f64]) {
        for s in self.families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
            if let Source::Stat(i) = s.source {
                s.value = stats.get(i as usize).copied().unwrap_or(f64::NAN);
            }
        }
    }
}

fn family_samples(f: &Family) -> std::slice::Iter<'_, Sample> {
    f.samples.iter()
}

type SeriesIter<'a> = std::iter::FlatMap<std::slice::Iter<'a, Family>, std::slice::Iter<'a, Sample>, fn(&'a Family) -> std::slice::Iter<'a, Sample>>;

/// See `Mapped::series`.
pub struct Series<'a> {
    current: SeriesIter<'a>,
    ahead: SeriesIter<'a>,
}

impl<'a> Iterator for Series<'a> {
    type Item = &'a Sample;
    #[inline]
    fn next(&mut self) -> Option<&'a Sample> {
        if let Some(s) = self.ahead.next() {
            prefetch(&s.labels);
        }
        self.current.next()
    }
}

/// The series of one family in order, each label list asked for a few series ahead.
pub fn prefetched(samples: &[Sample]) -> impl Iterator<Item = &Sample> {
    samples.iter().enumerate().map(move |(i, s)| {
        if let Some(ahead) = samples.get(i + PREFETCH_AHEAD) {
            prefetch(&ahead.labels);
        }
        s
    })
}

/// How many series ahead `prefetch` asks for label lists: enough to cover a memory access.
pub const PREFETCH_AHEAD: usize = 8;

/// Asks the memory for `items` without waiting for them. A mapping's series are sorted, so
/// passes over them read their label lists (one allocation each) in an order unrelated to
/// where they lie: each would be a cache miss waited for. Asked a few series ahead, a pass over
/// 100k series takes less than half the time (SeriesLabels: 30 ms to 10 ms, cold caches).
#[inline(always)]
pub fn prefetch<T>(items: &[T]) {
    let (p, bytes) = (items.as_ptr() as *const u8, std::mem::size_of_val(items));
    let mut at = 0;
    while at < bytes.min(256) {
        // SAFETY: a prefetch is a hint: it reads nothing into the program and cannot fault;
        // the address is inside `items`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_prefetch(p.add(at) as *const i8, std::arch::x86_64::_MM_HINT_T0);
        }
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p.add(at), options(nostack, readonly, preserves_flags));
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = p;
        at += 64;
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

/// Appends `squash(s)` without leading or trailing `_`.
fn push_squashed(s: &str, out: &mut String) {
    let start = out.len();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && (out.len() == start || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    if out.len() > start && out.ends_with('_') {
        out.pop();
    }
}

/// A metric name from the prefix and a Beam name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, without `:`
/// (reserved for recording rules), no runs of `_`, at most `MAX_NAME_LEN` long with `suffix`.
pub fn metric_name(prefix: &str, beam_name: &str, suffix: &str) -> String {
    // Built in one buffer: this runs for every metric of every push.
    let mut name = String::with_capacity(prefix.len() + beam_name.len() + suffix.len() + 2);
    push_squashed(prefix, &mut name);
    if !name.is_empty() {
        name.push('_');
    }
    let before = name.len();
    push_squashed(beam_name, &mut name);
    if name.len() == before {
        // Nothing of the name survives (e.g. all non-ASCII): keep it distinct and stable.
        name.push('m');
        name.push_str(&stable_hash(beam_name));
    }
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

/// A metric name keeping the Beam name verbatim (UTF-8 names): `prefix_` + the name + `suffix`,
/// cut like `metric_name` (on a char boundary) when too long.
pub fn metric_name_utf8(prefix: &str, beam_name: &str, suffix: &str) -> String {
    if beam_name.is_empty() {
        return metric_name(prefix, beam_name, suffix);
    }
    let mut name = String::with_capacity(prefix.len() + beam_name.len() + suffix.len() + 1);
    if !prefix.is_empty() {
        name.push_str(prefix);
        name.push('_');
    }
    name.push_str(beam_name);
    let room = MAX_NAME_LEN - suffix.len().max(MAX_SUFFIX_LEN);
    if name.len() > room {
        let h = stable_hash(&name);
        let mut cut = room - h.len() - 1;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push('_');
        name.push_str(&h);
    }
    name.push_str(suffix);
    name
}

/// A Beam label name kept verbatim (UTF-8 names), but never empty nor starting with `__`
/// (reserved by Prometheus): those are sanitized as in the legacy scheme.
pub fn label_name_utf8(raw: &str) -> String {
    if raw.is_empty() || raw.starts_with("__") { label_name(raw) } else { raw.to_string() }
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

/// Shared text: label names and values repeat across many series (job, namespace, step), so
/// samples share them instead of each owning a copy (the snapshot's own, `model::Text`).
pub use crate::model::Text;

struct Builder<'a> {
    cfg: &'a NamingConfig,
    families: Vec<FamilyBuild>,
    /// Constant labels and `job`, the same on every series.
    fixed: Vec<(Text, Text)>,
    /// The label names the mapping itself sets, interned once per mapping.
    keys: Keys,
    capped: u64,
    /// The snapshot's fields (see `Source::Field`).
    fields: &'a [f64],
    /// The texts of the series' sort keys (`series_order`).
    texts: series_order::Texts,
    /// Reused for the series names of one metric (stem + suffix).
    scratch: String,
    /// Reused for a label set being built (sorted, then moved into its `Labels`).
    set_scratch: Vec<(Text, Text)>,
    /// The stem (by id) of the metric being mapped, and per stem the families and series names
    /// of its suffixes. Equal stems have one id, and no two (stem, suffix) pairs spell one name
    /// (no suffix ends with another), so a family is found by its stem and suffix alone.
    stem: usize,
    stem_head: Vec<u32>,
    entries: Vec<StemEntry>,
    /// The label sets of metrics without labels of their own, by the addresses of namespace,
    /// step and (where it is a label) name, and by result.
    bases: HashMap<[usize; 4], Labels, FxBuild>,
}

/// A suffix met with a stem: the family it belongs to and, once asked for, the series name;
/// chained to the stem's other suffixes (one list for all stems: no allocation per stem).
struct StemEntry {
    suffix: &'static str,
    family: u32,
    name: Option<Text>,
    next: u32,
}

const NO_ENTRY: u32 = u32::MAX;

/// A family's series names: one for most families, two or three for a distribution's or a
/// histogram's, so the first is kept without a list.
#[derive(Default)]
struct Names {
    first: Option<Text>,
    more: Vec<Text>,
}

impl Names {
    fn len(&self) -> usize {
        self.first.is_some() as usize + self.more.len()
    }

    fn get(&self, i: usize) -> &Text {
        if i == 0 { self.first.as_ref().expect("a first name") } else { &self.more[i - 1] }
    }

    /// The index of `n`, added if new; equal only for equal texts.
    fn index(&mut self, n: &Text) -> usize {
        let found = (0..self.len()).find(|&i| Arc::ptr_eq(self.get(i), n)).or_else(|| (0..self.len()).find(|&i| self.get(i) == n));
        found.unwrap_or_else(|| {
            self.add(n.clone());
            self.len() - 1
        })
    }

    fn add(&mut self, n: Text) {
        if self.first.is_none() { self.first = Some(n) } else { self.more.push(n) }
    }
}

/// A family being built, with the names its samples use: a few per family, shared by all its
/// samples, so that sorting them compares pointers rather than bytes.
struct FamilyBuild {
    family: Family,
    names: Names,
    /// Its series' sort keys, taken once it outgrows `series_order::SMALL` (`Builder::push`).
    keys: series_order::Keys,
}

struct Keys {
    /// `namespace`, `step`, `result`, or `beam_…` where a grouping key takes the name.
    namespace: Text,
    step: Text,
    result: Text,
    attempted: Text,
    committed: Text,
    beam_metric: Text,
    value: Text,
    path: Text,
    truncated: Text,
    le: Text,
}

impl Keys {
    fn new(cfg: &NamingConfig) -> Keys {
        // A grouping key of this name sets it on every pushed series: Beam's goes aside.
        let own = |k: &str| -> Text { if cfg.taken_labels.iter().any(|t| t == k) { Arc::from(format!("beam_{}", k)) } else { Arc::from(k) } };
        Keys {
            namespace: own("namespace"),
            step: own("step"),
            result: own("result"),
            attempted: Arc::from("attempted"),
            committed: Arc::from("committed"),
            beam_metric: Arc::from("beam_metric"),
            value: Arc::from("value"),
            path: Arc::from("path"),
            truncated: Arc::from("truncated"),
            le: Arc::from("le"),
        }
    }
}

impl<'a> Builder<'a> {
    /// Distinct entries in order, at most --prometheusSetCap of them; the rest is counted.
    fn first_entries<T: Ord>(&mut self, mut entries: Vec<T>) -> Vec<T> {
        entries.sort();
        entries.dedup();
        if entries.len() > self.cfg.set_cap {
            self.capped += (entries.len() - self.cfg.set_cap) as u64;
            entries.truncate(self.cfg.set_cap);
        }
        entries
    }

    /// The stem's entry for `suffix`.
    fn entry(&self, suffix: &str) -> Option<usize> {
        let mut at = self.stem_head[self.stem];
        while at != NO_ENTRY {
            let e = &self.entries[at as usize];
            if e.suffix == suffix {
                return Some(at as usize);
            }
            at = e.next;
        }
        None
    }

    fn add_entry(&mut self, suffix: &'static str, family: usize) -> usize {
        let next = std::mem::replace(&mut self.stem_head[self.stem], self.entries.len() as u32);
        self.entries.push(StemEntry { suffix, family: family as u32, name: None, next });
        self.entries.len() - 1
    }

    /// The family `stem` + `suffix`, created on first use with the help text `help` (its
    /// pieces, concatenated); its index.
    fn family(&mut self, stem: &str, suffix: &'static str, typ: FamilyType, help: [&str; 3]) -> usize {
        // Most metrics' stems were met before (in other steps): found without building a name.
        if let Some(e) = self.entry(suffix) {
            return self.entries[e].family as usize;
        }
        let i = self.families.len();
        let mut h = String::with_capacity(help.iter().map(|p| p.len()).sum());
        help.iter().for_each(|p| h.push_str(p));
        self.scratch.clear();
        self.scratch.push_str(stem);
        self.scratch.push_str(suffix);
        let f = Family { name: Arc::from(self.scratch.as_str()), typ, help: h, unit: "", samples: Vec::new() };
        self.families.push(FamilyBuild { family: f, names: Names::default(), keys: series_order::Keys::default() });
        self.add_entry(suffix, i);
        i
    }

    /// The shared text of series name `stem` + `suffix` in family `fam`.
    fn name(&mut self, fam: usize, stem: &str, suffix: &'static str) -> Text {
        let at = match self.entry(suffix) {
            Some(at) => at,
            None => self.add_entry(suffix, fam),
        };
        debug_assert_eq!(self.entries[at].family as usize, fam, "a series name's suffix belongs to one family");
        if let Some(n) = &self.entries[at].name {
            return n.clone();
        }
        let family = &self.families[fam].family.name;
        let n: Text = if family.len() == stem.len() + suffix.len() && family.ends_with(suffix) {
            // The family's own name (same stem): its text, not a copy.
            family.clone()
        } else {
            self.scratch.clear();
            self.scratch.push_str(stem);
            self.scratch.push_str(suffix);
            Arc::from(self.scratch.as_str())
        };
        self.entries[at].name = Some(n.clone());
        self.families[fam].names.add(n.clone());
        n
    }

    fn push(&mut self, fam: usize, s: Sample) {
        let f = &mut self.families[fam];
        f.family.samples.push(s);
        // Keys only for a family that outgrows sorting by texts (`series_order::SMALL`): taken
        // for all its series when it does, then one per series.
        if f.family.samples.len() > series_order::SMALL {
            for s in &f.family.samples[f.keys.len()..] {
                let name = f.names.index(&s.name);
                f.keys.push(name as u32, s, &mut self.texts);
            }
        }
    }

    /// A sample whose value is field `at` of the snapshot.
    fn field(&self, name: Text, labels: Labels, at: usize) -> Sample {
        let value = self.fields.get(at).copied().unwrap_or(f64::NAN);
        Sample { name, labels, value, source: Source::Field(at as u32) }
    }

    /// The labels every series of a metric has: fixed ones, namespace, step, result, Beam's.
    fn base(&mut self, key: &MetricKey, committed: bool, disambiguate: bool) -> Labels {
        let cfg = self.cfg;
        let mut base = std::mem::take(&mut self.set_scratch);
        base.clear();
        base.extend_from_slice(&self.fixed);
        base.push((self.keys.namespace.clone(), capped(key.namespace.clone())));
        base.push((self.keys.step.clone(), capped(key.step.clone())));
        let result = if committed { &self.keys.committed } else { &self.keys.attempted };
        base.push((self.keys.result.clone(), result.clone()));
        for (k, v) in &key.labels {
            // Beam metric labels (MetricName.getLabels) keep their names unless the mapping uses them.
            let mut name = if cfg.utf8_names { label_name_utf8(k) } else { label_name(k) };
            if RESERVED_LABELS.contains(&name.as_str())
                || cfg.const_labels.iter().any(|(c, _)| *c == name)
                || cfg.taken_labels.contains(&name)
            {
                name = format!("label_{}", name.trim_start_matches('_'));
            }
            if !base.iter().any(|(b, _)| **b == *name) {
                base.push((Arc::from(name), capped(v.clone())));
            }
        }
        if disambiguate {
            base.push((self.keys.beam_metric.clone(), capped(key.name.clone())));
        }
        base.retain(|(_, v)| !v.is_empty());
        base.sort_unstable_by(cmp_label);
        // Moved, not copied: one allocation for the set.
        let labels: Labels = base.drain(..).collect();
        self.set_scratch = base;
        labels
    }

    /// `value`'s fields start at index `at` of the snapshot's fields.
    fn metric(&mut self, m: &'a Metric, value: &'a Value, at: usize, committed: bool, disambiguate: bool, stem: &str) {
        let key = &m.key;
        let base = if key.labels.is_empty() {
            // Shared by every metric of this step and namespace (found by the texts' addresses).
            let id = [addr(&key.namespace), addr(&key.step), committed as usize, if disambiguate { addr(&key.name) } else { 0 }];
            match self.bases.get(&id) {
                Some(l) => l.clone(),
                None => {
                    let l = self.base(key, committed, disambiguate);
                    self.bases.insert(id, l.clone());
                    l
                }
            }
        } else {
            self.base(key, committed, disambiguate)
        };
        let beam = &key.name;
        // Field offsets follow `Value::fields`.
        match value {
            Value::Counter(_) => {
                let fam = self.family(stem, "_total", FamilyType::Counter, ["Beam counter ", beam, ""]);
                let name = self.name(fam, stem, "_total");
                // The only series of this metric: it takes the labels instead of a copy.
                let s = self.field(name, base, at);
                self.push(fam, s);
            }
            Value::Distribution { count, .. } => {
                let fam = self.family(stem, "_distribution", FamilyType::Summary, ["Beam distribution ", beam, ""]);
                let (sum_n, count_n) = (self.name(fam, stem, "_distribution_sum"), self.name(fam, stem, "_distribution_count"));
                let (sum_s, count_s) = (self.field(sum_n, base.clone(), at), self.field(count_n, base.clone(), at + 1));
                self.push(fam, sum_s);
                self.push(fam, count_s);
                // Beam reports an empty distribution as min=Long.MAX_VALUE, max=Long.MIN_VALUE.
                if *count > 0 {
                    for (suffix, k, what) in [("_distribution_min", 2usize, " (minimum)"), ("_distribution_max", 3, " (maximum)")] {
                        let fam = self.family(stem, suffix, FamilyType::Gauge, ["Beam distribution ", beam, what]);
                        let name = self.name(fam, stem, suffix);
                        let s = self.field(name, base.clone(), at + k);
                        self.push(fam, s);
                    }
                }
            }
            Value::Gauge { timestamp_ms, .. } => {
                // Beam's empty gauge (never set) has timestamp 0: nothing to report yet.
                if *timestamp_ms == 0 {
                    return;
                }
                let fam = self.family(stem, "_gauge", FamilyType::Gauge, ["Beam gauge ", beam, ""]);
                let name = self.name(fam, stem, "_gauge");
                let s = self.field(name, base.clone(), at);
                self.push(fam, s);
                let suffix = "_gauge_timestamp_seconds";
                let fam = self.family(stem, suffix, FamilyType::Gauge, ["When Beam gauge ", beam, " was last set (Unix seconds)"]);
                let name = self.name(fam, stem, suffix);
                let s = self.field(name, base, at + 1);
                self.push(fam, s);
            }
            Value::StringSet(set) => {
                let entries = self.first_entries(set.iter().collect());
                if entries.is_empty() {
                    return;
                }
                let fam = self.family(stem, "_string_set_info", FamilyType::Info, ["Beam string set ", beam, ": one series per element"]);
                let name = self.name(fam, stem, "_string_set_info");
                let value_label = self.keys.value.clone();
                for e in entries {
                    let s = with_extra(&mut self.set_scratch, &name, &base, &[(value_label.clone(), value_text(e))], 1.0);
                    self.push(fam, s);
                }
            }
            Value::BoundedTrie(paths) => {
                let entries = self.first_entries(paths.iter().map(|p| (p.segments.join("/"), p.truncated)).collect());
                if entries.is_empty() {
                    return;
                }
                let fam = self.family(stem, "_bounded_trie_info", FamilyType::Info, ["Beam bounded trie ", beam, ": one series per path"]);
                let name = self.name(fam, stem, "_bounded_trie_info");
                let (path_l, trunc_l) = (self.keys.path.clone(), self.keys.truncated.clone());
                for (p, t) in entries {
                    let extra = [(path_l.clone(), value_text(&p)), (trunc_l.clone(), Arc::from(if t { "true" } else { "false" }))];
                    let s = with_extra(&mut self.set_scratch, &name, &base, &extra, 1.0);
                    self.push(fam, s);
                }
            }
            Value::Histogram(h) => {
                let fam = self.family(stem, "_histogram", FamilyType::Histogram, ["Beam histogram ", beam, ""]);
                let bucket = self.name(fam, stem, "_histogram_bucket");
                let le = self.keys.le.clone();
                let mut samples = Vec::with_capacity(h.buckets.len() + 3);
                let mut saw_inf = false;
                for (i, (bound, _)) in h.buckets.iter().enumerate() {
                    saw_inf |= *bound == f64::INFINITY;
                    let s = with_extra(&mut self.set_scratch, &bucket, &base, &[(le.clone(), Arc::from(format_float(*bound)))], 0.0);
                    samples.push(self.field(s.name, s.labels, at + 1 + i));
                }
                // The total is the last cumulative count (a constant 0 without buckets).
                let total = |b: &Self, name: &Text, labels: Labels| match h.buckets.len() {
                    0 => Sample::new(name.clone(), labels, 0.0),
                    n => b.field(name.clone(), labels, at + n),
                };
                if !saw_inf {
                    let s = with_extra(&mut self.set_scratch, &bucket, &base, &[(le.clone(), Arc::from("+Inf"))], 0.0);
                    samples.push(total(self, &s.name, s.labels));
                }
                let (sum_n, count_n) = (self.name(fam, stem, "_histogram_sum"), self.name(fam, stem, "_histogram_count"));
                samples.push(self.field(sum_n, base.clone(), at));
                samples.push(total(self, &count_n, base));
                self.families[fam].family.samples.extend(samples);
            }
        }
    }
}

fn addr(t: &Text) -> usize {
    Arc::as_ptr(t) as *const u8 as usize
}

/// A label value cut to `MAX_LABEL_VALUE_LEN` (rare: the shared text is reused when it fits).
fn capped(v: Text) -> Text {
    if v.len() <= MAX_LABEL_VALUE_LEN { v } else { Arc::from(label_value(&v)) }
}

/// `Ord` of shared texts, without reading the bytes of one text shared twice (most label
/// values of a family's series are the same few interned texts: job, namespace, step).
#[inline]
fn cmp_text(a: &Text, b: &Text) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) { std::cmp::Ordering::Equal } else { a.cmp(b) }
}

#[inline]
fn cmp_label(a: &(Text, Text), b: &(Text, Text)) -> std::cmp::Ordering {
    cmp_text(&a.0, &b.0).then_with(|| cmp_text(&a.1, &b.1))
}

/// `base` and `extra` as one sorted set, built in `scratch` and moved into one allocation.
fn with_extra(scratch: &mut Vec<(Text, Text)>, name: &Text, base: &[(Text, Text)], extra: &[(Text, Text)], value: f64) -> Sample {
    scratch.clear();
    scratch.extend_from_slice(base);
    scratch.extend(extra.iter().filter(|(_, v)| !v.is_empty()).cloned());
    scratch.sort_unstable_by(cmp_label);
    let labels: Labels = scratch.drain(..).collect();
    Sample::new(name.clone(), labels, value)
}

/// A label value as shared text, cut like `label_value` when too long.
fn value_text(v: &str) -> Text {
    if v.len() <= MAX_LABEL_VALUE_LEN { Arc::from(v) } else { Arc::from(label_value(v)) }
}

/// A word-at-a-time multiplicative hash (as rustc's FxHash) for the mapping's own maps: keys are
/// the pipeline's metric names, namespaces and steps, so SipHash's DoS resistance buys nothing and
/// costs a fifth of the mapping's time.
#[derive(Default)]
pub struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517cc1b727220a95);
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("chunks of 8")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ (bytes.len() as u64) << 56);
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<Fx>;

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

/// Histogram series by name, then labels, with buckets in numeric `le` order (as exposition
/// expects) rather than as strings ("+Inf" < "1" < "10" < "5"); a total order even for NaN.
fn histogram_order(a: &Sample, b: &Sample) -> std::cmp::Ordering {
    let le = |s: &Sample| s.labels.iter().find(|(k, _)| &**k == "le").map(|(_, v)| parse_le(v));
    fn rest(s: &Sample) -> impl Iterator<Item = &(Text, Text)> {
        s.labels.iter().filter(|(k, _)| &**k != "le")
    }
    a.name
        .cmp(&b.name)
        .then_with(|| rest(a).cmp(rest(b)))
        .then_with(|| match (le(a), le(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
        .then_with(|| a.labels.cmp(&b.labels))
}

fn parse_le(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

/// Maps one snapshot to Prometheus families; a large one on two threads (`parallel`).
pub fn map(snapshot: &Snapshot, cfg: &NamingConfig) -> Mapped {
    map_in(snapshot, cfg, if snapshot.metrics.len() >= parallel::WORTH_IT { 2 } else { 1 })
}

/// `map` by `parts` builders (1 or 2; the second on a helper thread), each taking the metrics of
/// its stems: the same families, series and order whatever `parts` (tests/naming.rs).
pub fn map_in(snapshot: &Snapshot, cfg: &NamingConfig, parts: usize) -> Mapped {
    let parts = parts.clamp(1, 2);
    // Every suffix fits the room metric_name keeps, so a name is its stem plus the kind's suffix:
    // sanitize each Beam name once.
    let name = if cfg.utf8_names { metric_name_utf8 } else { metric_name };
    // Two Beam names that sanitize alike ("a.b", "a_b") in one namespace and step would be one
    // series. A metric whose name the sanitizer changed carries it in `beam_metric`; one exported
    // verbatim does not. That decides on the metric alone, so a metric appearing later never
    // changes an existing series' labels; two names with one stem differ in `beam_metric` or in
    // having it, since only one of them can be the stem verbatim.
    let verbatim_prefix = {
        let mut p = String::new();
        push_squashed(&cfg.prefix, &mut p);
        if !p.is_empty() {
            p.push('_');
        }
        p
    };
    let renamed =
        |name: &str, stem: &str| !(stem.len() == verbatim_prefix.len() + name.len() && stem.starts_with(&verbatim_prefix) && stem.ends_with(name));
    // Per metric, its stem's id and whether its name was renamed, computed once per distinct
    // name: the metrics of every step share their names' texts (`model::Text`), found by
    // address. Names that sanitize alike share the stem's id.
    // Sized for every metric's name distinct (up to a bound): no table is regrown and rehashed.
    let names_hint = snapshot.metrics.len().min(1 << 12);
    let mut stem_id: HashMap<String, usize, FxBuild> = HashMap::with_capacity_and_hasher(names_hint, FxBuild::default());
    let mut of_name: HashMap<usize, (usize, bool), FxBuild> = HashMap::with_capacity_and_hasher(names_hint, FxBuild::default());
    let stem_ids: Vec<(usize, bool)> = snapshot
        .metrics
        .iter()
        .map(|m| {
            *of_name.entry(Arc::as_ptr(&m.key.name) as *const u8 as usize).or_insert_with(|| {
                let stem = name(&cfg.prefix, &m.key.name, "");
                let clash = renamed(&m.key.name, &stem);
                let next = stem_id.len();
                let id = *stem_id.entry(stem).or_insert(next);
                (id, clash)
            })
        })
        .collect();
    // Each stem's text by its id, moved out of the table.
    let mut stems: Vec<String> = vec![String::new(); stem_id.len()];
    for (stem, id) in stem_id {
        stems[id] = stem;
    }
    // Every value's fields, also those not selected, so that field indices depend on the
    // snapshot alone (as in `contract::split`).
    let mut fields = Vec::with_capacity(snapshot.metrics.len() * 2);
    let mut at = Vec::with_capacity(snapshot.metrics.len());
    for m in &snapshot.metrics {
        let a = fields.len();
        if let Some(v) = &m.attempted {
            v.fields(&mut fields);
        }
        at.push((a, fields.len()));
        if let Some(v) = &m.committed {
            v.fields(&mut fields);
        }
    }
    // A family is a stem and a suffix, so the families of a stem are built by one builder, the
    // same for equal stems of different names: the halves share no family.
    let part_of: Vec<usize> = stems
        .iter()
        .map(|stem| {
            let mut h = Fx::default();
            std::hash::Hasher::write(&mut h, stem.as_bytes());
            (std::hash::Hasher::finish(&h) >> 63) as usize
        })
        .take(if parts > 1 { stems.len() } else { 0 })
        .collect();
    let build = |part: usize| -> Mapped {
        let mut fixed: Vec<(Text, Text)> =
            cfg.const_labels.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::from(label_value(v)))).collect();
        fixed.push((Arc::from("job"), Arc::from(label_value(&cfg.job))));
        let mut b = Builder {
            cfg,
            families: Vec::with_capacity(snapshot.metrics.len() / parts),
            fixed,
            keys: Keys::new(cfg),
            capped: 0,
            fields: &fields,
            texts: series_order::Texts::default(),
            scratch: String::new(),
            set_scratch: Vec::new(),
            bases: HashMap::with_capacity_and_hasher(names_hint, FxBuild::default()),
            stem: 0,
            stem_head: Vec::new(),
            entries: Vec::with_capacity(stems.len() * 2),
        };
        b.stem_head.resize(stems.len(), NO_ENTRY);
        for ((m, &(stem_id, clash)), &(a, c)) in snapshot.metrics.iter().zip(&stem_ids).zip(&at) {
            if m.kind().is_none() || (parts > 1 && part_of[stem_id] != part) {
                continue;
            }
            let stem = &stems[stem_id];
            b.stem = stem_id;
            if let (true, Some(v)) = (cfg.selection != Selection::Committed, &m.attempted) {
                b.metric(m, v, a, false, clash, stem);
            }
            if let (true, Some(v)) = (cfg.selection != Selection::Attempted, &m.committed) {
                b.metric(m, v, c, true, clash, stem);
            }
        }
        b.finish()
    };
    let mut mapped = if parts > 1 {
        let (one, mut zero) = parallel::join(|| build(1), || build(0));
        zero.families.extend(one.families);
        zero.capped += one.capped;
        zero.duplicates += one.duplicates;
        zero
    } else {
        build(0)
    };
    mapped.families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    // A family is a stem and a suffix, and no suffix ends with another: names are unique.
    debug_assert!(mapped.families.windows(2).all(|w| w[0].name != w[1].name), "two families of one name");
    mapped
}

impl Builder<'_> {
    /// The families built, each sorted and without duplicate series.
    fn finish(self) -> Mapped {
        let mut duplicates = 0u64;
        // Only large families are sorted by ranks (`series_order::SMALL`).
        let mut needed = vec![false; self.texts.len()];
        for f in &self.families {
            if f.family.typ != FamilyType::Histogram && f.keys.len() == f.family.samples.len() {
                f.keys.mark_needed(&mut needed);
            }
        }
        let ranks = self.texts.ranks(&needed);
        let mut families: Vec<Family> = Vec::with_capacity(self.families.len());
        for FamilyBuild { mut family, keys, names } in self.families {
            // Stable order; an exact duplicate series would make a receiver reject the whole batch.
            if family.typ == FamilyType::Histogram {
                family.samples.sort_by(histogram_order);
                let before = family.samples.len();
                family.samples.dedup_by(|a, b| a.name == b.name && a.labels == b.labels);
                duplicates += (before - family.samples.len()) as u64;
            } else if family.samples.len() <= series_order::SMALL {
                duplicates += series_order::sort_small(&mut family.samples);
            } else if keys.len() == family.samples.len() {
                // Most families have one name (ranked 0).
                let name_rank = if names.len() > 1 { series_order::rank_by(names.len(), |a, b| names.get(a).cmp(names.get(b))) } else { Vec::new() };
                let name_rank: &[u32] = if name_rank.is_empty() { &[0] } else { &name_rank };
                duplicates += keys.sort_and_dedup(&mut family.samples, name_rank, &ranks);
            } else {
                // Not reached (a family past `SMALL` has a key per series); correct all the same.
                duplicates += series_order::sort_and_dedup(&mut family.samples);
            }
            families.push(family);
        }
        Mapped { families, capped: self.capped, duplicates }
    }
}
