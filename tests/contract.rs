//! The binary contract decoder: never panics, never over-allocates, and inverts `encode`.

mod common;

use beam_prometheus::contract::{decode, encode, MAGIC};
use beam_prometheus::model::{Histogram, Metric, MetricKey, Snapshot, TriePath, Value};
use common::*;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// ---------------------------------------------------------------------------------------------
// An allocator that records, per thread and while asked to, the largest single allocation.
// ---------------------------------------------------------------------------------------------

struct Tracking;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------------------------
// Hand-built buffers
// ---------------------------------------------------------------------------------------------

struct Buf(Vec<u8>);

impl Buf {
    fn header(time_ms: i64, strings: &[&str]) -> Buf {
        let mut b = Buf(MAGIC.to_vec());
        b.i64(time_ms);
        b.u32(strings.len() as u32);
        for s in strings {
            b.u32(s.len() as u32);
            b.0.extend(s.as_bytes());
        }
        b
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend(v.to_bits().to_be_bytes());
        self
    }
    /// kind, namespace/name/step refs, no labels.
    fn metric_head(&mut self, kind: u8, presence: u8) -> &mut Self {
        self.u8(kind).u32(0).u32(1).u32(2).u32(0).u8(presence)
    }
}

#[test]
fn decodes_a_hand_built_buffer_per_contract_md() {
    let mut b = Buf::header(1_700_000_000_000, &["ns", "c", "step", "k", "v", "a", "b"]);
    b.u32(6);
    // counter, attempted + committed, one label k=v
    b.u8(1).u32(0).u32(1).u32(2).u32(1).u32(3).u32(4).u8(3).i64(5).i64(4);
    b.metric_head(2, 1).i64(10).i64(2).i64(3).i64(7);
    b.metric_head(3, 2).i64(-1).i64(1234);
    b.metric_head(4, 1).u32(2).u32(5).u32(6);
    b.metric_head(5, 1).u32(2).u32(2).u32(5).u32(6).u8(1).u32(0).u8(0);
    b.metric_head(6, 1).f64(2.5).u32(2).f64(1.0).i64(3).f64(f64::INFINITY).i64(1);
    let s = decode(&b.0).unwrap();
    let k = |labels: Vec<(String, String)>| MetricKey { labels: texts(&labels), ..key("ns", "c", "step") };
    let expected = Snapshot {
        time_ms: 1_700_000_000_000,
        metrics: vec![
            Metric { key: k(pairs(&[("k", "v")])), attempted: Some(Value::Counter(5)), committed: Some(Value::Counter(4)) },
            Metric { key: k(vec![]), attempted: Some(Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }), committed: None },
            Metric { key: k(vec![]), attempted: None, committed: Some(Value::Gauge { value: -1, timestamp_ms: 1234 }) },
            Metric { key: k(vec![]), attempted: Some(Value::StringSet(vec!["a".into(), "b".into()])), committed: None },
            Metric {
                key: k(vec![]),
                attempted: Some(Value::BoundedTrie(vec![
                    TriePath { segments: vec!["a".into(), "b".into()], truncated: true },
                    TriePath { segments: vec![], truncated: false },
                ])),
                committed: None,
            },
            Metric {
                key: k(vec![]),
                attempted: Some(Value::Histogram(Histogram { sum: 2.5, buckets: vec![(1.0, 3), (f64::INFINITY, 1)] })),
                committed: None,
            },
        ],
    };
    assert_eq!(s, expected);
    // encode interns strings in first-use order; this buffer's table is already in that order.
    assert_eq!(encode(&s), b.0);
}

/// A writer that keeps its string table between snapshots (the Java sink's `ContractWriter`)
/// sends strings no metric refers to any more, in the order earlier snapshots first used them:
/// the snapshot means the same, and the exporter maps it the same and reuses that mapping.
#[test]
fn a_kept_table_with_unused_strings_means_the_same() {
    let fresh = |v: i64| {
        let mut b = Buf::header(1_000, &["ns", "c", "step", "a"]);
        b.u32(2);
        b.metric_head(1, 1).i64(v);
        b.metric_head(4, 1).u32(1).u32(3);
        b
    };
    // "gone" and "old" were used by earlier snapshots; "a" was first used before "c".
    let kept = |v: i64| {
        let mut b = Buf::header(1_000, &["gone", "ns", "a", "c", "old", "step"]);
        b.u32(2);
        b.u8(1).u32(1).u32(3).u32(5).u32(0).u8(1).i64(v);
        b.u8(4).u32(1).u32(3).u32(5).u32(0).u8(1).u32(1).u32(2);
        b
    };
    assert_eq!(decode(&kept(5).0).unwrap(), decode(&fresh(5).0).unwrap());
    let cfg = naming_cfg(beam_prometheus::naming::Selection::Attempted);
    let (mut a, mut b) = (beam_prometheus::reuse::MappingCache::default(), beam_prometheus::reuse::MappingCache::default());
    for (i, v) in [5, 6, 7].into_iter().enumerate() {
        let (_, reused) = a.update(&kept(v).0, &cfg, |_| ()).unwrap();
        b.update(&fresh(v).0, &cfg, |_| ()).unwrap();
        assert_eq!(reused, i > 0, "push {}", i);
        assert_eq!(a.remote_write_bodies(1_000, 500, false), b.remote_write_bodies(1_000, 500, false), "push {}", i);
        assert_eq!(a.pushgateway_protobuf(&["job"]), b.pushgateway_protobuf(&["job"]), "push {}", i);
    }
}

#[test]
fn malformed_buffers_are_errors() {
    let ok_head = || {
        let mut b = Buf::header(0, &["ns", "c", "s"]);
        b.u32(1);
        b
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("bad magic", b"BPM2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec()),
        ("magic only", MAGIC.to_vec()),
    ];
    cases.push(("unknown kind", { let mut b = ok_head(); b.metric_head(7, 1).i64(1); b.0 }));
    cases.push(("kind 0", { let mut b = ok_head(); b.metric_head(0, 1).i64(1); b.0 }));
    cases.push(("presence 0", { let mut b = ok_head(); b.metric_head(1, 0).i64(1); b.0 }));
    cases.push(("presence 4", { let mut b = ok_head(); b.metric_head(1, 4).i64(1); b.0 }));
    cases.push(("string index out of range", { let mut b = ok_head(); b.u8(1).u32(0).u32(3).u32(2).u32(0).u8(1).i64(1); b.0 }));
    cases.push(("label ref out of range", { let mut b = ok_head(); b.u8(1).u32(0).u32(1).u32(2).u32(1).u32(0).u32(99).u8(1).i64(1); b.0 }));
    cases.push(("truncated flag 2", { let mut b = ok_head(); b.metric_head(5, 1).u32(1).u32(0).u8(2); b.0 }));
    cases.push(("trailing byte", { let mut b = ok_head(); b.metric_head(1, 1).i64(1).u8(0); b.0 }));
    cases.push(("committed missing", { let mut b = ok_head(); b.metric_head(1, 3).i64(1); b.0 }));
    cases.push(("invalid utf-8", {
        let mut b = Buf(MAGIC.to_vec());
        b.i64(0).u32(1).u32(2).u8(0xc3).u8(0x28).u32(0);
        b.0
    }));
    cases.push(("modified utf-8 NUL", {
        let mut b = Buf(MAGIC.to_vec());
        b.i64(0).u32(1).u32(2).u8(0xc0).u8(0x80).u32(0);
        b.0
    }));
    for (what, buf) in cases {
        let e = decode(&buf).expect_err(what);
        assert!(e.offset <= buf.len(), "{}: offset {} beyond {}", what, e.offset, buf.len());
        assert!(e.to_string().contains(&format!("byte {}", e.offset)), "{}: {}", what, e);
    }
}

#[test]
fn the_allocation_tracker_sees_allocations() {
    let (v, largest) = largest_allocation(|| Vec::<u8>::with_capacity(1 << 20));
    assert!(largest >= 1 << 20 && v.capacity() >= 1 << 20, "{}", largest);
    let (_, largest) = largest_allocation(|| 1 + 1);
    assert_eq!(largest, 0);
}

#[test]
fn huge_counts_are_rejected_without_allocating() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for n in [u32::MAX, u32::MAX / 4, 1 << 20] {
        cases.push(("strings", { let mut b = Buf(MAGIC.to_vec()); b.i64(0).u32(n).u32(0); b.0 }));
        cases.push(("metrics", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(n).u8(1); b.0 }));
        cases.push(("labels", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(1).u8(1).u32(0).u32(1).u32(2).u32(n).u32(0); b.0 }));
        cases.push(("set elements", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(1).metric_head(4, 1).u32(n).u32(0); b.0 }));
        cases.push(("trie paths", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(1).metric_head(5, 1).u32(n).u32(0).u8(0); b.0 }));
        cases.push(("trie segments", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(1).metric_head(5, 1).u32(1).u32(n).u8(0); b.0 }));
        cases.push(("buckets", { let mut b = Buf::header(0, &["ns", "c", "s"]); b.u32(1).metric_head(6, 1).f64(0.0).u32(n).f64(1.0).i64(1); b.0 }));
        cases.push(("string length", { let mut b = Buf(MAGIC.to_vec()); b.i64(0).u32(1).u32(n).u8(b'x'); b.0 }));
    }
    for (what, buf) in cases {
        let (r, largest) = largest_allocation(|| decode(&buf));
        assert!(r.is_err(), "{}: {:?}", what, r);
        assert!(largest <= 4096, "{}: decoding {} bytes allocated {} bytes at once", what, buf.len(), largest);
    }
}

#[test]
fn allocation_is_bounded_by_the_input() {
    // A valid buffer with many tiny items: no single allocation far beyond the input size.
    let metrics: Vec<Metric> = (0..2000).map(|i| attempted("n", "c", "s", Value::Counter(i))).collect();
    let buf = encode(&snapshot(1, metrics));
    let (r, largest) = largest_allocation(|| decode(&buf));
    assert_eq!(r.unwrap().metrics.len(), 2000);
    assert!(largest <= buf.len() * 8, "{} bytes at once for a {} byte input", largest, buf.len());
}

fn sample_buffer() -> Vec<u8> {
    encode(&snapshot(
        1_700_000_000_000,
        vec![
            metric("ns", "elements", "s1", Some(Value::Counter(5)), Some(Value::Counter(4))),
            Metric {
                key: key_with_labels("ns", "lat", "s1", &[("PTRANSFORM", "t"), ("k", "v")]),
                attempted: Some(Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }),
                committed: None,
            },
            attempted("ns", "g", "s1", Value::Gauge { value: 3, timestamp_ms: 77 }),
            attempted("ns", "set", "s1", Value::StringSet(vec!["a".into(), "日本".into()])),
            attempted("ns", "trie", "s1", Value::BoundedTrie(vec![TriePath { segments: vec!["a".into(), "b".into()], truncated: true }])),
            attempted("ns", "h", "s1", Value::Histogram(Histogram { sum: 1.5, buckets: vec![(1.0, 1), (f64::INFINITY, 2)] })),
        ],
    ))
}

#[test]
fn every_truncation_is_an_error() {
    let buf = sample_buffer();
    assert!(decode(&buf).is_ok());
    for len in 0..buf.len() {
        let (r, largest) = largest_allocation(|| decode(&buf[..len]));
        let e = r.expect_err(&format!("truncated to {} of {} bytes", len, buf.len()));
        assert!(e.offset <= len, "offset {} beyond the {} bytes", e.offset, len);
        assert!(largest <= 4096, "truncated to {}: allocated {} at once", len, largest);
    }
}

#[test]
fn every_single_byte_change_is_handled() {
    let buf = sample_buffer();
    let original = decode(&buf).unwrap();
    let mut ok = 0;
    for pos in 0..buf.len() {
        for mask in [0x01u8, 0x02, 0x10, 0x80, 0xff] {
            let mut b = buf.clone();
            b[pos] ^= mask;
            let (r, largest) = largest_allocation(|| decode(&b));
            assert!(largest <= 4096, "flip {:#x} at {}: allocated {} at once", mask, pos, largest);
            match r {
                Ok(s) => {
                    ok += 1;
                    assert_ne!(encode(&s).len(), 0);
                    if pos >= 4 {
                        assert!(s != original || b == buf, "a change at {} decoded to the original", pos);
                    }
                }
                Err(e) => assert!(e.offset <= b.len()),
            }
        }
        for value in [0x00u8, 0x7f, 0xfe] {
            let mut b = buf.clone();
            b[pos] = value;
            let _ = decode(&b);
        }
    }
    // Value bytes (counts, time, strings' content) can change without breaking the structure.
    assert!(ok > 0);
}

#[test]
fn inserting_or_removing_a_byte_never_panics() {
    let buf = sample_buffer();
    for pos in 0..=buf.len() {
        let mut b = buf.clone();
        b.insert(pos, 0);
        let _ = decode(&b);
        if pos < buf.len() {
            let mut b = buf.clone();
            b.remove(pos);
            assert!(decode(&b).is_err(), "removing byte {} went unnoticed", pos);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_decode_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&b);
    }

    #[test]
    fn prop_decode_never_panics_after_the_magic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut b = MAGIC.to_vec();
        b.extend(tail);
        let (r, largest) = largest_allocation(|| decode(&b));
        prop_assert!(largest <= 4096 + b.len() * 8, "allocated {} for {} bytes", largest, b.len());
        if let Ok(s) = r {
            prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }

    /// Small counts and indexes everywhere, so random buffers reach deep into the structure.
    #[test]
    fn prop_decode_never_panics_on_structured_noise(
        time in any::<i64>(),
        strings in prop::collection::vec("[a-c]{0,3}", 0..4),
        body in prop::collection::vec(prop_oneof![
            4 => (0u32..5).prop_map(|v| v.to_be_bytes().to_vec()),
            2 => (0u8..8).prop_map(|v| vec![v]),
            1 => any::<i64>().prop_map(|v| v.to_be_bytes().to_vec()),
            1 => any::<u8>().prop_map(|v| vec![v]),
        ], 0..60),
    ) {
        let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
        let mut b = Buf::header(time, &refs);
        for piece in body {
            b.0.extend(piece);
        }
        if let Ok(s) = decode(&b.0) {
            prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_roundtrip(s in arb_snapshot(false, 12)) {
        let buf = encode(&s);
        let back = decode(&buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(encode(&back), buf);
    }

    /// With NaNs (which are not equal to themselves) the bytes still roundtrip exactly.
    #[test]
    fn prop_roundtrip_bytes_with_nan(s in arb_snapshot(true, 8)) {
        let buf = encode(&s);
        let back = decode(&buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(encode(&back), buf);
        prop_assert_eq!(back.metrics.len(), s.metrics.len());
    }
}

#[test]
fn many_references_to_one_long_string_cannot_claim_unbounded_memory() {
    // One 64 KiB string referenced by 100k string-set entries: 6.5 GB if copied every time.
    let long = "x".repeat(64 * 1024);
    let mut b = Vec::new();
    b.extend_from_slice(b"BPM1");
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&2u32.to_be_bytes());
    for s in ["", long.as_str()] {
        b.extend_from_slice(&(s.len() as u32).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    b.extend_from_slice(&1u32.to_be_bytes());
    b.push(4); // string set
    for _ in 0..3 {
        b.extend_from_slice(&0u32.to_be_bytes());
    }
    b.extend_from_slice(&0u32.to_be_bytes()); // no labels
    b.push(1);
    let n = 100_000u32;
    b.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        b.extend_from_slice(&1u32.to_be_bytes());
    }
    let e = beam_prometheus::contract::decode(&b).unwrap_err();
    assert!(e.message.contains("64 times"), "{}", e);
}
