//! Writes the shared test vectors (tests/vectors/*.json) that `cargo test` and the JUnit tests
//! both read: each holds a snapshot as JSON and its bytes as the contract encodes them.
//! Run: cargo run --example gen_vectors

use beam_prometheus::contract;
use beam_prometheus::model::{Histogram, Metric, MetricKey, Snapshot, TriePath, Value};
use serde_json::{json, Value as J};

fn key(ns: &str, name: &str, step: &str) -> MetricKey {
    MetricKey { namespace: ns.into(), name: name.into(), step: step.into(), labels: vec![] }
}

fn value_json(v: &Value) -> J {
    match v {
        Value::Counter(c) => json!(c),
        Value::Distribution { sum, count, min, max } => json!({"sum": sum, "count": count, "min": min, "max": max}),
        Value::Gauge { value, timestamp_ms } => json!({"value": value, "timestamp_ms": timestamp_ms}),
        Value::StringSet(s) => json!(s),
        Value::BoundedTrie(p) => json!(p.iter().map(|p| json!({"segments": p.segments, "truncated": p.truncated})).collect::<Vec<_>>()),
        Value::Histogram(h) => json!({
            "sum": h.sum,
            "buckets": h.buckets.iter().map(|(le, c)| json!([if le.is_infinite() { json!("+Inf") } else { json!(le) }, c])).collect::<Vec<_>>()
        }),
    }
}

fn kind_name(m: &Metric) -> &'static str {
    match m.attempted.as_ref().or(m.committed.as_ref()).unwrap() {
        Value::Counter(_) => "counter",
        Value::Distribution { .. } => "distribution",
        Value::Gauge { .. } => "gauge",
        Value::StringSet(_) => "string_set",
        Value::BoundedTrie(_) => "bounded_trie",
        Value::Histogram(_) => "histogram",
    }
}

fn write(name: &str, about: &str, s: Snapshot, java_histograms: J) {
    let bytes = contract::encode(&s);
    let metrics: Vec<J> = s
        .metrics
        .iter()
        .map(|m| {
            json!({
                "kind": kind_name(m),
                "namespace": &*m.key.namespace, "name": &*m.key.name, "step": &*m.key.step,
                "labels": m.key.labels.iter().map(|(k, v)| json!([&**k, &**v])).collect::<Vec<_>>(),
                "attempted": m.attempted.as_ref().map(value_json),
                "committed": m.committed.as_ref().map(value_json),
            })
        })
        .collect();
    let doc = json!({
        "about": about,
        "hex": bytes.iter().map(|b| format!("{:02x}", b)).collect::<String>(),
        "snapshot": {"time_ms": s.time_ms, "metrics": metrics},
        "java_histograms": java_histograms,
    });
    let path = format!("{}/tests/vectors/{}.json", env!("CARGO_MANIFEST_DIR"), name);
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    println!("wrote {} ({} bytes encoded)", path, bytes.len());
}

fn main() {
    write("empty", "no metrics at all", Snapshot { time_ms: 1_700_000_000_000, metrics: vec![] }, json!(null));
    write(
        "counters",
        "counters, attempted only and attempted+committed, a shared namespace interned once, an empty step",
        Snapshot {
            time_ms: 1_700_000_000_123,
            metrics: vec![
                Metric { key: key("org.example.WordCount", "words", "ParDo(ExtractWords)"), attempted: Some(Value::Counter(1000)), committed: None },
                Metric { key: key("org.example.WordCount", "empty.lines", "ParDo(ExtractWords)"), attempted: Some(Value::Counter(-3)), committed: Some(Value::Counter(-3)) },
                Metric { key: MetricKey { labels: vec![("PROJECT_ID".into(), "p-1".into()), ("step".into(), "x".into())], ..key("ns", "labelled", "s") }, attempted: Some(Value::Counter(5)), committed: None },
                Metric { key: key("ns", "big", ""), attempted: Some(Value::Counter(i64::MAX)), committed: Some(Value::Counter(9_007_199_254_740_993)) },
            ],
        },
        json!(null),
    );
    write(
        "all_kinds",
        "one metric of every kind, unicode and hostile names; histogram built in Java as linear(0, 10, 3) recording 4, 12, 8, 40, -24, 8, 1 (each running mean exact in binary)",
        Snapshot {
            time_ms: 1_700_000_999_000,
            metrics: vec![
                Metric { key: key("ns", "count", "s1"), attempted: Some(Value::Counter(42)), committed: Some(Value::Counter(40)) },
                Metric { key: key("ns", "latency ms", "s1"), attempted: Some(Value::Distribution { sum: 60, count: 3, min: 10, max: 30 }), committed: None },
                Metric { key: key("ns", "empty.dist", "s1"), attempted: Some(Value::Distribution { sum: 0, count: 0, min: i64::MAX, max: i64::MIN }), committed: None },
                Metric { key: key("ns", "queue", "s2"), attempted: Some(Value::Gauge { value: -7, timestamp_ms: 1_699_999_000_000 }), committed: None },
                Metric { key: key("nś", "größe/η", "step \"quoted\"\nnewline"), attempted: Some(Value::StringSet(vec!["b".into(), "a\\b".into(), "日本".into()])), committed: None },
                Metric { key: key("ns", "lineage", "s3"), attempted: Some(Value::BoundedTrie(vec![TriePath { segments: vec!["bigquery:".into(), "project.dataset".into()], truncated: false }])), committed: None },
                Metric {
                    key: key("ns", "hist", "s4"),
                    attempted: Some(Value::Histogram(Histogram { sum: 49.0, buckets: vec![(0.0, 1), (10.0, 4), (20.0, 1), (30.0, 0), (f64::INFINITY, 1)] })),
                    committed: None,
                },
            ],
        },
        json!({"hist": {"start": 0.0, "width": 10.0, "buckets": 3, "record": [4, 12, 8, 40, -24, 8, 1]}}),
    );
}
