//! Prometheus remote-write 2.0: `io.prometheus.write.v2.Request`, snappy block format.
//! Spec: https://prometheus.io/docs/specs/remote_write_spec_2_0/ ; messages from
//! prompb/io/prometheus/write/v2/types.proto (Prometheus v0.316.0). Fed by the same mapping as 1.0
//! (`naming::Mapped`); what differs is the wire: one symbols table per request that every label,
//! help text and unit points into, metadata on every series, and counters' start timestamps.

use crate::naming::{FamilyType, Mapped};
use crate::remote_write::{wire_value, STALE_NAN};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use std::collections::HashMap;

pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
pub const VERSION: &str = "2.0.0";
/// Response headers of a 2.0 receiver: what it wrote of the request.
pub const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// `io.prometheus.write.v2.Metadata.MetricType` values.
pub fn metric_type(t: FamilyType) -> u64 {
    match t {
        FamilyType::Counter => 1,
        FamilyType::Gauge => 2,
        FamilyType::Histogram => 3,
        FamilyType::Summary => 5,
        FamilyType::Info => 6,
    }
}

/// Cumulative families, whose series get a start timestamp.
pub fn has_start(t: FamilyType) -> bool {
    matches!(t, FamilyType::Counter | FamilyType::Summary | FamilyType::Histogram)
}

/// One request's worth of series, encoded once per mapping: its symbols table (field 4 of
/// `Request`) and, per series, the `TimeSeries` fields before and after the sample.
#[derive(Debug, Default)]
pub struct Chunk {
    symbols: Vec<u8>,
    /// Per series: labels_refs (field 1) bytes, then metadata (field 5) bytes.
    bytes: Vec<u8>,
    /// Per series: end of its labels part and end of its metadata part in `bytes`.
    ends: Vec<(usize, usize)>,
    /// Per series: its start timestamp (ms), 0 for none.
    starts: Vec<i64>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The mapping's series cut into requests of at most `per_request` series.
#[derive(Debug, Default)]
pub struct Plan {
    pub chunks: Vec<Chunk>,
}

impl Plan {
    /// `start(i)`: the start timestamp of series `i` (in `Mapped::values` order), asked only for
    /// cumulative families.
    pub fn new(mapped: &Mapped, per_request: usize, mut start: impl FnMut(usize) -> i64) -> Plan {
        let per_request = per_request.max(1);
        let mut chunks = Vec::new();
        let mut symbols: HashMap<&str, u32, crate::naming::FxBuild> = HashMap::default();
        let mut table: Vec<&str> = Vec::new();
        let mut chunk = Chunk::default();
        let mut refs: Vec<u32> = Vec::new();
        let mut i = 0usize;
        for f in &mapped.families {
            for s in crate::naming::prefetched(&f.samples) {
                if chunk.ends.len() == per_request {
                    chunk.symbols = encode_symbols(&table);
                    chunks.push(std::mem::take(&mut chunk));
                    symbols.clear();
                    table.clear();
                }
                if table.is_empty() {
                    // The spec wants the empty string first: ref 0 means "none" (help, unit).
                    symbols.insert("", 0);
                    table.push("");
                }
                refs.clear();
                // Labels sorted by name with __name__ in its place, as in 1.0.
                let split = s.labels.partition_point(|(k, _)| &**k < "__name__");
                let pairs = s.labels[..split]
                    .iter()
                    .map(|(k, v)| (&**k, &**v))
                    .chain(std::iter::once(("__name__", &*s.name)))
                    .chain(s.labels[split..].iter().map(|(k, v)| (&**k, &**v)));
                for (k, v) in pairs {
                    refs.push(intern(&mut symbols, &mut table, k));
                    refs.push(intern(&mut symbols, &mut table, v));
                }
                let help = intern(&mut symbols, &mut table, &f.help);
                let unit = intern(&mut symbols, &mut table, f.unit);
                let b = &mut chunk.bytes;
                // labels_refs: packed uint32.
                let packed: usize = refs.iter().map(|r| encoded_len_varint(*r as u64)).sum();
                encode_key(1, WireType::LengthDelimited, b);
                encode_varint(packed as u64, b);
                for r in &refs {
                    encode_varint(*r as u64, b);
                }
                let labels_end = b.len();
                // metadata: type (1), help_ref (3), unit_ref (4); zeros left out as proto3 does.
                let typ = metric_type(f.typ);
                let meta_len = 1 + encoded_len_varint(typ)
                    + if help != 0 { 1 + encoded_len_varint(help as u64) } else { 0 }
                    + if unit != 0 { 1 + encoded_len_varint(unit as u64) } else { 0 };
                encode_key(5, WireType::LengthDelimited, b);
                encode_varint(meta_len as u64, b);
                encode_key(1, WireType::Varint, b);
                encode_varint(typ, b);
                if help != 0 {
                    encode_key(3, WireType::Varint, b);
                    encode_varint(help as u64, b);
                }
                if unit != 0 {
                    encode_key(4, WireType::Varint, b);
                    encode_varint(unit as u64, b);
                }
                chunk.ends.push((labels_end, b.len()));
                chunk.starts.push(if has_start(f.typ) { start(i) } else { 0 });
                i += 1;
            }
        }
        if !chunk.ends.is_empty() {
            chunk.symbols = encode_symbols(&table);
            chunks.push(chunk);
        }
        Plan { chunks }
    }
}

fn intern<'a>(symbols: &mut HashMap<&'a str, u32, crate::naming::FxBuild>, table: &mut Vec<&'a str>, s: &'a str) -> u32 {
    *symbols.entry(s).or_insert_with(|| {
        table.push(s);
        (table.len() - 1) as u32
    })
}

fn encode_symbols(table: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.iter().map(|s| s.len() + 2).sum());
    for s in table {
        // Repeated strings keep empty entries: the position is the reference.
        encode_key(4, WireType::LengthDelimited, &mut out);
        encode_varint(s.len() as u64, &mut out);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Writes snappy-compressed 2.0 requests from a `Chunk`, buffers and snappy state reused.
#[derive(Default)]
pub struct Encoder {
    raw: Vec<u8>,
    snappy: crate::remote_write::Snappy,
}

impl Encoder {
    /// One request of `chunk`'s series with `values` (one per series), every sample at
    /// `timestamp_ms`; `stale` sends Prometheus' staleness marker instead of each value.
    pub fn encode(&mut self, chunk: &Chunk, values: &[f64], timestamp_ms: i64, stale: bool) -> Vec<u8> {
        let raw = &mut self.raw;
        raw.clear();
        raw.extend_from_slice(&chunk.symbols);
        let mut labels_start = 0;
        for (i, (&(labels_end, meta_end), &start)) in chunk.ends.iter().zip(&chunk.starts).enumerate() {
            let v = values.get(i).copied().unwrap_or(f64::NAN);
            let value = if stale { f64::from_bits(STALE_NAN) } else { wire_value(v) };
            let has_value = value != 0.0 || value.is_nan();
            let sample_len = if has_value { 9 } else { 0 }
                + if timestamp_ms != 0 { 1 + encoded_len_varint(timestamp_ms as u64) } else { 0 }
                + if start != 0 { 1 + encoded_len_varint(start as u64) } else { 0 };
            let series_len = (meta_end - labels_start) + 1 + encoded_len_varint(sample_len as u64) + sample_len;
            encode_key(5, WireType::LengthDelimited, raw);
            encode_varint(series_len as u64, raw);
            raw.extend_from_slice(&chunk.bytes[labels_start..labels_end]);
            encode_key(2, WireType::LengthDelimited, raw);
            encode_varint(sample_len as u64, raw);
            if has_value {
                encode_key(1, WireType::SixtyFourBit, raw);
                raw.extend_from_slice(&value.to_bits().to_le_bytes());
            }
            if timestamp_ms != 0 {
                encode_key(2, WireType::Varint, raw);
                encode_varint(timestamp_ms as u64, raw);
            }
            if start != 0 {
                encode_key(3, WireType::Varint, raw);
                encode_varint(start as u64, raw);
            }
            raw.extend_from_slice(&chunk.bytes[labels_end..meta_end]);
            labels_start = meta_end;
        }
        self.snappy.compress(raw)
    }
}

// Decoding, for the fallback to 1.0 of requests already encoded as 2.0.

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
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
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
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// The 1.0 body carrying the same series and samples as a 2.0 body (metadata, which 1.0 keys
/// by family name, is left out): requests queued before a receiver turned out to take only 1.0.
pub fn to_v1(body: &[u8]) -> Result<Vec<u8>, String> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| e.to_string())?;
    let req = <Request as prost::Message>::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    let sym = |r: u32| req.symbols.get(r as usize).cloned().ok_or_else(|| format!("symbol {} out of range", r));
    let mut out = crate::remote_write::WriteRequest::default();
    for ts in &req.timeseries {
        let mut labels = Vec::with_capacity(ts.labels_refs.len() / 2);
        for pair in ts.labels_refs.chunks(2) {
            labels.push(crate::remote_write::Label { name: sym(pair[0])?, value: sym(*pair.get(1).unwrap_or(&0))? });
        }
        let samples = ts.samples.iter().map(|s| crate::remote_write::Sample { value: s.value, timestamp: s.timestamp }).collect();
        out.timeseries.push(crate::remote_write::TimeSeries { labels, samples });
    }
    Ok(crate::remote_write::encode(&out))
}
