//! Several pipelines writing to one exporter (src/pipelines.rs): the pass-through while one
//! writes, the combination rules of the union, its bound, and the union's mapping against each
//! pipeline's own; then through a real `Exporter` against the local HTTP server: every push
//! carries every pipeline, and the staleness markers at close cover every pipeline's series.

mod common;

use beam_prometheus::config::Config;
use beam_prometheus::contract;
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::model::{Histogram, Kind, Metric, Snapshot, TriePath, Value};
use beam_prometheus::naming::{self, Selection};
use beam_prometheus::pipelines::{combine, union, Pipelines, MAX_PIPELINES};
use beam_prometheus::remote_write::{self, STALE_NAN};
use common::*;
use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Writes `s` as `pipeline`; returns the snapshot the exporter would map.
fn write(p: &mut Pipelines, pipeline: i64, s: &Snapshot) -> Snapshot {
    p.write(pipeline, Cow::Owned(contract::encode(s)), contract::decode).unwrap()
}

fn counters(time_ms: i64, c: &[(&str, i64)]) -> Snapshot {
    snapshot(time_ms, c.iter().map(|(n, v)| attempted("ns", n, "s", Value::Counter(*v))).collect())
}

/// name -> attempted value, of a snapshot's metrics.
fn values(s: &Snapshot) -> BTreeMap<String, Value> {
    s.metrics.iter().map(|m| (m.key.name.to_string(), m.attempted.clone().unwrap())).collect()
}

fn hist(bounds: &[f64], counts: &[i64], sum: f64) -> Value {
    Value::Histogram(Histogram { sum, buckets: bounds.iter().copied().zip(counts.iter().copied()).collect() })
}

#[test]
fn one_pipeline_passes_its_buffer_through_untouched() {
    let mut p = Pipelines::default();
    for i in 1..=3 {
        let buf = contract::encode(&counters(1000 * i, &[("a", i), ("b", 2 * i)]));
        let seen = p.write(7, Cow::Borrowed(&buf), |b| Ok(b.as_ptr() == buf.as_ptr() && b.len() == buf.len())).unwrap();
        assert!(seen, "write {} was not the caller's own buffer", i);
        let owned = buf.clone();
        let at = owned.as_ptr();
        assert!(p.write(7, Cow::Owned(owned), |b| Ok(b.as_ptr() == at)).unwrap());
    }
    assert_eq!(p.folded(), 0);
}

#[test]
fn a_second_pipeline_brings_the_first_ones_latest_values_along() {
    let mut p = Pipelines::default();
    write(&mut p, 1, &counters(1000, &[("shared", 1), ("only_1", 10)]));
    write(&mut p, 1, &counters(2000, &[("shared", 2), ("only_1", 20)]));
    let u = write(&mut p, 2, &counters(1500, &[("shared", 5), ("only_2", 50)]));
    assert_eq!(u.time_ms, 2000);
    let v = values(&u);
    assert_eq!(v["shared"], Value::Counter(7));
    assert_eq!(v["only_1"], Value::Counter(20));
    assert_eq!(v["only_2"], Value::Counter(50));
    // Pipeline 1 ends (writes no more): its last values stay in every later union.
    for i in 1..=3 {
        let v = values(&write(&mut p, 2, &counters(3000 + i, &[("shared", 5 + i), ("only_2", 50 + i)])));
        assert_eq!(v["shared"], Value::Counter(7 + i));
        assert_eq!(v["only_1"], Value::Counter(20));
    }
}

#[test]
fn the_same_metric_of_two_pipelines_combines_as_beam_combines_workers() {
    let s1 = snapshot(
        1000,
        vec![
            metric("ns", "c", "s", Some(Value::Counter(3)), Some(Value::Counter(2))),
            attempted("ns", "d", "s", Value::Distribution { sum: 10, count: 2, min: 4, max: 6 }),
            attempted("ns", "g_new_in_2", "s", Value::Gauge { value: 1, timestamp_ms: 500 }),
            attempted("ns", "g_new_in_1", "s", Value::Gauge { value: 11, timestamp_ms: 900 }),
            attempted("ns", "set", "s", Value::StringSet(vec!["b".into(), "a".into()])),
            attempted("ns", "trie", "s", Value::BoundedTrie(vec![TriePath { segments: vec!["x".into()], truncated: false }])),
            attempted("ns", "h_same", "s", hist(&[1.0, f64::INFINITY], &[1, 2], 5.0)),
            attempted("ns", "h_other", "s", hist(&[1.0, f64::INFINITY], &[1, 2], 5.0)),
        ],
    );
    let s2 = snapshot(
        2000,
        vec![
            // Attempted only: the committed value is pipeline 1's alone.
            metric("ns", "c", "s", Some(Value::Counter(4)), None),
            attempted("ns", "d", "s", Value::Distribution { sum: 1, count: 1, min: 1, max: 1 }),
            attempted("ns", "g_new_in_2", "s", Value::Gauge { value: 2, timestamp_ms: 600 }),
            attempted("ns", "g_new_in_1", "s", Value::Gauge { value: 22, timestamp_ms: 800 }),
            attempted("ns", "set", "s", Value::StringSet(vec!["c".into(), "a".into()])),
            attempted(
                "ns",
                "trie",
                "s",
                Value::BoundedTrie(vec![
                    TriePath { segments: vec!["x".into()], truncated: false },
                    TriePath { segments: vec!["y".into()], truncated: true },
                ]),
            ),
            attempted("ns", "h_same", "s", hist(&[1.0, f64::INFINITY], &[3, 4], 0.5)),
            attempted("ns", "h_other", "s", hist(&[2.0, f64::INFINITY], &[7, 0], 9.0)),
        ],
    );
    let mut p = Pipelines::default();
    write(&mut p, 1, &s1);
    let u = write(&mut p, 2, &s2);
    assert_eq!(u.time_ms, 2000);
    let c = u.metrics.iter().find(|m| &*m.key.name == "c").unwrap();
    assert_eq!(c.committed, Some(Value::Counter(2)));
    let v = values(&u);
    assert_eq!(v["c"], Value::Counter(7));
    assert_eq!(v["d"], Value::Distribution { sum: 11, count: 3, min: 1, max: 6 });
    assert_eq!(v["g_new_in_2"], Value::Gauge { value: 2, timestamp_ms: 600 });
    assert_eq!(v["g_new_in_1"], Value::Gauge { value: 11, timestamp_ms: 900 });
    assert_eq!(v["set"], Value::StringSet(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(
        v["trie"],
        Value::BoundedTrie(vec![
            TriePath { segments: vec!["x".into()], truncated: false },
            TriePath { segments: vec!["y".into()], truncated: true },
        ])
    );
    assert_eq!(v["h_same"], hist(&[1.0, f64::INFINITY], &[4, 6], 5.5));
    // Other bounds: the newer snapshot's (pipeline 2's) alone, counted once.
    assert_eq!(v["h_other"], hist(&[2.0, f64::INFINITY], &[7, 0], 9.0));
    assert_eq!(p.histograms_unmerged(), 1);
    write(&mut p, 2, &s2);
    assert_eq!(p.histograms_unmerged(), 1, "the same conflict is counted once, not on every push");
}

#[test]
fn combine_rules_one_by_one() {
    let mut a = Value::Counter(i64::MAX - 1);
    assert!(!combine(&mut a, &Value::Counter(5)));
    assert_eq!(a, Value::Counter(i64::MAX), "a counter saturates instead of wrapping negative");
    // Beam's empty distribution (count 0, min Long.MAX_VALUE, max Long.MIN_VALUE) is neutral.
    let mut d = Value::Distribution { sum: 0, count: 0, min: i64::MAX, max: i64::MIN };
    combine(&mut d, &Value::Distribution { sum: 9, count: 3, min: 2, max: 4 });
    assert_eq!(d, Value::Distribution { sum: 9, count: 3, min: 2, max: 4 });
    // Gauges: a tie goes to the newer snapshot's value (the second argument).
    let mut g = Value::Gauge { value: 1, timestamp_ms: 5 };
    combine(&mut g, &Value::Gauge { value: 2, timestamp_ms: 5 });
    assert_eq!(g, Value::Gauge { value: 2, timestamp_ms: 5 });
    combine(&mut g, &Value::Gauge { value: 3, timestamp_ms: 4 });
    assert_eq!(g, Value::Gauge { value: 2, timestamp_ms: 5 });
    // A histogram with another number of buckets is not merged.
    let mut h = hist(&[1.0, f64::INFINITY], &[1, 1], 1.0);
    assert!(combine(&mut h, &hist(&[f64::INFINITY], &[4], 2.0)));
    assert_eq!(h, hist(&[f64::INFINITY], &[4], 2.0));
}

#[test]
fn a_metric_of_one_kind_in_one_pipeline_and_another_in_the_other_stays_two_metrics() {
    let s1 = snapshot(1, vec![attempted("ns", "x", "s", Value::Counter(1))]);
    let s2 = snapshot(2, vec![attempted("ns", "x", "s", Value::Gauge { value: 9, timestamp_ms: 2 })]);
    let (u, unmerged) = union([&s1, &s2].into_iter());
    assert_eq!(unmerged, 0);
    let kinds: Vec<Option<Kind>> = u.metrics.iter().map(Metric::kind).collect();
    assert_eq!(kinds, vec![Some(Kind::Counter), Some(Kind::Gauge)]);
}

#[test]
fn a_malformed_buffer_changes_nothing() {
    let mut p = Pipelines::default();
    write(&mut p, 1, &counters(1000, &[("a", 1)]));
    write(&mut p, 2, &counters(1000, &[("a", 2)]));
    let mut bad = contract::encode(&counters(2000, &[("a", 100)]));
    bad.truncate(bad.len() - 3);
    assert!(p.write(2, Cow::Owned(bad), contract::decode).is_err());
    let v = values(&write(&mut p, 3, &counters(3000, &[("a", 4)])));
    assert_eq!(v["a"], Value::Counter(7));
}

#[test]
fn a_malformed_buffer_of_a_second_pipeline_keeps_the_first_ones_pass_through() {
    let mut p = Pipelines::default();
    write(&mut p, 1, &counters(1000, &[("a", 1)]));
    assert!(p.write(2, Cow::Owned(b"BPM1 torn".to_vec()), contract::decode).is_err());
    let buf = contract::encode(&counters(2000, &[("a", 2)]));
    assert!(p.write(1, Cow::Borrowed(&buf), |b| Ok(b.as_ptr() == buf.as_ptr())).unwrap());
}

#[test]
fn past_the_bound_the_least_recently_written_pipelines_are_folded_and_still_counted() {
    let mut p = Pipelines::default();
    let n = MAX_PIPELINES as i64 + 3;
    let mut last = Snapshot { time_ms: 0, metrics: vec![] };
    for id in 0..n {
        last = write(&mut p, id, &counters(id, &[("all", 1), (&format!("own_{}", id), id)]));
    }
    assert_eq!(p.folded(), 3);
    let v = values(&last);
    assert_eq!(v["all"], Value::Counter(n), "a folded pipeline's counter still counts");
    for id in 0..n {
        assert_eq!(v[&format!("own_{}", id)], Value::Counter(id), "pipeline {}", id);
    }
    // Pipeline 3 was written least recently but pipeline 0..2 are folded already: writing 3
    // again keeps it, and the next new pipeline folds 4, not 3.
    write(&mut p, 3, &counters(100, &[("all", 1)]));
    let v = values(&write(&mut p, n, &counters(101, &[("all", 1)])));
    assert_eq!(p.folded(), 4);
    assert_eq!(v["all"], Value::Counter(n + 1));
    assert_eq!(v["own_4"], Value::Counter(4));
    assert!(!v.contains_key("own_3"), "pipeline 3 replaced its own snapshot");
}

/// Series of a mapping as (name, labels) -> value; NaN compared by bits.
fn series(s: &Snapshot) -> BTreeMap<(String, Vec<(String, String)>), u64> {
    let m = naming::map(s, &naming_cfg(Selection::Both));
    m.families
        .iter()
        .flat_map(|f| f.samples.iter())
        .map(|x| ((x.name.to_string(), owned(&x.labels)), x.value.to_bits()))
        .collect()
}

/// Snapshots of pipelines reporting disjoint metrics: namespaces start with the pipeline's
/// number, and each pipeline reports a (key, kind) once, as Beam's results do.
fn arb_disjoint() -> impl Strategy<Value = Vec<Snapshot>> {
    prop::collection::vec(arb_snapshot(true, 8), 2..5).prop_map(|mut v| {
        for (i, s) in v.iter_mut().enumerate() {
            let mut seen = BTreeSet::new();
            s.metrics.retain(|m| m.kind().is_some());
            for m in &mut s.metrics {
                m.key.namespace = format!("p{}/{}", i, m.key.namespace).into();
                if let (Some(a), Some(c)) = (&m.attempted, &m.committed) {
                    if a.kind() != c.kind() {
                        m.committed = None;
                    }
                }
            }
            s.metrics.retain(|m| seen.insert((m.key.clone(), m.kind())));
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The union of pipelines with disjoint metrics maps to exactly the series of each alone.
    #[test]
    fn the_union_of_disjoint_pipelines_maps_to_each_ones_series(snapshots in arb_disjoint()) {
        let mut p = Pipelines::default();
        let mut u = None;
        for (i, s) in snapshots.iter().enumerate() {
            u = Some(write(&mut p, i as i64, s));
        }
        let mut each = BTreeMap::new();
        let mut expected = 0;
        for s in &snapshots {
            let own = series(s);
            expected += own.len();
            each.extend(own);
        }
        prop_assert_eq!(each.len(), expected, "the generator made pipelines share a series");
        prop_assert_eq!(series(&u.unwrap()), each);
    }

    /// Counters reported by every pipeline add up whatever the order pipelines write in.
    #[test]
    fn shared_counters_add_up_in_any_write_order(counts in prop::collection::vec(0i64..1_000_000, 2..10), order in any::<u64>()) {
        let mut p = Pipelines::default();
        let n = counts.len();
        let mut last = None;
        for k in 0..n {
            let i = (k + order as usize) % n;
            last = Some(write(&mut p, i as i64, &counters(k as i64, &[("c", counts[i])])));
        }
        prop_assert_eq!(&values(&last.unwrap())["c"], &Value::Counter(counts.iter().sum()));
    }
}

// ---------------------------------------------------------------------------------------------
// Through the exporter, against the local HTTP server
// ---------------------------------------------------------------------------------------------

fn stat(ex: &Exporter, name: &str) -> i64 {
    ex.stats().values()[stats_names().iter().position(|n| *n == name).unwrap()]
}

/// The value of the one sample of `name` in a text-format body.
fn sample(body: &str, name: &str) -> Option<i64> {
    let line = body.lines().find(|l| l.starts_with(&format!("{}{{", name)))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[test]
fn every_push_of_two_pipelines_carries_both() {
    let server = Server::start(|_, _| ok());
    let ex = Exporter::new(
        Config::from_pairs(&quick_opts(&[
            ("prometheusPushgatewayUrl", &server.url("")),
            ("prometheusPushgatewayFormat", "TEXT"),
        ]))
        .unwrap(),
    )
    .unwrap();
    for i in 1..=5i64 {
        for (pipeline, own) in [(11, "only_a"), (12, "only_b")] {
            let s = counters(1000 * i, &[("shared", i), (own, 10 * i + pipeline)]);
            ex.export_from(pipeline, Cow::Owned(contract::encode(&s))).unwrap();
            assert!(ex.flush(Duration::from_secs(5)));
            let body = String::from_utf8(server.requests().last().unwrap().body.clone()).unwrap();
            assert_eq!(sample(&body, "beam_only_a_total"), Some(10 * i + 11), "{}", body);
            if i > 1 || pipeline == 12 {
                let b = if pipeline == 12 { 10 * i + 12 } else { 10 * (i - 1) + 12 };
                assert_eq!(sample(&body, "beam_only_b_total"), Some(b), "{}", body);
                let shared = if pipeline == 12 { 2 * i } else { 2 * i - 1 };
                assert_eq!(sample(&body, "beam_shared_total"), Some(shared), "{}", body);
            }
        }
    }
    // The union's structure is the same push after push: mapped afresh twice only (pipeline
    // a alone, then the first union).
    assert_eq!(stat(&ex, "mappings"), 2);
    ex.close(Duration::from_secs(5));
}

#[test]
fn staleness_markers_at_close_cover_every_pipelines_series() {
    let server = Server::start(|_, _| ok());
    let ex = Exporter::new(
        Config::from_pairs(&quick_opts(&[
            ("prometheusRemoteWriteUrl", &server.url("/api/v1/write")),
            ("prometheusStaleOnEnd", "true"),
        ]))
        .unwrap(),
    )
    .unwrap();
    ex.export_from(1, Cow::Owned(contract::encode(&counters(1000, &[("a", 1)])))).unwrap();
    ex.export_from(2, Cow::Owned(contract::encode(&counters(2000, &[("b", 2)])))).unwrap();
    assert!(ex.close(Duration::from_secs(5)));
    let reqs = server.requests();
    let last = remote_write::decode(&reqs.last().unwrap().body).unwrap();
    let mut stale: Vec<String> = last
        .timeseries
        .iter()
        .filter(|t| t.samples.iter().all(|s| s.value.to_bits() == STALE_NAN))
        .map(|t| t.labels.iter().find(|l| l.name == "__name__").unwrap().value.clone())
        .collect();
    stale.sort();
    assert_eq!(stale, vec!["beam_a_total", "beam_b_total"]);
}
