//! Delivery: `export` maps and encodes a snapshot on the caller's thread (for the JVM, the
//! exporter's mapping thread: intake.rs), queues it and returns;
//! one worker thread per destination sends, retries and drops by the rules in README.md
//! ("Delivery and failures"). One thread per destination keeps each series in timestamp order
//! (a pool of senders could reorder one series) and lets a slow gateway never delay remote-write.

use crate::config::{Config, PushFormat, PushMethod, RemoteWriteProtocol};
use crate::contract::{self, DecodeError};
use crate::disk_buffer::DiskBuffer;
use crate::model::Snapshot;
use crate::naming::{self, Family, FamilyType, Mapped, Sample};
use crate::pipelines::{self, Pipelines};
use crate::pushgateway;
use crate::remote_write_v2;
use crate::reuse::MappingCache;
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest piece of a server's error body we log.
const MAX_LOGGED_BODY: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    RemoteWrite,
    Pushgateway,
}

#[derive(Clone, Debug)]
enum Request {
    // Bytes: a retry resends the body without copying it.
    RemoteWrite(Bytes),
    /// A remote-write 2.0 body (`remote_write_v2`).
    RemoteWriteV2(Bytes),
    Push(Bytes),
    Delete,
}

#[derive(Clone, Debug)]
struct Job {
    request: Request,
    samples: u64,
    attempts: u32,
    not_before: Instant,
    /// Retried until --prometheusRetryBudgetMillis after this.
    queued_at: Instant,
    /// Its record in the disk buffer, when written there.
    disk_id: Option<u64>,
}

impl Job {
    fn new(request: Request, samples: u64) -> Job {
        let now = Instant::now();
        Job { request, samples, attempts: 0, not_before: now, queued_at: now, disk_id: None }
    }

    fn bytes(&self) -> u64 {
        match &self.request {
            Request::RemoteWrite(b) | Request::RemoteWriteV2(b) | Request::Push(b) => b.len() as u64,
            Request::Delete => 0,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Sent,
    /// A 2.0 receiver wrote only `written` of the request's samples (its response headers).
    Partial { written: u64, why: String },
    /// The receiver takes remote-write 1.0 only: 415, or a 2xx that says nothing of what it wrote.
    OnlyV1(String),
    Retry { after: Option<Duration>, why: String },
    Reject(String),
}

/// Counters of what the exporter did; all monotonic but `queued_samples` and the times.
#[derive(Debug, Default)]
pub struct Stats {
    pub samples_sent: AtomicU64,
    pub samples_retried: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub requests_sent: AtomicU64,
    pub requests_failed: AtomicU64,
    pub pushes_sent: AtomicU64,
    pub pushes_failed: AtomicU64,
    pub entries_capped: AtomicU64,
    pub series_deduplicated: AtomicU64,
    /// Snapshots mapped afresh: the first, and each whose structure changed (reuse.rs).
    pub mappings: AtomicU64,
    /// Pipelines whose latest values were folded into the finished total (pipelines.rs).
    pub pipelines_folded: AtomicU64,
    /// Histograms left out of a union of pipelines for other bucket bounds (pipelines.rs).
    pub histograms_unmerged: AtomicU64,
    pub queued_samples: AtomicU64,
    /// Bytes of the queued remote-write requests (compressed bodies): the buffer's memory.
    pub queued_bytes: AtomicU64,
    pub last_success_ms: AtomicI64,
    pub last_latency_us: AtomicU64,
    /// --prometheusMaxBufferedSamples, exported so an alert can compare `queued_samples` with it.
    pub max_buffered_samples: AtomicU64,
}

/// A copy of `Stats` with stable names, as exported and as handed to Java.
pub fn stats_names() -> &'static [&'static str] {
    &[
        "samples_sent", "samples_retried", "samples_rejected", "samples_dropped", "requests_sent",
        "requests_failed", "pushes_sent", "pushes_failed", "entries_capped", "series_deduplicated",
        "mappings", "pipelines_folded", "histograms_unmerged",
        "queued_samples", "queued_bytes", "last_success_ms", "last_latency_us", "max_buffered_samples",
    ]
}

impl Stats {
    pub fn values(&self) -> Vec<i64> {
        vec![
            self.samples_sent.load(Relaxed) as i64,
            self.samples_retried.load(Relaxed) as i64,
            self.samples_rejected.load(Relaxed) as i64,
            self.samples_dropped.load(Relaxed) as i64,
            self.requests_sent.load(Relaxed) as i64,
            self.requests_failed.load(Relaxed) as i64,
            self.pushes_sent.load(Relaxed) as i64,
            self.pushes_failed.load(Relaxed) as i64,
            self.entries_capped.load(Relaxed) as i64,
            self.series_deduplicated.load(Relaxed) as i64,
            self.mappings.load(Relaxed) as i64,
            self.pipelines_folded.load(Relaxed) as i64,
            self.histograms_unmerged.load(Relaxed) as i64,
            self.queued_samples.load(Relaxed) as i64,
            self.queued_bytes.load(Relaxed) as i64,
            self.last_success_ms.load(Relaxed),
            self.last_latency_us.load(Relaxed) as i64,
            self.max_buffered_samples.load(Relaxed) as i64,
        ]
    }
}

#[derive(Default)]
struct LaneState {
    jobs: VecDeque<Job>,
    /// The front job is being sent: nobody but the worker may touch it.
    busy: bool,
    closing: Option<Instant>,
    failing: bool,
    /// The worker stopped at the close deadline with requests still queued.
    abandoned: bool,
    /// Remote-write only, with --prometheusBufferDir: the queue's requests on disk.
    disk: Option<DiskBuffer>,
    /// The disk buffer failed to write (e.g. a full disk): logged once until it works again.
    disk_failing: bool,
    /// Samples dropped by the buffer bound since the last delivery (one warning per episode).
    overflow_dropped: u64,
    /// Samples given up (retry budget, attempts) since delivery last worked.
    given_up: u64,
}

impl LaneState {
    /// Everything before the oldest queued request that is on disk is delivered or dropped.
    fn ack_disk(&mut self) {
        let first = self.jobs.iter().find_map(|j| j.disk_id);
        if let Some(d) = &mut self.disk {
            let upto = first.unwrap_or_else(|| d.next_id()).saturating_sub(1);
            d.ack(upto);
        }
    }

    fn update_queued(&self, stats: &Stats) {
        stats.queued_samples.store(self.jobs.iter().map(|j| j.samples).sum(), Relaxed);
        stats.queued_bytes.store(self.jobs.iter().map(|j| j.bytes()).sum(), Relaxed);
    }
}

struct Lane {
    target: Target,
    state: Mutex<LaneState>,
    cv: Condvar,
}

struct Shared {
    cfg: Config,
    client: reqwest::blocking::Client,
    stats: Stats,
    group_url: Option<String>,
    last_error: Mutex<Option<String>>,
    /// `exporter_id` of the self-metrics: exporters sharing a job name (the default is the main
    /// class) would otherwise write one series, which a replay after an outage makes out of order.
    instance_id: String,
    /// Remote-write 1.0 is sent: configured, or the receiver refused 2.0 (set once, never unset).
    remote_write_v1: AtomicBool,
}

/// Unique per exporter: a process-random hash of the process, the time and a counter.
fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(NEXT.fetch_add(1, Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{:012x}", h.finish() >> 16)
}

pub struct Exporter {
    shared: Arc<Shared>,
    lanes: Vec<Arc<Lane>>,
    /// The newest snapshot's mapping, reused by the next one; also the series that get
    /// staleness markers at close.
    cache: Mutex<MappingCache>,
    /// The pipelines that wrote to this exporter: what `cache` maps is their union. Locked
    /// after `cache`.
    pipelines: Mutex<Pipelines>,
    /// Timestamp of the newest remote-written snapshot: each is stamped strictly later, since
    /// runners may push twice within a millisecond and a receiver answers 400 "duplicate sample
    /// for timestamp" when a value differs.
    /// Held from stamping to queueing, so concurrent exports queue in timestamp order.
    last_time_ms: Mutex<i64>,
    /// Read-held for a whole export, write-taken by close: nothing is queued after the final
    /// staleness markers or group deletion, nor on a lane whose worker has ended.
    closed: std::sync::RwLock<bool>,
    /// (capped entries, deduplicated series) of the previous push, see `count_mapping`.
    left_out: Mutex<(u64, u64)>,
    /// Series of the newest mapping (what a snapshot replaced before mapping loses, intake.rs).
    series: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make the exporter unusable: the state stays consistent
    // because every critical section only moves whole jobs.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Exporter {
    pub fn new(cfg: Config) -> Result<Exporter, String> {
        let client = crate::http::build_client(&cfg)?;
        let group_url = cfg
            .pushgateway_url
            .as_ref()
            .map(|u| pushgateway::group_url(u, &cfg.naming.job, &cfg.grouping));
        let stats = Stats { max_buffered_samples: AtomicU64::new(cfg.max_buffered_samples as u64), ..Stats::default() };
        let remote_write_v1 = AtomicBool::new(cfg.remote_write_protocol == RemoteWriteProtocol::V1);
        let shared = Arc::new(Shared { client, stats, group_url, cfg, last_error: Mutex::new(None), instance_id: new_instance_id(), remote_write_v1 });
        let mut last_time_ms = i64::MIN;
        let mut lanes = Vec::new();
        for (target, present) in [
            (Target::RemoteWrite, shared.cfg.remote_write_url.is_some()),
            (Target::Pushgateway, shared.cfg.pushgateway_url.is_some()),
        ] {
            if !present {
                continue;
            }
            let mut state = LaneState::default();
            if let (Target::RemoteWrite, Some(dir)) = (target, &shared.cfg.buffer_dir) {
                let (disk, records) = DiskBuffer::open(dir, shared.cfg.buffer_dir_max_bytes)?;
                state.disk = Some(disk);
                if !records.is_empty() {
                    let samples: u64 = records.iter().map(|r| r.samples as u64).sum();
                    log::info!("delivering first {} requests ({} samples) left in --prometheusBufferDir by an earlier run", records.len(), samples);
                    last_time_ms = records.iter().map(|r| r.time_ms).max().unwrap_or(last_time_ms);
                    let jobs: Vec<Job> = records
                        .into_iter()
                        .map(|r| Job { disk_id: Some(r.id), ..Job::new(Request::RemoteWrite(Bytes::from(r.body)), r.samples as u64) })
                        .collect();
                    // Queued first, then bounded like any queue (a smaller bound than the run
                    // that wrote them drops the oldest).
                    state.jobs.extend(jobs);
                    if let Some(msg) = make_room(&shared, &mut state, Vec::new()) {
                        log::warn!("{}", msg);
                    }
                }
            }
            let lane = Arc::new(Lane { target, state: Mutex::new(state), cv: Condvar::new() });
            let (l, s) = (lane.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("beam-prometheus-{:?}", target).to_lowercase())
                .spawn(move || worker(&l, &s))
                .map_err(|e| format!("cannot start the delivery thread: {}", e))?;
            lanes.push(lane);
        }
        Ok(Exporter {
            shared,
            lanes,
            cache: Mutex::new(MappingCache::default()),
            pipelines: Mutex::new(Pipelines::default()),
            last_time_ms: Mutex::new(last_time_ms),
            closed: std::sync::RwLock::new(false),
            left_out: Mutex::new((0, 0)),
            series: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The remote-write protocol sent now: the configured one, or 1.0 after a fallback.
    pub fn remote_write_protocol(&self) -> RemoteWriteProtocol {
        if self.shared.remote_write_v1.load(Relaxed) { RemoteWriteProtocol::V1 } else { RemoteWriteProtocol::V2 }
    }

    /// Remote-write samples one snapshot sends, by the newest mapping (0 without remote-write).
    pub fn remote_write_samples_per_snapshot(&self) -> u64 {
        if self.lanes.iter().any(|l| l.target == Target::RemoteWrite) { self.series.load(Relaxed) } else { 0 }
    }

    /// The newest delivery error, e.g. "Pushgateway: HTTP 400: …" or a TLS reason.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// Decodes a buffer from the Java side and queues it; returns once queued. For callers with
    /// one pipeline (tests, benchmarks); see `export_from`.
    pub fn export_bytes(&self, buf: &[u8]) -> Result<(), DecodeError> {
        self.export_from(pipelines::UNNAMED, Cow::Borrowed(buf))
    }

    /// Queues a buffer that `pipeline` (Beam's `PipelineOptions.getOptionsId()`) wrote: with the
    /// latest of every other pipeline that wrote to this exporter (pipelines.rs).
    pub fn export_from(&self, pipeline: i64, buf: Cow<'_, [u8]>) -> Result<(), DecodeError> {
        let closed = self.closed.read().unwrap_or_else(|p| p.into_inner());
        if *closed {
            drop(closed);
            log::warn!("metrics exported after the exporter was closed are ignored");
            return Ok(());
        }
        let mut cache = lock(&self.cache);
        let extend = |m: &mut Mapped| {
            if self.shared.cfg.export_self_metrics {
                self.add_self_metrics(m)
            }
        };
        let mut pipelines = lock(&self.pipelines);
        let (time_ms, reused) = pipelines.write(pipeline, buf, |b| cache.update(b, &self.shared.cfg.naming, extend))?;
        self.shared.stats.pipelines_folded.store(pipelines.folded(), Relaxed);
        self.shared.stats.histograms_unmerged.store(pipelines.histograms_unmerged(), Relaxed);
        drop(pipelines);
        if !reused {
            self.shared.stats.mappings.fetch_add(1, Relaxed);
        }
        self.count_mapping(cache.mapped());
        self.series.store(cache.mapped().sample_count() as u64, Relaxed);
        // After counting, so that a push reports its own capped and deduplicated series.
        cache.refresh_stats(&self.self_metric_values());
        self.deliver(&mut cache, time_ms);
        Ok(())
    }

    /// Queues a snapshot as the Java side would send it (tests, benchmarks). What the contract
    /// cannot carry is left out: metrics without a value (the mapping skips them too) and a
    /// committed value of another kind than the attempted one (one kind per metric; Beam's
    /// results never mix kinds).
    pub fn export(&self, snapshot: &Snapshot) {
        let mut s = snapshot.clone();
        s.metrics.retain(|m| m.kind().is_some());
        for m in &mut s.metrics {
            if let (Some(a), Some(c)) = (&m.attempted, &m.committed) {
                if a.kind() != c.kind() {
                    m.committed = None;
                }
            }
        }
        if let Err(e) = self.export_bytes(&contract::encode(&s)) {
            log::error!("{}", e);
        }
    }

    /// Counts (and logs) what the mapping left out, once per episode: a cumulative snapshot
    /// repeats the same capped set on every push, so only a change of what is left out counts.
    fn count_mapping(&self, mapped: &Mapped) {
        let stats = &self.shared.stats;
        let mut last = lock(&self.left_out);
        let now = (mapped.capped, mapped.duplicates);
        if *last == now {
            return;
        }
        *last = now;
        drop(last);
        if mapped.capped > 0 {
            stats.entries_capped.fetch_add(mapped.capped, Relaxed);
            log::warn!(
                "{} string-set/bounded-trie entries beyond --prometheusSetCap={} were left out",
                mapped.capped,
                self.shared.cfg.naming.set_cap
            );
        }
        if mapped.duplicates > 0 {
            stats.series_deduplicated.fetch_add(mapped.duplicates, Relaxed);
            log::warn!("{} series mapped onto series already exported and were dropped", mapped.duplicates);
        }
    }

    fn deliver(&self, c: &mut MappingCache, time_ms: i64) {
        for lane in &self.lanes {
            match lane.target {
                Target::RemoteWrite => self.queue_remote_write(lane, c, time_ms, false),
                Target::Pushgateway => {
                    let body = match self.shared.cfg.push_format {
                        PushFormat::Protobuf => c.pushgateway_protobuf(&self.grouping_labels()),
                        PushFormat::Text => c.pushgateway_text(&self.grouping_labels()),
                    };
                    let samples = c.mapped().sample_count() as u64;
                    self.queue_push(lane, Request::Push(body), samples);
                }
            }
        }
    }

    fn grouping_labels(&self) -> Vec<&str> {
        let mut v = vec!["job"];
        v.extend(self.shared.cfg.grouping.iter().map(|(k, _)| k.as_str()));
        v
    }

    /// Queues the mapped snapshot (or, with `stale`, staleness markers for its series).
    fn queue_remote_write(&self, lane: &Lane, c: &mut MappingCache, time_ms: i64, stale: bool) {
        let mut last = lock(&self.last_time_ms);
        let time_ms = time_ms.max(last.saturating_add(1));
        *last = time_ms;
        let per_request = self.shared.cfg.max_samples_per_request;
        let (bodies, request): (_, fn(Bytes) -> Request) = if self.shared.remote_write_v1.load(Relaxed) {
            (c.remote_write_bodies(time_ms, per_request, stale), Request::RemoteWrite)
        } else {
            (c.remote_write_v2_bodies(time_ms, per_request, stale), Request::RemoteWriteV2)
        };
        let jobs = bodies
            .into_iter()
            .map(|(body, n)| Job::new(request(Bytes::from(body)), n as u64))
            .collect();
        self.enqueue_bounded(lane, jobs, time_ms);
    }

    /// Queues remote-write jobs, dropping the oldest queued ones beyond the bounds
    /// (make_room); with a disk buffer they are written and synced before this returns.
    fn enqueue_bounded(&self, lane: &Lane, mut jobs: Vec<Job>, time_ms: i64) {
        let mut logs = Vec::new();
        let mut guard = lock(&lane.state);
        let st = &mut *guard;
        if let Some(disk) = &mut st.disk {
            // The disk holds 1.0 bodies (what a later run replays): 2.0 ones are converted.
            let v1: Vec<Option<Vec<u8>>> = jobs
                .iter()
                .map(|j| match &j.request {
                    Request::RemoteWriteV2(b) => remote_write_v2::to_v1(b).ok(),
                    _ => None,
                })
                .collect();
            let batch: Vec<(i64, u32, &[u8])> = jobs
                .iter()
                .zip(&v1)
                .map(|(j, v1)| match (&j.request, v1) {
                    (Request::RemoteWriteV2(_), Some(b)) => (time_ms, j.samples as u32, &b[..]),
                    (Request::RemoteWrite(b), _) => (time_ms, j.samples as u32, &b[..]),
                    _ => (time_ms, 0, &[][..]),
                })
                .collect();
            let written = match disk.append(&batch) {
                Ok(first) => (first, jobs.len()),
                Err((e, n)) => {
                    if !st.disk_failing {
                        st.disk_failing = true;
                        logs.push(format!(
                            "cannot write to --prometheusBufferDir ({}): queued requests are held in memory only (lost if the process dies) until writing works again",
                            e
                        ));
                    }
                    (disk.next_id() - n as u64, n)
                }
            };
            if written.1 == jobs.len() && st.disk_failing {
                st.disk_failing = false;
                log::info!("--prometheusBufferDir: writing works again");
            }
            for (i, j) in jobs.iter_mut().take(written.1).enumerate() {
                j.disk_id = Some(written.0 + i as u64);
            }
        }
        if let Some(msg) = make_room(&self.shared, st, jobs) {
            logs.push(msg);
        }
        drop(guard);
        lane.cv.notify_all();
        for m in logs {
            log::warn!("{}", m);
        }
    }

    /// Queues a Pushgateway request. A push replaces the group with a cumulative snapshot, so a
    /// newer push supersedes any queued, unsent one.
    fn queue_push(&self, lane: &Lane, request: Request, samples: u64) {
        let mut st = lock(&lane.state);
        let keep_front = st.busy;
        let mut i = 0;
        st.jobs.retain(|j| {
            let keep = (keep_front && i == 0) || !matches!(j.request, Request::Push(_));
            i += 1;
            keep
        });
        st.jobs.push_back(Job::new(request, samples));
        drop(st);
        lane.cv.notify_all();
    }

    /// The self-metrics' sample values, in `stats_names` order; none when they are off.
    fn self_metric_values(&self) -> Vec<f64> {
        if !self.shared.cfg.export_self_metrics {
            return Vec::new();
        }
        let v = self.shared.stats.values();
        stats_names()
            .iter()
            .zip(v)
            .map(|(stat, v)| match *stat {
                "last_success_ms" => v as f64 / 1000.0,
                "last_latency_us" => v as f64 / 1e6,
                _ => v as f64,
            })
            .collect()
    }

    fn add_self_metrics(&self, mapped: &mut Mapped) {
        let cfg = &self.shared.cfg.naming;
        // The same label rules as naming::map: values capped, empty values left out.
        let mut labels: Vec<(naming::Text, naming::Text)> =
            cfg.const_labels.iter().map(|(k, v)| (k.as_str().into(), naming::label_value(v).into())).collect();
        labels.push(("job".into(), naming::label_value(&cfg.job).into()));
        labels.push((naming::EXPORTER_ID_LABEL.into(), self.shared.instance_id.as_str().into()));
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        let labels: naming::Labels = labels.into();
        let v = self.self_metric_values();
        let names = stats_names();
        for (i, stat) in names.iter().enumerate() {
            let (typ, name, help) = match *stat {
                "queued_samples" => (FamilyType::Gauge, "exporter_queued_samples".to_string(), "Remote-write samples waiting to be sent"),
                "queued_bytes" => (FamilyType::Gauge, "exporter_queued_bytes".to_string(), "Size of the queued remote-write requests (compressed)"),
                "last_success_ms" => (FamilyType::Gauge, "exporter_last_success_timestamp_seconds".to_string(), "When the exporter last delivered a request (Unix seconds)"),
                "last_latency_us" => (FamilyType::Gauge, "exporter_last_request_duration_seconds".to_string(), "Duration of the exporter's last request"),
                "max_buffered_samples" => (FamilyType::Gauge, "exporter_max_buffered_samples".to_string(), "Bound of exporter_queued_samples (--prometheusMaxBufferedSamples)"),
                s => (FamilyType::Counter, format!("exporter_{}_total", s), "beam-prometheus exporter activity, see README (Self-metrics)"),
            };
            let full: naming::Text = if cfg.prefix.is_empty() { name.into() } else { format!("{}_{}", cfg.prefix, name).into() };
            let sample = Sample { name: full.clone(), labels: labels.clone(), value: v[i], source: naming::Source::Stat(i as u32) };
            match mapped.families.binary_search_by(|f| f.name.cmp(&full)) {
                Ok(at) => mapped.families[at].samples.push(sample),
                Err(at) => mapped.families.insert(
                    at,
                    Family { name: full, typ, help: help.to_string(), unit: "", samples: vec![sample] },
                ),
            }
        }
    }

    /// Waits until every queued request is delivered or dropped, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for lane in &self.lanes {
            let mut st = lock(&lane.state);
            while !st.jobs.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                st = lane.cv.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        true
    }

    /// Final delivery: staleness markers and the group deletion when configured, then waits at
    /// most `timeout` for the queues; what is still queued then is dropped and counted.
    pub fn close(&self, timeout: Duration) -> bool {
        {
            let mut closed = self.closed.write().unwrap_or_else(|p| p.into_inner());
            if *closed {
                return true;
            }
            *closed = true;
        }
        let cfg = &self.shared.cfg;
        for lane in &self.lanes {
            match lane.target {
                Target::RemoteWrite if cfg.stale_on_close => {
                    let mut cache = lock(&self.cache);
                    self.queue_remote_write(lane, &mut cache, now_ms(), true);
                }
                Target::Pushgateway if cfg.delete_on_end => {
                    let mut st = lock(&lane.state);
                    st.jobs.push_back(Job::new(Request::Delete, 0));
                }
                _ => {}
            }
        }
        let deadline = Instant::now() + timeout;
        for lane in &self.lanes {
            lock(&lane.state).closing = Some(deadline);
            lane.cv.notify_all();
        }
        // The worker empties its queue at the deadline too: that is not a delivery.
        let delivered = self.flush(timeout) && !self.lanes.iter().any(|l| lock(&l.state).abandoned);
        // The buffer directory (its lock) is free when close returns, even while a worker still
        // finishes a request it started before the deadline: the next exporter of these options
        // may open it at once. A request that then succeeds stays on disk unacknowledged and is
        // sent again by that exporter (at least once, as after a crash).
        for lane in &self.lanes {
            let disk = lock(&lane.state).disk.take();
            drop(disk);
        }
        delivered
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for lane in &self.lanes {
            let mut st = lock(&lane.state);
            st.closing.get_or_insert_with(Instant::now);
            lane.cv.notify_all();
        }
    }
}

/// Queues `jobs` behind the lane's, first dropping the oldest queued requests beyond
/// --prometheusMaxBufferedSamples and, with a disk buffer, --prometheusBufferDirMaxBytes (the
/// one being sent stays). Beam snapshots are cumulative, so the newest snapshot alone still
/// carries every series' newest value: what is dropped are intermediate samples. Counted;
/// returns the warning to log, once per episode.
fn make_room(shared: &Shared, st: &mut LaneState, jobs: Vec<Job>) -> Option<String> {
    let cfg = &shared.cfg;
    let incoming: u64 = jobs.iter().map(|j| j.samples).sum();
    let mut queued: u64 = st.jobs.iter().map(|j| j.samples).sum();
    let limit = cfg.max_buffered_samples as u64;
    let disk_over = |st: &LaneState| st.disk.as_ref().is_some_and(|d| d.live_bytes() > d.max_bytes());
    let mut dropped = 0u64;
    let mut disk_bound = false;
    let first_droppable = if st.busy { 1 } else { 0 };
    while (queued + incoming > limit || disk_over(st)) && st.jobs.len() > first_droppable {
        disk_bound |= disk_over(st);
        let Some(j) = st.jobs.remove(first_droppable) else { break };
        queued -= j.samples;
        dropped += j.samples;
        if let (Some(d), Some(id)) = (&mut st.disk, j.disk_id) {
            d.forget(id);
        }
    }
    if disk_bound && first_droppable == 1 {
        // The request being sent stays, but leaves the disk: its record would hold back the
        // acknowledgement, and with it the removal of every segment written after it, so a
        // request retried for long let the files outgrow --prometheusBufferDirMaxBytes.
        if let (Some(d), Some(id)) = (&mut st.disk, st.jobs.front_mut().and_then(|j| j.disk_id.take())) {
            d.forget(id);
        }
    }
    st.jobs.extend(jobs);
    st.ack_disk();
    st.update_queued(&shared.stats);
    if dropped == 0 {
        return None;
    }
    shared.stats.samples_dropped.fetch_add(dropped, Relaxed);
    let first_of_episode = st.overflow_dropped == 0;
    st.overflow_dropped += dropped;
    first_of_episode.then(|| {
        format!(
            "remote-write buffer full (--prometheusMaxBufferedSamples={}{}): dropping the oldest buffered samples ({} now); \
             counted in samples_dropped, summed up when delivery works again",
            limit,
            st.disk.as_ref().map_or(String::new(), |d| format!(", --prometheusBufferDirMaxBytes={}", d.max_bytes())),
            dropped
        )
    })
}

fn worker(lane: &Lane, shared: &Shared) {
    crate::background::give_way();
    let stats = &shared.stats;
    loop {
        let job = {
            let mut st = lock(&lane.state);
            loop {
                let now = Instant::now();
                if let Some(deadline) = st.closing {
                    if st.jobs.is_empty() || now >= deadline {
                        let left: u64 = st.jobs.iter().map(|j| j.samples).sum();
                        let on_disk: u64 = st.jobs.iter().filter(|j| j.disk_id.is_some()).map(|j| j.samples).sum();
                        st.abandoned |= !st.jobs.is_empty();
                        // Requests on disk are not acknowledged: the next exporter on the
                        // directory delivers them.
                        st.jobs.clear();
                        if lane.target == Target::RemoteWrite {
                            st.update_queued(stats);
                        }
                        lane.cv.notify_all();
                        drop(st);
                        if left > on_disk {
                            stats.samples_dropped.fetch_add(left - on_disk, Relaxed);
                            log::warn!("exporter closed with {} samples undelivered ({:?})", left - on_disk, lane.target);
                        }
                        if on_disk > 0 {
                            log::warn!("exporter closed with {} samples undelivered; they stay in --prometheusBufferDir for the next start", on_disk);
                        }
                        return;
                    }
                }
                match st.jobs.front() {
                    Some(j) if j.not_before <= now => {
                        let j = j.clone();
                        st.busy = true;
                        break j;
                    }
                    Some(j) => {
                        let wait = j.not_before - now;
                        let wait = st.closing.map_or(wait, |d| wait.min(d.saturating_duration_since(now)));
                        st = lane.cv.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    None => st = lane.cv.wait_timeout(st, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0,
                }
            }
        };
        let mut job = job;
        if let (Request::RemoteWriteV2(body), true) = (&job.request, shared.remote_write_v1.load(Relaxed)) {
            // Queued as 2.0 before the receiver turned out to take only 1.0.
            job.request = match remote_write_v2::to_v1(body) {
                Ok(v1) => Request::RemoteWrite(Bytes::from(v1)),
                Err(e) => Request::RemoteWrite(Bytes::from(format!("internal error: {}", e).into_bytes())),
            };
            if let Some(front) = lock(&lane.state).jobs.front_mut() {
                front.request = job.request.clone();
            }
        }
        let started = Instant::now();
        let outcome = send(shared, lane.target, &job.request, job.samples);
        stats.last_latency_us.store(started.elapsed().as_micros() as u64, Relaxed);
        let (ok, failed) = match lane.target {
            Target::RemoteWrite => (&stats.requests_sent, &stats.requests_failed),
            Target::Pushgateway => (&stats.pushes_sent, &stats.pushes_failed),
        };
        if let Outcome::Retry { why, .. } | Outcome::Reject(why) | Outcome::Partial { why, .. } = &outcome {
            *lock(&shared.last_error) = Some(format!("{:?}: {}", lane.target, why));
        }
        // Records go to Java (SLF4J): they are logged once the lane is unlocked, so a slow
        // appender never holds up writeMetrics.
        let mut logs: Vec<(log::Level, String)> = Vec::new();
        let mut st = lock(&lane.state);
        st.busy = false;
        match outcome {
            Outcome::OnlyV1(why) => {
                // Not an attempt: the same samples go again at once, as 1.0 (converted above).
                if !shared.remote_write_v1.swap(true, Relaxed) {
                    logs.push((log::Level::Warn, format!("RemoteWrite: the receiver takes remote-write 1.0 only ({}); sending 1.0 from now on", why)));
                }
            }
            Outcome::Partial { written, why } => {
                st.jobs.pop_front();
                st.ack_disk();
                ok.fetch_add(1, Relaxed);
                let lost = job.samples.saturating_sub(written);
                stats.samples_sent.fetch_add(written.min(job.samples), Relaxed);
                stats.samples_rejected.fetch_add(lost, Relaxed);
                stats.last_success_ms.store(now_ms(), Relaxed);
                logs.push((log::Level::Error, format!("RemoteWrite: partial write, {} of {} samples not written: {}", lost, job.samples, why)));
            }
            Outcome::Sent => {
                st.jobs.pop_front();
                st.ack_disk();
                ok.fetch_add(1, Relaxed);
                if lane.target == Target::RemoteWrite {
                    stats.samples_sent.fetch_add(job.samples, Relaxed);
                }
                stats.last_success_ms.store(now_ms(), Relaxed);
                if st.failing {
                    st.failing = false;
                    let given_up = std::mem::take(&mut st.given_up);
                    let extra = if given_up > 0 { format!(" ({} samples were given up while it failed)", given_up) } else { String::new() };
                    logs.push((log::Level::Info, format!("{:?}: delivering again{}", lane.target, extra)));
                }
                if st.overflow_dropped > 0 {
                    let n = std::mem::take(&mut st.overflow_dropped);
                    logs.push((log::Level::Warn, format!("{:?}: buffer bound episode over: {} of the oldest buffered samples were dropped in all", lane.target, n)));
                }
            }
            Outcome::Reject(why) => {
                st.jobs.pop_front();
                st.ack_disk();
                failed.fetch_add(1, Relaxed);
                stats.samples_rejected.fetch_add(job.samples, Relaxed);
                logs.push((log::Level::Error, format!("{:?}: request rejected, not retried; {} samples dropped: {}", lane.target, job.samples, why)));
            }
            Outcome::Retry { after, why } => {
                failed.fetch_add(1, Relaxed);
                let attempts = match st.jobs.front_mut() {
                    Some(front) => {
                        front.attempts += 1;
                        front.attempts
                    }
                    None => 0,
                };
                let cfg = &shared.cfg;
                let age = job.queued_at.elapsed();
                let out_of_attempts = cfg.max_attempts.is_some_and(|m| attempts >= m);
                if attempts > 0 && (age >= cfg.retry_budget || out_of_attempts) {
                    st.jobs.pop_front();
                    st.ack_disk();
                    stats.samples_rejected.fetch_add(job.samples, Relaxed);
                    let bound = if out_of_attempts {
                        format!("{} attempts (--prometheusMaxAttempts)", attempts)
                    } else {
                        format!("{} attempts in {:?} (--prometheusRetryBudgetMillis={})", attempts, age, cfg.retry_budget.as_millis())
                    };
                    // Once per outage: every queued request may reach its bound in turn.
                    let level = if st.given_up == 0 { log::Level::Error } else { log::Level::Debug };
                    st.given_up += job.samples;
                    logs.push((level, format!(
                        "{:?}: gave up after {}; {} samples dropped (more are counted in samples_rejected and summed up when delivery works again): {}",
                        lane.target, bound, job.samples, why
                    )));
                } else if attempts > 0 {
                    stats.samples_retried.fetch_add(job.samples, Relaxed);
                    // The last attempt comes when the budget ends, not a backoff later.
                    let delay = after.unwrap_or_else(|| backoff(cfg, attempts)).min(cfg.retry_budget.saturating_sub(age));
                    if let Some(front) = st.jobs.front_mut() {
                        front.not_before = Instant::now() + delay;
                    }
                    if !st.failing {
                        st.failing = true;
                        logs.push((log::Level::Warn, format!("{:?}: delivery failing, retrying in {:?}: {}", lane.target, delay, why)));
                    } else {
                        logs.push((log::Level::Debug, format!("{:?}: retry {} in {:?}: {}", lane.target, attempts, delay, why)));
                    }
                }
            }
        }
        if lane.target == Target::RemoteWrite {
            st.update_queued(stats);
        }
        drop(st);
        lane.cv.notify_all();
        for (level, message) in logs {
            log::log!(level, "{}", message);
        }
    }
}

/// Exponential backoff from --prometheusMinBackoffMillis to --prometheusMaxBackoffMillis with
/// "equal jitter" (half fixed, half random), as Prometheus' own sender spreads its retries.
fn backoff(cfg: &Config, attempts: u32) -> Duration {
    let base = cfg.min_backoff.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(cfg.max_backoff);
    let half = base / 2;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut x = nanos as u64 ^ (attempts as u64).wrapping_mul(0x9e3779b97f4a7c15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    half + Duration::from_nanos(x % (half.as_nanos() as u64 + 1))
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// A 2.0 receiver's `X-Prometheus-Remote-Write-*-Written` headers: samples written, or None when
/// it sent none of them (a 1.0 receiver that ignored the content type).
fn written_samples(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(|v| v.trim().parse::<u64>().unwrap_or(0));
    let samples = get(remote_write_v2::SAMPLES_WRITTEN);
    let others = get(remote_write_v2::HISTOGRAMS_WRITTEN).or(get(remote_write_v2::EXEMPLARS_WRITTEN));
    samples.or(others.map(|_| 0))
}

fn send(shared: &Shared, target: Target, request: &Request, samples: u64) -> Outcome {
    let c = &shared.client;
    let cfg = &shared.cfg;
    let builder = match (target, request) {
        (Target::RemoteWrite, Request::RemoteWrite(body)) => c
            .post(cfg.remote_write_url.as_deref().unwrap_or_default())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone()),
        (Target::RemoteWrite, Request::RemoteWriteV2(body)) => c
            .post(cfg.remote_write_url.as_deref().unwrap_or_default())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", remote_write_v2::CONTENT_TYPE)
            .header("X-Prometheus-Remote-Write-Version", remote_write_v2::VERSION)
            .body(body.clone()),
        (Target::Pushgateway, Request::Push(body)) => {
            let url = shared.group_url.as_deref().unwrap_or_default();
            let b = match cfg.push_method {
                PushMethod::Put => c.put(url),
                PushMethod::Post => c.post(url),
            };
            let content_type = match cfg.push_format {
                PushFormat::Protobuf => pushgateway::PROTOBUF_CONTENT_TYPE,
                PushFormat::Text => pushgateway::CONTENT_TYPE,
            };
            b.header("Content-Type", content_type).body(body.clone())
        }
        (Target::Pushgateway, Request::Delete) => c.delete(shared.group_url.as_deref().unwrap_or_default()),
        (t, r) => return Outcome::Reject(format!("internal error: {:?} request on the {:?} lane", r, t)),
    };
    let builder = match crate::http::authorize(cfg, builder) {
        Ok(b) => b,
        Err(why) => return Outcome::Retry { after: None, why },
    };
    let resp = match builder.send() {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() { "timed out" } else { "failed" };
            // without_url: a URL may carry user:password.
            let chain = crate::http::explain(&error_chain(&e.without_url()));
            return Outcome::Retry { after: None, why: format!("request {}: {}", what, chain) };
        }
    };
    let status = resp.status();
    let v2 = matches!(request, Request::RemoteWriteV2(_));
    if status.is_success() {
        if v2 && samples > 0 {
            return match written_samples(resp.headers()) {
                None => Outcome::OnlyV1(format!("HTTP {} without {}", status.as_u16(), remote_write_v2::SAMPLES_WRITTEN)),
                Some(w) if w < samples => Outcome::Partial { written: w, why: format!("HTTP {}, {}: {}", status.as_u16(), remote_write_v2::SAMPLES_WRITTEN, w) },
                Some(_) => Outcome::Sent,
            };
        }
        return Outcome::Sent;
    }
    if v2 && status.as_u16() == 415 {
        return Outcome::OnlyV1("HTTP 415".to_string());
    }
    // A 2.0 receiver that refuses some series (400) says how many samples it wrote of the rest.
    let written = if v2 && status.is_client_error() { written_samples(resp.headers()) } else { None };
    let retry_after = resp.headers().get("Retry-After").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    if status.is_redirection() {
        // Redirects are not followed: a POST would turn into a GET that loses the body while
        // counting as delivered, and headers would reach another host.
        let to = resp.headers().get("Location").and_then(|v| v.to_str().ok()).unwrap_or("?");
        return Outcome::Reject(format!("HTTP {}: redirected to {}; set the URL to the final address", status.as_u16(), crate::config::redact_url(to)));
    }
    // Only the start of an error body is read: it is for the log, and a server may send megabytes.
    let mut raw = Vec::with_capacity(MAX_LOGGED_BODY);
    let _ = std::io::Read::read_to_end(&mut std::io::Read::take(resp, MAX_LOGGED_BODY as u64 + 1), &mut raw);
    let truncated = raw.len() > MAX_LOGGED_BODY;
    raw.truncate(MAX_LOGGED_BODY);
    let mut body = String::from_utf8_lossy(&raw).into_owned();
    if truncated {
        body.push('…');
    }
    let why = format!("HTTP {}: {}", status.as_u16(), body.trim());
    if let Some(w) = written.filter(|w| *w > 0 && status.as_u16() != 429) {
        return Outcome::Partial { written: w, why };
    }
    if status.as_u16() == 401 || status.as_u16() == 403 {
        // Retried within the retry budget: a rotated token or password file fixes it
        // without losing the batch. Logged once per change of state by the worker.
        return Outcome::Retry {
            after: None,
            why: format!("{}; check --prometheusBasicAuthUser/--prometheusBasicAuthPassword*, --prometheusBearerToken* or --prometheusHeaders", why),
        };
    }
    if status.as_u16() == 429 || status.is_server_error() {
        // Prometheus' sender honours Retry-After on 429; on 5xx it is a hint we also take.
        Outcome::Retry { after: retry_after.map(|d| d.min(cfg.max_backoff.max(Duration::from_secs(60)))), why }
    } else {
        Outcome::Reject(why)
    }
}
