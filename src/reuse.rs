//! Mapping once, refreshing after: runners report the same metrics push after push, so a
//! snapshot whose structure (`contract::split`'s skeleton) equals the previous one's only needs
//! new values in the previous mapping, and its series' encoded labels are reused as they are.
//! tests/refresh.rs checks that a refreshed mapping always equals a fresh one.

use crate::contract::{self, DecodeError};
use crate::model::Snapshot;
use crate::naming::{self, Mapped, NamingConfig};
use crate::parallel;
use crate::pushgateway;
use crate::remote_write;
use crate::remote_write_v2;
use bytes::Bytes;
use std::collections::HashMap;

#[derive(Default)]
pub struct MappingCache {
    /// Of the mapped snapshot; empty when there is none to compare with.
    skeleton: Vec<u8>,
    /// The mapped snapshot's bytes, when it was mapped without being split (nothing to compare
    /// it with), until the next snapshot needs its skeleton: a snapshot pushed once (a batch
    /// pipeline's) is never split.
    unsplit: Vec<u8>,
    /// The incoming snapshot's skeleton and fields.
    scratch: Vec<u8>,
    fields: Vec<f64>,
    mapped: Mapped,
    /// The encoded metadata of `mapped`, built on its first push, and every series' encoded
    /// labels, built on its second: a mapping pushed once (a batch pipeline's, or a structure
    /// that keeps changing) writes its labels straight from the series.
    remote_write: Option<(Vec<u8>, Option<remote_write::SeriesLabels>)>,
    encoder: remote_write::Encoder,
    /// The helper thread's, for large snapshots (`parallel`).
    helper_encoder: remote_write::Encoder,
    /// The Pushgateway protobuf body's structure, built on first use.
    push_plan: Option<pushgateway::PushPlan>,
    push_body: KeptBody,
    /// Remote-write 2.0: every request's symbols and series encoded once per mapping.
    v2_plan: Option<remote_write_v2::Plan>,
    v2_encoder: remote_write_v2::Encoder,
    /// When this exporter first sent each series (ms), by a hash of its name and labels: the start
    /// timestamp of cumulative series in 2.0. Kept across mappings, pruned to the current one.
    first_seen: HashMap<u64, i64, naming::FxBuild>,
}

/// The last Pushgateway body, kept to be written over by the next one. A large body is a fresh
/// mapping of its own each time otherwise (glibc's mmap threshold), and the page faults of
/// writing it cost more than rendering it: at 100k series (20 MB), in a JVM, the body took
/// 15 ms that way, where rendering it into a reused buffer takes 5 to 7.
/// The body is shared with its request (`Bytes`); it is taken back only once no request holds
/// it any more, else the next body gets a buffer of its own.
#[derive(Default)]
struct KeptBody(Option<Bytes>);

impl KeptBody {
    /// An empty buffer: the kept body's when no request holds it any more.
    fn take(&mut self) -> Vec<u8> {
        let mut v = self.0.take().and_then(|b| b.try_into_mut().ok()).map(Vec::from).unwrap_or_default();
        v.clear();
        v
    }

    fn keep(&mut self, body: Vec<u8>) -> Bytes {
        let b = Bytes::from(body);
        self.0 = Some(b.clone());
        b
    }
}

fn series_key(s: &naming::Sample) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&*s.name, &s.labels).hash(&mut h);
    h.finish()
}

impl MappingCache {
    /// Maps the snapshot in `buf`, or refreshes the previous mapping when only values changed.
    /// `extend` adds series of the exporter's own (self-metrics, `naming::Source::Stat`) to a
    /// new mapping; their values come from `refresh_stats`. Returns the snapshot's time and
    /// whether the previous mapping was reused.
    pub fn update(&mut self, buf: &[u8], cfg: &NamingConfig, extend: impl FnOnce(&mut Mapped)) -> Result<(i64, bool), DecodeError> {
        if !self.unsplit.is_empty() {
            // A skeleton that cannot be made stays empty: the next snapshot is decoded in full.
            if contract::split(&self.unsplit, &mut self.skeleton, &mut self.fields).is_err() {
                self.skeleton.clear();
            }
            // Freed, not kept: a structure that stays holds no fourth snapshot-sized buffer.
            self.unsplit = Vec::new();
        }
        // Whether `scratch` holds this snapshot's skeleton.
        let mut split = false;
        if !self.skeleton.is_empty() {
            if let Ok(time_ms) = contract::split(buf, &mut self.scratch, &mut self.fields) {
                if self.scratch == self.skeleton {
                    self.mapped.refresh(&self.fields);
                    return Ok((time_ms, true));
                }
                split = true;
            }
        }
        let snapshot = contract::decode(buf)?;
        self.set(&snapshot, cfg, extend);
        if split {
            std::mem::swap(&mut self.skeleton, &mut self.scratch);
        } else {
            self.unsplit.extend_from_slice(buf);
        }
        Ok((snapshot.time_ms, false))
    }

    /// Maps `snapshot` afresh (nothing to compare the next snapshot with).
    pub fn set(&mut self, snapshot: &Snapshot, cfg: &NamingConfig, extend: impl FnOnce(&mut Mapped)) {
        self.mapped = naming::map(snapshot, cfg);
        extend(&mut self.mapped);
        self.skeleton.clear();
        self.unsplit.clear();
        self.remote_write = None;
        self.push_plan = None;
        self.v2_plan = None;
    }

    /// The Pushgateway protobuf body of the mapping (`pushgateway::render_protobuf`);
    /// `grouping_labels` must be the same on every call.
    pub fn pushgateway_protobuf(&mut self, grouping_labels: &[&str]) -> Bytes {
        let values = self.mapped.values();
        let plan = self.push_plan.get_or_insert_with(|| pushgateway::PushPlan::new(&self.mapped, grouping_labels));
        let mut out = self.push_body.take();
        plan.render_into(&values, &mut out);
        self.push_body.keep(out)
    }

    /// The Pushgateway text body of the mapping (`pushgateway::render`).
    pub fn pushgateway_text(&mut self, grouping_labels: &[&str]) -> Bytes {
        let mut out = String::from_utf8(self.push_body.take()).unwrap_or_default();
        pushgateway::render_into(&self.mapped, grouping_labels, &mut out);
        self.push_body.keep(out.into_bytes())
    }

    pub fn mapped(&self) -> &Mapped {
        &self.mapped
    }

    /// Sets the values of the exporter's own series (`naming::Source::Stat`).
    pub fn refresh_stats(&mut self, stats: &[f64]) {
        self.mapped.refresh_stats(stats);
    }

    /// The remote-write bodies of the mapping, at most `per_request` series each, metadata in
    /// the first; with `stale`, Prometheus' staleness marker as every value and no metadata.
    /// Each body comes with its number of series.
    pub fn remote_write_bodies(&mut self, time_ms: i64, per_request: usize, stale: bool) -> Vec<(Vec<u8>, usize)> {
        let values = self.mapped.values();
        let per = per_request.max(1);
        let n = values.len();
        // On a first push, requests from series `split` on are encoded on a helper thread: a
        // whole number of requests, about half of a large snapshot's.
        let split = if n >= parallel::WORTH_IT { (n / 2).div_ceil(per) * per } else { n };
        let MappingCache { mapped, remote_write: rw, encoder, helper_encoder, .. } = self;
        let mapped = &*mapped;
        let job = RequestJob { values: &values, per, stale };
        // Requests written from the mapped series (a first push: no label store).
        let from_series = |encoder: &mut remote_write::Encoder, range: std::ops::Range<usize>, metadata: &[u8]| {
            let mut series = mapped.series().skip(range.start);
            job.requests(range, metadata, |_, values, meta| encoder.encode_series(series.by_ref().take(values.len()), values, time_ms, meta, stale))
        };
        if let Some((metadata, labels)) = rw {
            // A repeat push stays on this thread: it is cheap, and runs every period.
            if stale && labels.is_none() {
                // Staleness markers at close, after a single push: no store for them.
                return from_series(encoder, 0..n, metadata);
            }
            let labels = labels.get_or_insert_with(|| remote_write::SeriesLabels::new(mapped.series(), n));
            return job.requests(0..n, metadata, |at, values, meta| encoder.encode(labels, at, values, time_ms, meta, stale));
        }
        // A first push, written from the series; a large one in two halves, each by its thread.
        let metadata = remote_write::mapped_metadata_bytes(mapped);
        let bodies = if split >= n {
            from_series(encoder, 0..n, &metadata)
        } else {
            let (rest, mut first) = parallel::join(|| from_series(helper_encoder, split..n, &[]), || from_series(encoder, 0..split, &metadata));
            first.extend(rest);
            first
        };
        *rw = Some((metadata, None));
        bodies
    }

    /// Like `remote_write_bodies`, in remote-write 2.0 (`remote_write_v2`), metadata on every
    /// series; cumulative series start when this cache first encoded them.
    pub fn remote_write_v2_bodies(&mut self, time_ms: i64, per_request: usize, stale: bool) -> Vec<(Vec<u8>, usize)> {
        let values = self.mapped.values();
        let MappingCache { mapped, v2_plan, v2_encoder, first_seen, .. } = self;
        let plan = v2_plan.get_or_insert_with(|| {
            let keys: Vec<u64> = mapped.families.iter().flat_map(|f| f.samples.iter().map(series_key)).collect();
            let mut seen: HashMap<u64, i64, naming::FxBuild> = HashMap::with_capacity_and_hasher(keys.len(), Default::default());
            for k in &keys {
                seen.insert(*k, first_seen.get(k).copied().unwrap_or(time_ms));
            }
            *first_seen = seen;
            remote_write_v2::Plan::new(mapped, per_request, |i| first_seen[&keys[i]])
        });
        let mut at = 0;
        plan.chunks
            .iter()
            .map(|chunk| {
                let n = chunk.len();
                let body = v2_encoder.encode(chunk, &values[at..at + n], time_ms, stale);
                at += n;
                (body, n)
            })
            .collect()
    }
}

/// What every remote-write request of one push shares.
struct RequestJob<'a> {
    values: &'a [f64],
    per: usize,
    stale: bool,
}

impl RequestJob<'_> {
    /// The requests of series `range` (starting on a request boundary), each written by `one`
    /// from its first series' index, its values and its metadata (`metadata` goes into the
    /// push's first request).
    fn requests(
        &self,
        range: std::ops::Range<usize>,
        metadata: &[u8],
        mut one: impl FnMut(usize, std::iter::Copied<std::slice::Iter<'_, f64>>, &[u8]) -> Vec<u8>,
    ) -> Vec<(Vec<u8>, usize)> {
        range
            .clone()
            .step_by(self.per)
            .map(|at| {
                let chunk = &self.values[at..(at + self.per).min(range.end)];
                let meta: &[u8] = if at == 0 && !self.stale { metadata } else { &[] };
                (one(at, chunk.iter().copied(), meta), chunk.len())
            })
            .collect()
    }
}
