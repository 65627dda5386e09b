//! The binary contract between the Java sink and the native exporter (see CONTRACT.md).
//!
//! Decoding never panics and never allocates more than the input can justify: every count is
//! checked against the bytes that remain before anything is reserved.

use crate::model::{Histogram, Kind, Metric, MetricKey, Snapshot, Text, TriePath, Value};
use std::fmt;

pub const MAGIC: &[u8; 4] = b"BPM1";

const KIND_COUNTER: u8 = 1;
const KIND_DISTRIBUTION: u8 = 2;
const KIND_GAUGE: u8 = 3;
const KIND_STRING_SET: u8 = 4;
const KIND_BOUNDED_TRIE: u8 = 5;
const KIND_HISTOGRAM: u8 = 6;

const HAS_ATTEMPTED: u8 = 1;
const HAS_COMMITTED: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed metrics buffer at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for DecodeError {}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes that string references may still copy: a small buffer referencing one long string
    /// many times must not be able to claim gigabytes.
    copy_budget: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, copy_budget: buf.len().saturating_mul(64).saturating_add(1 << 20) }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.pos, message: message.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self.err(format!("needs {} more bytes, {} left", n, self.buf.len() - self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.i64()? as u64))
    }

    /// A count of items each at least `min_item_bytes` long: rejected if the rest cannot hold them.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.buf.len() - self.pos {
            return self.err(format!("count {} exceeds the remaining {} bytes", n, self.buf.len() - self.pos));
        }
        Ok(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        let at = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError { offset: at, message: "string is not valid UTF-8".into() })
    }

    /// A string of the table, borrowed from the buffer: decoding copies each text once, into
    /// its shared `Text` or the value that uses it.
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u32()? as usize;
        let at = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError { offset: at, message: "string is not valid UTF-8".into() })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return self.err(format!("{} trailing bytes", self.buf.len() - self.pos));
        }
        Ok(())
    }
}

/// Decodes a snapshot as the Java side wrote it.
pub fn decode(buf: &[u8]) -> Result<Snapshot, DecodeError> {
    let mut r = Reader::new(buf);
    if r.take(4)? != MAGIC {
        return Err(DecodeError { offset: 0, message: "bad magic (expected \"BPM1\")".into() });
    }
    let time_ms = r.i64()?;
    let nstrings = r.count(4)?;
    let mut strings = Vec::with_capacity(nstrings);
    for _ in 0..nstrings {
        strings.push(r.str()?);
    }
    // Keys share their table entry (one allocation per distinct string); values that Beam
    // rarely repeats (string-set elements, trie segments) are copied as before.
    let mut shared: Vec<Option<Text>> = vec![None; nstrings];
    let nmetrics = r.count(18)?;
    let mut metrics = Vec::with_capacity(nmetrics);
    for _ in 0..nmetrics {
        let kind = r.u8()?;
        let key = MetricKey {
            namespace: text_ref(&mut r, &strings, &mut shared)?,
            name: text_ref(&mut r, &strings, &mut shared)?,
            step: text_ref(&mut r, &strings, &mut shared)?,
            labels: {
                let n = r.count(8)?;
                let mut labels = Vec::with_capacity(n);
                for _ in 0..n {
                    labels.push((text_ref(&mut r, &strings, &mut shared)?, text_ref(&mut r, &strings, &mut shared)?));
                }
                labels
            },
        };
        let flags = r.u8()?;
        if flags & !(HAS_ATTEMPTED | HAS_COMMITTED) != 0 || flags == 0 {
            return r.err(format!("presence flags {:#04x} are not 1, 2 or 3", flags));
        }
        let attempted =
            if flags & HAS_ATTEMPTED != 0 { Some(value(&mut r, kind, &strings)?) } else { None };
        let committed =
            if flags & HAS_COMMITTED != 0 { Some(value(&mut r, kind, &strings)?) } else { None };
        metrics.push(Metric { key, attempted, committed });
    }
    r.finish()?;
    Ok(Snapshot { time_ms, metrics })
}

/// Splits a buffer into its structure and its numbers without decoding strings: `skeleton`
/// becomes the buffer with every number zeroed except what decides which series exist (a
/// distribution's count > 0, a gauge's set time ≠ 0), `fields` every value's
/// `Value::fields` in order. Two buffers with equal skeletons map to the same series, so the
/// exporter maps a snapshot once and refreshes the values of later ones. Returns the time.
/// Validates only what the walk needs: a skeleton that differs from a decoded one is decoded
/// in full, and that reports any error.
pub fn split(buf: &[u8], skeleton: &mut Vec<u8>, fields: &mut Vec<f64>) -> Result<i64, DecodeError> {
    skeleton.clear();
    skeleton.extend_from_slice(buf);
    fields.clear();
    let mut r = Reader::new(buf);
    if r.take(4)? != MAGIC {
        return r.err("bad magic");
    }
    let time_ms = r.i64()?;
    let zero = |skeleton: &mut Vec<u8>, at: usize, keep: Option<bool>| {
        skeleton[at..at + 8].fill(0);
        if let Some(k) = keep {
            skeleton[at + 7] = k as u8;
        }
    };
    zero(skeleton, 4, None);
    let nstrings = r.count(4)?;
    for _ in 0..nstrings {
        let len = r.u32()? as usize;
        r.take(len)?;
    }
    let nmetrics = r.count(18)?;
    for _ in 0..nmetrics {
        let kind = r.u8()?;
        r.take(12)?;
        let nlabels = r.count(8)?;
        r.take(nlabels * 8)?;
        let flags = r.u8()?;
        for _ in 0..(flags & HAS_ATTEMPTED != 0) as u8 + (flags & HAS_COMMITTED != 0) as u8 {
            let at = r.pos;
            let v = match kind {
                KIND_COUNTER | KIND_DISTRIBUTION | KIND_GAUGE | KIND_HISTOGRAM => value(&mut r, kind, &[])?,
                KIND_STRING_SET => {
                    let n = r.count(4)?;
                    r.take(n * 4)?;
                    continue;
                }
                KIND_BOUNDED_TRIE => {
                    for _ in 0..r.count(5)? {
                        let nseg = r.count(4)?;
                        r.take(nseg * 4 + 1)?;
                    }
                    continue;
                }
                k => return r.err(format!("unknown metric kind {}", k)),
            };
            match &v {
                Value::Distribution { count, .. } => {
                    for i in 0..4 {
                        zero(skeleton, at + 8 * i, (i == 1).then_some(*count > 0));
                    }
                }
                Value::Gauge { timestamp_ms, .. } => {
                    zero(skeleton, at, None);
                    zero(skeleton, at + 8, Some(*timestamp_ms != 0));
                }
                Value::Histogram(h) => {
                    zero(skeleton, at, None);
                    for i in 0..h.buckets.len() {
                        zero(skeleton, at + 12 + 16 * i + 8, None);
                    }
                }
                _ => zero(skeleton, at, None),
            }
            v.fields(fields);
        }
    }
    r.finish()?;
    Ok(time_ms)
}

/// A reference to table entry `i`, shared: the entry is copied once, on its first reference.
fn text_ref(r: &mut Reader<'_>, strings: &[&str], shared: &mut [Option<Text>]) -> Result<Text, DecodeError> {
    let i = r.u32()? as usize;
    match shared.get_mut(i) {
        Some(Some(t)) => Ok(t.clone()),
        Some(slot) => Ok(slot.insert(Text::from(strings[i])).clone()),
        None => r.err(format!("string index {} out of range ({} strings)", i, strings.len())),
    }
}

fn string_ref(r: &mut Reader<'_>, strings: &[&str]) -> Result<String, DecodeError> {
    let i = r.u32()? as usize;
    match strings.get(i) {
        Some(s) if s.len() <= r.copy_budget => {
            r.copy_budget -= s.len();
            Ok(s.to_string())
        }
        Some(_) => r.err("string references would copy more than 64 times the buffer's size"),
        None => r.err(format!("string index {} out of range ({} strings)", i, strings.len())),
    }
}

fn value(r: &mut Reader<'_>, kind: u8, strings: &[&str]) -> Result<Value, DecodeError> {
    Ok(match kind {
        KIND_COUNTER => Value::Counter(r.i64()?),
        KIND_DISTRIBUTION => {
            Value::Distribution { sum: r.i64()?, count: r.i64()?, min: r.i64()?, max: r.i64()? }
        }
        KIND_GAUGE => Value::Gauge { value: r.i64()?, timestamp_ms: r.i64()? },
        KIND_STRING_SET => {
            let n = r.count(4)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(string_ref(r, strings)?);
            }
            Value::StringSet(v)
        }
        KIND_BOUNDED_TRIE => {
            let n = r.count(5)?;
            let mut paths = Vec::with_capacity(n);
            for _ in 0..n {
                let nseg = r.count(4)?;
                let mut segments = Vec::with_capacity(nseg);
                for _ in 0..nseg {
                    segments.push(string_ref(r, strings)?);
                }
                let truncated = match r.u8()? {
                    0 => false,
                    1 => true,
                    b => return r.err(format!("truncated flag {} is not 0 or 1", b)),
                };
                paths.push(TriePath { segments, truncated });
            }
            Value::BoundedTrie(paths)
        }
        KIND_HISTOGRAM => {
            let sum = r.f64()?;
            let n = r.count(16)?;
            let mut buckets = Vec::with_capacity(n);
            for _ in 0..n {
                buckets.push((r.f64()?, r.i64()?));
            }
            Value::Histogram(Histogram { sum, buckets })
        }
        k => return r.err(format!("unknown metric kind {}", k)),
    })
}

/// Encodes a snapshot exactly as the Java side encodes one on its own (strings interned in
/// first-use order; a writer the Java side keeps may also carry earlier snapshots' strings).
/// The exporter encodes the union of several pipelines' snapshots with it (pipelines.rs); tests,
/// vectors and benchmarks use it too.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    #[derive(Default)]
    struct Interner {
        index: std::collections::HashMap<String, u32>,
        table: Vec<String>,
    }
    impl Interner {
        fn put(&mut self, out: &mut Vec<u8>, st: &str) {
            let next = self.table.len() as u32;
            let i = *self.index.entry(st.to_string()).or_insert(next);
            if i == next {
                self.table.push(st.to_string());
            }
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
    let mut strings = Interner::default();
    let mut body = Vec::new();
    body.extend_from_slice(&(s.metrics.len() as u32).to_be_bytes());
    for m in &s.metrics {
        body.push(match m.kind().unwrap_or(Kind::Counter) {
            Kind::Counter => KIND_COUNTER,
            Kind::Distribution => KIND_DISTRIBUTION,
            Kind::Gauge => KIND_GAUGE,
            Kind::StringSet => KIND_STRING_SET,
            Kind::BoundedTrie => KIND_BOUNDED_TRIE,
            Kind::Histogram => KIND_HISTOGRAM,
        });
        strings.put(&mut body, &m.key.namespace);
        strings.put(&mut body, &m.key.name);
        strings.put(&mut body, &m.key.step);
        body.extend_from_slice(&(m.key.labels.len() as u32).to_be_bytes());
        for (k, v) in &m.key.labels {
            strings.put(&mut body, k);
            strings.put(&mut body, v);
        }
        let flags = (m.attempted.is_some() as u8) * HAS_ATTEMPTED
            | (m.committed.is_some() as u8) * HAS_COMMITTED;
        body.push(flags);
        for v in m.attempted.iter().chain(m.committed.iter()) {
            match v {
                Value::Counter(c) => body.extend_from_slice(&c.to_be_bytes()),
                Value::Distribution { sum, count, min, max } => {
                    for x in [sum, count, min, max] {
                        body.extend_from_slice(&x.to_be_bytes());
                    }
                }
                Value::Gauge { value, timestamp_ms } => {
                    body.extend_from_slice(&value.to_be_bytes());
                    body.extend_from_slice(&timestamp_ms.to_be_bytes());
                }
                Value::StringSet(set) => {
                    body.extend_from_slice(&(set.len() as u32).to_be_bytes());
                    for e in set {
                        strings.put(&mut body, e);
                    }
                }
                Value::BoundedTrie(paths) => {
                    body.extend_from_slice(&(paths.len() as u32).to_be_bytes());
                    for p in paths {
                        body.extend_from_slice(&(p.segments.len() as u32).to_be_bytes());
                        for seg in &p.segments {
                            strings.put(&mut body, seg);
                        }
                        body.push(p.truncated as u8);
                    }
                }
                Value::Histogram(h) => {
                    body.extend_from_slice(&h.sum.to_bits().to_be_bytes());
                    body.extend_from_slice(&(h.buckets.len() as u32).to_be_bytes());
                    for (le, c) in &h.buckets {
                        body.extend_from_slice(&le.to_bits().to_be_bytes());
                        body.extend_from_slice(&c.to_be_bytes());
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&s.time_ms.to_be_bytes());
    out.extend_from_slice(&(strings.table.len() as u32).to_be_bytes());
    for st in &strings.table {
        out.extend_from_slice(&(st.len() as u32).to_be_bytes());
        out.extend_from_slice(st.as_bytes());
    }
    out.extend_from_slice(&body);
    out
}
