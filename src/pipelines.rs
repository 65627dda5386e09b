//! Pipelines sharing one exporter: an exporter (one per distinct options in a JVM) is one
//! Prometheus job, and several live pipelines may write to it. A Pushgateway PUT replaces the
//! whole group and the mapping is the series staleness markers end, so each export must carry
//! every pipeline's metrics, not just the writer's: the exporter maps the union of the latest
//! snapshot of every pipeline that wrote to it, combined as Beam combines one metric across
//! workers (`combine`).
//!
//! While a single pipeline has written, its buffers pass through untouched (the repeat-push fast
//! path of `reuse::MappingCache` stays as it is). A pipeline's last snapshot stays in the union
//! until the exporter closes, so a job's counter never goes back when one pipeline ends first.
//! At most `MAX_PIPELINES` snapshots are kept; past that the least recently written one is folded
//! into a retained aggregate of finished pipelines (counted in `folded`).

use crate::contract::{self, DecodeError};
use crate::model::{Histogram, Kind, Metric, MetricKey, Snapshot, TriePath, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Snapshots kept, one per pipeline: each may be as large as a pipeline's metrics, so the bound
/// is far above the pipelines one JVM runs at once, and far below what would hold gigabytes.
pub const MAX_PIPELINES: usize = 64;

/// The pipeline id of callers that never name one (the Rust API's `Exporter::export_bytes`).
/// Beam's `PipelineOptions.getOptionsId()` counts from 0.
pub const UNNAMED: i64 = -1;

#[derive(Default)]
pub struct Pipelines {
    /// The only pipeline that wrote so far, with its latest buffer; None once a second wrote.
    sole: Option<(i64, Vec<u8>)>,
    /// Once two or more wrote: each one's latest snapshot and when it was last written (a counter
    /// of writes, for folding the least recently written). Ordered, so that snapshots of equal
    /// time combine in the same order on every push.
    each: BTreeMap<i64, (u64, Snapshot)>,
    /// Folded pipelines' last values, combined; part of every union.
    finished: Option<Snapshot>,
    merged: bool,
    writes: u64,
    /// Pipelines folded into `finished` since the exporter started.
    folded: u64,
    /// Histograms of equal key whose bucket bounds differ (the newest kept), counted once per
    /// change of how many the union has, as `Exporter::count_mapping` counts capped entries.
    unmerged: u64,
    unmerged_now: u64,
}

impl Pipelines {
    /// Maps this write through `map`: the buffer itself while only one pipeline has written,
    /// otherwise the union of every pipeline's latest snapshot (this one's replacing its
    /// previous), encoded as the contract. A buffer that does not decode changes nothing.
    pub fn write<T>(
        &mut self,
        pipeline: i64,
        buf: Cow<'_, [u8]>,
        map: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        self.writes += 1;
        if !self.merged && self.sole.as_ref().map_or(true, |(id, _)| *id == pipeline) {
            let out = map(&buf)?;
            // An owned buffer (the JNI path) is kept without a copy, a borrowed one in the
            // previous one's memory.
            match buf {
                Cow::Owned(v) => self.sole = Some((pipeline, v)),
                Cow::Borrowed(b) => {
                    let (id, held) = self.sole.get_or_insert_with(Default::default);
                    *id = pipeline;
                    held.clear();
                    held.extend_from_slice(b);
                }
            }
            return Ok(out);
        }
        let snapshot = contract::decode(&buf)?;
        if !self.merged {
            self.start_merging();
        }
        if !self.each.contains_key(&pipeline) && self.each.len() >= MAX_PIPELINES {
            self.fold_least_recent();
        }
        self.each.insert(pipeline, (self.writes, snapshot));
        let union = self.union();
        map(&contract::encode(&union))
    }

    /// A second pipeline writes: the first's last buffer becomes a snapshot of the union.
    fn start_merging(&mut self) {
        if let Some((id, bytes)) = self.sole.take() {
            // It was mapped when written, so it decodes; should it not, it is left out.
            if let Ok(s) = contract::decode(&bytes) {
                self.each.insert(id, (0, s));
            }
        }
        self.merged = true;
        log::info!("a second pipeline writes to this exporter: each push carries the latest metrics of every pipeline that wrote to it, combined");
    }

    fn fold_least_recent(&mut self) {
        let Some(oldest) = self.each.iter().min_by_key(|(id, (at, _))| (*at, **id)).map(|(id, _)| *id) else { return };
        let (_, s) = self.each.remove(&oldest).expect("found just above");
        let (finished, _) = union([self.finished.as_ref(), Some(&s)].into_iter().flatten());
        self.finished = Some(finished);
        self.folded += 1;
        log::warn!(
            "this exporter keeps the latest metrics of at most {} pipelines: the least recently written one's are folded into a total that stays until the exporter closes (counted in beam_exporter_pipelines_folded_total; should that pipeline write again, its values count twice)",
            MAX_PIPELINES
        );
    }

    fn union(&mut self) -> Snapshot {
        let (s, unmerged) = union(self.finished.iter().chain(self.each.values().map(|(_, s)| s)));
        if unmerged != self.unmerged_now {
            self.unmerged_now = unmerged;
            if unmerged > 0 {
                self.unmerged += unmerged;
                log::warn!("{} histograms have other bucket bounds in another pipeline of this exporter: the newest pipeline's value is exported alone", unmerged);
            }
        }
        s
    }

    pub fn folded(&self) -> u64 {
        self.folded
    }

    pub fn histograms_unmerged(&self) -> u64 {
        self.unmerged
    }
}

/// Combines snapshots into one: a metric (same `MetricKey` and kind) of several is combined as
/// Beam combines one metric across workers (`combine`), attempted and committed values apart; a
/// metric of one alone is kept as it is. The time is the newest. Metrics come out sorted by key
/// and kind, so the same pipelines give the same structure push after push (and `MappingCache`
/// refreshes). Returns the histograms whose bucket bounds differed.
pub fn union<'a>(parts: impl Iterator<Item = &'a Snapshot>) -> (Snapshot, u64) {
    // Oldest first: where a value is kept rather than combined, the newest wins.
    let mut parts: Vec<&Snapshot> = parts.collect();
    parts.sort_by_key(|s| s.time_ms);
    let mut time_ms = i64::MIN;
    let mut unmerged = 0;
    let mut by: BTreeMap<(&MetricKey, Kind), Metric> = BTreeMap::new();
    for s in parts {
        time_ms = time_ms.max(s.time_ms);
        for m in &s.metrics {
            let Some(kind) = m.kind() else { continue };
            match by.get_mut(&(&m.key, kind)) {
                None => {
                    by.insert((&m.key, kind), m.clone());
                }
                Some(into) => {
                    unmerged += combine_opt(&mut into.attempted, &m.attempted);
                    unmerged += combine_opt(&mut into.committed, &m.committed);
                }
            }
        }
    }
    (Snapshot { time_ms: if time_ms == i64::MIN { 0 } else { time_ms }, metrics: by.into_values().collect() }, unmerged)
}

fn combine_opt(into: &mut Option<Value>, v: &Option<Value>) -> u64 {
    match (into.as_mut(), v) {
        (_, None) => 0,
        (None, Some(v)) => {
            *into = Some(v.clone());
            0
        }
        (Some(a), Some(b)) => combine(a, b) as u64,
    }
}

/// Combines `b` (of a newer or equally new snapshot) into `a`, both of one kind: counters add;
/// distributions add sum and count and take min and max; gauges keep the one set last (`b` on a
/// tie); string sets and bounded-trie paths unite; histograms add bucket counts and sums when
/// their bounds are equal and otherwise keep `b` (returns true then).
pub fn combine(a: &mut Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Counter(x), Value::Counter(y)) => *x = x.saturating_add(*y),
        (
            Value::Distribution { sum, count, min, max },
            Value::Distribution { sum: s2, count: c2, min: mi2, max: ma2 },
        ) => {
            *sum = sum.saturating_add(*s2);
            *count = count.saturating_add(*c2);
            *min = (*min).min(*mi2);
            *max = (*max).max(*ma2);
        }
        (Value::Gauge { value: v, timestamp_ms: t }, Value::Gauge { value, timestamp_ms }) => {
            if *timestamp_ms >= *t {
                (*v, *t) = (*value, *timestamp_ms);
            }
        }
        (Value::StringSet(x), Value::StringSet(y)) => {
            let all: BTreeSet<String> = x.drain(..).chain(y.iter().cloned()).collect();
            *x = all.into_iter().collect();
        }
        (Value::BoundedTrie(x), Value::BoundedTrie(y)) => {
            let all: BTreeSet<TriePath> = x.drain(..).chain(y.iter().cloned()).collect();
            *x = all.into_iter().collect();
        }
        (Value::Histogram(x), Value::Histogram(y)) => {
            let same_bounds = x.buckets.len() == y.buckets.len()
                && x.buckets.iter().zip(&y.buckets).all(|((b1, _), (b2, _))| b1.to_bits() == b2.to_bits());
            if !same_bounds {
                *x = y.clone();
                return true;
            }
            let Histogram { sum, buckets } = x;
            *sum += y.sum;
            for ((_, c), (_, c2)) in buckets.iter_mut().zip(&y.buckets) {
                *c = c.saturating_add(*c2);
            }
        }
        // The caller keys metrics by kind: values of two kinds never meet.
        _ => {}
    }
    false
}
