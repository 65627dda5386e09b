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
            labels.push(Label { name: "__name__".into(), value: s.name.to_string() });
            labels.extend(s.labels.iter().map(|(k, v)| Label { name: k.to_string(), value: v.to_string() }));
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

/// Encodes `samples` as one snappy-compressed `WriteRequest` straight from the mapping, without
/// building `TimeSeries` (which would copy every label): the same bytes prost writes for
/// `series()` (proto3 leaves zero values out). `stale` sends Prometheus' staleness marker instead
/// of each value.
pub fn encode_samples(samples: &[&crate::naming::Sample], timestamp_ms: i64, metadata: &[MetricMetadata], stale: bool) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    fn str_field_len(tag_len: usize, s: &str) -> usize {
        if s.is_empty() { 0 } else { tag_len + encoded_len_varint(s.len() as u64) + s.len() }
    }
    fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
        if !s.is_empty() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
    }
    let label_len = |k: &str, v: &str| str_field_len(1, k) + str_field_len(1, v);
    let mut raw = Vec::with_capacity(samples.len() * 160);
    for s in samples {
        // Labels sorted by name with __name__ in its place (uppercase names sort before it).
        let split = s.labels.partition_point(|(k, _)| &**k < "__name__");
        let labels = s.labels[..split]
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain(std::iter::once(("__name__", &*s.name)))
            .chain(s.labels[split..].iter().map(|(k, v)| (&**k, &**v)));
        let value = if stale { f64::from_bits(STALE_NAN) } else { wire_value(s.value) };
        let sample_len = if value != 0.0 || value.is_nan() { 9 } else { 0 }
            + if timestamp_ms != 0 { 1 + encoded_len_varint(timestamp_ms as u64) } else { 0 };
        let mut ts_len = 1 + encoded_len_varint(sample_len as u64) + sample_len;
        for (k, v) in labels.clone() {
            let l = label_len(k, v);
            ts_len += 1 + encoded_len_varint(l as u64) + l;
        }
        encode_key(1, WireType::LengthDelimited, &mut raw);
        encode_varint(ts_len as u64, &mut raw);
        for (k, v) in labels {
            encode_key(1, WireType::LengthDelimited, &mut raw);
            encode_varint(label_len(k, v) as u64, &mut raw);
            put_str(1, k, &mut raw);
            put_str(2, v, &mut raw);
        }
        encode_key(2, WireType::LengthDelimited, &mut raw);
        encode_varint(sample_len as u64, &mut raw);
        if value != 0.0 || value.is_nan() {
            encode_key(1, WireType::SixtyFourBit, &mut raw);
            raw.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        if timestamp_ms != 0 {
            encode_key(2, WireType::Varint, &mut raw);
            encode_varint(timestamp_ms as u64, &mut raw);
        }
    }
    for m in metadata {
        prost::encoding::message::encode(3, m, &mut raw);
    }
    compress(&raw)
}

fn compress(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
    // Only fails for inputs over 4 GiB; requests are capped far below by --prometheusMaxSamplesPerRequest.
    let n = snap::raw::Encoder::new().compress(raw, &mut out).unwrap_or(0);
    out.truncate(n);
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
    compress(&prost::Message::encode_to_vec(req))
}

/// Inverse of `encode`, for tests and the benchmarks' equivalence check.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| e.to_string())?;
    <WriteRequest as prost::Message>::decode(raw.as_slice()).map_err(|e| e.to_string())
}
