//! intake.rs: snapshots handed over by the caller's thread (the JVM's writeMetrics) and mapped
//! on the exporter's own thread; flush and close include what still waits for it.

mod common;

use beam_prometheus::config::Config;
use beam_prometheus::contract;
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::intake::Intake;
use beam_prometheus::model::{Snapshot, Value};
use beam_prometheus::pipelines::UNNAMED;
use beam_prometheus::remote_write::{self, STALE_NAN};
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

fn intake(extra: &[(&str, &str)]) -> Intake {
    Intake::new(Exporter::new(Config::from_pairs(&quick_opts(extra)).unwrap()).unwrap()).unwrap()
}

fn stat(ex: &Intake, name: &str) -> i64 {
    let i = stats_names().iter().position(|n| *n == name).unwrap_or_else(|| panic!("no stat {}", name));
    ex.stats().values()[i]
}

/// `n` counters `c0..` in namespace "ns", step "s", each of value `v`.
fn counters(time_ms: i64, n: usize, v: i64) -> Snapshot {
    snapshot(time_ms, (0..n).map(|i| attempted("ns", &format!("c{}", i), "s", Value::Counter(v))).collect())
}

/// Values of `beam_c0_total` in the remote-write requests received, in order (staleness markers left out).
fn c0_values(server: &Server) -> Vec<f64> {
    let mut out = Vec::new();
    for r in server.requests().iter().filter(|r| r.path == "/w") {
        let req = remote_write::decode(&r.body).unwrap();
        for t in &req.timeseries {
            if t.labels.iter().any(|l| l.name == "__name__" && l.value == "beam_c0_total") {
                out.extend(t.samples.iter().filter(|s| s.value.to_bits() != STALE_NAN).map(|s| s.value));
            }
        }
    }
    out
}

#[test]
fn a_bad_buffer_is_refused_by_submit_itself() {
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    let buf = contract::encode(&counters(1000, 3, 1));
    assert!(ex.submit(UNNAMED, buf[..buf.len() - 1].to_vec()).is_err(), "a truncated buffer");
    assert!(ex.submit(UNNAMED, b"garbage".to_vec()).is_err());
    let mut bad_magic = buf.clone();
    bad_magic[0] = b'X';
    assert!(ex.submit(UNNAMED, bad_magic).is_err());
    assert!(ex.flush(5 * SECOND));
    assert_eq!(server.count(), 0, "nothing refused was mapped or sent");
    assert_eq!(stat(&ex, "mappings"), 0);
}

#[test]
fn flush_waits_until_submitted_snapshots_are_mapped_and_delivered() {
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.submit(UNNAMED, contract::encode(&counters(1000, 5, 7))).unwrap();
    assert!(ex.flush(5 * SECOND), "{:?}", ex.last_error());
    // No waiting after flush: it covers the mapping thread too.
    assert_eq!(c0_values(&server), vec![7.0]);
    assert_eq!((stat(&ex, "mappings"), stat(&ex, "samples_sent")), (1, 5));
}

#[test]
fn submit_returns_while_the_receiver_holds_every_request() {
    // The receiver holds each request until the test releases it (at most 20 s): submit must
    // come back while the first one is still held, whatever the sender thread does meanwhile.
    let release = Arc::new(AtomicBool::new(false));
    let (received, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, got, a) = (release.clone(), received.clone(), answered.clone());
    let server = Server::start(move |_, _| {
        got.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + 20 * SECOND;
        while !r.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        a.fetch_add(1, Ordering::SeqCst);
        ok()
    });
    let ex = intake(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusPushgatewayUrl", &server.url("")),
        ("prometheusTimeoutMillis", "30000"),
    ]);
    ex.submit(UNNAMED, contract::encode(&counters(1000, 50, 1))).unwrap();
    let until = Instant::now() + 10 * SECOND;
    while received.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "no request arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..20 {
        ex.submit(UNNAMED, contract::encode(&counters(2000 + i, 50, 2 + i))).unwrap();
    }
    assert_eq!(answered.load(Ordering::SeqCst), 0, "every submit returned while no request was answered");
    release.store(true, Ordering::SeqCst);
    assert!(ex.flush(20 * SECOND), "{:?}", ex.last_error());
    assert_eq!(*c0_values(&server).last().unwrap(), 21.0, "the newest snapshot was delivered");
}

#[test]
fn every_submitted_sample_is_sent_or_counted_as_dropped() {
    // Snapshots submitted faster than they are mapped replace waiting ones (intake::MAX_PENDING);
    // what a replaced one would have sent is counted in samples_dropped.
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxBufferedSamples", "100000000")]);
    let (series, snapshots) = (2000usize, 30i64);
    for i in 0..snapshots {
        ex.submit(UNNAMED, contract::encode(&counters(1000 + i, series, i))).unwrap();
    }
    assert!(ex.flush(60 * SECOND), "{:?}", ex.last_error());
    let (sent, dropped) = (stat(&ex, "samples_sent"), stat(&ex, "samples_dropped"));
    assert_eq!(sent + dropped, series as i64 * snapshots, "sent {} dropped {}", sent, dropped);
    assert_eq!(sent % series as i64, 0);
    let values = c0_values(&server);
    assert_eq!(*values.last().unwrap(), (snapshots - 1) as f64, "the newest snapshot is never the one replaced");
    assert!(values.windows(2).all(|w| w[0] < w[1]), "delivered in submission order: {:?}", values);
}

#[test]
fn snapshots_replaced_before_any_mapping_ended_are_counted() {
    // The first push is large, so the mapping thread is still on it when the next ones replace
    // each other: their size is not known yet when they are replaced (the CI run on aarch64 under
    // qemu once counted 0 for them here), and is counted once the one that replaced them is mapped.
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxBufferedSamples", "100000000")]);
    let series = 50_000usize;
    let bufs: Vec<Vec<u8>> = (0..5).map(|i| contract::encode(&counters(1000 + i, series, i))).collect();
    for buf in bufs {
        ex.submit(UNNAMED, buf).unwrap();
    }
    assert!(ex.flush(120 * SECOND), "{:?}", ex.last_error());
    let (sent, dropped) = (stat(&ex, "samples_sent"), stat(&ex, "samples_dropped"));
    assert_eq!(sent + dropped, series as i64 * 5, "sent {} dropped {}", sent, dropped);
    assert!(dropped > 0, "the mapping thread kept up with five pre-encoded pushes of {} series", series);
    assert_eq!(*c0_values(&server).last().unwrap(), 4.0);
}

#[test]
fn close_maps_and_delivers_what_is_still_waiting() {
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusStaleOnEnd", "true")]);
    ex.submit(UNNAMED, contract::encode(&counters(1000, 3, 4))).unwrap();
    ex.submit(UNNAMED, contract::encode(&counters(2000, 3, 5))).unwrap();
    assert!(ex.close(10 * SECOND), "{:?}", ex.last_error());
    assert_eq!(c0_values(&server), vec![4.0, 5.0]);
    // The staleness markers come last, for the mapped series.
    let last = remote_write::decode(&server.requests().last().unwrap().body).unwrap();
    assert!(last.timeseries.iter().all(|t| t.samples[0].value.to_bits() == STALE_NAN));
    assert_eq!(last.timeseries.len(), 3);
    // Nothing is taken after close.
    ex.submit(UNNAMED, contract::encode(&counters(3000, 3, 6))).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c0_values(&server), vec![4.0, 5.0]);
}

#[test]
fn with_a_disk_buffer_submit_maps_and_writes_before_returning() {
    // README: with --prometheusBufferDir the requests are on disk when writeMetrics returns, so
    // the snapshot is mapped on the caller's thread.
    let dir = std::env::temp_dir().join(format!("beamprom-intake-{}-{:?}", std::process::id(), Instant::now()));
    let server = Server::start(|_, _| Reply::Hang);
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusBufferDir", dir.to_str().unwrap())]);
    ex.submit(UNNAMED, contract::encode(&counters(1000, 3, 1))).unwrap();
    assert_eq!(stat(&ex, "mappings"), 1, "mapped before submit returned");
    assert_eq!(stat(&ex, "queued_samples"), 3);
    let on_disk: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk > 0, "the request is in the buffer directory");
    drop(ex);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exporter's threads (mapping, one per delivery lane, reqwest's I/O thread) run under the
/// background policy (background.rs), whose wake-ups do not preempt the caller's thread: without
/// it, a writeMetrics call waking the mapping thread lost its CPU for the length of a mapping.
#[cfg(target_os = "linux")]
#[test]
fn the_exporters_threads_give_way_to_the_callers() {
    let server = Server::start(|_, _| ok());
    let ex = intake(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusPushgatewayUrl", &server.url(""))]);
    ex.submit(UNNAMED, contract::encode(&counters(1000, 3, 1))).unwrap();
    assert!(ex.flush(10 * SECOND));
    assert!(server.count() >= 2, "both ways delivered");
    // Threads by name; other tests' exporters run in this process too, and give way as well.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let tid: i32 = entry.unwrap().file_name().to_string_lossy().parse().unwrap();
        let Ok(comm) = std::fs::read_to_string(format!("/proc/self/task/{}/comm", tid)) else { continue };
        let comm = comm.trim().to_string();
        if !(comm == "beam-prometheus" || comm.starts_with("reqwest-intern")) {
            continue;
        }
        // Another test's thread may be just starting (named, not yet under the policy): it is
        // given a moment, bounded.
        let mut policy = beam_prometheus::background::gives_way(tid);
        for _ in 0..100 {
            if policy != Some(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            policy = beam_prometheus::background::gives_way(tid);
        }
        match policy {
            Some(true) => *seen.entry(comm).or_default() += 1,
            Some(false) => panic!("thread {} ({}) does not give way", tid, comm),
            None => {} // ended meanwhile
        }
    }
    // Names are cut to 15 bytes: mapping and the two lanes are all "beam-prometheus".
    assert!(seen.get("beam-prometheus").copied().unwrap_or(0) >= 3, "mapping and two lanes among {:?}", seen);
    assert!(seen.keys().any(|k| k.starts_with("reqwest-intern")), "reqwest's I/O thread among {:?}", seen);
    ex.close(5 * SECOND);
}
