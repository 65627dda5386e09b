//! Remote-write 1.0: series and metadata from the mapping, protobuf + snappy block encoding.

mod common;

use beam_prometheus::model::{Histogram, Value};
use beam_prometheus::naming::{map, Family, FamilyType, Mapped, NamingConfig, Sample as NSample, Selection};
use beam_prometheus::remote_write::{
    self, decode, encode, metadata, series, wire_value, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
    NORMAL_NAN, STALE_NAN,
};
use common::*;
use proptest::prelude::*;

fn rich() -> Mapped {
    let s = snapshot(
        1_700_000_000_000,
        vec![
            metric("ns", "elements", "s1", Some(Value::Counter(5)), Some(Value::Counter(4))),
            attempted("ns", "lat", "s1", Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }),
            attempted("ns", "queue", "s1", Value::Gauge { value: 3, timestamp_ms: 1_699_999_999_000 }),
            attempted("ns", "users", "s1", Value::StringSet(vec!["a".into(), "b".into()])),
            attempted("ns", "size", "s1", Value::Histogram(Histogram { sum: f64::NAN, buckets: vec![(1.0, 1), (f64::INFINITY, 2)] })),
        ],
    );
    map(&s, &naming_cfg(Selection::Both))
}

fn label_pairs(ts: &TimeSeries) -> Vec<(&str, &str)> {
    ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
}

#[test]
fn series_carry_name_labels_value_and_timestamp() {
    let m = rich();
    let ts = series(&m, 1_700_000_000_000);
    assert_eq!(ts.len(), m.sample_count());
    let all: Vec<(&Family, &NSample)> = m.families.iter().flat_map(|f| f.samples.iter().map(move |s| (f, s))).collect();
    for (t, (_, s)) in ts.iter().zip(&all) {
        let mut expected: Vec<(&str, &str)> = vec![("__name__", &*s.name)];
        expected.extend(s.labels.iter().map(|(k, v)| (&**k, &**v)));
        assert_eq!(label_pairs(t), expected, "all-lowercase label names: __name__ first, then the sorted labels");
        assert_eq!(t.samples.len(), 1);
        assert_eq!(t.samples[0].timestamp, 1_700_000_000_000);
        assert!(t.samples[0].value.to_bits() == s.value.to_bits() || s.value.is_nan());
    }
    // Spot-check one series completely.
    let counter = ts
        .iter()
        .find(|t| label_pairs(t).contains(&("__name__", "beam_elements_total")) && label_pairs(t).contains(&("result", "committed")))
        .unwrap();
    assert_eq!(
        label_pairs(counter),
        vec![
            ("__name__", "beam_elements_total"),
            ("env", "prod"),
            ("job", "wordcount"),
            ("namespace", "ns"),
            ("result", "committed"),
            ("step", "s1")
        ]
    );
    assert_eq!(counter.samples, vec![Sample { value: 4.0, timestamp: 1_700_000_000_000 }]);
}

#[test]
fn labels_are_sorted_bytewise_even_with_uppercase_names() {
    // The spec wants labels sorted by name; uppercase names sort before "__name__".
    let mut cfg = naming_cfg(Selection::Attempted);
    cfg.const_labels = labels(&[("Region", "eu"), ("a", "1"), ("Zone", "z")]);
    let m = map(&snapshot(1, vec![attempted("ns", "c", "s", Value::Counter(1))]), &cfg);
    let ts = series(&m, 1);
    let names: Vec<&str> = ts[0].labels.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted, unique");
    assert_eq!(names, vec!["Region", "Zone", "__name__", "a", "job", "namespace", "result", "step"]);
}

#[test]
fn metadata_one_per_family_with_prompb_types() {
    // prompb.MetricMetadata.MetricType: COUNTER=1 GAUGE=2 HISTOGRAM=3 GAUGEHISTOGRAM=4 SUMMARY=5 INFO=6 STATESET=7
    let m = rich();
    let md = metadata(&m);
    let got: Vec<(String, i32)> = md.iter().map(|x| (x.metric_family_name.clone(), x.r#type)).collect();
    assert_eq!(
        got,
        vec![
            ("beam_elements_total".to_string(), 1),
            ("beam_lat_distribution".to_string(), 5),
            ("beam_lat_distribution_max".to_string(), 2),
            ("beam_lat_distribution_min".to_string(), 2),
            ("beam_queue_gauge".to_string(), 2),
            ("beam_queue_gauge_timestamp_seconds".to_string(), 2),
            ("beam_size_histogram".to_string(), 3),
            ("beam_users_string_set_info".to_string(), 6),
        ]
    );
    for (x, f) in md.iter().zip(&m.families) {
        assert_eq!(x.help, f.help);
        assert_eq!(x.unit, "");
    }
}

#[test]
fn protobuf_field_numbers_match_prompb() {
    // Hand-encoded per prompb/remote.proto and prompb/types.proto:
    // WriteRequest{timeseries=1, metadata=3}, TimeSeries{labels=1, samples=2}, Label{name=1, value=2},
    // Sample{value=1 (double), timestamp=2 (int64)}, MetricMetadata{type=1, metric_family_name=2, help=4, unit=5}.
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: "m".into() }],
            samples: vec![Sample { value: 1.0, timestamp: 1000 }],
        }],
        metadata: vec![MetricMetadata { r#type: 1, metric_family_name: "m".into(), help: "h".into(), unit: "u".into() }],
    };
    let mut expected = vec![0x0a, 29]; // timeseries, 29 bytes
    expected.extend([0x0a, 13, 0x0a, 8]); // labels, 13 bytes; name, 8 bytes
    expected.extend(b"__name__");
    expected.extend([0x12, 1, b'm']); // value
    expected.extend([0x12, 12, 0x09]); // samples, 12 bytes; value (fixed64)
    expected.extend(1.0f64.to_le_bytes());
    expected.extend([0x10, 0xe8, 0x07]); // timestamp 1000 (varint)
    expected.extend([0x1a, 11]); // metadata, 11 bytes
    expected.extend([0x08, 1, 0x12, 1, b'm', 0x22, 1, b'h', 0x2a, 1, b'u']);
    let raw = snap::raw::Decoder::new().decompress_vec(&encode(&req)).unwrap();
    assert_eq!(raw, expected);
}

#[test]
fn encode_is_snappy_block_format_and_roundtrips() {
    let m = rich();
    let req = WriteRequest { timeseries: series(&m, 42), metadata: metadata(&m) };
    let body = encode(&req);
    // Block format: starts with the varint of the uncompressed length, not the framing
    // format's stream identifier (0xff 0x06 0x00 0x00 "sNaPpY").
    assert_ne!(body.first(), Some(&0xff));
    let raw_len = prost::Message::encoded_len(&req);
    assert_eq!(snap::raw::decompress_len(&body).unwrap(), raw_len);
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    assert_eq!(raw, prost::Message::encode_to_vec(&req));
    let back: WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
    assert_eq!(format!("{:?}", back), format!("{:?}", req));
    let back = decode(&body).unwrap();
    assert_eq!(back.timeseries.len(), req.timeseries.len());
    for (a, b) in back.timeseries.iter().zip(&req.timeseries) {
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.samples[0].timestamp, b.samples[0].timestamp);
        assert_eq!(a.samples[0].value.to_bits(), b.samples[0].value.to_bits());
    }
    assert_eq!(back.metadata, req.metadata);
    // Repetitive series compress.
    assert!(body.len() < raw_len, "{} >= {}", body.len(), raw_len);
}

#[test]
fn decode_rejects_garbage() {
    assert!(decode(b"not snappy at all").is_err());
    assert!(decode(&[0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y']).is_err(), "framed format is not accepted");
    let mut body = encode(&WriteRequest { timeseries: series(&rich(), 1), metadata: vec![] });
    body.truncate(body.len() / 2);
    assert!(decode(&body).is_err());
}

#[test]
fn nan_becomes_the_normal_nan_never_the_stale_marker() {
    assert_eq!(NORMAL_NAN, 0x7ff8000000000001);
    assert_eq!(STALE_NAN, 0x7ff0000000000002);
    let nans = [f64::NAN.to_bits(), STALE_NAN, 0xfff8000000000000, 0x7ff0000000000001, 0x7fffffffffffffff, 0xffffffffffffffff];
    for bits in nans {
        let v = f64::from_bits(bits);
        assert!(v.is_nan());
        assert_eq!(wire_value(v).to_bits(), NORMAL_NAN, "{:#x}", bits);
    }
    for v in [0.0, -0.0, 1.5, -1e300, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE / 2.0] {
        assert_eq!(wire_value(v).to_bits(), v.to_bits(), "{}", v);
    }
    // Through the whole path: a NaN histogram sum (and a stale-marker-like NaN) arrives as the normal NaN.
    for sum in [f64::NAN, f64::from_bits(STALE_NAN), -f64::NAN] {
        let s = snapshot(5, vec![attempted("ns", "h", "s", Value::Histogram(Histogram { sum, buckets: vec![(1.0, 1)] }))]);
        let ts = series(&map(&s, &naming_cfg(Selection::Attempted)), 5);
        let body = encode(&WriteRequest { timeseries: ts, metadata: vec![] });
        let back = decode(&body).unwrap();
        let sum_series = back.timeseries.iter().find(|t| t.labels.iter().any(|l| l.value == "beam_h_histogram_sum")).unwrap();
        assert_eq!(sum_series.samples[0].value.to_bits(), NORMAL_NAN);
        for t in &back.timeseries {
            assert_ne!(t.samples[0].value.to_bits(), STALE_NAN);
        }
    }
}

#[test]
fn big_request_roundtrips() {
    let metrics = (0..5000).map(|i| attempted("ns", &format!("c{}", i), "s", Value::Counter(i))).collect();
    let m = map(&snapshot(9, metrics), &naming_cfg(Selection::Attempted));
    let req = WriteRequest { timeseries: series(&m, 9), metadata: metadata(&m) };
    assert_eq!(req.timeseries.len(), 5000);
    let back = decode(&encode(&req)).unwrap();
    assert_eq!(back, req);
    // The exporter's encoder, block by block over many 64 KiB blocks: prost's bytes, snappy's.
    let samples: Vec<_> = m.families.iter().flat_map(|f| f.samples.iter()).collect();
    assert_eq!(beam_prometheus::remote_write::encode_samples(&samples, 9, &req.metadata, false), encode(&req));
}

/// A series' length takes one varint byte below 128 bytes, two up to 16 KiB, three above.
#[test]
fn series_lengths_around_varint_boundaries() {
    let mut samples = Vec::new();
    for value_len in [0usize, 1, 90, 100, 110, 120, 130, 16_300, 16_340, 16_383, 16_400, 70_000] {
        let labels: Vec<(beam_prometheus::model::Text, beam_prometheus::model::Text)> =
            if value_len == 0 { Vec::new() } else { vec![("a".into(), "v".repeat(value_len).into())] };
        samples.push(NSample::new("m".into(), labels, value_len as f64));
        samples.push(NSample::new("m".into(), vec![("z".into(), "w".repeat(value_len.max(1)).into())], 0.0));
    }
    for i in 0..samples.len() {
        // Distinct series: the name varies.
        samples[i].name = format!("m{}", i).into();
    }
    let m = Mapped {
        families: vec![Family { name: "m".into(), typ: FamilyType::Gauge, help: String::new(), unit: "", samples }],
        ..Mapped::default()
    };
    let refs: Vec<&NSample> = m.families[0].samples.iter().collect();
    for ts in [0i64, 1, -1, 1_700_000_000_000] {
        let want = encode(&WriteRequest { timeseries: series(&m, ts), metadata: Vec::new() });
        assert_eq!(remote_write::encode_samples(&refs, ts, &[], false), want, "timestamp {}", ts);
        let labels = remote_write::SeriesLabels::new(refs.iter().copied(), refs.len());
        let stored = remote_write::Encoder::default().encode(&labels, 0, refs.iter().map(|s| s.value), ts, &[], false);
        assert_eq!(stored, want, "stored labels, timestamp {}", ts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn prop_series_roundtrip(s in arb_snapshot(true, 10), ts in any::<i64>(),
                             selection in prop::sample::select(vec![Selection::Attempted, Selection::Committed, Selection::Both])) {
        let cfg = NamingConfig { selection, ..naming_cfg(selection) };
        let m = map(&s, &cfg);
        let req = WriteRequest { timeseries: series(&m, ts), metadata: metadata(&m) };
        let back = decode(&encode(&req)).unwrap();
        prop_assert_eq!(back.timeseries.len(), m.sample_count());
        prop_assert_eq!(back.metadata.len(), m.families.len());
        let mut seen = std::collections::BTreeSet::new();
        for (a, b) in back.timeseries.iter().zip(&req.timeseries) {
            prop_assert_eq!(&a.labels, &b.labels);
            prop_assert!(seen.insert(a.labels.clone()), "series {:?} twice", a.labels);
            let names: Vec<&str> = a.labels.iter().map(|l| l.name.as_str()).collect();
            prop_assert!(names.windows(2).all(|w| w[0] < w[1]), "unsorted {:?}", names);
            prop_assert_eq!(names.iter().filter(|n| **n == "__name__").count(), 1);
            prop_assert!(a.labels.iter().all(|l| !l.value.is_empty()));
            prop_assert_eq!(a.samples.len(), 1);
            prop_assert_eq!(a.samples[0].timestamp, ts);
            let v = a.samples[0].value;
            prop_assert!(!v.is_nan() || v.to_bits() == NORMAL_NAN);
            prop_assert_eq!(v.to_bits(), remote_write::wire_value(b.samples[0].value).to_bits());
        }
        for (md, f) in back.metadata.iter().zip(&m.families) {
            let t = match f.typ { FamilyType::Counter => 1, FamilyType::Gauge => 2, FamilyType::Histogram => 3, FamilyType::Summary => 5, FamilyType::Info => 6 };
            prop_assert_eq!(md.r#type, t);
            prop_assert_eq!(md.metric_family_name.as_str(), &*f.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The exporter's direct encoder writes exactly the bytes prost writes for `series()`, from
    /// the series (a first push) and from their stored labels (a repeat push).
    #[test]
    fn prop_direct_encoding_matches_prost(s in arb_snapshot(true, 8), ts in -5i64..5_000_000_000_000) {
        let m = beam_prometheus::naming::map(&s, &naming_cfg(Selection::Both));
        let samples: Vec<&NSample> = m.families.iter().flat_map(|f| f.samples.iter()).collect();
        let meta = beam_prometheus::remote_write::metadata(&m);
        let direct = beam_prometheus::remote_write::encode_samples(&samples, ts, &meta, false);
        let via_prost = encode(&WriteRequest { timeseries: series(&m, ts), metadata: meta.clone() });
        prop_assert_eq!(&direct, &via_prost);
        // Repeat pushes write the labels built once per mapping: the same bytes.
        let labels = beam_prometheus::remote_write::SeriesLabels::new(samples.iter().copied(), samples.len());
        let values = samples.iter().map(|s| s.value);
        let stored = beam_prometheus::remote_write::Encoder::default().encode(&labels, 0, values, ts, &beam_prometheus::remote_write::metadata_bytes(&meta), false);
        prop_assert_eq!(&stored, &via_prost);
        // No timestamp (left out of the sample message), as prost leaves it out.
        prop_assert_eq!(beam_prometheus::remote_write::encode_samples(&samples, 0, &meta, false), encode(&WriteRequest { timeseries: series(&m, 0), metadata: meta.clone() }));
        // A first push writes the metadata from the families: the bytes prost writes.
        prop_assert_eq!(beam_prometheus::remote_write::mapped_metadata_bytes(&m), beam_prometheus::remote_write::metadata_bytes(&meta));
        let stale = decode(&beam_prometheus::remote_write::encode_samples(&samples, ts, &[], true)).unwrap();
        prop_assert!(stale.timeseries.iter().all(|t| t.samples[0].value.to_bits() == STALE_NAN));
    }
}
