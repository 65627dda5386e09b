//! The metric model: what a Beam `MetricQueryResults` holds, after it crossed from Java.

/// One `writeMetrics` call: every metric the runner reported, taken at `time_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Wall-clock time of the call (ms since the epoch); stamps every sample of the snapshot.
    pub time_ms: i64,
    pub metrics: Vec<Metric>,
}

/// Shared text: the contract interns strings (a table, referenced by index), and decoding keeps
/// one allocation per table entry, so the thousands of metrics of one step share its name and
/// the mapping recognises equal texts by their address (naming.rs, series_order.rs).
pub type Text = std::sync::Arc<str>;

/// Beam's `MetricKey`: the metric name (namespace + name) and the step that reported it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    pub namespace: Text,
    pub name: Text,
    pub step: Text,
    /// `MetricName.getLabels()`, in the runner's order.
    pub labels: Vec<(Text, Text)>,
}

/// A `MetricResult<T>`: the attempted value and, where the runner supports it, the committed one.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub key: MetricKey,
    pub attempted: Option<Value>,
    pub committed: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Counter,
    Distribution,
    Gauge,
    StringSet,
    BoundedTrie,
    Histogram,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(i64),
    Distribution { sum: i64, count: i64, min: i64, max: i64 },
    /// `timestamp_ms` is when the pipeline last set the gauge (Beam's `GaugeResult.getTimestamp`).
    Gauge { value: i64, timestamp_ms: i64 },
    StringSet(Vec<String>),
    BoundedTrie(Vec<TriePath>),
    Histogram(Histogram),
}

/// One path of a bounded trie; `truncated` means Beam cut the path short at this prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TriePath {
    pub segments: Vec<String>,
    pub truncated: bool,
}

/// Beam's `HistogramData`, as non-cumulative buckets with their upper bounds (the last `+Inf`).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub buckets: Vec<(f64, i64)>,
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Counter(_) => Kind::Counter,
            Value::Distribution { .. } => Kind::Distribution,
            Value::Gauge { .. } => Kind::Gauge,
            Value::StringSet(_) => Kind::StringSet,
            Value::BoundedTrie(_) => Kind::BoundedTrie,
            Value::Histogram(_) => Kind::Histogram,
        }
    }
}

impl Value {
    /// The numbers this value gives its series, in a fixed order: counter [value]; distribution
    /// [sum, count, min, max]; gauge [value, seconds when set]; histogram [sum, cumulative count
    /// of each bucket]; none for string sets and tries (their data is in labels). The mapping
    /// takes every sample value from here, so a later snapshot of the same structure can refresh
    /// a mapping by position (`naming::Mapped::refresh`).
    pub fn fields(&self, out: &mut Vec<f64>) {
        match self {
            Value::Counter(c) => out.push(*c as f64),
            Value::Distribution { sum, count, min, max } => {
                out.extend([*sum as f64, *count as f64, *min as f64, *max as f64])
            }
            Value::Gauge { value, timestamp_ms } => out.extend([*value as f64, *timestamp_ms as f64 / 1000.0]),
            Value::StringSet(_) | Value::BoundedTrie(_) => {}
            Value::Histogram(h) => {
                out.push(h.sum);
                let mut cumulative: i64 = 0;
                for (_, c) in &h.buckets {
                    cumulative = cumulative.saturating_add(*c);
                    out.push(cumulative as f64);
                }
            }
        }
    }
}

impl Metric {
    pub fn kind(&self) -> Option<Kind> {
        self.attempted.as_ref().or(self.committed.as_ref()).map(Value::kind)
    }
}
