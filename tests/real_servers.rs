//! Against the real Prometheus that tests/run_all.sh starts (BEAMPROM_PROMETHEUS_URL). Ignored by
//! a plain `cargo test`; run_all.sh runs them with `--include-ignored`, where a missing server fails.

mod common;

use beam_prometheus::config::Config;
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::model::Value;
use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn prometheus() -> String {
    std::env::var("BEAMPROM_PROMETHEUS_URL").expect("BEAMPROM_PROMETHEUS_URL: run through tests/run_all.sh")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn query(expr: &str) -> serde_json::Value {
    let url = format!("{}/api/v1/query", prometheus());
    let body = reqwest::blocking::Client::new().get(url).query(&[("query", expr)]).send().unwrap().text().unwrap();
    serde_json::from_str(&body).unwrap()
}

fn stat(ex: &Exporter, name: &str) -> i64 {
    ex.stats().values()[stats_names().iter().position(|n| *n == name).unwrap()]
}

#[test]
#[ignore = "needs the real Prometheus of tests/run_all.sh"]
fn samples_older_than_the_receivers_window_do_not_take_the_newest_down() {
    let job = format!("old_samples_{}", now_ms());
    let cfg = Config::from_pairs(&pairs(&[
        ("prometheusRemoteWriteUrl", &format!("{}/api/v1/write", prometheus())),
        ("prometheusJobName", &job),
        ("prometheusSelfMetrics", "false"),
    ]))
    .unwrap();
    let ex = Exporter::new(cfg).unwrap();
    // As if an outage had held these back for two hours.
    ex.export(&snapshot(now_ms() - 2 * 3600 * 1000, vec![attempted("ns", "late", "s", Value::Counter(1))]));
    ex.export(&snapshot(now_ms(), vec![attempted("ns", "late", "s", Value::Counter(2))]));
    assert!(ex.flush(Duration::from_secs(20)));
    let err = ex.last_error().unwrap_or_default();
    assert!(err.contains("HTTP 400") && err.contains("out of bounds"), "{}", err);
    assert_eq!(stat(&ex, "samples_rejected"), 1);
    assert_eq!(stat(&ex, "samples_sent"), 1);
    let r = query(&format!("beam_late_total{{job=\"{}\"}}", job));
    assert_eq!(r["data"]["result"][0]["value"][1], "2", "{}", r);
}

#[test]
#[ignore = "needs the real Prometheus of tests/run_all.sh"]
fn remote_write_metadata_reaches_prometheus() {
    let job = format!("metadata_{}", now_ms());
    let cfg = Config::from_pairs(&pairs(&[
        ("prometheusRemoteWriteUrl", &format!("{}/api/v1/write", prometheus())),
        ("prometheusJobName", &job),
    ]))
    .unwrap();
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&snapshot(now_ms(), vec![attempted("ns", "with_meta", "s", Value::Counter(5))]));
    assert!(ex.flush(Duration::from_secs(20)));
    assert_eq!(stat(&ex, "samples_rejected"), 0);
    let r = query(&format!("beam_with_meta_total{{job=\"{}\"}}", job));
    assert_eq!(r["data"]["result"][0]["value"][1], "5", "{}", r);
}

/// The real Pushgateway (BEAMPROM_PUSHGATEWAY_URL) takes a protobuf push and a text push of the
/// same snapshot (rich in kinds and escapes) and serves the same series for both.
#[test]
#[ignore = "needs the real Pushgateway of tests/run_all.sh"]
fn the_pushgateway_serves_protobuf_and_text_pushes_alike() {
    let gateway = std::env::var("BEAMPROM_PUSHGATEWAY_URL").expect("BEAMPROM_PUSHGATEWAY_URL: run through tests/run_all.sh");
    let s = snapshot(
        now_ms(),
        vec![
            metric("my.ns", "elements", "Read/ParDo(1)", Some(Value::Counter(5)), Some(Value::Counter(4))),
            attempted("ns", "lat", "s", Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }),
            attempted("ns", "queue", "s", Value::Gauge { value: -4, timestamp_ms: 1_699_999_999_999 }),
            attempted("ns", "users", "s", Value::StringSet(vec!["x\"y".into(), "back\\slash".into(), "new\nline".into(), "日本".into()])),
            attempted("ns", "size", "s", Value::Histogram(beam_prometheus::model::Histogram { sum: 2.5, buckets: vec![(0.5, 1), (10.0, 2), (f64::INFINITY, 3)] })),
        ],
    );
    let run = now_ms();
    let mut groups = Vec::new();
    for format in ["PROTOBUF", "TEXT"] {
        let instance = format!("{}-{}", format, run);
        let ex = Exporter::new(
            Config::from_pairs(&pairs(&[
                ("prometheusPushgatewayUrl", &gateway),
                ("prometheusJobName", "formats"),
                ("prometheusGroupingKey.instance", &instance),
                ("prometheusPushgatewayFormat", format),
                ("prometheusSelfMetrics", "false"),
                ("prometheusMetricValues", "BOTH"),
            ]))
            .unwrap(),
        )
        .unwrap();
        ex.export(&s);
        assert!(ex.flush(Duration::from_secs(10)));
        assert_eq!((stat(&ex, "pushes_sent"), stat(&ex, "pushes_failed")), (1, 0), "{:?}", ex.last_error());
        groups.push(instance);
    }
    let text = reqwest::blocking::get(format!("{}/metrics", gateway)).unwrap().text().unwrap();
    let lines = |instance: &str| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.contains(&format!("instance=\"{}\"", instance)) && !l.starts_with("push_"))
            .map(|l| l.replace(instance, "I"))
            .collect();
        v.sort();
        v
    };
    let (pb, tx) = (lines(&groups[0]), lines(&groups[1]));
    assert!(pb.len() >= 15, "the protobuf push's series: {:?}", pb);
    assert_eq!(pb, tx);
    for instance in &groups {
        let url = format!("{}/metrics/job/formats/instance/{}", gateway, instance);
        reqwest::blocking::Client::new().delete(url).send().unwrap();
    }
}

/// Issue 19 item 1: a grouping key named like a label of the mapping. `namespace`, `step` and
/// `result` work (the Beam label becomes `beam_namespace`, …) and the real gateway takes the
/// push with every series distinct; the others fail at construction naming the option.
#[test]
#[ignore = "needs the real Pushgateway of tests/run_all.sh"]
fn grouping_keys_named_like_the_mappings_labels_work_or_fail_at_construction() {
    let gateway = std::env::var("BEAMPROM_PUSHGATEWAY_URL").expect("BEAMPROM_PUSHGATEWAY_URL: run through tests/run_all.sh");
    // Every label of the mapping appears: two namespaces and steps, both results, a
    // distribution, a string set (`value`), a bounded trie (`path`, `truncated`), a histogram (`le`).
    let s = snapshot(
        now_ms(),
        vec![
            metric("ns1", "c", "s1", Some(Value::Counter(5)), Some(Value::Counter(4))),
            metric("ns2", "c", "s1", Some(Value::Counter(7)), Some(Value::Counter(6))),
            metric("ns1", "c", "s2", Some(Value::Counter(9)), Some(Value::Counter(8))),
            attempted("ns1", "a.b", "s1", Value::Counter(1)),
            attempted("ns1", "a_b", "s1", Value::Counter(2)),
            attempted("ns1", "lat", "s1", Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }),
            attempted("ns1", "users", "s1", Value::StringSet(vec!["x".into(), "y".into()])),
            attempted("ns1", "size", "s1", Value::Histogram(beam_prometheus::model::Histogram { sum: 2.5, buckets: vec![(0.5, 1), (f64::INFINITY, 3)] })),
        ],
    );
    let run = now_ms();
    let mut worked = Vec::new();
    for name in beam_prometheus::naming::RESERVED_LABELS.iter().filter(|n| **n != "job") {
        let group = format!("g-{}", run);
        let cfg = Config::from_pairs(&pairs(&[
            ("prometheusPushgatewayUrl", &gateway),
            ("prometheusJobName", "reserved_grouping"),
            (&format!("prometheusGroupingKey.{}", name), &group),
            ("prometheusSelfMetrics", "false"),
            ("prometheusMetricValues", "BOTH"),
        ]));
        let cfg = match cfg {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("prometheusGroupingKey") && msg.contains(name), "{}: {}", name, msg);
                continue;
            }
            Ok(c) => c,
        };
        let ex = Exporter::new(cfg).unwrap();
        ex.export(&s);
        assert!(ex.flush(Duration::from_secs(10)), "{}", name);
        assert_eq!((stat(&ex, "pushes_sent"), stat(&ex, "pushes_failed")), (1, 0), "{}: {:?}", name, ex.last_error());
        let text = reqwest::blocking::get(format!("{}/metrics", gateway)).unwrap().text().unwrap();
        let series: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("{}=\"{}\"", name, group)) && !l.starts_with("push_") && !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().0)
            .collect();
        // 6 counter series, 2 for a.b/a_b, distribution 4 (sum, count, min, max), string set 2,
        // histogram 2 buckets + sum + count.
        assert!(series.len() >= 18, "{}: {:?}", name, series);
        assert!(series.iter().any(|l| l.contains(&format!("beam_{}=", name))), "{}: {:?}", name, series);
        reqwest::blocking::Client::new()
            .delete(format!("{}/metrics/job/reserved_grouping/{}/{}", gateway, name, group))
            .send()
            .unwrap();
        worked.push(*name);
    }
    assert_eq!(worked, ["namespace", "step", "result"]);
}

/// A TCP gate in front of a server: while closed it drops every connection (an outage the
/// exporter retries), while open it forwards bytes both ways.
struct Gate {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    fn new(target: &str) -> Gate {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let target: std::net::SocketAddr = target.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (o, st) = (open.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded by `stop` (set on drop).
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) if o.load(Ordering::Relaxed) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                        for (mut from, mut to) in
                            [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                        {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Ok((client, _)) => drop(client),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Gate { addr, open, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Issue 19 item 4: two exporters with one job name (the default job name is the main class)
/// through an outage. Their self-metrics are series of their own, so replaying one exporter's
/// buffer after the other's newer samples is not "out of order": nothing is rejected, and each
/// exporter's Beam series arrive whole.
#[test]
#[ignore = "needs the real Prometheus of tests/run_all.sh"]
fn two_exporters_with_one_job_name_replay_an_outage_without_rejections() {
    let job = format!("same_job_{}", now_ms());
    let gates = [Gate::new(&prometheus()), Gate::new(&prometheus())];
    let exporters: Vec<Exporter> = gates
        .iter()
        .map(|g| {
            let o = quick_opts(&[
                ("prometheusRemoteWriteUrl", &g.url()),
                ("prometheusJobName", &job),
                ("prometheusSelfMetrics", "true"),
                ("prometheusMaxAttempts", "1000"),
            ]);
            Exporter::new(Config::from_pairs(&o).unwrap()).unwrap()
        })
        .collect();
    // Interleaved in time: exporter 0 at t, t+2, t+4; exporter 1 at t+1, t+3, t+5 (seconds).
    let t = now_ms() - 60_000;
    for i in 0..6i64 {
        let which = (i % 2) as usize;
        let name = if which == 0 { "left" } else { "right" };
        exporters[which].export(&snapshot(t + i * 1000, vec![attempted("ns", name, "s", Value::Counter(i + 1))]));
    }
    // The outage ends for exporter 0 first: its newest samples land before exporter 1 replays.
    gates[0].open();
    assert!(exporters[0].flush(Duration::from_secs(20)), "{:?}", exporters[0].last_error());
    gates[1].open();
    assert!(exporters[1].flush(Duration::from_secs(20)), "{:?}", exporters[1].last_error());
    for ex in &exporters {
        assert_eq!((stat(ex, "samples_rejected"), stat(ex, "samples_dropped")), (0, 0), "{:?}", ex.last_error());
    }
    for name in ["left", "right"] {
        let q = format!("count_over_time(beam_{}_total{{job=\"{}\"}}[5m])", name, job);
        let r = query(&q);
        assert_eq!(r["data"]["result"][0]["value"][1], "3", "{}: {}", q, r);
    }
    let ids = query(&format!("count by (exporter_id) (beam_exporter_mappings_total{{job=\"{}\"}})", job));
    assert_eq!(ids["data"]["result"].as_array().unwrap().len(), 2, "{}", ids);
}
