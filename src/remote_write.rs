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

/// Per series, the protobuf of its `Label` messages (`__name__` in its place). They are the same
/// for every snapshot of one structure, so the exporter builds them once per mapping and a
/// request costs a copy per series plus its sample.
#[derive(Debug, Default)]
pub struct SeriesLabels {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl SeriesLabels {
    /// `n`: the number of samples, to size the store.
    pub fn new<'a>(samples: impl IntoIterator<Item = &'a crate::naming::Sample>, n: usize) -> SeriesLabels {
        let mut samples = samples.into_iter().peekable();
        // Sized from the first series (series of a mapping are alike), so the store is not
        // regrown and copied on a large first push.
        let per_series = samples.peek().map_or(0, |s| labels_len(s));
        let mut out = SeriesLabels { bytes: Vec::with_capacity(n * (per_series + per_series / 8)), ends: Vec::with_capacity(n) };
        for s in samples {
            put_labels(s, &mut out.bytes);
            out.ends.push(out.bytes.len());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// The `Label` messages of `s`: sorted by name with `__name__` in its place (uppercase names
/// sort before it).
#[inline]
fn put_labels(s: &crate::naming::Sample, buf: &mut Vec<u8>) {
    // One pass: `__name__` goes before the first label that sorts after it.
    let mut name_written = false;
    for (k, v) in s.labels.iter() {
        if !name_written && !before_name(k) {
            put_label("__name__", &s.name, buf);
            name_written = true;
        }
        put_label(k, v, buf);
    }
    if !name_written {
        put_label("__name__", &s.name, buf);
    }
}

/// `k < "__name__"`, mostly decided by the first byte: label names start with a letter or `_`.
#[inline]
fn before_name(k: &str) -> bool {
    match k.as_bytes().first() {
        Some(&b) if b != b'_' => b < b'_',
        _ => k < "__name__",
    }
}

/// The length `put_labels` writes, from the texts' lengths alone.
#[inline]
fn labels_len(s: &crate::naming::Sample) -> usize {
    s.labels.iter().map(|(k, v)| label_len(k, v)).sum::<usize>() + label_len("__name__", &s.name)
}

/// Where a series' `Label` messages come from: built once per mapping (`SeriesLabels`, repeat
/// pushes) or written straight from the mapped series (a first push, which needs no store).
trait LabelBytes {
    fn len(&self) -> usize;
    fn put(&self, raw: &mut Vec<u8>);
}

impl LabelBytes for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn put(&self, raw: &mut Vec<u8>) {
        raw.extend_from_slice(self);
    }
}

impl LabelBytes for &crate::naming::Sample {
    fn len(&self) -> usize {
        labels_len(self)
    }
    fn put(&self, raw: &mut Vec<u8>) {
        put_labels(self, raw)
    }
}

use crate::snappy_blocks::{self, Compressor};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

fn str_field_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { 1 + encoded_len_varint(s.len() as u64) + s.len() }
}

/// Encoded length of one `Label` message as a field of `TimeSeries`.
fn label_len(k: &str, v: &str) -> usize {
    let inner = str_field_len(k) + str_field_len(v);
    1 + encoded_len_varint(inner as u64) + inner
}

/// One `Label` message as field 1 of `TimeSeries`: the bytes prost writes.
#[inline]
fn put_label(k: &str, v: &str, buf: &mut Vec<u8>) {
    let inner = 2 + k.len() + 2 + v.len();
    if k.is_empty() || v.is_empty() || k.len() > 127 || v.len() > 127 || inner > 127 {
        // Rare (long values, empty strings): the general encoding.
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint((str_field_len(k) + str_field_len(v)) as u64, buf);
        put_str(1, k, buf);
        put_str(2, v, buf);
        return;
    }
    // Every length fits one varint byte: field keys and lengths written as plain bytes.
    buf.reserve(2 + inner);
    buf.extend_from_slice(&[0x0a, inner as u8, 0x0a, k.len() as u8]);
    buf.extend_from_slice(k.as_bytes());
    buf.extend_from_slice(&[0x12, v.len() as u8]);
    buf.extend_from_slice(v.as_bytes());
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    // proto3 leaves empty strings out, as prost does.
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

/// The metadata part of a `WriteRequest` (field 3), encoded once per mapping.
pub fn metadata_bytes(metadata: &[MetricMetadata]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in metadata {
        prost::encoding::message::encode(3, m, &mut out);
    }
    out
}

/// `metadata_bytes(&metadata(mapped))` written from the families as they are: no copy of
/// every family's name and help (two allocations per family on a first push).
pub fn mapped_metadata_bytes(mapped: &Mapped) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &mapped.families {
        let typ = metadata_type(f.typ);
        let inner = 1 + encoded_len_varint(typ as u64) + str_field_len(&f.name) + str_field_len(&f.help) + str_field_len(f.unit);
        encode_key(3, WireType::LengthDelimited, &mut out);
        encode_varint(inner as u64, &mut out);
        // prost leaves a zero type out; no family type maps to 0.
        encode_key(1, WireType::Varint, &mut out);
        encode_varint(typ as u64, &mut out);
        put_str(2, &f.name, &mut out);
        put_str(4, &f.help, &mut out);
        put_str(5, f.unit, &mut out);
    }
    out
}

/// Writes snappy-compressed `WriteRequest`s from the mapped series or from their stored labels
/// (`SeriesLabels`), with its buffers and snappy state reused from request to request: the same
/// bytes prost writes for `series()`.
/// Each 64 KiB of the request is compressed as soon as it is written (`snappy_blocks`).
#[derive(Default)]
pub struct Encoder {
    raw: Vec<u8>,
    snappy: Compressor,
}

impl Encoder {
    /// One request of the series `first..` of `labels`, one per value, every sample at
    /// `timestamp_ms`, then `metadata` (from `metadata_bytes` or `mapped_metadata_bytes`).
    /// `stale` sends Prometheus' staleness marker instead of each value.
    pub fn encode(
        &mut self,
        labels: &SeriesLabels,
        first: usize,
        values: impl IntoIterator<Item = f64>,
        timestamp_ms: i64,
        metadata: &[u8],
        stale: bool,
    ) -> Vec<u8> {
        self.write(values.into_iter().enumerate().map(|(i, v)| (labels.get(first + i), v)), timestamp_ms, metadata, stale)
    }

    /// The same request written from the mapped series themselves, their labels encoded on the
    /// way (a first push: no `SeriesLabels` built, whose fresh memory would cost more).
    pub fn encode_series<'a>(
        &mut self,
        series: impl IntoIterator<Item = &'a crate::naming::Sample>,
        values: impl IntoIterator<Item = f64>,
        timestamp_ms: i64,
        metadata: &[u8],
        stale: bool,
    ) -> Vec<u8> {
        self.write(series.into_iter().zip(values), timestamp_ms, metadata, stale)
    }

    fn write<L: LabelBytes>(&mut self, series: impl Iterator<Item = (L, f64)>, timestamp_ms: i64, metadata: &[u8], stale: bool) -> Vec<u8> {
        let raw = &mut self.raw;
        raw.clear();
        // A block and a series, so the buffer is not regrown block by block.
        raw.reserve(snappy_blocks::BLOCK + 4096);
        self.snappy.start();
        // The sample message: value (fixed64, left out when 0.0) and timestamp (varint, left out
        // when 0). The same for every series but the value's 8 bytes: written once, copied.
        let mut ts = Vec::with_capacity(11);
        if timestamp_ms != 0 {
            encode_key(2, WireType::Varint, &mut ts);
            encode_varint(timestamp_ms as u64, &mut ts);
        }
        let mut with_value = vec![0x12, (9 + ts.len()) as u8, 0x09, 0, 0, 0, 0, 0, 0, 0, 0];
        with_value.extend_from_slice(&ts);
        let mut without_value = vec![0x12, ts.len() as u8];
        without_value.extend_from_slice(&ts);
        for (labels, v) in series {
            let value = if stale { f64::from_bits(STALE_NAN) } else { wire_value(v) };
            let has_value = value != 0.0 || value.is_nan();
            let sample = if has_value { &mut with_value } else { &mut without_value };
            if has_value {
                sample[3..11].copy_from_slice(&value.to_bits().to_le_bytes());
            }
            encode_key(1, WireType::LengthDelimited, raw);
            encode_varint((labels.len() + sample.len()) as u64, raw);
            labels.put(raw);
            raw.extend_from_slice(sample);
            if raw.len() >= snappy_blocks::BLOCK {
                self.snappy.take_blocks(raw);
            }
        }
        // A block at a time, so a large push's metadata is not held whole either.
        for part in metadata.chunks(snappy_blocks::BLOCK) {
            raw.extend_from_slice(part);
            self.snappy.take_blocks(raw);
        }
        self.snappy.finish(raw)
    }
}

/// Snappy block compression of a whole message, its state reused from request to request
/// (the 2.0 encoder's).
#[derive(Default)]
pub struct Snappy(Compressor);

impl Snappy {
    pub fn compress(&mut self, raw: &[u8]) -> Vec<u8> {
        self.0.compress(raw)
    }
}

/// One snappy-compressed `WriteRequest` of `samples` (see `Encoder`).
pub fn encode_samples(samples: &[&crate::naming::Sample], timestamp_ms: i64, metadata: &[MetricMetadata], stale: bool) -> Vec<u8> {
    Encoder::default().encode_series(samples.iter().copied(), samples.iter().map(|s| s.value), timestamp_ms, &metadata_bytes(metadata), stale)
}

fn compress(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
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
            metric_family_name: f.name.to_string(),
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
