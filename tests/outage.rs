//! Long outages against the local test server (tests/common), time-compressed: retries bounded
//! by the retry budget rather than a count, the memory a 10-minute outage takes with the default
//! bound (bytes per buffered sample, measured), and the disk buffer through the exporter
//! (replay after a restart, lock, byte bound). Every wait is bounded.

mod common;

use beam_prometheus::config::{defaults, Config};
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::model::{Metric, Snapshot, Value};
use beam_prometheus::remote_write::{self, WriteRequest};
use common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

fn exporter(extra: &[(&str, &str)]) -> Result<Exporter, String> {
    Exporter::new(Config::from_pairs(&quick_opts(extra)).unwrap())
}

fn stats(ex: &Exporter) -> HashMap<&'static str, i64> {
    stats_names().iter().copied().zip(ex.stats().values()).collect()
}

fn counters(time_ms: i64, c: &[(&str, i64)]) -> Snapshot {
    snapshot(time_ms, c.iter().map(|(n, v)| attempted("ns", n, "s", Value::Counter(*v))).collect())
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {:?} waiting for {}", timeout, what);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (series name, timestamp, value) of every sample of the requests answered 200, in order.
fn delivered(server: &Server) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    for r in server.requests().iter().filter(|r| r.status == Some(200)) {
        let req: WriteRequest = remote_write::decode(&r.body).unwrap();
        for t in &req.timeseries {
            let name = t.labels.iter().find(|l| l.name == "__name__").unwrap().value.clone();
            for s in &t.samples {
                out.push((name.clone(), s.timestamp, s.value));
            }
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("beamprom-outage-{}-{}-{}", name, std::process::id(), nanos))
}

#[test]
fn retries_last_as_long_as_the_budget_not_a_count() {
    // 503 for good: more attempts than the old default count of 10, then given up at the budget
    // (3 s: room for a loaded machine).
    let server = Server::start(|_, _| status(503));
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusRetryBudgetMillis", "3000"),
        ("prometheusMinBackoffMillis", "5"),
        ("prometheusMaxBackoffMillis", "20"),
    ])
    .unwrap();
    let t0 = Instant::now();
    ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
    assert!(ex.flush(10 * SECOND), "{:?}", stats(&ex));
    let took = t0.elapsed();
    let reqs = server.requests();
    assert!(reqs.len() > 10, "only {} attempts within a 3 s budget", reqs.len());
    let span = reqs.last().unwrap().at - reqs[0].at;
    // The last attempt comes when the budget ends (clamped delay), not a backoff later.
    assert!(took >= Duration::from_millis(3000) && span >= Duration::from_millis(2800) && took < Duration::from_millis(4500), "span {:?}, took {:?}", span, took);
    let st = stats(&ex);
    assert_eq!((st["samples_rejected"], st["samples_sent"], st["queued_samples"], st["queued_bytes"]), (2, 0, 0, 0), "{:?}", st);
}

#[test]
fn an_outage_shorter_than_the_budget_loses_nothing_and_keeps_order() {
    outage_shorter_than_the_budget(None);
}

#[test]
fn the_same_with_the_disk_buffer() {
    let dir = temp_dir("short");
    outage_shorter_than_the_budget(Some(dir.to_str().unwrap()));
    // Everything delivered: nothing left on disk but the lock and the ledger.
    let left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|f| f == "lock" || f == "ledger"), "{:?}", left);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn outage_shorter_than_the_budget(buffer_dir: Option<&str>) {
    // Time-compressed: 120 pushes (10 minutes every 5 s) every 10 ms during the outage, within
    // a 5 s budget (a loaded machine may stretch the pushes).
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let server = Server::start(move |_, _| if u.load(Ordering::SeqCst) { ok() } else { status(503) });
    let url = server.url("/w");
    let mut o = vec![
        ("prometheusRemoteWriteUrl", url.as_str()),
        ("prometheusRetryBudgetMillis", "5000"),
        ("prometheusMinBackoffMillis", "5"),
        ("prometheusMaxBackoffMillis", "50"),
    ];
    if let Some(d) = buffer_dir {
        o.push(("prometheusBufferDir", d));
    }
    let ex = exporter(&o).unwrap();
    let t0 = Instant::now();
    let (mut slowest, mut total) = (Duration::ZERO, Duration::ZERO);
    for i in 1..=120 {
        let t = Instant::now();
        ex.export(&counters(1000 * i, &[("a", i), ("b", 2 * i)]));
        slowest = slowest.max(t.elapsed());
        total += t.elapsed();
        std::thread::sleep(Duration::from_millis(10));
    }
    let outage = t0.elapsed();
    assert!(outage < Duration::from_millis(4500), "the pushes took {:?}: not compressed enough for the 5 s budget", outage);
    assert!(stats(&ex)["requests_failed"] > 10);
    up.store(true, Ordering::SeqCst);
    assert!(ex.flush(10 * SECOND), "{:?}", stats(&ex));
    let st = stats(&ex);
    assert_eq!((st["samples_sent"], st["samples_rejected"], st["samples_dropped"]), (240, 0, 0), "{:?}", st);
    let got = delivered(&server);
    for (name, mult) in [("beam_a_total", 1.0), ("beam_b_total", 2.0)] {
        let s: Vec<(i64, f64)> = got.iter().filter(|x| x.0 == name).map(|x| (x.1, x.2)).collect();
        let want: Vec<(i64, f64)> = (1..=120).map(|i| (1000 * i, mult * i as f64)).collect();
        assert_eq!(s, want, "{}: every sample, in order", name);
    }
    println!("120 pushes during the outage, disk buffer {}: export took {:?} on average, {:?} at most", buffer_dir.is_some(), total / 120, slowest);
    ex.close(SECOND);
}

/// A pipeline of about 10k series: 193 steps, each with 40 counters, 2 distributions (4 series
/// each) and 2 gauges (2 series each), Beam-like names; values move every push.
fn pipeline(push: i64, time_ms: i64) -> Snapshot {
    let mut metrics = Vec::new();
    for s in 0..193 {
        let step = format!("Stage{}/ParDo(Transform{})/ParMultiDo(Transform{})", s / 16, s, s);
        let ns = format!("org.example.pipeline.Transform{}", s % 12);
        for c in 0..40 {
            let v = push * (17 + c * 3 + s) + (push * c) % 7;
            metrics.push(attempted(&ns, &format!("elements_{}", c), &step, Value::Counter(v)));
        }
        for d in 0..2 {
            let count = push * (5 + s + d);
            metrics.push(attempted(&ns, &format!("latency_ms_{}", d), &step,
                Value::Distribution { sum: count * 37 + push % 11, count, min: 1 + push % 3, max: 900 + push % 97 }));
        }
        for g in 0..2 {
            metrics.push(attempted(&ns, &format!("backlog_{}", g), &step,
                Value::Gauge { value: (push * 131 + s * 7 + g) % 10_000, timestamp_ms: time_ms - 250 }));
        }
    }
    Snapshot { time_ms, metrics }
}

#[test]
fn a_ten_minute_outage_of_ten_thousand_series_fits_the_default_bound() {
    // Default options but the self-metrics (kept, as by default) and quick backoffs; nothing
    // answers but 503. 120 pushes = 10 minutes at one push every 5 s.
    let server = Server::start(|_, _| status(503));
    let ex = Exporter::new(
        Config::from_pairs(&pairs(&[
            ("prometheusRemoteWriteUrl", &server.url("/w")),
            ("prometheusJobName", "bytes_per_sample"),
        ]))
        .unwrap(),
    )
    .unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut per_push = 0;
    for push in 1..=120 {
        let s = pipeline(push, t0 + 5000 * push);
        ex.export(&s);
        if push == 1 {
            per_push = stats(&ex)["queued_samples"];
        }
    }
    let st = stats(&ex);
    let samples = st["queued_samples"] + st["samples_sent"];
    assert!(per_push >= 10_000, "{} series", per_push);
    assert_eq!(samples, 120 * per_push, "{:?}", st);
    assert_eq!((st["samples_dropped"], st["samples_rejected"]), (0, 0), "nothing lost within the default bound: {:?}", st);
    assert!(samples as usize <= defaults::MAX_BUFFERED_SAMPLES);
    let bytes_per_sample = st["queued_bytes"] as f64 / st["queued_samples"] as f64;
    println!(
        "10-minute outage, {} series per push: {} samples buffered in {} bytes = {:.2} bytes per sample (compressed requests); the default bound of {} samples takes {:.0} MiB",
        per_push,
        st["queued_samples"],
        st["queued_bytes"],
        bytes_per_sample,
        defaults::MAX_BUFFERED_SAMPLES,
        bytes_per_sample * defaults::MAX_BUFFERED_SAMPLES as f64 / 1048576.0
    );
    // README ("Delivery and failures") states the figure: keep the two in step.
    assert!((20.0..27.0).contains(&bytes_per_sample), "{:.2} bytes per sample: update README", bytes_per_sample);
    ex.close(Duration::from_millis(100));
}

#[test]
fn the_disk_buffer_replays_a_dead_exporters_requests_first_and_in_order() {
    let dir = temp_dir("replay");
    let d = dir.to_str().unwrap();
    let down = Server::start(|_, _| status(503));
    {
        let ex = exporter(&[("prometheusRemoteWriteUrl", &down.url("/w")), ("prometheusBufferDir", d)]).unwrap();
        for i in 1..=5 {
            ex.export(&counters(1000 * i, &[("a", i)]));
        }
        // A second exporter on the same directory is refused while this one holds it.
        let e = exporter(&[("prometheusRemoteWriteUrl", &down.url("/w")), ("prometheusBufferDir", d)]).err().unwrap();
        assert!(e.starts_with("--prometheusBufferDir:") && e.contains("in use"), "{}", e);
        assert!(!ex.close(Duration::from_millis(200)), "nothing could be delivered");
        // Left for the next start, so not counted as dropped.
        assert_eq!(stats(&ex)["samples_dropped"], 0);
    }
    let server = Server::start(|_, _| ok());
    // The directory is free as soon as close has returned.
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusBufferDir", d)]).unwrap();
    // An older timestamp than the replayed ones is stamped after them.
    ex.export(&counters(500, &[("a", 6)]));
    assert!(ex.flush(10 * SECOND), "{:?}", stats(&ex));
    let got: Vec<(i64, f64)> = delivered(&server).into_iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(got, vec![(1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0), (5000, 5.0), (5001, 6.0)]);
    ex.close(SECOND);
    drop(ex);
    // Delivered requests are not replayed again.
    wait_until("the lock to be released", 5 * SECOND, || {
        exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusBufferDir", d)]).map(|ex| ex.flush(SECOND)).is_ok()
    });
    assert_eq!(server.count(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_buffer_directory_is_free_when_close_returns_even_mid_request() {
    // A request in flight to a receiver that never answers outlasts close's budget: close
    // returns at its deadline, and the next exporter of these options (the next pipeline, or a
    // sink written again after its idle expiry) opens the directory at once, with the request
    // still on disk to deliver.
    let dir = temp_dir("free-on-close");
    let d = dir.to_str().unwrap();
    let hung = Server::start(|_, _| Reply::Hang);
    let ex = exporter(&[("prometheusRemoteWriteUrl", &hung.url("/w")), ("prometheusBufferDir", d)]).unwrap();
    ex.export(&counters(1000, &[("a", 1)]));
    hung.wait_for(1, 5 * SECOND);
    assert!(!ex.close(Duration::from_millis(200)), "nothing could be delivered");
    let server = Server::start(|_, _| ok());
    let next = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusBufferDir", d)])
        .expect("the directory is free once close has returned");
    assert!(next.flush(10 * SECOND));
    let got: Vec<(i64, f64)> = delivered(&server).into_iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(got, vec![(1000, 1.0)], "the request in flight at close is delivered by the next exporter");
    next.close(SECOND);
    drop(ex);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Pseudo-random hex strings (xorshift from `seed`): label values snappy cannot shrink, so a
/// request's size on disk is predictable.
fn hex_source(mut x: u64) -> impl FnMut(usize) -> String {
    move |n| {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from_digit((x % 16) as u32, 16).unwrap()
            })
            .collect()
    }
}

/// A request that stays in flight (a receiver that never answers) is never dropped, but it must
/// not hold the files of the requests dropped behind it: their segments go, the bound holds.
#[test]
fn a_request_in_flight_does_not_hold_the_disk_bound() {
    let dir = temp_dir("in-flight-bound");
    let d = dir.to_str().unwrap();
    let hung = Server::start(|_, _| Reply::Hang);
    let ex = exporter(&[("prometheusRemoteWriteUrl", &hung.url("/w")), ("prometheusBufferDir", d), ("prometheusBufferDirMaxBytes", "65536")])
        .unwrap();
    let mut hex = hex_source(0x2545_f491_4f6c_dd1du64);
    let mut push = |t: i64| {
        let metrics: Vec<Metric> = (0..100).map(|i| attempted("ns", "m", &hex(100), Value::Counter(i as i64 + t))).collect();
        ex.export(&snapshot(1000 * t, metrics));
    };
    push(1);
    hung.wait_for(1, 5 * SECOND);
    // With a disk buffer, export writes the requests (and drops beyond the bound) before it returns.
    for t in 2..=20 {
        push(t);
    }
    let st = stats(&ex);
    assert!(st["samples_dropped"] > 0, "{:?}", st);
    let on_disk: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk <= 2 * 65_536 + 64, "{} bytes on disk while the first request is in flight", on_disk);
    ex.close(Duration::from_millis(200));
    drop(ex);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_disk_bound_drops_the_oldest_requests() {
    let dir = temp_dir("bound");
    let d = dir.to_str().unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let server = Server::start(move |_, _| if u.load(Ordering::SeqCst) { ok() } else { status(503) });
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusBufferDir", d),
        ("prometheusBufferDirMaxBytes", "65536"),
    ])
    .unwrap();
    // About 10 KB per request (incompressible label values): about 6 fit in 64 KiB.
    let mut hex = hex_source(0x9e37_79b9_7f4a_7c15u64);
    for push in 1..=20i64 {
        let metrics: Vec<Metric> =
            (0..100).map(|i| attempted("ns", "m", &hex(100), Value::Counter(i as i64 + push))).collect();
        ex.export(&snapshot(1000 * push, metrics));
    }
    let st = stats(&ex);
    assert!(st["samples_dropped"] > 0, "{:?}", st);
    let on_disk: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    // The bound plus one segment (max/16, at least 64 KiB) of acknowledged records.
    assert!(on_disk <= 2 * 65_536 + 64, "{} bytes on disk", on_disk);
    up.store(true, Ordering::SeqCst);
    assert!(ex.flush(10 * SECOND));
    let st = stats(&ex);
    assert_eq!(st["samples_sent"] + st["samples_dropped"], 20 * 100, "{:?}", st);
    // The newest requests are the ones kept, in order.
    let ts: Vec<i64> = delivered(&server).iter().map(|x| x.1).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]) && *ts.last().unwrap() == 20_000, "{:?}", ts);
    ex.close(SECOND);
    drop(ex);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replayed_requests_are_bounded_like_any_queue() {
    let dir = temp_dir("replay_bound");
    let d = dir.to_str().unwrap();
    let down = Server::start(|_, _| status(503));
    {
        let ex = exporter(&[("prometheusRemoteWriteUrl", &down.url("/w")), ("prometheusBufferDir", d)]).unwrap();
        for i in 1..=5 {
            ex.export(&counters(1000 * i, &[("a", i)]));
        }
        ex.close(Duration::from_millis(100));
    }
    let server = Server::start(|_, _| ok());
    let mut opened = None;
    wait_until("the lock to be released", 5 * SECOND, || {
        opened = exporter(&[
            ("prometheusRemoteWriteUrl", &server.url("/w")),
            ("prometheusBufferDir", d),
            ("prometheusMaxBufferedSamples", "2"),
        ])
        .ok();
        opened.is_some()
    });
    let ex = opened.unwrap();
    assert!(ex.flush(10 * SECOND));
    let got: Vec<(i64, f64)> = delivered(&server).into_iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(got, vec![(4000, 4.0), (5000, 5.0)], "the newest two, in order");
    assert_eq!(stats(&ex)["samples_dropped"], 3);
    ex.close(SECOND);
    drop(ex);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every log record of this test binary (tests run in parallel: each looks for its own text).
static LOGS: std::sync::Mutex<Vec<(log::Level, String)>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LOGS.lock().unwrap().push((r.level(), r.args().to_string()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

fn logged(containing: &str) -> Vec<String> {
    LOGS.lock().unwrap().iter().filter(|(_, m)| m.contains(containing)).map(|(l, m)| format!("{} {}", l, m)).collect()
}

#[test]
fn overflow_and_give_ups_are_logged_once_per_episode_and_summed_up() {
    capture_logs();
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let server = Server::start(move |_, _| if u.load(Ordering::SeqCst) { ok() } else { status(503) });
    let quick = [("prometheusMinBackoffMillis", "5"), ("prometheusMaxBackoffMillis", "20")];
    // One exporter whose requests outlive the budget, one whose buffer overflows.
    let budget = exporter(&[&[("prometheusRemoteWriteUrl", server.url("/w").as_str()), ("prometheusRetryBudgetMillis", "321")][..], &quick[..]].concat()).unwrap();
    let bound = exporter(&[&[("prometheusRemoteWriteUrl", server.url("/w").as_str()), ("prometheusMaxBufferedSamples", "3")][..], &quick[..]].concat()).unwrap();
    for i in 1..=40 {
        budget.export(&counters(1000 * i, &[("a", i), ("b", i)]));
        bound.export(&counters(1000 * i, &[("c", i), ("d", i)]));
        std::thread::sleep(Duration::from_millis(25));
    }
    let (sb, so) = (stats(&budget), stats(&bound));
    assert!(sb["samples_rejected"] >= 6 && so["samples_dropped"] >= 20, "{:?} {:?}", sb, so);
    // Many give-ups and drops, one line each so far.
    let gave_up = LOGS.lock().unwrap().iter().filter(|(l, m)| *l == log::Level::Error && m.contains("--prometheusRetryBudgetMillis=321")).count();
    assert_eq!(gave_up, 1);
    assert_eq!(logged("--prometheusMaxBufferedSamples=3)").len(), 1, "{:?}", logged("--prometheusMaxBufferedSamples=3)"));
    up.store(true, Ordering::SeqCst);
    assert!(budget.flush(10 * SECOND) && bound.flush(10 * SECOND));
    let (sb, so) = (stats(&budget), stats(&bound));
    for st in [&sb, &so] {
        assert_eq!(st["samples_sent"] + st["samples_dropped"] + st["samples_rejected"], 80, "every sample accounted for: {:?}", st);
    }
    // The totals, once delivery works again (logged just after the queue empties).
    let summary = format!("delivering again ({} samples were given up", sb["samples_rejected"]);
    let over = format!("{} of the oldest buffered samples were dropped in all", so["samples_dropped"]);
    wait_until("the summaries", 5 * SECOND, || !logged(&summary).is_empty() && !logged(&over).is_empty());
    assert_eq!(logged(&summary).len(), 1, "{:?}", logged("delivering again"));
    assert_eq!(logged(&over).len(), 1, "{:?}", logged("of the oldest buffered samples"));
    budget.close(SECOND);
    bound.close(SECOND);
}
