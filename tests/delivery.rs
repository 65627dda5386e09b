//! End-to-end delivery against a tiny HTTP server on 127.0.0.1 (tests/common): request format,
//! retries, Retry-After, rejections, timeouts, buffer bounds, Pushgateway pushes and deletes.
//! Every wait is bounded; backoffs and timeouts are configured small.

mod common;

use beam_prometheus::config::Config;
use beam_prometheus::contract;
use beam_prometheus::delivery::{parse_retry_after, stats_names, Exporter};
use beam_prometheus::model::{Snapshot, Value};
use beam_prometheus::pushgateway::base64url;
use beam_prometheus::remote_write::{self, TimeSeries, WriteRequest, STALE_NAN};
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SECOND: Duration = Duration::from_secs(1);

fn opts(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    quick_opts(extra)
}

fn exporter(extra: &[(&str, &str)]) -> Exporter {
    Exporter::new(Config::from_pairs(&opts(extra)).unwrap()).unwrap()
}

fn stat(ex: &Exporter, name: &str) -> i64 {
    let i = stats_names().iter().position(|n| *n == name).unwrap_or_else(|| panic!("no stat {}", name));
    ex.stats().values()[i]
}

fn stats(ex: &Exporter) -> HashMap<&'static str, i64> {
    stats_names().iter().copied().zip(ex.stats().values()).collect()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {:?} waiting for {}", timeout, what);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A snapshot of counters `name -> value` in namespace "ns", step "s".
fn counters(time_ms: i64, c: &[(&str, i64)]) -> Snapshot {
    snapshot(time_ms, c.iter().map(|(n, v)| attempted("ns", n, "s", Value::Counter(*v))).collect())
}

fn decode_rw(r: &Recorded) -> WriteRequest {
    remote_write::decode(&r.body).unwrap_or_else(|e| panic!("undecodable remote-write body: {}", e))
}

fn label<'a>(t: &'a TimeSeries, name: &str) -> Option<&'a str> {
    t.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
}

fn series_named<'a>(req: &'a WriteRequest, name: &str) -> Vec<&'a TimeSeries> {
    req.timeseries.iter().filter(|t| label(t, "__name__") == Some(name)).collect()
}

// ---------------------------------------------------------------------------------------------
// Remote-write
// ---------------------------------------------------------------------------------------------

#[test]
fn remote_write_request_headers_and_body() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/api/v1/write"))]);
    let s = snapshot(
        1_700_000_000_000,
        vec![
            attempted("ns", "elements", "Read", Value::Counter(5)),
            attempted("ns", "queue", "Read", Value::Gauge { value: 7, timestamp_ms: 1_699_999_999_000 }),
        ],
    );
    ex.export(&s);
    assert!(ex.flush(5 * SECOND));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/v1/write"));
    assert_eq!(r.header("Content-Encoding"), Some("snappy"));
    assert_eq!(r.header("Content-Type"), Some("application/x-protobuf"));
    assert_eq!(r.header("X-Prometheus-Remote-Write-Version"), Some("0.1.0"));
    assert!(r.header("User-Agent").unwrap_or_default().starts_with("beam-prometheus/"), "{:?}", r.header("User-Agent"));
    // The body is snappy block format.
    assert!(snap::raw::Decoder::new().decompress_vec(&r.body).is_ok());
    let req = decode_rw(r);
    assert_eq!(req.timeseries.len(), 3);
    let c = series_named(&req, "beam_elements_total");
    assert_eq!(c.len(), 1);
    let l: Vec<(&str, &str)> = c[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
    assert_eq!(
        l,
        vec![("__name__", "beam_elements_total"), ("job", "job"), ("namespace", "ns"), ("result", "attempted"), ("step", "Read")]
    );
    assert_eq!((c[0].samples[0].value, c[0].samples[0].timestamp), (5.0, 1_700_000_000_000));
    let g = series_named(&req, "beam_queue_gauge_timestamp_seconds");
    assert_eq!(g[0].samples[0].value, 1_699_999_999.0);
    let md: Vec<(&str, i32)> = req.metadata.iter().map(|m| (m.metric_family_name.as_str(), m.r#type)).collect();
    assert!(md.contains(&("beam_elements_total", 1)) && md.contains(&("beam_queue_gauge", 2)), "{:?}", md);
    let st = stats(&ex);
    assert_eq!((st["samples_sent"], st["requests_sent"], st["requests_failed"]), (3, 1, 0));
    assert_eq!((st["samples_retried"], st["samples_rejected"], st["samples_dropped"]), (0, 0, 0));
    assert!(st["last_success_ms"] > 1_600_000_000_000, "{:?}", st);
    ex.close(SECOND);
}

#[test]
fn retries_503_then_delivers() {
    let server = Server::start(|_, i| if i == 0 { status(503) } else { ok() });
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
    assert!(ex.flush(5 * SECOND));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:?}", reqs.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(reqs[0].body, reqs[1].body, "the same request is retried");
    assert_eq!((reqs[0].status, reqs[1].status), (Some(503), Some(200)));
    let st = stats(&ex);
    assert_eq!(
        (st["samples_sent"], st["samples_retried"], st["samples_rejected"], st["samples_dropped"]),
        (2, 2, 0, 0),
        "{:?}",
        st
    );
    assert_eq!((st["requests_sent"], st["requests_failed"]), (1, 1));
}

#[test]
fn connection_closed_without_answer_is_retried() {
    let server = Server::start(|_, i| if i == 0 { Reply::Close } else { ok() });
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1)]));
    assert!(ex.flush(5 * SECOND));
    assert_eq!(server.count(), 2);
    assert_eq!((stat(&ex, "samples_sent"), stat(&ex, "samples_retried")), (1, 1));
}

#[test]
fn retry_after_on_429_is_honoured() {
    let server = Server::start(|_, i| {
        if i == 0 {
            Reply::Status(429, vec![("Retry-After".into(), "1".into())], "slow down".into())
        } else {
            ok()
        }
    });
    // Backoff alone would retry within 50 ms.
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1)]));
    let reqs = server.wait_for(2, 10 * SECOND);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {:?}, Retry-After said 1 s", gap);
    assert!(gap < Duration::from_secs(5), "retried after {:?}", gap);
    assert!(ex.flush(5 * SECOND));
    assert_eq!((stat(&ex, "samples_sent"), stat(&ex, "samples_retried")), (1, 1));
}

#[test]
fn retry_after_on_503_is_taken_as_a_hint() {
    let server = Server::start(|_, i| {
        if i == 0 {
            Reply::Status(503, vec![("Retry-After".into(), "1".into())], String::new())
        } else {
            ok()
        }
    });
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1)]));
    let reqs = server.wait_for(2, 10 * SECOND);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(950), "{:?}", reqs[1].at - reqs[0].at);
}

#[test]
fn client_errors_are_not_retried() {
    for code in [400u16, 404, 413, 422] {
        let server = Server::start(move |_, _| status(code));
        let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
        ex.export(&counters(1000, &[("a", 1), ("b", 2), ("c", 3)]));
        assert!(ex.flush(5 * SECOND));
        std::thread::sleep(Duration::from_millis(200)); // a retry would come within 50 ms
        assert_eq!(server.count(), 1, "HTTP {}: exactly one request", code);
        let st = stats(&ex);
        assert_eq!(
            (st["samples_rejected"], st["samples_retried"], st["samples_sent"], st["requests_failed"]),
            (3, 0, 0, 1),
            "HTTP {}: {:?}",
            code,
            st
        );
    }
}

#[test]
fn auth_failures_are_retried_within_max_attempts() {
    // 401/403 may be fixed by a rotated credential file: retried, then given up and counted.
    for code in [401u16, 403] {
        let server = Server::start(move |_, _| status(code));
        let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxAttempts", "3")]);
        ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
        assert!(ex.flush(5 * SECOND));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(server.count(), 3, "HTTP {}", code);
        let st = stats(&ex);
        assert_eq!((st["samples_rejected"], st["samples_retried"], st["samples_sent"]), (2, 4, 0), "HTTP {}: {:?}", code, st);
    }
    // A credential fixed between attempts delivers the waiting batch.
    let server = Server::start(|_, i| if i < 2 { status(401) } else { ok() });
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1)]));
    assert!(ex.flush(5 * SECOND));
    assert_eq!(server.count(), 3);
    assert_eq!((stat(&ex, "samples_sent"), stat(&ex, "samples_rejected")), (1, 0));
}

#[test]
fn a_hung_server_times_out_and_export_never_blocks() {
    let server = Server::start(|_, _| Reply::Hang);
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusTimeoutMillis", "700"),
        ("prometheusMaxAttempts", "2"),
    ]);
    let t0 = Instant::now();
    ex.export(&counters(1000, &[("a", 1)]));
    let first = t0.elapsed();
    server.wait_for(1, 5 * SECOND);
    // While the worker waits on the hung request, exports still return at once.
    let mut slowest = first;
    for i in 0..5 {
        let t = Instant::now();
        ex.export(&counters(2000 + i, &[("a", 2 + i)]));
        slowest = slowest.max(t.elapsed());
    }
    assert!(slowest < Duration::from_millis(400), "export() took {:?} with a 700 ms timeout", slowest);
    wait_until("the first request to be given up", 10 * SECOND, || stat(&ex, "samples_rejected") >= 1);
    let elapsed = t0.elapsed();
    let reqs = server.requests();
    assert!(reqs.len() >= 2, "{}", reqs.len());
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(650), "the first attempt ended after {:?}, before the 700 ms timeout", gap);
    assert!(elapsed >= Duration::from_millis(1300), "two attempts of 700 ms ended after {:?}", elapsed);
    assert!(elapsed < Duration::from_secs(5), "{:?}", elapsed);
    assert!(stat(&ex, "requests_failed") >= 2);
    assert_eq!(stat(&ex, "samples_sent"), 0);
    drop(ex);
}

#[test]
fn max_attempts_then_dropped_and_counted() {
    let server = Server::start(|_, _| status(503));
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxAttempts", "3")]);
    ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
    assert!(ex.flush(5 * SECOND), "gives up within the bound");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.count(), 3, "exactly --prometheusMaxAttempts requests");
    let st = stats(&ex);
    // Given up after the attempts: counted as rejected (README, Self-metrics), not as dropped.
    assert_eq!((st["samples_rejected"], st["samples_dropped"]), (2, 0), "{:?}", st);
    assert_eq!((st["samples_sent"], st["samples_retried"], st["requests_failed"]), (0, 4, 3), "{:?}", st);
    assert_eq!(st["queued_samples"], 0);
    // The lane still works afterwards.
    assert_eq!(st["requests_sent"], 0);
}

#[test]
fn bounded_buffer_drops_oldest_and_keeps_order() {
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let server = Server::start(move |_, _| if u.load(Ordering::SeqCst) { ok() } else { status(503) });
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusMaxBufferedSamples", "4"),
        ("prometheusMaxAttempts", "100000"),
        ("prometheusMinBackoffMillis", "5"),
        ("prometheusMaxBackoffMillis", "20"),
    ]);
    let n = 12i64;
    for i in 1..=n {
        ex.export(&counters(1000 * i, &[("a", i), ("b", 10 * i)]));
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(stat(&ex, "samples_dropped") > 0, "{:?}", stats(&ex));
    assert!(stat(&ex, "queued_samples") <= 4 + 2, "{:?}", stats(&ex));
    up.store(true, Ordering::SeqCst);
    assert!(ex.flush(10 * SECOND));
    let st = stats(&ex);
    assert_eq!(st["samples_sent"] + st["samples_dropped"] + st["samples_rejected"], 2 * n, "every sample accounted for: {:?}", st);
    assert_eq!(st["queued_samples"], 0);

    let reqs = server.requests();
    let delivered: Vec<WriteRequest> = reqs.iter().filter(|r| r.status == Some(200)).map(decode_rw).collect();
    assert_eq!(delivered.len() as i64 * 2, st["samples_sent"]);
    // The newest snapshot arrives, last.
    let last = delivered.last().unwrap();
    assert_eq!(series_named(last, "beam_a_total")[0].samples[0].timestamp, 1000 * n);
    assert_eq!(series_named(last, "beam_a_total")[0].samples[0].value, n as f64);
    assert_eq!(series_named(last, "beam_b_total")[0].samples[0].value, 10.0 * n as f64);
    // Per series, timestamps strictly increase over the delivered requests, and over all
    // attempts they never go back.
    let mut per_series: HashMap<Vec<(String, String)>, Vec<i64>> = HashMap::new();
    for req in &delivered {
        for t in &req.timeseries {
            let k = t.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            per_series.entry(k).or_default().push(t.samples[0].timestamp);
        }
    }
    assert_eq!(per_series.len(), 2);
    for (k, ts) in &per_series {
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{:?}: {:?}", k, ts);
    }
    let attempts: Vec<i64> = reqs.iter().map(|r| decode_rw(r).timeseries[0].samples[0].timestamp).collect();
    assert!(attempts.windows(2).all(|w| w[0] <= w[1]), "{:?}", attempts);
}

#[test]
fn every_snapshot_is_stamped_strictly_later() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    // Same millisecond twice, then a clock step back, then a later time.
    for (t, v) in [(5000, 1), (5000, 2), (4000, 3), (9000, 4)] {
        ex.export(&counters(t, &[("a", v)]));
    }
    assert!(ex.flush(5 * SECOND));
    let stamps: Vec<(i64, f64)> = server
        .requests()
        .iter()
        .map(|r| {
            let s = &decode_rw(r).timeseries[0].samples[0];
            (s.timestamp, s.value)
        })
        .collect();
    assert_eq!(stamps, vec![(5000, 1.0), (5001, 2.0), (5002, 3.0), (9000, 4.0)]);
}

#[test]
fn requests_are_split_by_max_samples_per_request() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxSamplesPerRequest", "3")]);
    let names: Vec<String> = (0..7).map(|i| format!("c{}", i)).collect();
    let c: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    ex.export(&counters(1000, &c));
    assert!(ex.flush(5 * SECOND));
    let reqs: Vec<WriteRequest> = server.requests().iter().map(decode_rw).collect();
    assert_eq!(reqs.iter().map(|r| r.timeseries.len()).collect::<Vec<_>>(), vec![3, 3, 1]);
    assert_eq!(reqs[0].metadata.len(), 7, "metadata travels once");
    assert!(reqs[1].metadata.is_empty() && reqs[2].metadata.is_empty());
    assert_eq!(stat(&ex, "samples_sent"), 7);
    assert_eq!(stat(&ex, "requests_sent"), 3);
}

#[test]
fn staleness_markers_on_close() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusStaleOnEnd", "true")]);
    ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
    ex.export(&counters(2000, &[("a", 2), ("c", 3)]));
    let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(ex.close(5 * SECOND));
    let reqs: Vec<WriteRequest> = server.requests().iter().map(decode_rw).collect();
    assert_eq!(reqs.len(), 3);
    let stale = &reqs[2];
    let mut names: Vec<&str> = stale.timeseries.iter().map(|t| label(t, "__name__").unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["beam_a_total", "beam_c_total"], "markers for the newest snapshot's series");
    for t in &stale.timeseries {
        assert_eq!(t.samples[0].value.to_bits(), STALE_NAN);
        assert!(t.samples[0].timestamp >= before, "{} < {}", t.samples[0].timestamp, before);
        assert!(reqs[1].timeseries.iter().any(|u| u.labels == t.labels));
    }
    // Without the option: no markers.
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    ex.export(&counters(1000, &[("a", 1)]));
    assert!(ex.close(5 * SECOND));
    assert_eq!(server.count(), 1);
}

#[test]
fn export_after_close_is_ignored() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    assert!(ex.close(SECOND));
    ex.export(&counters(1000, &[("a", 1)]));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.count(), 0);
    assert!(ex.close(SECOND), "closing twice is fine");
}

#[test]
fn close_gives_up_at_its_timeout_and_counts_the_rest() {
    let server = Server::start(|_, _| status(503));
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w")), ("prometheusMaxAttempts", "100000")]);
    ex.export(&counters(1000, &[("a", 1), ("b", 2)]));
    server.wait_for(1, 5 * SECOND);
    let t = Instant::now();
    let done = ex.close(Duration::from_millis(300));
    let took = t.elapsed();
    assert!(!done, "the queue could not be delivered");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{:?}", took);
    wait_until("undelivered samples to be counted", 3 * SECOND, || stat(&ex, "samples_dropped") == 2);
    assert_eq!(stat(&ex, "samples_sent"), 0);
}

#[test]
fn export_bytes_decodes_the_contract() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusRemoteWriteUrl", &server.url("/w"))]);
    let buf = contract::encode(&counters(1234, &[("a", 9)]));
    ex.export_bytes(&buf).unwrap();
    assert!(ex.export_bytes(&buf[..buf.len() - 1]).is_err());
    assert!(ex.export_bytes(b"garbage").is_err());
    assert!(ex.flush(5 * SECOND));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = decode_rw(&reqs[0]);
    assert_eq!(series_named(&req, "beam_a_total")[0].samples[0].timestamp, 1234);
}

#[test]
fn self_metrics_are_exported_with_valid_labels() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/w")),
        ("prometheusSelfMetrics", "true"),
        ("prometheusLabels.empty", ""),
        ("prometheusLabels.team", "data"),
    ]);
    ex.export(&counters(1000, &[("a", 1)]));
    assert!(ex.flush(5 * SECOND));
    ex.export(&counters(2000, &[("a", 2)]));
    assert!(ex.flush(5 * SECOND));
    let reqs: Vec<WriteRequest> = server.requests().iter().map(decode_rw).collect();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        for t in &req.timeseries {
            let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{:?}", names);
            for l in &t.labels {
                assert!(!l.value.is_empty(), "empty label {} on {:?}", l.name, label(t, "__name__"));
            }
            assert!(is_valid_metric_name(label(t, "__name__").unwrap()));
            assert_eq!(label(t, "job"), Some("job"));
            assert_eq!(label(t, "team"), Some("data"));
        }
    }
    // The second push reports what the first delivered: 1 Beam series + the self-metrics.
    let sent = series_named(&reqs[1], "beam_exporter_samples_sent_total");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].samples[0].value, reqs[0].timeseries.len() as f64);
    let meta = reqs[1].metadata.iter().find(|m| m.metric_family_name == "beam_exporter_samples_sent_total").unwrap();
    assert_eq!(meta.r#type, 1);
    assert!(!series_named(&reqs[0], "beam_exporter_queued_samples").is_empty());
    // The buffer bound travels with the queue depth, so an alert can compare the two.
    let bound = series_named(&reqs[0], "beam_exporter_max_buffered_samples");
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].samples[0].value, 2_000_000.0);
    let meta = reqs[0].metadata.iter().find(|m| m.metric_family_name == "beam_exporter_max_buffered_samples").unwrap();
    assert_eq!(meta.r#type, 2); // gauge
    // The buffer's memory, a gauge too (its first value: nothing queued yet).
    assert_eq!(series_named(&reqs[0], "beam_exporter_queued_bytes")[0].samples[0].value, 0.0);
    let meta = reqs[0].metadata.iter().find(|m| m.metric_family_name == "beam_exporter_queued_bytes").unwrap();
    assert_eq!(meta.r#type, 2);
}

// ---------------------------------------------------------------------------------------------
// Pushgateway
// ---------------------------------------------------------------------------------------------

#[test]
fn pushgateway_put_with_grouping_key() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[
        ("prometheusPushgatewayUrl", &server.url("")),
        ("prometheusJobName", "word count"),
        ("prometheusGroupingKey.instance", "w/1"),
        ("prometheusLabels.team", "data"),
        ("prometheusPushgatewayFormat", "TEXT"),
    ]);
    ex.export(&snapshot(
        1000,
        vec![
            attempted("ns", "c", "s", Value::Counter(5)),
            attempted("ns", "users", "s", Value::StringSet(vec!["quote\"d".into()])),
        ],
    ));
    assert!(ex.flush(5 * SECOND));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, format!("/metrics/job@base64/{}/instance@base64/{}", base64url(b"word count"), base64url(b"w/1")));
    assert_eq!(r.path, "/metrics/job@base64/d29yZCBjb3VudA==/instance@base64/dy8x");
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains("# TYPE beam_c_total counter\n"), "{}", body);
    assert!(body.contains("beam_c_total{namespace=\"ns\",result=\"attempted\",step=\"s\",team=\"data\"} 5\n"), "{}", body);
    assert!(body.contains("value=\"quote\\\"d\""), "{}", body);
    assert!(!body.contains("job=") && !body.contains("instance="), "grouping labels are in the URL only:\n{}", body);
    let parsed = python_parse(std::slice::from_ref(&body));
    let families = parsed[0].as_ref().unwrap_or_else(|e| panic!("{}\n{}", e, body));
    assert_eq!(families.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["beam_c", "beam_users_string_set_info"]);
    assert_eq!(stat(&ex, "pushes_sent"), 1);
    assert_eq!(stat(&ex, "samples_sent"), 0, "samples_sent counts remote-write samples");
}

#[test]
fn pushgateway_protobuf_by_default() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusPushgatewayUrl", &server.url("")), ("prometheusGroupingKey.instance", "w1")]);
    ex.export(&snapshot(1000, vec![attempted("ns", "c", "s", Value::Counter(5))]));
    assert!(ex.flush(5 * SECOND));
    let r = &server.requests()[0];
    assert_eq!(r.header("Content-Type"), Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"));
    let families = decode_delimited(&r.body);
    assert_eq!(families.len(), 1);
    let f = &families[0];
    assert_eq!((f.name(), f.r#type), ("beam_c_total", Some(0)));
    let m = &f.metric[0];
    let labels: Vec<(&str, &str)> = m.label.iter().map(|l| (l.name(), l.value())).collect();
    assert_eq!(labels, vec![("namespace", "ns"), ("result", "attempted"), ("step", "s")], "grouping labels are in the URL only");
    assert_eq!(m.counter.as_ref().and_then(|c| c.value), Some(5.0));
}

#[test]
fn pushgateway_post_method() {
    let server = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusPushgatewayUrl", &server.url("/gw/")), ("prometheusPushMethod", "POST")]);
    ex.export(&counters(1000, &[("a", 1)]));
    assert!(ex.flush(5 * SECOND));
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/gw/metrics/job@base64/am9i"));
}

#[test]
fn pushgateway_delete_on_close() {
    for delete in [true, false] {
        let server = Server::start(|_, _| ok());
        let ex = exporter(&[
            ("prometheusPushgatewayUrl", &server.url("")),
            ("prometheusDeleteOnEnd", if delete { "true" } else { "false" }),
            ("prometheusGroupingKey.instance", ""),
        ]);
        ex.export(&counters(1000, &[("a", 1)]));
        assert!(ex.close(5 * SECOND));
        let reqs = server.requests();
        let calls: Vec<(&str, &str)> = reqs.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
        let path = "/metrics/job@base64/am9i/instance@base64/=";
        if delete {
            assert_eq!(calls, vec![("PUT", path), ("DELETE", path)]);
            assert!(reqs[1].body.is_empty());
        } else {
            assert_eq!(calls, vec![("PUT", path)]);
        }
    }
}

#[test]
fn a_newer_push_supersedes_queued_ones() {
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let server = Server::start(move |_, _| if u.load(Ordering::SeqCst) { ok() } else { status(503) });
    let ex = exporter(&[
        ("prometheusPushgatewayUrl", &server.url("")),
        ("prometheusMaxAttempts", "100000"),
        ("prometheusPushgatewayFormat", "TEXT"),
    ]);
    for i in 1..=6 {
        ex.export(&counters(1000 * i, &[("a", i)]));
        std::thread::sleep(Duration::from_millis(3));
    }
    up.store(true, Ordering::SeqCst);
    assert!(ex.flush(10 * SECOND));
    let delivered: Vec<String> =
        server.requests().iter().filter(|r| r.status == Some(200)).map(|r| String::from_utf8(r.body.clone()).unwrap()).collect();
    assert!(!delivered.is_empty() && delivered.len() <= 2, "only the newest (and at most the one in flight): {}", delivered.len());
    assert!(delivered.last().unwrap().contains("beam_a_total{namespace=\"ns\",result=\"attempted\",step=\"s\"} 6\n"), "{:?}", delivered);
}

#[test]
fn a_hung_gateway_does_not_delay_remote_write() {
    let gw = Server::start(|_, _| Reply::Hang);
    let rw = Server::start(|_, _| ok());
    let ex = exporter(&[
        ("prometheusPushgatewayUrl", &gw.url("")),
        ("prometheusRemoteWriteUrl", &rw.url("/w")),
        ("prometheusTimeoutMillis", "3000"),
        ("prometheusMaxAttempts", "1"),
    ]);
    let t = Instant::now();
    ex.export(&counters(1000, &[("a", 1)]));
    gw.wait_for(1, 5 * SECOND);
    ex.export(&counters(2000, &[("a", 2)]));
    rw.wait_for(2, 5 * SECOND);
    assert!(t.elapsed() < Duration::from_millis(2000), "remote-write waited for the gateway: {:?}", t.elapsed());
    drop(ex);
}

// ---------------------------------------------------------------------------------------------
// Retry-After parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_after_values() {
    assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon"), None);
    assert_eq!(parse_retry_after("-1"), None);
    assert_eq!(parse_retry_after("1.5"), None);
    assert_eq!(parse_retry_after(""), None);
    // HTTP dates: past -> zero, future -> about the difference.
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
    let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let d = parse_retry_after(&in_30s).unwrap();
    assert!(d > Duration::from_secs(27) && d <= Duration::from_secs(30), "{:?}", d);
}

// ---------------------------------------------------------------------------------------------
// Reusing the previous mapping
// ---------------------------------------------------------------------------------------------

/// Snapshots alternate between two structures and change values: every request holds exactly
/// what a fresh mapping of its snapshot gives, with self-metrics refreshed on every push.
#[test]
fn reused_mappings_send_what_fresh_ones_would() {
    let server = Server::start(|_, _| ok());
    let gateway = Server::start(|_, _| ok());
    let ex = exporter(&[
        ("prometheusRemoteWriteUrl", &server.url("/api/v1/write")),
        ("prometheusPushgatewayUrl", &gateway.url("")),
        ("prometheusGroupingKey.instance", "w1"),
        ("prometheusSelfMetrics", "true"),
        ("prometheusMaxSamplesPerRequest", "3"),
    ]);
    let a = |v: i64| {
        snapshot(
            1000 * v,
            vec![
                attempted("ns", "c", "s", Value::Counter(v)),
                attempted("ns", "d", "s", Value::Distribution { sum: 10 * v, count: v, min: 1, max: v }),
                attempted("ns", "g", "s", Value::Gauge { value: -v, timestamp_ms: 500 * v }),
                attempted("ns", "set", "s", Value::StringSet(vec!["x".into()])),
            ],
        )
    };
    let b = |v: i64| snapshot(1000 * v, vec![attempted("ns", "other", "s", Value::Counter(v))]);
    let sequence = [a(1), a(2), a(3), b(4), b(5), a(6), a(7)];
    let cfg = ex.config().naming.clone();
    for (i, s) in sequence.iter().enumerate() {
        let before = server.count();
        ex.export_bytes(&contract::encode(s)).unwrap();
        assert!(ex.flush(5 * SECOND));
        let got: Vec<TimeSeries> = server.requests()[before..].iter().flat_map(|r| decode_rw(r).timeseries).collect();
        let values = |name: &str| -> Vec<f64> {
            got.iter().filter(|t| label(t, "__name__") == Some(name)).map(|t| t.samples[0].value).collect()
        };
        // The pipeline's series: exactly those of a fresh mapping (job label aside: same in both).
        let fresh = remote_write::series(&beam_prometheus::naming::map(s, &cfg), s.time_ms);
        let mine: Vec<&TimeSeries> = got.iter().filter(|t| !label(t, "__name__").unwrap().starts_with("beam_exporter_")).collect();
        assert_eq!(mine.len(), fresh.len(), "push {}", i);
        for (m, f) in mine.iter().zip(&fresh) {
            assert_eq!(m.labels, f.labels, "push {}", i);
            assert_eq!(m.samples[0].value.to_bits(), f.samples[0].value.to_bits(), "push {}: {:?}", i, f.labels);
        }
        // Self-metrics carry this push's state: every earlier request was sent.
        let sent_before: f64 = server.requests()[..before].iter().map(|r| decode_rw(r).timeseries.len() as f64).sum();
        assert_eq!(values("beam_exporter_samples_sent_total"), vec![sent_before], "push {}", i);
        // The Pushgateway body: a fresh mapping's series, plus the self-metrics.
        let pushed = protobuf_series(&decode_delimited(&gateway.requests()[i].body));
        let fresh_push = protobuf_series(&decode_delimited(&beam_prometheus::pushgateway::render_protobuf(
            &beam_prometheus::naming::map(s, &cfg),
            &["job", "instance"],
        )));
        let mine: Vec<_> = pushed.iter().filter(|p| !p.0.starts_with("beam_exporter_")).cloned().collect();
        assert_eq!(mine.len(), fresh_push.len(), "push {}", i);
        for (m, f) in mine.iter().zip(&fresh_push) {
            assert!(m.0 == f.0 && m.1 == f.1 && m.2.to_bits() == f.2.to_bits(), "push {}: {:?} vs {:?}", i, m, f);
        }
        let pushes_sent: Vec<f64> = pushed.iter().filter(|p| p.0 == "beam_exporter_pushes_sent_total").map(|p| p.2).collect();
        assert_eq!(pushes_sent, vec![i as f64], "push {}", i);
    }
    // a, a, a, b, b, a, a: mapped afresh three times, reused four times.
    assert_eq!(stat(&ex, "mappings"), 3);
}

/// Self-metrics describe the push that carries them: its own capped entries are counted first,
/// once per episode (issue 19 item 8): a cumulative snapshot repeating the same capped set does not
/// count it again; a change of what is left out does.
#[test]
fn a_push_reports_its_own_capped_entries_once_per_episode() {
    let gateway = Server::start(|_, _| ok());
    let ex = exporter(&[
        ("prometheusPushgatewayUrl", &gateway.url("")),
        ("prometheusSelfMetrics", "true"),
        ("prometheusSetCap", "1"),
    ]);
    let abc = || Value::StringSet(vec!["a".into(), "b".into(), "c".into()]);
    let sets = [abc(), abc(), abc(), Value::StringSet(vec!["a".into()]), abc()];
    for (i, (set, want)) in sets.into_iter().zip([2.0, 2.0, 2.0, 2.0, 4.0]).enumerate() {
        ex.export(&snapshot(1000 * (i as i64 + 1), vec![attempted("ns", "set", "s", set)]));
        assert!(ex.flush(5 * SECOND));
        let pushed = protobuf_series(&decode_delimited(&gateway.requests()[i].body));
        let capped: Vec<f64> = pushed.iter().filter(|p| p.0 == "beam_exporter_entries_capped_total").map(|p| p.2).collect();
        assert_eq!(capped, vec![want], "push {}", i + 1);
    }
}

/// A Beam metric label named like a grouping key would lose to the gateway's copy of the key:
/// it is renamed, so two series differing only in it stay two series.
#[test]
fn beam_labels_named_like_the_grouping_key_are_renamed() {
    let gateway = Server::start(|_, _| ok());
    let ex = exporter(&[("prometheusPushgatewayUrl", &gateway.url("")), ("prometheusGroupingKey.instance", "w1")]);
    let m = |v: &str, n: i64| {
        let mut m = attempted("ns", "d", "s", Value::Distribution { sum: n, count: 1, min: n, max: n });
        m.key.labels = vec![("instance".into(), v.into())];
        m
    };
    ex.export(&snapshot(1000, vec![m("a", 1), m("b", 2)]));
    assert!(ex.flush(5 * SECOND));
    let pushed = protobuf_series(&decode_delimited(&gateway.requests()[0].body));
    let sums: Vec<(String, f64)> = pushed
        .iter()
        .filter(|p| p.0 == "beam_d_distribution_sum")
        .map(|p| (p.1.iter().find(|(k, _)| k == "label_instance").expect("renamed label").1.clone(), p.2))
        .collect();
    assert_eq!(sums, vec![("a".to_string(), 1.0), ("b".to_string(), 2.0)]);
    assert!(pushed.iter().all(|p| p.1.iter().all(|(k, _)| k != "instance")), "the grouping key is the gateway's: {:?}", pushed);
}
