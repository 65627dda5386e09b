//! Reusing a mapping across snapshots (`contract::split` + `Mapped::refresh`): whenever two
//! buffers have equal skeletons, refreshing the first one's mapping with the second one's
//! fields must give exactly the mapping of the second. Runners report the same metrics push
//! after push, so the exporter relies on this on almost every call.

mod common;

use beam_prometheus::contract::{decode, encode, split};
use beam_prometheus::model::{Snapshot, Value};
use beam_prometheus::naming::{map, Mapped, Selection};
use common::*;
use proptest::prelude::*;

fn skeleton(buf: &[u8]) -> Option<(Vec<u8>, Vec<f64>)> {
    let (mut sk, mut fields) = (Vec::new(), Vec::new());
    split(buf, &mut sk, &mut fields).ok().map(|_| (sk, fields))
}

/// The claim itself, for two valid buffers: equal skeletons ⇒ refresh == map. Returns whether
/// the skeletons were equal.
fn check(a: &[u8], b: &[u8], selection: Selection) -> Result<bool, TestCaseError> {
    let (sa, _) = skeleton(a).expect("a decodable buffer splits");
    let (sb, fb) = skeleton(b).expect("a decodable buffer splits");
    if sa != sb {
        return Ok(false);
    }
    let cfg = naming_cfg(selection);
    let mut reused: Mapped = map(&decode(a).unwrap(), &cfg);
    reused.refresh(&fb);
    let fresh = map(&decode(b).unwrap(), &cfg);
    // Bit-exact: NaN values must stay the same NaN.
    let bits = |m: &Mapped| -> Vec<(String, u64)> {
        m.families.iter().flat_map(|f| f.samples.iter().map(|s| (format!("{}{:?}{:?}", s.name, s.labels, s.source), s.value.to_bits()))).collect()
    };
    prop_assert_eq!(bits(&reused), bits(&fresh));
    prop_assert_eq!(reused.families.len(), fresh.families.len());
    for (x, y) in reused.families.iter().zip(&fresh.families) {
        prop_assert_eq!((&x.name, x.typ, &x.help), (&y.name, y.typ, &y.help));
    }
    prop_assert_eq!((reused.capped, reused.duplicates), (fresh.capped, fresh.duplicates));
    Ok(true)
}

/// New numbers for every value, keeping what decides which series exist.
fn revalue(s: &Snapshot, seed: i64) -> Snapshot {
    let mut s = s.clone();
    s.time_ms = s.time_ms.wrapping_add(seed);
    let n = |x: i64| x.wrapping_mul(31).wrapping_add(seed);
    let each = |v: &mut Value| match v {
        Value::Counter(c) => *c = n(*c),
        Value::Distribution { sum, count, min, max } => {
            *sum = n(*sum);
            *count = if *count > 0 { (n(*count) & 0xffff) + 1 } else { -(n(*count) & 0xffff) };
            *min = n(*min);
            *max = n(*max);
        }
        Value::Gauge { value, timestamp_ms } => {
            *value = n(*value);
            if *timestamp_ms != 0 {
                *timestamp_ms = (n(*timestamp_ms) & 0xffff_ffff) + 1;
            }
        }
        Value::Histogram(h) => {
            h.sum += seed as f64;
            for b in &mut h.buckets {
                b.1 = n(b.1) % 1000;
            }
        }
        Value::StringSet(_) | Value::BoundedTrie(_) => {}
    };
    for m in &mut s.metrics {
        m.attempted.iter_mut().for_each(each);
        m.committed.iter_mut().for_each(each);
    }
    s
}

fn selection(i: u8) -> Selection {
    [Selection::Attempted, Selection::Committed, Selection::Both][i as usize % 3]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// New values, same structure: the skeletons are equal and refreshing equals remapping.
    #[test]
    fn prop_new_values_refresh_to_the_fresh_mapping(s in arb_snapshot(true, 10), seed in any::<i64>(), sel in 0u8..3) {
        let (a, b) = (encode(&s), encode(&revalue(&s, seed)));
        prop_assert!(check(&a, &b, selection(sel))?, "same structure, different skeletons");
    }

    /// Any single-byte change of a valid buffer: if the result still decodes and the skeleton is
    /// unchanged, refreshing equals remapping (a change of structure must change the skeleton).
    #[test]
    fn prop_every_byte_change_is_caught_or_harmless(s in arb_snapshot(true, 6), pos in any::<prop::sample::Index>(), mask in 1u8..=255, sel in 0u8..3) {
        let a = encode(&s);
        let mut b = a.clone();
        let i = pos.index(b.len());
        b[i] ^= mask;
        if decode(&b).is_ok() {
            check(&a, &b, selection(sel))?;
        }
    }
}

#[test]
fn structure_changes_change_the_skeleton() {
    let base = vec![
        attempted("ns", "c", "s", Value::Counter(1)),
        attempted("ns", "d", "s", Value::Distribution { sum: 3, count: 2, min: 1, max: 2 }),
        attempted("ns", "g", "s", Value::Gauge { value: 5, timestamp_ms: 1000 }),
        attempted("ns", "set", "s", Value::StringSet(vec!["x".into()])),
    ];
    let sk = |m: Vec<beam_prometheus::model::Metric>| skeleton(&encode(&snapshot(1, m))).unwrap().0;
    let same = {
        let mut m = base.clone();
        m[0].attempted = Some(Value::Counter(99));
        m
    };
    assert_eq!(sk(base.clone()), sk(same), "a new counter value keeps the structure");
    let changes: Vec<(&str, Box<dyn Fn(&mut Vec<beam_prometheus::model::Metric>)>)> = vec![
        ("a renamed metric", Box::new(|m| m[0].key.name = "c2".into())),
        ("an added metric", Box::new(|m| m.push(attempted("ns", "new", "s", Value::Counter(1))))),
        ("an empty distribution (no min/max series)", Box::new(|m| m[1].attempted = Some(Value::Distribution { sum: 0, count: 0, min: i64::MAX, max: i64::MIN }))),
        ("a never-set gauge", Box::new(|m| m[2].attempted = Some(Value::Gauge { value: 0, timestamp_ms: 0 }))),
        ("a new string-set element", Box::new(|m| m[3].attempted = Some(Value::StringSet(vec!["x".into(), "y".into()])))),
        ("a committed value", Box::new(|m| m[0].committed = Some(Value::Counter(1)))),
    ];
    for (what, change) in changes {
        let mut m = base.clone();
        change(&mut m);
        assert_ne!(sk(base.clone()), sk(m), "{} must change the skeleton", what);
    }
}

#[test]
fn fields_follow_the_values() {
    let s = snapshot(
        1,
        vec![
            metric("ns", "c", "s", Some(Value::Counter(7)), Some(Value::Counter(6))),
            attempted("ns", "g", "s", Value::Gauge { value: 5, timestamp_ms: 1500 }),
        ],
    );
    let (_, fields) = skeleton(&encode(&s)).unwrap();
    assert_eq!(fields, vec![7.0, 6.0, 5.0, 1.5]);
}

/// A large snapshot's requests are encoded in two halves, on two threads (`parallel`): the
/// bodies must be those of one encoder over all series, for the first push and for repeats,
/// whatever the request size (halves split on a request boundary).
#[test]
fn large_pushes_encoded_in_halves_equal_one_pass() {
    use beam_prometheus::remote_write::{metadata, metadata_bytes, Encoder, SeriesLabels};
    let metrics: Vec<_> = (0..6000)
        .map(|i| match i % 3 {
            0 => attempted("ns", &format!("m{}", i % 97), &format!("step{}", i / 97), Value::Counter(i)),
            1 => attempted("ns", &format!("d{}", i % 89), &format!("step{}", i / 89), Value::Distribution { sum: i, count: 2, min: 1, max: i }),
            _ => attempted("ns", &format!("g{}", i % 83), &format!("step{}", i / 83), Value::Gauge { value: -i, timestamp_ms: 5 }),
        })
        .collect();
    let s = snapshot(1_700_000_000_000, metrics);
    let cfg = naming_cfg(Selection::Attempted);
    let buf = encode(&s);
    let mapped = map(&s, &cfg);
    assert!(mapped.sample_count() >= beam_prometheus::parallel::WORTH_IT, "large enough for two threads");
    for per in [1000, 1999, 2000, 4096, 7000, 20000] {
        let labels = SeriesLabels::new(mapped.series(), mapped.sample_count());
        let meta = metadata_bytes(&metadata(&mapped));
        let mut enc = Encoder::default();
        let values = mapped.values();
        let one_pass: Vec<(Vec<u8>, usize)> = values
            .chunks(per)
            .enumerate()
            .map(|(i, c)| (enc.encode(&labels, i * per, c.iter().copied(), s.time_ms, if i == 0 { &meta } else { &[] }, false), c.len()))
            .collect();
        let mut cache = beam_prometheus::reuse::MappingCache::default();
        cache.update(&buf, &cfg, |_| ()).unwrap();
        assert!(cache.remote_write_bodies(s.time_ms, per, false) == one_pass, "first push, {} series per request", per);
        assert!(cache.remote_write_bodies(s.time_ms, per, false) == one_pass, "repeat push, {} series per request", per);
    }
}

/// Staleness markers at close after a single push (no label store yet), and after repeats (from
/// the store): the bodies a fresh cache writes for them, and the next repeat push as before.
#[test]
fn staleness_markers_after_one_push_and_after_repeats() {
    let metrics: Vec<_> = (0..300).map(|i| attempted("ns", &format!("m{}", i % 17), &format!("step{}", i / 17), Value::Counter(i))).collect();
    let s = snapshot(1_700_000_000_000, metrics);
    let cfg = naming_cfg(Selection::Attempted);
    let buf = encode(&s);
    let fresh = |stale: bool| {
        let mut c = beam_prometheus::reuse::MappingCache::default();
        c.update(&buf, &cfg, |_| ()).unwrap();
        c.remote_write_bodies(s.time_ms, 100, stale)
    };
    let (values, markers) = (fresh(false), fresh(true));
    assert!(values != markers);
    for pushes_before in [1, 3] {
        let mut cache = beam_prometheus::reuse::MappingCache::default();
        cache.update(&buf, &cfg, |_| ()).unwrap();
        for _ in 0..pushes_before {
            assert!(cache.remote_write_bodies(s.time_ms, 100, false) == values);
        }
        assert!(cache.remote_write_bodies(s.time_ms, 100, true) == markers, "markers after {} pushes", pushes_before);
        assert!(cache.remote_write_bodies(s.time_ms, 100, false) == values, "values after markers");
    }
}

/// `MappingCache::update` reuses the mapping exactly when the structure repeats, through first
/// pushes (the skeleton made on the next snapshot), changes, refused buffers and a mapping set
/// without bytes; after every step the mapping is the fresh one of the last accepted buffer.
#[test]
fn update_reuses_exactly_when_the_structure_repeats() {
    use beam_prometheus::reuse::MappingCache;
    let cfg = naming_cfg(Selection::Attempted);
    let a = |v: i64| encode(&snapshot(1, vec![attempted("ns", "c", "s", Value::Counter(v)), attempted("ns", "g", "s", Value::Gauge { value: v, timestamp_ms: 9 })]));
    let b = |v: i64| encode(&snapshot(2, vec![attempted("ns", "c", "s", Value::Counter(v)), attempted("ns", "other", "s", Value::Counter(v))]));
    let bad = b"BPM1 not a snapshot at all".to_vec();
    assert!(decode(&bad).is_err());
    // (buffer, whether it reuses the mapping; None: refused)
    let steps: Vec<(Vec<u8>, Option<bool>)> = vec![
        (a(1), Some(false)),
        (a(2), Some(true)),
        (bad.clone(), None),
        (a(3), Some(true)),
        (b(1), Some(false)),
        (b(2), Some(true)),
        (a(4), Some(false)),
        (bad.clone(), None),
        (b(3), Some(false)),
        (b(4), Some(true)),
        (a(5), Some(false)),
        (a(6), Some(true)),
    ];
    let mut cache = MappingCache::default();
    let mut accepted: Option<Vec<u8>> = None;
    for (i, (buf, want)) in steps.iter().enumerate() {
        match (cache.update(buf, &cfg, |_| ()), want) {
            (Ok((_, reused)), Some(w)) => {
                assert_eq!(reused, *w, "step {}", i);
                accepted = Some(buf.clone());
            }
            (Err(_), None) => {}
            (got, _) => panic!("step {}: {:?}", i, got.map(|r| r.1)),
        }
        assert_eq!(cache.mapped(), &map(&decode(accepted.as_ref().unwrap()).unwrap(), &cfg), "step {}", i);
    }
    // A mapping set without bytes has no skeleton: the next snapshot is mapped afresh.
    cache.set(&decode(&a(7)).unwrap(), &cfg, |_| ());
    assert!(!cache.update(&a(8), &cfg, |_| ()).unwrap().1);
    assert!(cache.update(&a(9), &cfg, |_| ()).unwrap().1);
}

/// Each Pushgateway body is written over the previous one once no request holds it any more
/// (`reuse::KeptBody`), and into a buffer of its own while one does: the bytes are always a
/// fresh render's, whatever the structure and the format did meanwhile.
#[test]
fn pushgateway_bodies_over_the_kept_one_equal_fresh_renders() {
    use beam_prometheus::pushgateway::{render, render_protobuf};
    use beam_prometheus::reuse::MappingCache;
    let cfg = naming_cfg(Selection::Attempted);
    let g = ["job"];
    let a = |v: i64| {
        encode(&snapshot(
            1,
            vec![
                attempted("ns", "c", "s", Value::Counter(v)),
                attempted("ns", "d", "s", Value::Distribution { sum: v, count: v + 1, min: 1, max: v + 2 }),
                attempted("ns", "g", "s", Value::Gauge { value: v, timestamp_ms: 9 }),
            ],
        ))
    };
    let b = |v: i64| encode(&snapshot(2, vec![attempted("ns", "other", "s", Value::Counter(v))]));
    let mut cache = MappingCache::default();
    let mut held = Vec::new();
    let mut last_ptr = None;
    // (buffer, protobuf or text, hold the body as a queued request would, written over the last
    // one; None where the body outgrows the kept buffer, which may or may not grow in place)
    let steps = [
        (a(1), true, true, Some(false)),
        (a(2), true, false, Some(false)),
        (a(3), true, false, Some(true)),
        (b(1), true, false, Some(true)),
        (b(2), false, false, None),
        (a(4), false, true, None),
        (a(5), true, false, Some(false)),
        (a(6), true, false, Some(true)),
    ];
    for (i, (buf, protobuf, hold, over)) in steps.iter().enumerate() {
        cache.update(buf, &cfg, |_| ()).unwrap();
        let m = map(&decode(buf).unwrap(), &cfg);
        let body = if *protobuf { cache.pushgateway_protobuf(&g) } else { cache.pushgateway_text(&g) };
        let fresh = if *protobuf { render_protobuf(&m, &g) } else { render(&m, &g).into_bytes() };
        assert!(body == fresh, "step {}", i);
        if let Some(over) = over {
            assert_eq!(last_ptr == Some(body.as_ptr()), *over, "step {}: written over the previous body", i);
        }
        last_ptr = Some(body.as_ptr());
        if *hold {
            held.push(body);
        } else {
            held.clear();
        }
    }
}
