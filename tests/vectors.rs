//! The shared vectors (tests/vectors/*.json): the bytes decode to exactly the JSON snapshot and
//! the snapshot encodes to exactly the bytes. The JUnit test VectorsTest checks the Java encoder
//! against the same files.

use beam_prometheus::contract;
use beam_prometheus::model::{Histogram, Metric, MetricKey, Snapshot, TriePath, Value};
use serde_json::Value as J;

fn value(kind: &str, j: &J) -> Option<Value> {
    if j.is_null() {
        return None;
    }
    let i = |k: &str| j[k].as_i64().unwrap();
    Some(match kind {
        "counter" => Value::Counter(j.as_i64().unwrap()),
        "distribution" => Value::Distribution { sum: i("sum"), count: i("count"), min: i("min"), max: i("max") },
        "gauge" => Value::Gauge { value: i("value"), timestamp_ms: i("timestamp_ms") },
        "string_set" => Value::StringSet(j.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()),
        "bounded_trie" => Value::BoundedTrie(
            j.as_array()
                .unwrap()
                .iter()
                .map(|p| TriePath {
                    segments: p["segments"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
                    truncated: p["truncated"].as_bool().unwrap(),
                })
                .collect(),
        ),
        "histogram" => Value::Histogram(Histogram {
            sum: j["sum"].as_f64().unwrap(),
            buckets: j["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (if b[0] == "+Inf" { f64::INFINITY } else { b[0].as_f64().unwrap() }, b[1].as_i64().unwrap()))
                .collect(),
        }),
        k => panic!("unknown kind {}", k),
    })
}

fn load(path: &std::path::Path) -> (Vec<u8>, Snapshot) {
    let doc: J = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = doc["hex"].as_str().unwrap();
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let s = &doc["snapshot"];
    let metrics = s["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let kind = m["kind"].as_str().unwrap();
            Metric {
                key: MetricKey {
                    namespace: m["namespace"].as_str().unwrap().into(),
                    name: m["name"].as_str().unwrap().into(),
                    step: m["step"].as_str().unwrap().into(),
                    labels: m["labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                        .collect(),
                },
                attempted: value(kind, &m["attempted"]),
                committed: value(kind, &m["committed"]),
            }
        })
        .collect();
    (bytes, Snapshot { time_ms: s["time_ms"].as_i64().unwrap(), metrics })
}

#[test]
fn every_vector_decodes_and_encodes_exactly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().map_or(true, |e| e != "json") {
            continue;
        }
        let (bytes, snapshot) = load(&path);
        assert_eq!(contract::decode(&bytes).unwrap(), snapshot, "decoding {}", path.display());
        assert_eq!(contract::encode(&snapshot), bytes, "encoding {}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected the vectors in {}, found {}", dir.display(), seen);
}
