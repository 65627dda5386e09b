//! Prometheus remote-write 1.0: protobuf `WriteRequest`, snappy block format.
//! Spec: https://prometheus.io/docs/specs/remote_write_spec/ ; messages from prompb/types.proto
//! and prompb/remote.proto (only the fields 1.0 senders use).

use crate::naming::{FamilyType, Mapped};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prompb.MetricMetadata.MetricType` values.
fn metadata_type(t: FamilyType) -> i32 {
    match t {
        FamilyType::Counter => 1,
        FamilyType::Gauge => 2,
        FamilyType::Histogram => 3,
        FamilyType::Summary => 5,
        FamilyType::Info => 6,
    }
}

/// Prometheus' ordinary NaN; any other NaN bit pattern could read as its staleness marker.
pub const NORMAL_NAN: u64 = 0x7ff8000000000001;
/// Prometheus' staleness marker: a series ends now instead of fading out after 5 minutes.
pub const STALE_NAN: u64 = 0x7ff0000000000002;

pub fn wire_value(v: f64) -> f64 {
    if v.is_nan() { f64::from_bits(NORMAL_NAN) } else { v }
}

/// Builds the series of `mapped`, every sample at `timestamp_ms`.
pub fn series(mapped: &Mapped, timestamp_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(mapped.sample_count());
    for f in &mapped.families {
        for s in &f.samples {
            let mut labels = Vec::with_capacity(s.labels.len() + 1);
            labels.push(Label { name: "__name__".into(), value: s.name.clone() });
            labels.extend(s.labels.iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }));
            // The spec wants labels sorted by name; "__name__" sorts first among valid names.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(TimeSeries {
                labels,
                samples: vec![Sample { value: wire_value(s.value), timestamp: timestamp_ms }],
            });
        }
    }
    out
}

pub fn metadata(mapped: &Mapped) -> Vec<MetricMetadata> {
    mapped
        .families
        .iter()
        .map(|f| MetricMetadata {
            r#type: metadata_type(f.typ),
            metric_family_name: f.name.clone(),
            help: f.help.clone(),
            unit: f.unit.to_string(),
        })
        .collect()
}

/// Protobuf-encodes and snappy-compresses (block format, as the spec requires) one request.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
    // Only fails for inputs over 4 GiB; requests are capped far below by --prometheusMaxSamplesPerRequest.
    let n = snap::raw::Encoder::new().compress(&raw, &mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// Inverse of `encode`, for tests and the benchmarks' equivalence check.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| e.to_string())?;
    <WriteRequest as prost::Message>::decode(raw.as_slice()).map_err(|e| e.to_string())
}
