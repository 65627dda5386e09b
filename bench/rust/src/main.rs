//! Native side of the benchmarks (BENCHMARKS.md). Modes:
//!
//! - `encode OUT N...`  times the Rust core on OUT/snapshot-N.bin (written by the Java harness from
//!   its synthetic `MetricQueryResults`) and writes the remote-write bodies to OUT/enc/rust-N-I.bin;
//! - `check OUT N...`   decodes the Rust, Java and Go bodies and checks they carry the same series;
//! - `rss OUT N PUSHES RW_URL PG_URL` pushes OUT/snapshot-N.bin PUSHES times to real servers
//!   through `delivery::Exporter` and prints VmRSS after each push (native memory, no JVM);
//! - `protocols OUT N...` remote-write 2.0 against 1.0 on the same snapshots: bytes on the wire
//!   (and before snappy), encode+compress time of a pipeline's first push and of repeat pushes;
//! - `profile OUT N ITERS WHAT` loops one stage for perf/callgrind.
//!
//! Results are printed as tab-separated `result` lines that bench/report.py turns into the table.

use beam_prometheus::config::Config;
use beam_prometheus::contract;
use beam_prometheus::delivery::Exporter;
use beam_prometheus::model::Snapshot;
use beam_prometheus::naming::{self, Mapped, NamingConfig, Selection};
use beam_prometheus::remote_write::{self, TimeSeries, WriteRequest};
use beam_prometheus::reuse::MappingCache;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Samples per request, as the exporter's default (--prometheusMaxSamplesPerRequest) and Prometheus' own sender.
const CHUNK: usize = 2000;

fn naming_cfg() -> NamingConfig {
    NamingConfig { prefix: "beam".into(), job: "bench".into(), const_labels: vec![], selection: Selection::Attempted, set_cap: 100, taken_labels: vec![], utf8_names: false }
}

fn read_snapshot(out: &Path, n: usize) -> (Vec<u8>, Snapshot) {
    let path = out.join(format!("snapshot-{}.bin", n));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {} (run the Java harness's gen first)", path.display(), e));
    let snap = contract::decode(&bytes).expect("snapshot decodes");
    (bytes, snap)
}

/// Builds the requests exactly as the exporter does (series, metadata on the first, 2000 a
/// request), moving the series into the requests rather than cloning them.
fn requests(mapped: &Mapped, time_ms: i64) -> Vec<WriteRequest> {
    let series = remote_write::series(mapped, time_ms);
    let mut metadata = Some(remote_write::metadata(mapped));
    let mut it = series.into_iter();
    let mut reqs = Vec::new();
    loop {
        let chunk: Vec<TimeSeries> = it.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        reqs.push(WriteRequest { timeseries: chunk, metadata: metadata.take().unwrap_or_default() });
    }
    reqs
}

/// series + metadata + protobuf + snappy: the bodies of one snapshot, as the exporter's first
/// push of a mapping writes them (`reuse::MappingCache::remote_write_bodies`, on one thread):
/// requests of CHUNK series from one `remote_write::Encoder`, each series' labels written from
/// the mapped series, metadata in the first.
fn encode_mapped(mapped: &Mapped, time_ms: i64) -> Vec<Vec<u8>> {
    let metadata = remote_write::metadata_bytes(&remote_write::metadata(mapped));
    let mut encoder = remote_write::Encoder::default();
    let mut series = mapped.series();
    mapped
        .values()
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| encoder.encode_series(series.by_ref().take(c.len()), c.iter().copied(), time_ms, if i == 0 { &metadata } else { &[] }, false))
        .collect()
}

/// The whole native work of a first push from the contract bytes, as the exporter does it:
/// `contract::split` (the structure is new), `contract::decode`, `naming::map`, then the bodies.
fn first_push(bytes: &[u8], cfg: &NamingConfig) -> Vec<(Vec<u8>, usize)> {
    let mut cache = MappingCache::default();
    let (time, reused) = cache.update(bytes, cfg, |_| ()).unwrap();
    assert!(!reused);
    cache.remote_write_bodies(time, CHUNK, false)
}

struct Timing {
    median_ns: f64,
    p25_ns: f64,
    p75_ns: f64,
    samples: usize,
}

/// Runs `f` in samples of `per_sample` calls after `warmup` samples; per-call times.
fn measure(samples: usize, warmup: usize, per_sample: usize, mut f: impl FnMut()) -> Timing {
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let t = Instant::now();
        for _ in 0..per_sample {
            f();
        }
        let ns = t.elapsed().as_nanos() as f64 / per_sample as f64;
        if i >= warmup {
            times.push(ns);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Timing { median_ns: q(0.5), p25_ns: q(0.25), p75_ns: q(0.75), samples }
}

fn report(impl_: &str, op: &str, n: usize, t: &Timing, extra: &str) {
    println!("result\t{}\t{}\t{}\t{:.0}\t{:.0}\t{:.0}\t{}\t{}", impl_, op, n, t.median_ns, t.p25_ns, t.p75_ns, t.samples, extra);
}

/// The machine's CPU time over a phase, from /proc/stat and /proc/self/stat (Linux): how much
/// of it went to other processes and to the hypervisor (steal), so a figure taken while the
/// second core was not ours to use shows as such. Two-thread figures depend on that core.
struct CpuShare {
    total: u64,
    busy: u64,
    steal: u64,
    own: u64,
}

impl CpuShare {
    fn now() -> Option<CpuShare> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4)?;
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which ends with the last ')': utime is the 12th, stime the 13th.
        let after: Vec<&str> = own_stat.rsplit_once(')')?.1.split_whitespace().collect();
        let own = after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?;
        Some(CpuShare { total, busy: total - idle - cpu.get(7)?, steal: *cpu.get(7)?, own })
    }

    /// `other_pct=…;steal_pct=…;own_pct=…`: shares of all cores' time since `self`.
    fn since(&self) -> String {
        match CpuShare::now() {
            Some(b) if b.total > self.total => {
                let t = (b.total - self.total) as f64 / 100.0;
                let other = (b.busy - self.busy).saturating_sub(b.own - self.own) as f64;
                format!("other_pct={:.1};steal_pct={:.1};own_pct={:.1}", other / t, (b.steal - self.steal) as f64 / t, (b.own - self.own) as f64 / t)
            }
            _ => "unavailable".into(),
        }
    }
}

/// How much a second thread gets of the machine right now: the same fixed work (reads through
/// a random cycle over 2 MiB) on one thread, then on two at once (each its own), median of 5.
/// About 1 when the two threads have a core and its caches each; well above when they share
/// them, which a share of CPU time does not show. With
/// `exporters_join`, the second thread is the exporter's helper (`parallel::join`, which gives
/// way): the two-thread figures of tables 1a–1c run on it.
fn two_thread_slowdown(exporters_join: bool) -> f64 {
    // Dependent reads through a random cycle over 2 MiB: a core's own caches hold it, two
    // threads sharing one core's caches (SMT siblings) do not.
    fn work() -> u64 {
        const N: usize = 1 << 19;
        let mut next: Vec<u32> = (0..N as u32).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        // Sattolo's shuffle: one cycle through every slot.
        for i in (1..N).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            next.swap(i, (x % i as u64) as usize);
        }
        let mut at = 0u32;
        for _ in 0..4_000_000 {
            at = next[at as usize];
        }
        at as u64
    }
    let mut ratios: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(work());
            let one = t.elapsed().as_secs_f64();
            let t = Instant::now();
            if exporters_join {
                // The exporter's own way: a helper thread that gives way (`parallel::join`).
                black_box(beam_prometheus::parallel::join(work, work));
            } else {
                std::thread::scope(|s| {
                    let h = s.spawn(|| black_box(work()));
                    black_box(work());
                    h.join().unwrap();
                });
            }
            t.elapsed().as_secs_f64() / one
        })
        .collect();
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ratios[2]
}

fn per_sample(n: usize) -> usize {
    (10_000 / n).max(1)
}

fn encode_mode(out: &Path, sizes: &[usize], samples: usize) {
    let enc = out.join("enc");
    std::fs::create_dir_all(&enc).unwrap();
    let cfg = naming_cfg();
    for &n in sizes {
        let cpu = CpuShare::now();
        let (bytes, snap) = read_snapshot(out, n);
        let k = per_sample(n);
        let t = snap.time_ms;
        let mapped = naming::map(&snap, &cfg);
        let series = mapped.sample_count();
        let bodies = encode_mapped(&mapped, t);
        for (i, b) in bodies.iter().enumerate() {
            std::fs::write(enc.join(format!("rust-{}-{}.bin", n, i)), b).unwrap();
        }
        // The Pushgateway body of the same snapshot: the Java harness PUTs it raw to time the gateway alone.
        std::fs::write(enc.join(format!("pg-{}.pb", n)), beam_prometheus::pushgateway::render_protobuf(&mapped, &["job"])).unwrap();
        std::fs::write(enc.join(format!("pg-{}.txt", n)), beam_prometheus::pushgateway::render(&mapped, &["job"])).unwrap();
        let body_bytes: usize = bodies.iter().map(Vec::len).sum();
        let info = format!("series={};requests={};bytes={};snapshot_bytes={}", series, bodies.len(), body_bytes, bytes.len());
        eprintln!("rust n={}: {}", n, info);

        let m = measure(samples, 2, k, || {
            black_box(encode_mapped(black_box(&mapped), t));
        });
        report("rust", "encode_from_mapped", n, &m, &info);
        let m = measure(samples, 2, k, || {
            let mapped = naming::map(black_box(&snap), &cfg);
            black_box(encode_mapped(&mapped, t));
        });
        report("rust", "map_encode", n, &m, &info);
        let m = measure(samples, 2, k, || {
            black_box(first_push(black_box(&bytes), &cfg));
        });
        report("rust", "first_push_all", n, &m, &info);
        let m = measure(samples, 2, k, || {
            black_box(naming::map(black_box(&snap), &cfg));
        });
        report("rust", "map", n, &m, &info);
        // The same on one thread (large snapshots take two: `parallel`).
        let m = measure(samples, 2, k, || {
            black_box(naming::map_in(black_box(&snap), &cfg, 1));
        });
        report("rust", "map_one_thread", n, &m, &info);
        let m = measure(samples, 2, k, || {
            black_box(contract::decode(black_box(&bytes)).unwrap());
        });
        report("rust", "decode", n, &m, &info);
        let m = measure(samples, 2, k, || {
            black_box(beam_prometheus::pushgateway::render(black_box(&mapped), &["job"]));
        });
        report("rust", "pushgateway_render", n, &m, &info);
        let m = measure(samples, 2, k, || {
            black_box(beam_prometheus::pushgateway::render_protobuf(black_box(&mapped), &["job"]));
        });
        report("rust", "pushgateway_render_protobuf", n, &m, &info);
        let reqs = requests(&mapped, t);
        let m = measure(samples, 2, k, || {
            for r in &reqs {
                black_box(remote_write::encode(black_box(r)));
            }
        });
        report("rust", "encode_prebuilt", n, &m, &info);
        // Repeat pushes, as a runner makes them: the same metrics with new values. The exporter
        // reuses the mapping and the encoded labels (reuse::MappingCache); every value differs
        // between the two alternating snapshots, so each call really refreshes.
        let next = contract::encode(&revalued(&snap));
        let mut cache = MappingCache::default();
        let fresh = |c: &mut MappingCache, b: &[u8]| -> bool { c.update(b, &cfg, |_| ()).unwrap().1 };
        fresh(&mut cache, &bytes);
        // The first push writes labels from the series, the second from the store it builds.
        for push in ["first", "second"] {
            let again: Vec<Vec<u8>> = cache.remote_write_bodies(t, CHUNK, false).into_iter().map(|(b, _)| b).collect();
            assert!(again == bodies, "the cached mapping's {} push writes the same bytes as a fresh one", push);
        }
        assert!(fresh(&mut cache, &next) && fresh(&mut cache, &bytes), "a snapshot with new values reuses the mapping");
        let m = measure(samples, 2, k, || {
            black_box(cache.remote_write_bodies(t, CHUNK, false));
        });
        report("rust", "encode_repeat", n, &m, &info);
        let mut flip = false;
        let m = measure(samples, 2, k, || {
            flip = !flip;
            let (time, _) = cache.update(black_box(if flip { &next } else { &bytes }), &cfg, |_| ()).unwrap();
            black_box(cache.remote_write_bodies(time, CHUNK, false));
        });
        report("rust", "repeat_all", n, &m, &info);
        let first_pg = cache.pushgateway_protobuf(&["job"]);
        assert!(first_pg == beam_prometheus::pushgateway::render_protobuf(cache.mapped(), &["job"]), "the reused Pushgateway plan writes a fresh body");
        let m = measure(samples, 2, k, || {
            black_box(cache.pushgateway_protobuf(&["job"]));
        });
        report("rust", "pushgateway_protobuf_repeat", n, &m, &info);

        // All the native work of one JNI export call (decode, map, encode, queue) through the
        // real Exporter; its URL is a closed loopback port, so the queue only backs off.
        let closed = closed_port();
        let exporter = Exporter::new(
            Config::from_pairs(&[
                ("prometheusRemoteWriteUrl".into(), format!("http://127.0.0.1:{}/api/v1/write", closed)),
                ("prometheusJobName".into(), "bench".into()),
                ("prometheusSelfMetrics".into(), "false".into()),
                ("prometheusMaxBufferedSamples".into(), "300000".into()),
            ])
            .unwrap(),
        )
        .unwrap();
        let m = measure(samples, 2, k, || {
            exporter.export_bytes(black_box(&bytes)).unwrap();
        });
        report("rust", "exporter_export_bytes", n, &m, &info);
        exporter.close(Duration::from_millis(0));
        if let Some(c) = &cpu {
            println!("machine\tencode\t{}\t{};two_threads_x={:.2};join_x={:.2}", n, c.since(), two_thread_slowdown(false), two_thread_slowdown(true));
        }
    }
}

/// Remote-write 2.0 against 1.0, as the exporter makes them (`reuse::MappingCache`, requests of
/// CHUNK series): "first" maps the snapshot and builds each protocol's encoded labels or symbols
/// (the mapping's share is the same for both), "repeat" encodes with them reused.
fn protocols_mode(out: &Path, sizes: &[usize], samples: usize) {
    let cfg = naming_cfg();
    for &n in sizes {
        let (_, snap) = read_snapshot(out, n);
        let k = per_sample(n);
        let t = snap.time_ms;
        for proto in ["v1", "v2"] {
            let bodies = |c: &mut MappingCache| {
                if proto == "v2" { c.remote_write_v2_bodies(t, CHUNK, false) } else { c.remote_write_bodies(t, CHUNK, false) }
            };
            let mut cache = MappingCache::default();
            cache.set(&snap, &cfg, |_| ());
            let b = bodies(&mut cache);
            let wire: usize = b.iter().map(|x| x.0.len()).sum();
            let raw: usize = b.iter().map(|x| snap::raw::decompress_len(&x.0).unwrap()).sum();
            let info = format!("series={};requests={};bytes={};raw_bytes={}", cache.mapped().sample_count(), b.len(), wire, raw);
            eprintln!("rust {} n={}: {}", proto, n, info);
            let m = measure(samples, 2, k, || {
                let mut c = MappingCache::default();
                c.set(black_box(&snap), &cfg, |_| ());
                black_box(bodies(&mut c));
            });
            report("rust", &format!("rw_{}_first", proto), n, &m, &info);
            let m = measure(samples, 2, k, || {
                black_box(bodies(&mut cache));
            });
            report("rust", &format!("rw_{}_repeat", proto), n, &m, &info);
        }
    }
}

/// The same snapshot with every number changed (structure kept: counts stay above 0, set
/// gauges stay set).
fn revalued(s: &Snapshot) -> Snapshot {
    use beam_prometheus::model::Value;
    let mut s = s.clone();
    s.time_ms += 1000;
    for m in &mut s.metrics {
        for v in m.attempted.iter_mut().chain(m.committed.iter_mut()) {
            match v {
                Value::Counter(c) => *c += 7,
                Value::Distribution { sum, count, min, max } => {
                    *sum += 7;
                    if *count > 0 {
                        *count += 1;
                        *min -= 1;
                        *max += 1;
                    }
                }
                Value::Gauge { value, timestamp_ms } => {
                    *value += 1;
                    if *timestamp_ms != 0 {
                        *timestamp_ms += 1000;
                    }
                }
                Value::Histogram(h) => h.sum += 1.0,
                Value::StringSet(_) | Value::BoundedTrie(_) => {}
            }
        }
    }
    s
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there for the few seconds this runs.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn bodies_of(dir: &Path, who: &str, n: usize) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    loop {
        let p = dir.join(format!("{}-{}-{}.bin", who, n, v.len()));
        match std::fs::read(&p) {
            Ok(b) => v.push(b),
            Err(_) => break,
        }
    }
    v
}

fn check_mode(out: &Path, sizes: &[usize]) -> bool {
    let enc = out.join("enc");
    let mut ok = true;
    for &n in sizes {
        let rust = bodies_of(&enc, "rust", n);
        let decode_all = |bodies: &[Vec<u8>]| -> Result<Vec<WriteRequest>, String> {
            bodies.iter().map(|b| remote_write::decode(b)).collect()
        };
        let reference = decode_all(&rust).expect("rust bodies decode");
        let nseries: usize = reference.iter().map(|r| r.timeseries.len()).sum();
        let nmeta: usize = reference.iter().map(|r| r.metadata.len()).sum();
        for who in ["java", "go"] {
            let bodies = bodies_of(&enc, who, n);
            let verdict = match decode_all(&bodies) {
                Err(e) => Err(format!("does not decode: {}", e)),
                Ok(reqs) => compare(&reference, &reqs),
            };
            let identical = bodies == rust;
            match verdict {
                Ok(()) => println!(
                    "check\t{}\t{}\tequivalent\tseries={};metadata={};requests={};bytes_identical={}",
                    who, n, nseries, nmeta, reqs_len(&bodies), identical
                ),
                Err(e) => {
                    ok = false;
                    println!("check\t{}\t{}\tDIFFERENT\t{}", who, n, e);
                }
            }
        }
    }
    ok
}

fn reqs_len(b: &[Vec<u8>]) -> usize {
    b.len()
}

/// Same series (label sets, values bit for bit, timestamps) and the same metadata; the
/// split into requests may differ.
fn compare(a: &[WriteRequest], b: &[WriteRequest]) -> Result<(), String> {
    type Key = Vec<(String, String)>;
    let flat = |reqs: &[WriteRequest]| {
        let mut s: Vec<(Key, Vec<(u64, i64)>)> = reqs
            .iter()
            .flat_map(|r| r.timeseries.iter())
            .map(|t| {
                (
                    t.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                    t.samples.iter().map(|s| (s.value.to_bits(), s.timestamp)).collect(),
                )
            })
            .collect();
        s.sort();
        let mut m: Vec<(i32, String, String, String)> = reqs
            .iter()
            .flat_map(|r| r.metadata.iter())
            .map(|m| (m.r#type, m.metric_family_name.clone(), m.help.clone(), m.unit.clone()))
            .collect();
        m.sort();
        (s, m)
    };
    let (sa, ma) = flat(a);
    let (sb, mb) = flat(b);
    if sa.len() != sb.len() {
        return Err(format!("{} series vs {}", sb.len(), sa.len()));
    }
    if let Some((x, y)) = sa.iter().zip(&sb).find(|(x, y)| x != y) {
        return Err(format!("first difference: {:?} vs {:?}", y, x));
    }
    if ma != mb {
        return Err(format!("metadata differ ({} vs {} entries)", mb.len(), ma.len()));
    }
    Ok(())
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_mode(out: &Path, n: usize, pushes: usize, rw: &str, pg: &str) {
    let (mut bytes, _) = read_snapshot(out, n);
    let exporter = Exporter::new(
        Config::from_pairs(&[
            ("prometheusRemoteWriteUrl".into(), rw.into()),
            ("prometheusPushgatewayUrl".into(), pg.into()),
            ("prometheusJobName".into(), "bench_rss_native".into()),
            // Its own grouping label, so the gateway's scraped copy is not the remote-written series.
            ("prometheusGroupingKey.instance".into(), "bench".into()),
            ("prometheusSelfMetrics".into(), "false".into()),
        ])
        .unwrap(),
    )
    .unwrap();
    let mut first = 0;
    for i in 1..=pushes {
        // Stamped now (the file's fixed time is years old: Prometheus would refuse it as out of bounds).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        bytes[4..12].copy_from_slice(&now.to_be_bytes());
        exporter.export_bytes(&bytes).unwrap();
        exporter.flush(Duration::from_secs(60));
        let rss = vm_rss_kib();
        if i == 1 {
            first = rss;
        }
        println!("rss\trust\t{}\t{}\t{}", n, i, rss);
    }
    let s = exporter.stats();
    let failed = s.requests_failed.load(std::sync::atomic::Ordering::Relaxed)
        + s.pushes_failed.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("rust rss: first {} KiB, last {} KiB, failed requests {}", first, vm_rss_kib(), failed);
    if failed > 0 {
        eprintln!("delivery failed during the memory check");
        std::process::exit(1);
    }
    exporter.close(Duration::from_secs(10));
}

fn profile_mode(out: &Path, n: usize, iters: usize, what: &str) {
    let (bytes, snap) = read_snapshot(out, n);
    let cfg = naming_cfg();
    let mapped = naming::map(&snap, &cfg);
    // Repeat pushes: the cache holds the mapping and, from its second push, the labels.
    let mut cache = MappingCache::default();
    if what == "repeat" {
        cache.update(&bytes, &cfg, |_| ()).unwrap();
        drop(cache.remote_write_bodies(snap.time_ms, CHUNK, false));
        drop(cache.remote_write_bodies(snap.time_ms, CHUNK, false));
    }
    for _ in 0..iters {
        match what {
            "decode" => drop(black_box(contract::decode(&bytes).unwrap())),
            "map" => drop(black_box(naming::map(&snap, &cfg))),
            "encode" => drop(black_box(encode_mapped(&mapped, snap.time_ms))),
            "first" => drop(black_box(first_push(&bytes, &cfg))),
            "repeat" => {
                black_box(cache.update(&bytes, &cfg, |_| ()).unwrap());
                drop(black_box(cache.remote_write_bodies(snap.time_ms, CHUNK, false)));
            }
            "text" => {
                std::fs::write(out.join(format!("pg-{}.txt", n)), beam_prometheus::pushgateway::render(&mapped, &["job"])).unwrap();
                return;
            }
            _ => {
                let s = contract::decode(&bytes).unwrap();
                let m = naming::map(&s, &cfg);
                drop(black_box(encode_mapped(&m, s.time_ms)));
            }
        }
    }
}

/// The exporter's warnings and errors on stderr, as the JVM's SLF4J would show them.
struct StderrLog;
impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("[native {}] {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() {
    let _ = log::set_logger(&StderrLog);
    log::set_max_level(log::LevelFilter::Warn);
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: beam-prometheus-bench encode|check|protocols OUT N... | rss OUT N PUSHES RW_URL PG_URL | profile OUT N ITERS decode|map|encode|first|repeat|text|all";
    if args.len() < 3 {
        eprintln!("{}", usage);
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[2]);
    let nums = |from: usize| -> Vec<usize> { args[from..].iter().map(|a| a.parse().expect(usage)).collect() };
    match args[1].as_str() {
        "encode" => {
            let samples = std::env::var("BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
            encode_mode(&out, &nums(3), samples)
        }
        "protocols" => {
            let samples = std::env::var("BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
            protocols_mode(&out, &nums(3), samples)
        }
        "check" => {
            if !check_mode(&out, &nums(3)) {
                std::process::exit(1);
            }
        }
        "rss" => rss_mode(&out, args[3].parse().expect(usage), args[4].parse().expect(usage), &args[5], &args[6]),
        "machine" => println!("machine\tnow\t0\ttwo_threads_x={:.2};join_x={:.2}", two_thread_slowdown(false), two_thread_slowdown(true)),
        "profile" => profile_mode(&out, args[3].parse().expect(usage), args[4].parse().expect(usage), &args[5]),
        _ => {
            eprintln!("{}", usage);
            std::process::exit(2);
        }
    }
}
