//! Remote-write 2.0: every 2.0 body decodes (with prost types written here from Prometheus'
//! prompb/io/prometheus/write/v2/types.proto, v0.316.0, independent of the exporter's own) to the
//! same series, values and metadata as the 1.0 body of the same snapshot; and, with the real
//! servers of tests/run_all.sh (ignored by a plain `cargo test`), delivery to Prometheus 3 with both
//! protocols, UTF-8 names found by quoted PromQL selectors, and the fallback to 1.0.

mod common;

use beam_prometheus::config::{Config, RemoteWriteProtocol};
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::model::Value;
use beam_prometheus::naming::{FamilyType, NamingConfig, Selection};
use beam_prometheus::remote_write::{self, NORMAL_NAN, STALE_NAN};
use beam_prometheus::reuse::MappingCache;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// io.prometheus.write.v2, every field of the official proto (histograms and exemplars too, so
/// that anything the exporter wrote there would show).
mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(bytes = "vec", repeated, tag = "3")]
        pub histograms: Vec<Vec<u8>>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Unspecified = 0,
        Counter = 1,
        Gauge = 2,
        Histogram = 3,
        Gaugehistogram = 4,
        Summary = 5,
        Info = 6,
        Stateset = 7,
    }
}

fn decode_v2(body: &[u8]) -> v2::Request {
    let raw = snap::raw::Decoder::new().decompress_vec(body).expect("snappy");
    <v2::Request as prost::Message>::decode(raw.as_slice()).expect("a v2 Request")
}

type Labels = Vec<(String, String)>;

/// Per series (labels incl. __name__): (value bits, timestamp, start timestamp, (type, help, unit)).
fn v2_series(bodies: &[(Vec<u8>, usize)]) -> Vec<(Labels, u64, i64, i64, (i32, String, String))> {
    let mut out = Vec::new();
    for (body, n) in bodies {
        let req = decode_v2(body);
        assert_eq!(req.symbols.first().map(String::as_str), Some(""), "symbols[0] must be empty");
        assert_eq!(req.timeseries.len(), *n);
        let mut used = vec![false; req.symbols.len()];
        let mut sym = |r: u32| {
            used[r as usize] = true;
            req.symbols[r as usize].clone()
        };
        for ts in &req.timeseries {
            assert!(ts.histograms.is_empty() && ts.exemplars.is_empty());
            assert_eq!(ts.labels_refs.len() % 2, 0);
            let labels: Labels = ts.labels_refs.chunks(2).map(|p| (sym(p[0]), sym(p[1]))).collect();
            let md = ts.metadata.clone().expect("metadata on every series");
            let meta = (md.r#type, sym(md.help_ref), sym(md.unit_ref));
            assert_eq!(ts.samples.len(), 1);
            let s = &ts.samples[0];
            out.push((labels, s.value.to_bits(), s.timestamp, s.start_timestamp, meta));
        }
        // A per-request table: nothing in it that the request does not use ("" aside).
        assert!(used.iter().skip(1).all(|u| *u), "unused symbols in {:?}", req.symbols);
    }
    out
}

fn type_number(t: FamilyType) -> i32 {
    match t {
        FamilyType::Counter => 1,
        FamilyType::Gauge => 2,
        FamilyType::Histogram => 3,
        FamilyType::Summary => 5,
        FamilyType::Info => 6,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The 2.0 and the 1.0 bodies of one snapshot carry the same series, values and timestamps;
    /// each 2.0 series carries its family's type and help (the 1.0 metadata of that family);
    /// cumulative series start when first seen, the others carry no start.
    #[test]
    fn prop_v2_bodies_decode_to_the_v1_series(s in arb_snapshot(true, 10), ts in 1i64..5_000_000_000_000,
            per_request in 1usize..40, stale in any::<bool>(),
            selection in prop::sample::select(vec![Selection::Attempted, Selection::Committed, Selection::Both])) {
        let cfg = NamingConfig { selection, ..naming_cfg(selection) };
        let mut cache = MappingCache::default();
        cache.set(&s, &cfg, |_| {});
        let v1 = cache.remote_write_bodies(ts, per_request, stale);
        let v2b = cache.remote_write_v2_bodies(ts, per_request, stale);
        prop_assert_eq!(v1.iter().map(|b| b.1).collect::<Vec<_>>(), v2b.iter().map(|b| b.1).collect::<Vec<_>>());
        let mut v1_series = Vec::new();
        let mut v1_meta = BTreeMap::new();
        for (body, _) in &v1 {
            let req = remote_write::decode(body).unwrap();
            for t in req.timeseries {
                let labels: Labels = t.labels.into_iter().map(|l| (l.name, l.value)).collect();
                v1_series.push((labels, t.samples[0].value.to_bits(), t.samples[0].timestamp));
            }
            for m in req.metadata {
                v1_meta.insert(m.metric_family_name.clone(), (m.r#type, m.help, m.unit));
            }
        }
        let got = v2_series(&v2b);
        prop_assert_eq!(got.len(), v1_series.len());
        // Which family each series name belongs to, from the mapping.
        let mut family_of = BTreeMap::new();
        for f in &cache.mapped().families {
            for smp in &f.samples {
                family_of.insert(smp.name.to_string(), f);
            }
        }
        for ((labels, bits, t, start, meta), (l1, b1, t1)) in got.iter().zip(&v1_series) {
            prop_assert_eq!(labels, l1);
            prop_assert_eq!(bits, b1);
            prop_assert_eq!(t, t1);
            prop_assert!(stale == (*bits == STALE_NAN) && (f64::from_bits(*bits).is_nan() == (*bits == NORMAL_NAN || *bits == STALE_NAN)));
            let name = &labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
            let f = family_of[name];
            prop_assert_eq!(meta, &(type_number(f.typ), f.help.clone(), f.unit.to_string()));
            if !stale {
                prop_assert_eq!(&v1_meta[&*f.name], &(type_number(f.typ), f.help.clone(), f.unit.to_string()));
            }
            let cumulative = matches!(f.typ, FamilyType::Counter | FamilyType::Summary | FamilyType::Histogram);
            prop_assert_eq!(*start, if cumulative { ts } else { 0 });
        }
        // 1.0 bodies of requests already queued as 2.0 (the fallback) carry the same series.
        let converted: Vec<_> = v2b.iter().flat_map(|(b, _)| remote_write::decode(&beam_prometheus::remote_write_v2::to_v1(b).unwrap()).unwrap().timeseries).collect();
        prop_assert_eq!(converted.len(), v1_series.len());
        for (c, (l1, b1, t1)) in converted.iter().zip(&v1_series) {
            let labels: Labels = c.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            prop_assert_eq!(&labels, l1);
            prop_assert_eq!((c.samples[0].value.to_bits(), c.samples[0].timestamp), (*b1, *t1));
        }
    }
}

/// A counter's start timestamp is when the exporter first sent the series, push after push, also
/// when the snapshot's structure changes (a new mapping) and for series added later.
#[test]
fn start_timestamps_stay_at_first_sight() {
    let cfg = naming_cfg(Selection::Attempted);
    let mut cache = MappingCache::default();
    let first = snapshot(1_000, vec![attempted("ns", "a", "s", Value::Counter(1))]);
    cache.set(&first, &cfg, |_| {});
    let starts = |cache: &mut MappingCache, t: i64| -> BTreeMap<String, (i64, u64)> {
        v2_series(&cache.remote_write_v2_bodies(t, 100, false))
            .into_iter()
            .map(|(l, bits, _, start, _)| (l.iter().find(|(k, _)| k == "__name__").unwrap().1.clone(), (start, bits)))
            .collect()
    };
    assert_eq!(starts(&mut cache, 1_000)["beam_a_total"], (1_000, 1f64.to_bits()));
    let second = snapshot(
        2_000,
        vec![attempted("ns", "a", "s", Value::Counter(2)), attempted("ns", "b", "s", Value::Counter(7)), attempted("ns", "g", "s", Value::Gauge { value: 3, timestamp_ms: 5 })],
    );
    cache.set(&second, &cfg, |_| {});
    let got = starts(&mut cache, 2_000);
    assert_eq!(got["beam_a_total"], (1_000, 2f64.to_bits()));
    assert_eq!(got["beam_b_total"], (2_000, 7f64.to_bits()));
    assert_eq!(got["beam_g_gauge"].0, 0);
}

// ---- against the real servers ----

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{}: run through tests/run_all.sh", name))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn query(base: &str, expr: &str) -> serde_json::Value {
    let body = reqwest::blocking::Client::new().get(format!("{}/api/v1/query", base)).query(&[("query", expr)]).send().unwrap().text().unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Polls an instant query until it returns exactly `want` (value strings by series), at most 30 s.
fn await_values(base: &str, expr: &str, want: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = query(base, expr);
        let mut got: Vec<String> =
            r["data"]["result"].as_array().map(|a| a.iter().map(|s| s["value"][1].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default();
        got.sort();
        if got == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{} on {} gave {}", expr, base, r);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stat(ex: &Exporter, name: &str) -> i64 {
    ex.stats().values()[stats_names().iter().position(|n| *n == name).unwrap()]
}

fn exporter(url: &str, job: &str, extra: &[(&str, &str)]) -> Exporter {
    let mut p = vec![("prometheusRemoteWriteUrl", url), ("prometheusJobName", job), ("prometheusSelfMetrics", "false")];
    p.extend_from_slice(extra);
    Exporter::new(Config::from_pairs(&pairs(&p)).unwrap()).unwrap()
}

fn every_kind(t: i64, n: i64) -> beam_prometheus::model::Snapshot {
    snapshot(
        t,
        vec![
            attempted("my.ns", "elements", "Read/ParDo(1)", Value::Counter(n)),
            attempted("ns", "lat", "s", Value::Distribution { sum: 10 * n, count: n, min: 3, max: 7 }),
            attempted("ns", "queue", "s", Value::Gauge { value: -4, timestamp_ms: 1_699_999_999_999 }),
            attempted("ns", "users", "s", Value::StringSet(vec!["x\"y".into(), "日本".into()])),
            attempted("ns", "size", "s", Value::Histogram(beam_prometheus::model::Histogram { sum: 2.5, buckets: vec![(0.5, 1), (10.0, n)] })),
        ],
    )
}

/// Both protocols to Prometheus 3: the same exact values by PromQL; 2.0 confirmed by the
/// receiver's written-samples headers (nothing rejected, no fallback).
#[test]
#[ignore = "needs the Prometheus 3 of tests/run_all.sh"]
fn prometheus3_takes_both_protocols_with_exact_values() {
    let prom3 = env("BEAMPROM_PROMETHEUS3_URL");
    for protocol in ["1.0", "2.0"] {
        let job = format!("p3_{}_{}", protocol.replace('.', ""), now_ms());
        let ex = exporter(&format!("{}/api/v1/write", prom3), &job, &[("prometheusRemoteWriteProtocol", protocol)]);
        ex.export(&every_kind(now_ms(), 5));
        ex.export(&every_kind(now_ms() + 1, 9));
        assert!(ex.flush(Duration::from_secs(20)));
        assert_eq!((stat(&ex, "samples_rejected"), stat(&ex, "samples_dropped")), (0, 0), "{:?}", ex.last_error());
        assert_eq!(stat(&ex, "samples_sent"), 2 * 14);
        let sent = if protocol == "2.0" { RemoteWriteProtocol::V2 } else { RemoteWriteProtocol::V1 };
        assert_eq!(ex.remote_write_protocol(), sent, "no fallback from what was configured");
        let j = format!("job=\"{}\"", job);
        await_values(&prom3, &format!("beam_elements_total{{{},namespace=\"my.ns\",step=\"Read/ParDo(1)\"}}", j), &["9"]);
        await_values(&prom3, &format!("beam_lat_distribution_sum{{{}}}", j), &["90"]);
        await_values(&prom3, &format!("beam_lat_distribution_count{{{}}}", j), &["9"]);
        await_values(&prom3, &format!("beam_queue_gauge{{{}}}", j), &["-4"]);
        await_values(&prom3, &format!("beam_users_string_set_info{{{}}}", j), &["1", "1"]);
        await_values(&prom3, &format!("beam_size_histogram_bucket{{{}}}", j), &["1", "10", "10"]);
    }
}

/// UTF-8 names: Beam names and label names verbatim, found by the quoted selector syntax.
#[test]
#[ignore = "needs the Prometheus 3 of tests/run_all.sh"]
fn prometheus3_finds_utf8_names_by_quoted_selectors() {
    let prom3 = env("BEAMPROM_PROMETHEUS3_URL");
    for protocol in ["1.0", "2.0"] {
        let job = format!("utf8_{}_{}", protocol.replace('.', ""), now_ms());
        let ex = exporter(&format!("{}/api/v1/write", prom3), &job, &[("prometheusRemoteWriteProtocol", protocol), ("prometheusUtf8Names", "true")]);
        let mut s = snapshot(now_ms(), vec![attempted("io.x", "word.length", "Count words", Value::Counter(42))]);
        s.metrics.push(attempted("io.x", "a_b", "Count words", Value::Counter(1)));
        s.metrics.push(attempted("io.x", "a.b", "Count words", Value::Counter(2)));
        s.metrics[0].key.labels = vec![("dotted.label".into(), "v€".into())];
        ex.export(&s);
        assert!(ex.flush(Duration::from_secs(20)));
        assert_eq!(stat(&ex, "samples_rejected"), 0, "{:?}", ex.last_error());
        await_values(&prom3, &format!("{{\"beam_word.length_total\", job=\"{}\", step=\"Count words\", \"dotted.label\"=\"v€\"}}", job), &["42"]);
        // Names that sanitize alike stay apart without a beam_metric label.
        await_values(&prom3, &format!("{{\"beam_a.b_total\", job=\"{}\"}}", job), &["2"]);
        await_values(&prom3, &format!("{{__name__=\"beam_a_b_total\", job=\"{}\", beam_metric=\"\"}}", job), &["1"]);
    }
}

/// A receiver that takes 1.0 only makes a 2.0 exporter fall back once and deliver everything:
/// Prometheus 3 configured for 1.0 only (answers 415), and Prometheus 2.42 (which predates 2.0).
#[test]
#[ignore = "needs the servers of tests/run_all.sh"]
fn v1_only_receivers_make_the_exporter_fall_back() {
    for base in [env("BEAMPROM_PROMETHEUS3_V1_URL"), env("BEAMPROM_PROMETHEUS_URL")] {
        let job = format!("fallback_{}", now_ms());
        let ex = exporter(&format!("{}/api/v1/write", base), &job, &[("prometheusRemoteWriteProtocol", "2.0")]);
        ex.export(&every_kind(now_ms(), 3));
        ex.export(&every_kind(now_ms() + 1, 4));
        assert!(ex.flush(Duration::from_secs(20)));
        assert_eq!((stat(&ex, "samples_rejected"), stat(&ex, "samples_dropped")), (0, 0), "{:?}", ex.last_error());
        assert_eq!(stat(&ex, "samples_sent"), 2 * 14);
        assert_eq!(ex.remote_write_protocol(), RemoteWriteProtocol::V1, "{} took 2.0", base);
        await_values(&base, &format!("beam_elements_total{{job=\"{}\"}}", job), &["4"]);
        await_values(&base, &format!("beam_lat_distribution_sum{{job=\"{}\"}}", job), &["40"]);
    }
}

/// A 2.0 request Prometheus 3 writes only in part (one series out of order, one new): the
/// written-samples header counts the rest as sent, the refused sample as rejected.
#[test]
#[ignore = "needs the Prometheus 3 of tests/run_all.sh"]
fn a_partial_write_is_counted_and_the_rest_delivered() {
    let prom3 = env("BEAMPROM_PROMETHEUS3_URL");
    let url = format!("{}/api/v1/write", prom3);
    let job = format!("partial_{}", now_ms());
    let t = now_ms();
    let first = exporter(&url, &job, &[("prometheusRemoteWriteProtocol", "2.0")]);
    first.export(&snapshot(t, vec![attempted("ns", "a", "s", Value::Counter(5))]));
    assert!(first.flush(Duration::from_secs(20)));
    assert_eq!(stat(&first, "samples_sent"), 1, "{:?}", first.last_error());
    // Another exporter (e.g. a restarted pipeline) sends `a` at an older time, and a new `b`.
    let second = exporter(&url, &job, &[("prometheusRemoteWriteProtocol", "2.0")]);
    second.export(&snapshot(t - 1_000, vec![attempted("ns", "a", "s", Value::Counter(4)), attempted("ns", "b", "s", Value::Counter(7))]));
    assert!(second.flush(Duration::from_secs(20)));
    assert_eq!((stat(&second, "samples_sent"), stat(&second, "samples_rejected")), (1, 1), "{:?}", second.last_error());
    assert!(second.last_error().unwrap_or_default().contains("out of order"), "{:?}", second.last_error());
    assert_eq!(second.remote_write_protocol(), RemoteWriteProtocol::V2);
    await_values(&prom3, &format!("beam_b_total{{job=\"{}\"}}", job), &["7"]);
    await_values(&prom3, &format!("beam_a_total{{job=\"{}\"}}", job), &["5"]);
}
