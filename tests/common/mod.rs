//! Helpers shared by the integration tests: builders, proptest strategies, validity checks and a
//! tiny HTTP/1.1 server on 127.0.0.1 (std only).
#![allow(dead_code)]

use beam_prometheus::model::{Histogram, Kind, Metric, MetricKey, Snapshot, Text, TriePath, Value};
use beam_prometheus::naming::{NamingConfig, Selection};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

pub fn key(namespace: &str, name: &str, step: &str) -> MetricKey {
    MetricKey { namespace: namespace.into(), name: name.into(), step: step.into(), labels: vec![] }
}

pub fn key_with_labels(namespace: &str, name: &str, step: &str, l: &[(&str, &str)]) -> MetricKey {
    MetricKey { labels: texts(&pairs(l)), ..key(namespace, name, step) }
}

/// Label pairs as the model holds them (shared texts).
pub fn texts(l: &[(String, String)]) -> Vec<(Text, Text)> {
    l.iter().map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str()))).collect()
}

pub fn metric(namespace: &str, name: &str, step: &str, attempted: Option<Value>, committed: Option<Value>) -> Metric {
    Metric { key: key(namespace, name, step), attempted, committed }
}

pub fn attempted(namespace: &str, name: &str, step: &str, v: Value) -> Metric {
    metric(namespace, name, step, Some(v), None)
}

pub fn snapshot(time_ms: i64, metrics: Vec<Metric>) -> Snapshot {
    Snapshot { time_ms, metrics }
}

pub fn naming_cfg(selection: Selection) -> NamingConfig {
    NamingConfig {
        prefix: "beam".into(),
        job: "wordcount".into(),
        const_labels: vec![("env".into(), "prod".into())],
        selection,
        set_cap: 3,
        taken_labels: vec![],
        utf8_names: false,
    }
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs(l)
}

/// Exporter options for tests against the local server: small backoffs and timeouts, no
/// self-metrics; `extra` pairs come later and so override these.
pub fn quick_opts(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p = pairs(&[
        ("prometheusJobName", "job"),
        ("prometheusSelfMetrics", "false"),
        ("prometheusMinBackoffMillis", "10"),
        ("prometheusMaxBackoffMillis", "50"),
        ("prometheusTimeoutMillis", "3000"),
    ]);
    p.extend(pairs(extra));
    p
}

/// Labels as the mapping holds them (shared texts).
pub fn text_labels(l: &[(&str, &str)]) -> Vec<(beam_prometheus::naming::Text, beam_prometheus::naming::Text)> {
    l.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

/// A mapped sample's labels as owned strings, for comparisons.
pub fn owned(l: &[(beam_prometheus::naming::Text, beam_prometheus::naming::Text)]) -> Vec<(String, String)> {
    l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ---------------------------------------------------------------------------------------------
// Validity checks (written from the Prometheus data model, not from the implementation)
// ---------------------------------------------------------------------------------------------

/// `^[a-zA-Z_:][a-zA-Z0-9_:]*$`
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `^[a-zA-Z_][a-zA-Z0-9_]*$`
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

// ---------------------------------------------------------------------------------------------
// Proptest strategies
// ---------------------------------------------------------------------------------------------

/// Strings that provoke sanitizer corner cases: tiny alphabets (many collisions), Prometheus
/// suffix words, arbitrary Unicode, and long strings.
pub fn arb_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-c._:-]{0,5}",
        2 => prop::sample::select(vec![
            "total", "gauge", "sum", "count", "bucket", "distribution", "min", "max", "info",
            "histogram", "timestamp_seconds", "gauge_timestamp_seconds", "string_set", "bounded_trie",
            "x_total", "x_gauge", "x_histogram_count", "x_distribution_sum", "", "_", "__", "1", "日本",
        ])
        .prop_map(String::from),
        2 => any::<String>(),
        1 => "[a-z]{150,260}",
        1 => "[a-zé.]{1000,1100}",
    ]
    .boxed()
}

/// Beam metric labels (`MetricName.getLabels()`): mostly ordinary names, sometimes anything.
pub fn arb_metric_labels() -> BoxedStrategy<Vec<(String, String)>> {
    let name = prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9_]{0,8}",
        1 => prop::sample::select(vec!["job", "le", "step", "result", "env", "__name__", "PTRANSFORM", ""]).prop_map(String::from),
        1 => arb_name(),
    ];
    prop::collection::vec((name, arb_name()), 0..3).boxed()
}

pub fn arb_kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![
        Kind::Counter,
        Kind::Distribution,
        Kind::Gauge,
        Kind::StringSet,
        Kind::BoundedTrie,
        Kind::Histogram,
    ])
}

fn arb_f64(allow_nan: bool) -> BoxedStrategy<f64> {
    let finite = prop_oneof![
        any::<i32>().prop_map(|i| i as f64),
        -1e6f64..1e6,
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ];
    if allow_nan {
        prop_oneof![4 => finite, 1 => any::<u64>().prop_map(|b| f64::from_bits(b | 0x7ff0_0000_0000_0001))].boxed()
    } else {
        finite.boxed()
    }
}

pub fn arb_value(kind: Kind, allow_nan: bool) -> BoxedStrategy<Value> {
    let small = || prop::collection::vec(arb_name(), 0..6);
    match kind {
        Kind::Counter => any::<i64>().prop_map(Value::Counter).boxed(),
        Kind::Distribution => (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>())
            .prop_map(|(sum, count, min, max)| Value::Distribution { sum, count, min, max })
            .boxed(),
        Kind::Gauge => (any::<i64>(), prop_oneof![Just(0i64), any::<i64>()])
            .prop_map(|(value, timestamp_ms)| Value::Gauge { value, timestamp_ms })
            .boxed(),
        Kind::StringSet => small().prop_map(Value::StringSet).boxed(),
        Kind::BoundedTrie => prop::collection::vec(
            (prop::collection::vec(arb_name(), 0..4), any::<bool>())
                .prop_map(|(segments, truncated)| TriePath { segments, truncated }),
            0..5,
        )
        .prop_map(Value::BoundedTrie)
        .boxed(),
        Kind::Histogram => (arb_f64(allow_nan), prop::collection::vec((arb_f64(allow_nan), -1000i64..1000), 0..6))
            .prop_map(|(sum, buckets)| Value::Histogram(Histogram { sum, buckets }))
            .boxed(),
    }
}

pub fn arb_metric(allow_nan: bool) -> BoxedStrategy<Metric> {
    (arb_name(), arb_name(), arb_name(), arb_metric_labels(), arb_kind())
        .prop_flat_map(move |(ns, name, step, labels, kind)| {
            let key = MetricKey { labels: texts(&labels), ..key(&ns, &name, &step) };
            (Just(key), arb_value(kind, allow_nan), arb_value(kind, allow_nan), 1u8..=3)
        })
        .prop_map(|(key, a, c, presence)| Metric {
            key,
            attempted: if presence & 1 != 0 { Some(a) } else { None },
            committed: if presence & 2 != 0 { Some(c) } else { None },
        })
        .boxed()
}

pub fn arb_snapshot(allow_nan: bool, max_metrics: usize) -> BoxedStrategy<Snapshot> {
    (any::<i64>(), prop::collection::vec(arb_metric(allow_nan), 0..max_metrics))
        .prop_map(|(time_ms, metrics)| Snapshot { time_ms, metrics })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Python's prometheus_client as an independent text-format parser
// ---------------------------------------------------------------------------------------------

const PARSE_PY: &str = r#"
import sys, json
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    sys.stderr.write("IMPORT-ERROR: %s\n" % e)
    sys.exit(3)
docs = json.load(sys.stdin)
out = []
for text in docs:
    try:
        fams = []
        for f in text_string_to_metric_families(text):
            fams.append({"name": f.name, "type": f.type, "help": f.documentation,
                         "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                                     for s in f.samples]})
        out.append({"families": fams})
    except Exception as e:
        out.append({"error": "%s: %s" % (type(e).__name__, e)})
json.dump(out, sys.stdout)
"#;

#[derive(Debug, Clone, PartialEq)]
pub struct PySample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PyFamily {
    pub name: String,
    pub typ: String,
    pub help: String,
    pub samples: Vec<PySample>,
}

/// Parses every text with `prometheus_client.parser.text_string_to_metric_families` in one
/// python3 process. Panics (fails the test) when python3 or the module is missing.
pub fn python_parse(texts: &[String]) -> Vec<Result<Vec<PyFamily>, String>> {
    use std::process::{Command, Stdio};
    let mut child = match Command::new("python3")
        .arg("-c")
        .arg(PARSE_PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "this test needs python3 with the prometheus_client package (pip install prometheus_client) \
             to validate the text format independently; cannot run python3: {}",
            e
        ),
    };
    let input = serde_json::to_vec(texts).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    if out.status.code() == Some(3) {
        panic!(
            "this test needs the Python package prometheus_client to validate the text format \
             independently: run `pip install prometheus_client` ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python output is JSON");
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|doc| {
            if let Some(e) = doc.get("error") {
                return Err(e.as_str().unwrap().to_string());
            }
            Ok(doc["families"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| PyFamily {
                    name: f["name"].as_str().unwrap().into(),
                    typ: f["type"].as_str().unwrap().into(),
                    help: f["help"].as_str().unwrap().into(),
                    samples: f["samples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| {
                            let mut labels: Vec<(String, String)> = s["labels"]
                                .as_object()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                                .collect();
                            labels.sort();
                            PySample {
                                name: s["name"].as_str().unwrap().into(),
                                labels,
                                value: s["value"].as_str().unwrap().parse().unwrap(),
                            }
                        })
                        .collect(),
                })
                .collect())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was completely read.
    pub at: Instant,
    /// The status answered (None: hung up or never answered).
    pub status: Option<u16>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, extra headers, body.
    Status(u16, Vec<(String, String)>, String),
    /// Read the request, then never answer (the connection stays open until the server drops).
    Hang,
    /// Read the request, then close the connection without a response.
    Close,
}

pub fn ok() -> Reply {
    Reply::Status(200, vec![], String::new())
}

pub fn status(code: u16) -> Reply {
    Reply::Status(code, vec![], format!("status {}", code))
}

type Responder = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// `respond(request, index)` decides the reply; `index` counts requests from 0.
    pub fn start(respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let respond: Arc<Responder> = Arc::new(respond);
        let (reqs, st) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, st, respond) = (reqs.clone(), st.clone(), respond.clone());
                std::thread::spawn(move || handle(conn, &reqs, &st, &*respond));
            }
        });
        Server { addr, requests, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(Instant::now() < deadline, "expected {} requests within {:?}, saw {}: {:?}", n, timeout, r.len(), r);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(mut conn: TcpStream, reqs: &Mutex<Vec<Recorded>>, stop: &AtomicBool, respond: &Responder) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return, // e.g. the wake-up connection of Drop
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    assert!(
        !headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "the test server does not speak chunked bodies"
    );
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    let mut rec = Recorded { method, path, headers, body, at: Instant::now(), status: None };
    let reply = {
        let mut r = reqs.lock().unwrap();
        let reply = respond(&rec, r.len());
        if let Reply::Status(code, ..) = &reply {
            rec.status = Some(*code);
        }
        r.push(rec);
        reply
    };
    match reply {
        Reply::Status(code, extra, body) => {
            let mut resp = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: text/plain\r\n",
                code,
                body.len()
            );
            for (k, v) in extra {
                resp.push_str(&format!("{}: {}\r\n", k, v));
            }
            resp.push_str("\r\n");
            resp.push_str(&body);
            let _ = conn.write_all(resp.as_bytes());
            let _ = conn.flush();
        }
        Reply::Hang => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::Close => {}
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// client_model's metrics.proto (proto2), to decode Pushgateway protobuf bodies with prost
// ---------------------------------------------------------------------------------------------

pub mod client_model {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Simple {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Simple>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Simple>,
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Simple>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        #[prost(int32, optional, tag = "3")]
        pub r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }
}

/// A delimited protobuf body (`encoding=delimited`: varint length, message, …).
pub fn decode_delimited(mut body: &[u8]) -> Vec<client_model::MetricFamily> {
    let mut out = Vec::new();
    while !body.is_empty() {
        out.push(<client_model::MetricFamily as prost::Message>::decode_length_delimited(&mut body).expect("a delimited MetricFamily"));
    }
    out
}

/// The series of a protobuf body as the text format names them (`_sum`, `_count`, `_bucket`
/// with `le`), label pairs sorted, values as f64: comparable with a parsed text body.
pub fn protobuf_series(families: &[client_model::MetricFamily]) -> Vec<(String, Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for f in families {
        let name = f.name.clone().unwrap_or_default();
        for m in &f.metric {
            let labels: Vec<(String, String)> = m.label.iter().map(|l| (l.name.clone().unwrap_or_default(), l.value.clone().unwrap_or_default())).collect();
            let mut push = |suffix: &str, extra: Option<(String, String)>, v: f64| {
                let mut l = labels.clone();
                l.extend(extra);
                l.sort();
                out.push((format!("{}{}", name, suffix), l, v));
            };
            if let Some(v) = m.counter.as_ref().or(m.gauge.as_ref()).or(m.untyped.as_ref()) {
                push("", None, v.value.unwrap_or(f64::NAN));
            }
            if let Some(s) = &m.summary {
                push("_sum", None, s.sample_sum.unwrap_or(f64::NAN));
                push("_count", None, s.sample_count.unwrap_or(0) as f64);
            }
            if let Some(h) = &m.histogram {
                for b in &h.bucket {
                    let le = beam_prometheus::naming::format_float(b.upper_bound.unwrap_or(f64::NAN));
                    push("_bucket", Some(("le".into(), le)), b.cumulative_count.unwrap_or(0) as f64);
                }
                push("_sum", None, h.sample_sum.unwrap_or(f64::NAN));
                push("_count", None, h.sample_count.unwrap_or(0) as f64);
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}
