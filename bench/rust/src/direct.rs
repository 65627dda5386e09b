//! Prototype of a change to src/remote_write.rs (see BENCHMARKS.md, "Profile"): the protobuf
//! `WriteRequest` written straight from the mapping's borrowed strings, instead of first
//! cloning every name and label into prost's owned `TimeSeries`/`Label` structs and then
//! encoding those. Produces the same bytes as `remote_write::series` + `metadata` + `encode`
//! (checked by the bench on every run).

use beam_prometheus::naming::{FamilyType, Mapped, Sample};
use beam_prometheus::remote_write::wire_value;

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    ((64 - (v | 1).leading_zeros() as usize) + 6) / 7
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Length of a length-delimited field (tag + length + payload) of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn str_field_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        out.push(tag);
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
}

fn label_len(name: &str, value: &str) -> usize {
    str_field_len(name) + str_field_len(value)
}

fn sample_len(value: f64, ts: i64) -> usize {
    (if value != 0.0 { 9 } else { 0 }) + (if ts != 0 { 1 + varint_len(ts as u64) } else { 0 })
}

/// Where `__name__` goes among the sorted labels (the spec's order: by name, bytewise).
fn name_at(s: &Sample) -> usize {
    s.labels.partition_point(|(k, _)| k.as_str() < "__name__")
}

fn series_len(s: &Sample, ts: i64) -> usize {
    let mut n = field_len(label_len("__name__", &s.name));
    for (k, v) in &s.labels {
        n += field_len(label_len(k, v));
    }
    n + field_len(sample_len(wire_value(s.value), ts))
}

fn put_series(out: &mut Vec<u8>, s: &Sample, ts: i64) {
    let put_label = |out: &mut Vec<u8>, k: &str, v: &str| {
        out.push(0x0a);
        put_varint(out, label_len(k, v) as u64);
        put_str(out, 0x0a, k);
        put_str(out, 0x12, v);
    };
    let at = name_at(s);
    for (k, v) in &s.labels[..at] {
        put_label(out, k, v);
    }
    put_label(out, "__name__", &s.name);
    for (k, v) in &s.labels[at..] {
        put_label(out, k, v);
    }
    let value = wire_value(s.value);
    out.push(0x12);
    put_varint(out, sample_len(value, ts) as u64);
    if value != 0.0 {
        out.push(0x09);
        out.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    if ts != 0 {
        out.push(0x10);
        put_varint(out, ts as u64);
    }
}

fn metadata_type(t: FamilyType) -> u64 {
    match t {
        FamilyType::Counter => 1,
        FamilyType::Gauge => 2,
        FamilyType::Histogram => 3,
        FamilyType::Summary => 5,
        FamilyType::Info => 6,
    }
}

/// The snappy-compressed request bodies of `mapped`, `chunk` samples each, metadata in the first.
pub fn encode(mapped: &Mapped, ts: i64, chunk: usize) -> Vec<Vec<u8>> {
    let all: Vec<&Sample> = mapped.families.iter().flat_map(|f| f.samples.iter()).collect();
    let mut raw = Vec::new();
    let mut bodies = Vec::with_capacity(all.len().div_ceil(chunk));
    let mut encoder = snap::raw::Encoder::new();
    for (i, part) in all.chunks(chunk).enumerate() {
        raw.clear();
        for s in part {
            raw.push(0x0a);
            put_varint(&mut raw, series_len(s, ts) as u64);
            put_series(&mut raw, s, ts);
        }
        if i == 0 {
            for f in &mapped.families {
                let typ = metadata_type(f.typ);
                let len = 1 + varint_len(typ) + str_field_len(&f.name) + str_field_len(&f.help) + str_field_len(f.unit);
                raw.push(0x1a);
                put_varint(&mut raw, len as u64);
                raw.push(0x08);
                put_varint(&mut raw, typ);
                put_str(&mut raw, 0x12, &f.name);
                put_str(&mut raw, 0x22, &f.help);
                put_str(&mut raw, 0x2a, f.unit);
            }
        }
        let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
        let n = encoder.compress(&raw, &mut out).unwrap_or(0);
        out.truncate(n);
        bodies.push(out);
    }
    bodies
}
