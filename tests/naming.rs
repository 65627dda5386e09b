//! Sanitizing of names and values, and the mapping of Beam snapshots to Prometheus families.

mod common;

use beam_prometheus::model::{Histogram, Kind, Metric, Snapshot, Text, TriePath, Value};
use beam_prometheus::naming::{
    label_name, label_value, metric_name, stable_hash, FamilyType, NamingConfig, Selection, MAX_LABEL_VALUE_LEN,
    MAX_NAME_LEN, RESERVED_LABELS,
};
use owned::{map, Mapped};

/// The mapping with owned strings (it shares texts between series), so tests compare plainly.
mod owned {
    use beam_prometheus::model::Snapshot;
    use beam_prometheus::naming::{self, FamilyType, NamingConfig};

    #[derive(Clone, Debug, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: Vec<(String, String)>,
        pub value: f64,
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct Family {
        pub name: String,
        pub typ: FamilyType,
        pub help: String,
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct Mapped {
        pub families: Vec<Family>,
        pub capped: u64,
        pub duplicates: u64,
    }

    impl Mapped {
        pub fn sample_count(&self) -> usize {
            self.families.iter().map(|f| f.samples.len()).sum()
        }
    }

    pub fn map(s: &Snapshot, cfg: &NamingConfig) -> Mapped {
        let m = naming::map(s, cfg);
        Mapped {
            families: m
                .families
                .into_iter()
                .map(|f| Family {
                    name: f.name.to_string(),
                    typ: f.typ,
                    help: f.help,
                    samples: f
                        .samples
                        .into_iter()
                        .map(|s| Sample { name: s.name.to_string(), labels: super::owned(&s.labels), value: s.value })
                        .collect(),
                })
                .collect(),
            capped: m.capped,
            duplicates: m.duplicates,
        }
    }
}
use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

// ---------------------------------------------------------------------------------------------
// stable_hash
// ---------------------------------------------------------------------------------------------

#[test]
fn stable_hash_is_fnv1a_64_folded_to_32_bits() {
    // Published FNV-1a 64-bit test vectors, folded (high 32 bits XOR low 32 bits):
    // ""       -> cbf29ce484222325
    // "a"      -> af63dc4c8601ec8c
    // "foobar" -> 85944171f73967e8
    let fold = |h: u64| format!("{:08x}", (h >> 32) as u32 ^ h as u32);
    for (input, fnv) in [("", 0xcbf29ce484222325u64), ("a", 0xaf63dc4c8601ec8c), ("foobar", 0x85944171f73967e8)] {
        assert_eq!(stable_hash(input), fold(fnv), "stable_hash({:?})", input);
    }
    assert_eq!(stable_hash("a"), "296230c0");
}

// ---------------------------------------------------------------------------------------------
// metric_name
// ---------------------------------------------------------------------------------------------

#[test]
fn metric_name_table() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (prefix, beam name, suffix, expected)
        ("beam", "elements", "_total", "beam_elements_total"),
        ("beam", "ElementsRead", "", "beam_ElementsRead"),
        ("beam", "a.b-c d", "", "beam_a_b_c_d"),
        ("beam", "a..b", "", "beam_a_b"),
        ("beam", "a___b", "_gauge", "beam_a_b_gauge"),
        ("beam", "__a__", "", "beam_a"),
        ("beam", "._a_.", "_total", "beam_a_total"),
        // ':' is legal in metric names but reserved for recording rules: never emitted.
        ("beam", "ns:name", "_total", "beam_ns_name_total"),
        ("beam", ":::", "", "beam_m8c9f2ee5"),
        ("", "elements", "_total", "elements_total"),
        ("", "1abc", "", "_1abc"),
        ("", "9", "_total", "_9_total"),
        ("beam", "1abc", "", "beam_1abc"),
        ("my-app", "x", "", "my_app_x"),
        ("__p__", "x", "", "p_x"),
        ("", "élan", "", "lan"),
        ("beam", "größe", "", "beam_gr_e"),
        ("beam", "a\u{0}b\nc", "", "beam_a_b_c"),
    ];
    for (prefix, name, suffix, expected) in cases {
        let got = metric_name(prefix, name, suffix);
        if expected.contains("m8c9f2ee5") {
            // Nothing survives: an "m" + stable hash of the original name.
            assert_eq!(got, format!("beam_m{}", stable_hash(name)), "metric_name({:?}, {:?}, {:?})", prefix, name, suffix);
        } else {
            assert_eq!(&got, expected, "metric_name({:?}, {:?}, {:?})", prefix, name, suffix);
        }
        assert!(is_valid_metric_name(&got), "{:?}", got);
    }
}

#[test]
fn metric_name_when_nothing_survives_is_distinct_and_stable() {
    let inputs = ["", "日本", "日本語", "...", "_", "__", "ü", "😀", "😀😀"];
    let mut seen = HashMap::new();
    for input in inputs {
        let got = metric_name("", input, "");
        assert_eq!(got, metric_name("", input, ""), "stable for {:?}", input);
        assert!(got.starts_with('m'), "{:?} -> {:?}", input, got);
        assert!(is_lower_hex(&got[1..]) && got.len() == 9, "{:?} -> {:?}", input, got);
        assert!(is_valid_metric_name(&got));
        if let Some(other) = seen.insert(got.clone(), input) {
            panic!("{:?} and {:?} both map to {:?}", other, input, got);
        }
        let prefixed = metric_name("beam", input, "_total");
        assert_eq!(prefixed, format!("beam_{}_total", got));
    }
    assert_eq!(metric_name("", "", ""), "m4fd0bfc1");
}

#[test]
fn metric_name_caps_long_names_with_a_stable_hash() {
    let suffixes = ["", "_total", "_gauge", "_gauge_timestamp_seconds", "_distribution_count", "_histogram_bucket"];
    let long_a = "a".repeat(300);
    let mut long_b = "a".repeat(299);
    long_b.push('b');
    for suffix in suffixes {
        let a = metric_name("beam", &long_a, suffix);
        let b = metric_name("beam", &long_b, suffix);
        for n in [&a, &b] {
            assert!(n.len() <= MAX_NAME_LEN, "{} > {}: {}", n.len(), MAX_NAME_LEN, n);
            assert!(n.ends_with(suffix), "{}", n);
            assert!(n.starts_with("beam_aaaaaaaaaa"), "{}", n);
            assert!(is_valid_metric_name(n) && !n.contains("__"), "{}", n);
            let stem = &n[..n.len() - suffix.len()];
            let (_, hash) = stem.rsplit_once('_').unwrap();
            assert!(is_lower_hex(hash) && hash.len() == 8, "hash suffix of {}", n);
        }
        assert_ne!(a, b, "names that differ past the cap must stay distinct ({})", suffix);
        assert_eq!(a, metric_name("beam", &long_a, suffix), "same input, same output");
    }
    // Ordinary long names are not cut.
    let fits = "x".repeat(150);
    assert_eq!(metric_name("beam", &fits, "_gauge_timestamp_seconds"), format!("beam_{}_gauge_timestamp_seconds", fits));
}

#[test]
fn long_names_keep_one_stem_for_every_suffix() {
    // The family name and its sample names must share the stem; otherwise a parser cannot
    // attach `_sum`/`_count`/`_bucket` samples to their family.
    for len in [150, 180, 186, 190, 195, 199, 200, 201, 250, 1000] {
        let name = "n".repeat(len);
        let stem = metric_name("beam", &name, "");
        for suffix in ["_total", "_distribution", "_distribution_sum", "_distribution_count", "_histogram", "_histogram_bucket", "_gauge_timestamp_seconds"] {
            let got = metric_name("beam", &name, suffix);
            assert_eq!(got, format!("{}{}", stem, suffix), "len {} suffix {}", len, suffix);
            assert!(got.len() <= MAX_NAME_LEN);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// label_name / label_value
// ---------------------------------------------------------------------------------------------

#[test]
fn label_name_table() {
    let cases: &[(&str, &str)] = &[
        ("env", "env"),
        ("Env_1", "Env_1"),
        ("a-b", "a_b"),
        ("a.b.c", "a_b_c"),
        ("a__b", "a_b"),
        ("a:b", "a_b"),
        ("1x", "_1x"),
        ("_1", "_1"),
        ("__x", "_x"),
        ("___meta", "_meta"),
        ("_x", "_x"),
        ("x_", "x_"),
        ("größe", "gr_e"),
    ];
    for (raw, expected) in cases {
        assert_eq!(&label_name(raw), expected, "label_name({:?})", raw);
    }
    // Nothing usable survives: a stable, distinct generated name.
    let mut seen = HashSet::new();
    for raw in ["", "_", "__", "ü", "-", "日本", "日本語"] {
        let got = label_name(raw);
        assert!(got.starts_with("label_") && is_lower_hex(&got["label_".len()..]), "{:?} -> {:?}", raw, got);
        assert_eq!(got, label_name(raw));
        assert!(seen.insert(got.clone()), "{:?} collides: {:?}", raw, got);
    }
}

#[test]
fn label_value_table() {
    let keep = ["", "x", "a\\b\"c\nd", "日本語", "😀", &"v".repeat(MAX_LABEL_VALUE_LEN)];
    for v in keep {
        assert_eq!(label_value(v), v, "values up to the cap pass unchanged");
    }
    let cases = [
        "v".repeat(MAX_LABEL_VALUE_LEN + 1),
        "é".repeat(600),  // 2-byte chars across the cut
        "😀".repeat(300), // 4-byte chars across the cut
        format!("{}{}", "a".repeat(1014), "日本語日本語"),
        "w".repeat(100_000),
    ];
    for v in &cases {
        let got = label_value(v);
        assert!(got.len() <= MAX_LABEL_VALUE_LEN, "{} bytes", got.len());
        assert!(got.len() >= MAX_LABEL_VALUE_LEN - 12, "cuts no more than needed: {} bytes", got.len());
        let (head, hash) = got.rsplit_once('_').unwrap();
        assert!(is_lower_hex(hash) && hash.len() == 8, "{}", hash);
        assert!(v.starts_with(head), "keeps a prefix of the original");
        assert_eq!(got, label_value(v), "stable");
    }
    // Values that only differ past the cap stay distinct.
    let a = format!("{}a", "x".repeat(2000));
    let b = format!("{}b", "x".repeat(2000));
    assert_ne!(label_value(&a), label_value(&b));
}

// ---------------------------------------------------------------------------------------------
// Properties of the sanitizers
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn prop_metric_names_are_valid(prefix in arb_name(), name in arb_name(),
                                   suffix in prop::sample::select(vec!["", "_total", "_gauge", "_histogram_bucket", "_gauge_timestamp_seconds"])) {
        let n = metric_name(&prefix, &name, suffix);
        prop_assert!(is_valid_metric_name(&n), "{:?}", n);
        prop_assert!(!n.contains("__"), "{:?}", n);
        prop_assert!(!n.contains(':'), "{:?}", n);
        prop_assert!(n.len() <= MAX_NAME_LEN, "{}", n.len());
        prop_assert_eq!(&n, &metric_name(&prefix, &name, suffix));
    }

    #[test]
    fn prop_metric_names_of_any_string_are_valid(name in any::<String>()) {
        let n = metric_name("beam", &name, "_total");
        prop_assert!(is_valid_metric_name(&n) && !n.contains("__") && n.len() <= MAX_NAME_LEN, "{:?}", n);
    }

    #[test]
    fn prop_label_names_are_valid(raw in arb_name()) {
        let n = label_name(&raw);
        prop_assert!(is_valid_label_name(&n), "{:?} -> {:?}", raw, n);
        prop_assert!(!n.starts_with("__"), "{:?} -> {:?}", raw, n);
        prop_assert_eq!(&n, &label_name(&raw));
        // Already valid names (not reserved-prefixed, no runs of '_') pass unchanged.
        if is_valid_label_name(&raw) && !raw.contains("__") && raw != "_" {
            prop_assert_eq!(&n, &raw);
        }
    }

    #[test]
    fn prop_label_values_are_capped(raw in prop_oneof![any::<String>(), "\\PC{1000,1100}", "[a-z]{1020,1030}"]) {
        let v = label_value(&raw);
        prop_assert!(v.len() <= MAX_LABEL_VALUE_LEN);
        if raw.len() <= MAX_LABEL_VALUE_LEN {
            prop_assert_eq!(&v, &raw);
        }
        prop_assert_eq!(&v, &label_value(&raw));
    }
}

// ---------------------------------------------------------------------------------------------
// map: exact output per kind
// ---------------------------------------------------------------------------------------------

/// Base labels for namespace "ns", step "s1" under `naming_cfg`.
fn base(result: &str) -> Vec<(String, String)> {
    labels(&[("env", "prod"), ("job", "wordcount"), ("namespace", "ns"), ("result", result), ("step", "s1")])
}

fn with(mut l: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    l.extend(labels(extra));
    l.sort();
    l
}

/// (family, type, [(sample name, labels, value)]) without help texts.
type Shape = Vec<(String, FamilyType, Vec<(String, Vec<(String, String)>, f64)>)>;

fn shape(m: &Mapped) -> Shape {
    m.families
        .iter()
        .map(|f| {
            (f.name.clone(), f.typ, f.samples.iter().map(|s| (s.name.clone(), s.labels.clone(), s.value)).collect())
        })
        .collect()
}

fn fam(name: &str, typ: FamilyType, samples: Vec<(&str, Vec<(String, String)>, f64)>) -> (String, FamilyType, Vec<(String, Vec<(String, String)>, f64)>) {
    (name.into(), typ, samples.into_iter().map(|(n, l, v)| (n.to_string(), l, v)).collect())
}

fn map1(m: Metric) -> Mapped {
    map(&snapshot(1_700_000_000_000, vec![m]), &naming_cfg(Selection::Attempted))
}

#[test]
fn map_counter() {
    let got = map1(metric("ns", "elements", "s1", Some(Value::Counter(5)), Some(Value::Counter(4))));
    assert_eq!(
        shape(&got),
        vec![fam("beam_elements_total", FamilyType::Counter, vec![("beam_elements_total", base("attempted"), 5.0)])]
    );
    assert!(got.families[0].help.contains("elements"), "{:?}", got.families[0].help);
    assert_eq!((got.capped, got.duplicates), (0, 0));
}

#[test]
fn map_distribution() {
    let got = map1(attempted("ns", "lat", "s1", Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }));
    assert_eq!(
        shape(&got),
        vec![
            fam(
                "beam_lat_distribution",
                FamilyType::Summary,
                vec![("beam_lat_distribution_count", base("attempted"), 2.0), ("beam_lat_distribution_sum", base("attempted"), 10.0)]
            ),
            fam("beam_lat_distribution_max", FamilyType::Gauge, vec![("beam_lat_distribution_max", base("attempted"), 7.0)]),
            fam("beam_lat_distribution_min", FamilyType::Gauge, vec![("beam_lat_distribution_min", base("attempted"), 3.0)]),
        ]
    );
}

#[test]
fn map_empty_distribution_has_no_min_max() {
    // Beam's empty distribution: count 0, min Long.MAX_VALUE, max Long.MIN_VALUE.
    let got = map1(attempted("ns", "lat", "s1", Value::Distribution { sum: 0, count: 0, min: i64::MAX, max: i64::MIN }));
    assert_eq!(
        shape(&got),
        vec![fam(
            "beam_lat_distribution",
            FamilyType::Summary,
            vec![("beam_lat_distribution_count", base("attempted"), 0.0), ("beam_lat_distribution_sum", base("attempted"), 0.0)]
        )]
    );
}

#[test]
fn map_gauge() {
    let got = map1(attempted("ns", "queue", "s1", Value::Gauge { value: -42, timestamp_ms: 1_700_000_000_500 }));
    assert_eq!(
        shape(&got),
        vec![
            fam("beam_queue_gauge", FamilyType::Gauge, vec![("beam_queue_gauge", base("attempted"), -42.0)]),
            fam(
                "beam_queue_gauge_timestamp_seconds",
                FamilyType::Gauge,
                vec![("beam_queue_gauge_timestamp_seconds", base("attempted"), 1_700_000_000.5)]
            ),
        ]
    );
}

#[test]
fn map_never_set_gauge_is_left_out() {
    let got = map1(attempted("ns", "queue", "s1", Value::Gauge { value: 0, timestamp_ms: 0 }));
    assert_eq!(got.families, vec![]);
    assert_eq!(got.sample_count(), 0);
}

#[test]
fn map_string_set_over_the_cap() {
    // Cap 3; five distinct elements plus a duplicate and an empty string.
    let set = ["e", "b", "a", "d", "c", "a"].iter().map(|s| s.to_string()).collect();
    let got = map1(attempted("ns", "users", "s1", Value::StringSet(set)));
    let info = |v: &str| ("beam_users_string_set_info", with(base("attempted"), &[("value", v)]), 1.0);
    assert_eq!(
        shape(&got),
        vec![fam("beam_users_string_set_info", FamilyType::Info, vec![info("a"), info("b"), info("c")])]
    );
    assert_eq!(got.capped, 2, "e and d left out");
    // Under the cap nothing is counted.
    let got = map1(attempted("ns", "users", "s1", Value::StringSet(vec!["x".into(), "x".into()])));
    assert_eq!(got.capped, 0);
    assert_eq!(got.sample_count(), 1);
}

#[test]
fn map_string_set_values_are_capped_and_never_empty() {
    let long = "v".repeat(5000);
    let got = map1(attempted("ns", "users", "s1", Value::StringSet(vec![long.clone(), String::new()])));
    for s in &got.families[0].samples {
        for (k, v) in &s.labels {
            assert!(!v.is_empty(), "label {} is empty", k);
            assert!(v.len() <= MAX_LABEL_VALUE_LEN);
        }
    }
    let values: Vec<&str> =
        got.families[0].samples.iter().filter_map(|s| s.labels.iter().find(|(k, _)| k == "value")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, vec![label_value(&long).as_str()]);
}

#[test]
fn map_bounded_trie() {
    let paths = vec![
        TriePath { segments: vec!["a".into(), "b".into()], truncated: false },
        TriePath { segments: vec!["a".into()], truncated: true },
        TriePath { segments: vec!["a".into(), "b".into()], truncated: false },
    ];
    let got = map1(attempted("ns", "files", "s1", Value::BoundedTrie(paths)));
    let info = |p: &str, t: &str| ("beam_files_bounded_trie_info", with(base("attempted"), &[("path", p), ("truncated", t)]), 1.0);
    assert_eq!(
        shape(&got),
        vec![fam("beam_files_bounded_trie_info", FamilyType::Info, vec![info("a", "true"), info("a/b", "false")])]
    );
    assert_eq!(got.capped, 0);
    // Over the cap (3): five distinct paths, two left out.
    let paths = (0..5).map(|i| TriePath { segments: vec![format!("p{}", i)], truncated: false }).collect();
    let got = map1(attempted("ns", "files", "s1", Value::BoundedTrie(paths)));
    assert_eq!(got.sample_count(), 3);
    assert_eq!(got.capped, 2);
}

#[test]
fn map_histogram() {
    let h = Histogram { sum: 12.5, buckets: vec![(1.0, 2), (5.0, 3), (f64::INFINITY, 1)] };
    let got = map1(attempted("ns", "size", "s1", Value::Histogram(h)));
    let b = |le: &str, v: f64| ("beam_size_histogram_bucket", with(base("attempted"), &[("le", le)]), v);
    let f = &shape(&got)[0];
    assert_eq!(got.families.len(), 1);
    assert_eq!((f.0.as_str(), f.1), ("beam_size_histogram", FamilyType::Histogram));
    // Order within the family is not part of the contract: compare as sets.
    let mut samples = f.2.clone();
    samples.sort_by(|a, b| format!("{:?}", a).cmp(&format!("{:?}", b)));
    let mut expected: Vec<(String, Vec<(String, String)>, f64)> = vec![
        b("1", 2.0),
        b("5", 5.0),
        b("+Inf", 6.0),
        ("beam_size_histogram_sum", base("attempted"), 12.5),
        ("beam_size_histogram_count", base("attempted"), 6.0),
    ]
    .into_iter()
    .map(|(n, l, v)| (n.to_string(), l, v))
    .collect();
    expected.sort_by(|a, b| format!("{:?}", a).cmp(&format!("{:?}", b)));
    assert_eq!(samples, expected);
}

#[test]
fn map_histogram_without_inf_bucket_gets_one() {
    let h = Histogram { sum: 3.0, buckets: vec![(0.5, 1), (2.0, 2)] };
    let got = map1(attempted("ns", "size", "s1", Value::Histogram(h)));
    let s = &got.families[0].samples;
    let inf: Vec<_> = s.iter().filter(|s| s.labels.iter().any(|(k, v)| k == "le" && v == "+Inf")).collect();
    assert_eq!(inf.len(), 1);
    assert_eq!(inf[0].value, 3.0);
    let count = s.iter().find(|s| s.name == "beam_size_histogram_count").unwrap();
    assert_eq!(count.value, 3.0);
    assert_eq!(got.sample_count(), 5);
}

// ---------------------------------------------------------------------------------------------
// map: selection, collisions
// ---------------------------------------------------------------------------------------------

#[test]
fn map_selection_and_result_label() {
    let both = || metric("ns", "c", "s1", Some(Value::Counter(5)), Some(Value::Counter(4)));
    let committed_only = || metric("ns", "k", "s1", None, Some(Value::Counter(9)));
    let attempted_only = || metric("ns", "a", "s1", Some(Value::Counter(1)), None);
    let cases: &[(Selection, &[(&str, &str, f64)])] = &[
        (Selection::Attempted, &[("beam_a_total", "attempted", 1.0), ("beam_c_total", "attempted", 5.0)]),
        (Selection::Committed, &[("beam_c_total", "committed", 4.0), ("beam_k_total", "committed", 9.0)]),
        (
            Selection::Both,
            &[
                ("beam_a_total", "attempted", 1.0),
                ("beam_c_total", "attempted", 5.0),
                ("beam_c_total", "committed", 4.0),
                ("beam_k_total", "committed", 9.0),
            ],
        ),
    ];
    for (selection, expected) in cases {
        let got = map(&snapshot(1, vec![both(), committed_only(), attempted_only()]), &naming_cfg(*selection));
        let mut flat: Vec<(String, String, f64)> = got
            .families
            .iter()
            .flat_map(|f| f.samples.iter())
            .map(|s| (s.name.clone(), s.labels.iter().find(|(k, _)| k == "result").unwrap().1.clone(), s.value))
            .collect();
        flat.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let expected: Vec<(String, String, f64)> = expected.iter().map(|(n, r, v)| (n.to_string(), r.to_string(), *v)).collect();
        assert_eq!(flat, expected, "{:?}", selection);
        assert_eq!(got.duplicates, 0);
    }
}

#[test]
fn names_that_sanitize_alike_stay_distinct() {
    let s = snapshot(
        1,
        vec![
            attempted("ns", "a.b", "s1", Value::Counter(1)),
            attempted("ns", "a_b", "s1", Value::Counter(2)),
            attempted("ns", "a-b", "s1", Value::Counter(3)),
            attempted("ns", "other", "s1", Value::Counter(4)),
            // Same sanitized name but another step: the step label already separates them.
            attempted("ns", "x.y", "s1", Value::Counter(5)),
            attempted("ns", "x_y", "s2", Value::Counter(6)),
        ],
    );
    let got = map(&s, &naming_cfg(Selection::Attempted));
    assert_eq!(got.duplicates, 0);
    let ab = got.families.iter().find(|f| f.name == "beam_a_b_total").unwrap();
    // A renamed Beam name is carried in `beam_metric`; the one exported verbatim has none.
    let mut by_metric: Vec<(Option<String>, f64)> = ab
        .samples
        .iter()
        .map(|s| (s.labels.iter().find(|(k, _)| k == "beam_metric").map(|l| l.1.clone()), s.value))
        .collect();
    by_metric.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_metric, vec![(None, 2.0), (Some("a-b".into()), 3.0), (Some("a.b".into()), 1.0)]);
    for f in got.families.iter().filter(|f| f.name == "beam_other_total") {
        for s in &f.samples {
            assert!(!s.labels.iter().any(|(k, _)| k == "beam_metric"), "a verbatim name, no beam_metric label: {:?}", s);
        }
    }
    assert_eq!(got.families.iter().find(|f| f.name == "beam_x_y_total").unwrap().samples.len(), 2);
}

#[test]
fn every_kind_of_one_name_gets_its_own_family() {
    let s = snapshot(
        1,
        vec![
            attempted("ns", "x", "s", Value::Counter(1)),
            attempted("ns", "x", "s", Value::Distribution { sum: 1, count: 1, min: 1, max: 1 }),
            attempted("ns", "x", "s", Value::Gauge { value: 1, timestamp_ms: 1 }),
            attempted("ns", "x", "s", Value::StringSet(vec!["a".into()])),
            attempted("ns", "x", "s", Value::BoundedTrie(vec![TriePath { segments: vec!["a".into()], truncated: false }])),
            attempted("ns", "x", "s", Value::Histogram(Histogram { sum: 1.0, buckets: vec![(1.0, 1)] })),
        ],
    );
    let got = map(&s, &naming_cfg(Selection::Attempted));
    let names: Vec<(&str, FamilyType)> = got.families.iter().map(|f| (f.name.as_str(), f.typ)).collect();
    assert_eq!(
        names,
        vec![
            ("beam_x_bounded_trie_info", FamilyType::Info),
            ("beam_x_distribution", FamilyType::Summary),
            ("beam_x_distribution_max", FamilyType::Gauge),
            ("beam_x_distribution_min", FamilyType::Gauge),
            ("beam_x_gauge", FamilyType::Gauge),
            ("beam_x_gauge_timestamp_seconds", FamilyType::Gauge),
            ("beam_x_histogram", FamilyType::Histogram),
            ("beam_x_string_set_info", FamilyType::Info),
            ("beam_x_total", FamilyType::Counter),
        ]
    );
    assert_eq!(got.duplicates, 0);
}

#[test]
fn const_labels_are_sanitized_like_every_other_label() {
    let mut cfg = naming_cfg(Selection::Attempted);
    cfg.const_labels = vec![("empty".into(), String::new()), ("long".into(), "c".repeat(3000))];
    cfg.job = "j".repeat(3000);
    let got = map(&snapshot(1, vec![attempted("ns", "c", "s", Value::Counter(1))]), &cfg);
    for s in got.families.iter().flat_map(|f| f.samples.iter()) {
        check_labels(&s.labels).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// map: properties over arbitrary snapshots
// ---------------------------------------------------------------------------------------------

fn check_labels(l: &[(String, String)]) -> Result<(), String> {
    for w in l.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(format!("labels not sorted with unique names: {:?}", l));
        }
    }
    for (k, v) in l {
        if !is_valid_label_name(k) || k.starts_with("__") {
            return Err(format!("invalid label name {:?}", k));
        }
        if v.is_empty() {
            return Err(format!("empty value for label {:?}", k));
        }
        if v.len() > MAX_LABEL_VALUE_LEN {
            return Err(format!("label {:?} value is {} bytes", k, v.len()));
        }
    }
    Ok(())
}

/// The structural rules of the mapping, checked on any output.
fn check_mapped(m: &Mapped) -> Result<(), String> {
    let mut family_names = BTreeMap::new();
    let mut series = HashSet::new();
    let mut sample_owner: HashMap<&str, &str> = HashMap::new();
    for w in m.families.windows(2) {
        if w[0].name >= w[1].name {
            return Err(format!("families not sorted/unique: {} then {}", w[0].name, w[1].name));
        }
    }
    for f in &m.families {
        if let Some(t) = family_names.insert(f.name.clone(), f.typ) {
            return Err(format!("family {} appears with types {:?} and {:?}", f.name, t, f.typ));
        }
        if !is_valid_metric_name(&f.name) || f.name.contains("__") || f.name.len() > MAX_NAME_LEN {
            return Err(format!("bad family name {:?}", f.name));
        }
        if f.samples.is_empty() {
            return Err(format!("family {} has no samples", f.name));
        }
        let allowed: Vec<String> = match f.typ {
            FamilyType::Summary => vec![format!("{}_sum", f.name), format!("{}_count", f.name)],
            FamilyType::Histogram => {
                vec![format!("{}_bucket", f.name), format!("{}_sum", f.name), format!("{}_count", f.name)]
            }
            FamilyType::Counter => {
                if !f.name.ends_with("_total") {
                    return Err(format!("counter family {} does not end in _total", f.name));
                }
                vec![f.name.clone()]
            }
            FamilyType::Gauge => vec![f.name.clone()],
            FamilyType::Info => {
                if !f.name.ends_with("_info") {
                    return Err(format!("info family {} does not end in _info", f.name));
                }
                vec![f.name.clone()]
            }
        };
        for s in &f.samples {
            if !allowed.contains(&s.name) {
                return Err(format!("sample {} does not belong to {:?} family {}", s.name, f.typ, f.name));
            }
            if let Some(other) = sample_owner.insert(&s.name, &f.name) {
                if other != f.name {
                    return Err(format!("sample name {} used by families {} and {}", s.name, other, f.name));
                }
            }
            check_labels(&s.labels)?;
            let le = s.labels.iter().any(|(k, _)| k == "le");
            if le != s.name.ends_with("_bucket") || (le && f.typ != FamilyType::Histogram) {
                return Err(format!("le label misplaced on {}", s.name));
            }
            if !series.insert((s.name.clone(), s.labels.clone())) {
                return Err(format!("series {} {:?} appears twice", s.name, s.labels));
            }
        }
    }
    // A sample name must never be another family's name.
    for (sample, owner) in &sample_owner {
        if family_names.contains_key(*sample) && sample != owner {
            return Err(format!("sample {} of {} is also a family name", sample, owner));
        }
    }
    Ok(())
}

/// Beam metric labels that need no renaming and cannot merge with one another or with an absent
/// label (an empty value is the same as no label in Prometheus).
fn plain_labels(l: &[(Text, Text)]) -> bool {
    let names: HashSet<&str> = l.iter().map(|(k, _)| &**k).collect();
    names.len() == l.len()
        && l.iter().all(|(k, v)| {
            is_valid_label_name(k)
                && !k.contains("__")
                && !k.starts_with("label_")
                && !RESERVED_LABELS.contains(&&**k)
                && &**k != "env"
                && !v.is_empty()
        })
}

/// Distinct metric keys (per kind) give distinct series: nothing of the input is merged away,
/// unless two bounded-trie paths join to the same string or a histogram repeats a bound.
fn expect_no_duplicates(s: &Snapshot) -> bool {
    let mut keys = HashSet::new();
    for m in &s.metrics {
        if !keys.insert((m.kind(), m.key.clone())) || !plain_labels(&m.key.labels) {
            return false;
        }
        for v in m.attempted.iter().chain(m.committed.iter()) {
            match v {
                Value::BoundedTrie(paths) => {
                    let distinct: BTreeSet<_> = paths.iter().collect();
                    let distinct_joined: BTreeSet<_> = paths.iter().map(|p| (p.segments.join("/"), p.truncated)).collect();
                    if distinct.len() != distinct_joined.len() {
                        return false;
                    }
                }
                Value::Histogram(h) => {
                    let les: HashSet<String> = h.buckets.iter().map(|(le, _)| format!("{:?}", le)).collect();
                    if les.len() != h.buckets.len() {
                        return false;
                    }
                }
                _ => {}
            }
        }
    }
    true
}

fn cfg_for(selection: Selection, set_cap: usize) -> NamingConfig {
    NamingConfig { set_cap, ..naming_cfg(selection) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn prop_map_structure(s in arb_snapshot(true, 12),
                          selection in prop::sample::select(vec![Selection::Attempted, Selection::Committed, Selection::Both]),
                          set_cap in 1usize..5,
                          prefix in prop::sample::select(vec!["beam", "", "my_app"])) {
        let mut cfg = cfg_for(selection, set_cap);
        cfg.prefix = prefix.into();
        let m = map(&s, &cfg);
        if let Err(e) = check_mapped(&m) {
            return Err(TestCaseError::fail(format!("{}\nsnapshot: {:?}", e, s)));
        }
        if expect_no_duplicates(&s) {
            prop_assert_eq!(m.duplicates, 0, "distinct metrics were merged: {:?}", s);
        }
        // Every result label is one the selection allows.
        for smp in m.families.iter().flat_map(|f| f.samples.iter()) {
            let r = &smp.labels.iter().find(|(k, _)| k == "result").unwrap().1;
            match selection {
                Selection::Attempted => prop_assert_eq!(r.as_str(), "attempted"),
                Selection::Committed => prop_assert_eq!(r.as_str(), "committed"),
                Selection::Both => prop_assert!(r == "attempted" || r == "committed"),
            }
        }
        // Deterministic.
        prop_assert_eq!(format!("{:?}", m), format!("{:?}", map(&s, &cfg)));
        // The same on two threads as on one (large snapshots take two: `parallel`).
        let (one, two) = (beam_prometheus::naming::map_in(&s, &cfg, 1), beam_prometheus::naming::map_in(&s, &cfg, 2));
        prop_assert_eq!(format!("{:?}", one), format!("{:?}", two));
    }

    /// Many metrics whose names come from a tiny alphabet, all kinds, one namespace and step:
    /// sanitized names collide a lot, series must not.
    #[test]
    fn prop_colliding_names_stay_distinct(names in prop::collection::vec(("[ab._-]{1,3}", arb_kind()), 1..25)) {
        let mut metrics = Vec::new();
        let mut seen = HashSet::new();
        for (name, kind) in names {
            if !seen.insert((name.clone(), kind)) {
                continue;
            }
            let v = match kind {
                Kind::Counter => Value::Counter(1),
                Kind::Distribution => Value::Distribution { sum: 1, count: 1, min: 1, max: 1 },
                Kind::Gauge => Value::Gauge { value: 1, timestamp_ms: 5 },
                Kind::StringSet => Value::StringSet(vec!["e".into()]),
                Kind::BoundedTrie => Value::BoundedTrie(vec![TriePath { segments: vec!["p".into()], truncated: false }]),
                Kind::Histogram => Value::Histogram(Histogram { sum: 1.0, buckets: vec![(1.0, 1)] }),
            };
            metrics.push(metric("ns", &name, "s", Some(v.clone()), Some(v)));
        }
        let s = snapshot(1, metrics);
        let m = map(&s, &naming_cfg(Selection::Both));
        if let Err(e) = check_mapped(&m) {
            return Err(TestCaseError::fail(format!("{}\nsnapshot: {:?}", e, s)));
        }
        prop_assert_eq!(m.duplicates, 0);
        // Each (kind, Beam name, result) yields its series; count the counters exactly.
        let counters = s.metrics.iter().filter(|m| m.kind() == Some(Kind::Counter)).count();
        let counter_series: usize = m.families.iter().filter(|f| f.typ == FamilyType::Counter).map(|f| f.samples.len()).sum();
        prop_assert_eq!(counter_series, counters * 2);
    }
}

#[test]
fn reserved_labels_cover_what_the_mapping_emits() {
    // Every label name the mapping itself uses must be reserved, so that constant labels
    // can never produce a duplicate label name.
    let s = snapshot(
        1,
        vec![
            metric("ns", "x", "s", Some(Value::Counter(1)), None),
            metric("ns", "x.y", "s", Some(Value::Counter(1)), None),
            metric("ns", "x_y", "s", Some(Value::Counter(1)), None),
            attempted("ns", "x", "s", Value::StringSet(vec!["a".into()])),
            attempted("ns", "x", "s", Value::BoundedTrie(vec![TriePath { segments: vec!["a".into()], truncated: true }])),
            attempted("ns", "x", "s", Value::Histogram(Histogram { sum: 1.0, buckets: vec![(1.0, 1)] })),
        ],
    );
    let mut cfg = naming_cfg(Selection::Attempted);
    cfg.const_labels.clear();
    let got = map(&s, &cfg);
    let used: BTreeSet<&str> =
        got.families.iter().flat_map(|f| f.samples.iter()).flat_map(|s| s.labels.iter().map(|(k, _)| k.as_str())).collect();
    for name in used {
        assert!(RESERVED_LABELS.contains(&name), "{} is emitted but not reserved", name);
    }
}

// ---------------------------------------------------------------------------------------------
// Beam metric labels (MetricName.getLabels())
// ---------------------------------------------------------------------------------------------

#[test]
fn beam_metric_labels_become_labels() {
    let m = beam_prometheus::model::Metric {
        key: key_with_labels(
            "ns",
            "c",
            "s1",
            &[("PTRANSFORM", "t1"), ("le", "x"), ("env", "y"), ("a-b", "z"), ("job", "w"), ("empty", "")],
        ),
        attempted: Some(Value::Counter(1)),
        committed: None,
    };
    let got = map1(m);
    assert_eq!(got.families.len(), 1);
    let s = &got.families[0].samples[0];
    assert_eq!(
        s.labels,
        labels(&[
            ("PTRANSFORM", "t1"),
            ("a_b", "z"),
            ("env", "prod"),
            ("job", "wordcount"),
            ("label_env", "y"),
            ("label_job", "w"),
            ("label_le", "x"),
            ("namespace", "ns"),
            ("result", "attempted"),
            ("step", "s1"),
        ]),
        "ordinary names kept, names the mapping or a constant label uses get a label_ prefix, empty values left out"
    );
    check_labels(&s.labels).unwrap();
}

#[test]
fn metrics_that_differ_only_in_labels_are_distinct_series() {
    let mk = |v: &str, n: i64| beam_prometheus::model::Metric {
        key: key_with_labels("ns", "c", "s1", &[("PCOLLECTION", v)]),
        attempted: Some(Value::Counter(n)),
        committed: None,
    };
    let got = map(&snapshot(1, vec![mk("p1", 1), mk("p2", 2)]), &naming_cfg(Selection::Attempted));
    assert_eq!(got.duplicates, 0);
    let values: Vec<(String, f64)> = got.families[0]
        .samples
        .iter()
        .map(|s| (s.labels.iter().find(|(k, _)| k == "PCOLLECTION").unwrap().1.clone(), s.value))
        .collect();
    assert_eq!(values, vec![("p1".to_string(), 1.0), ("p2".to_string(), 2.0)]);
    assert!(got.families[0].samples.iter().all(|s| !s.labels.iter().any(|(k, _)| k == "beam_metric")));
}

#[test]
fn histogram_buckets_are_in_numeric_le_order() {
    let h = Value::Histogram(beam_prometheus::model::Histogram {
        sum: 3.0,
        buckets: vec![(1.0, 1), (5.0, 1), (10.0, 1), (f64::INFINITY, 0)],
    });
    let m = map(&snapshot(0, vec![attempted("ns", "h", "s", h)]), &naming_cfg(Selection::Attempted));
    let les: Vec<String> = m.families[0]
        .samples
        .iter()
        .filter_map(|s| s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(les, vec!["1", "5", "10", "+Inf"]);
}

// ---------------------------------------------------------------------------------------------
// Series identity depends on the metric alone (issue 19 item 5)
// ---------------------------------------------------------------------------------------------

/// Every series (name and labels) one metric maps to on its own.
fn series_of(s: &Snapshot, cfg: &NamingConfig) -> BTreeSet<(String, Vec<(String, String)>)> {
    map(s, cfg).families.into_iter().flat_map(|f| f.samples.into_iter().map(|s| (s.name, s.labels))).collect()
}

/// The same key with `.` and `_` swapped in the name: a metric that sanitizes alike.
fn twin(m: &Metric) -> Metric {
    let mut t = m.clone();
    let mut name: String = m.key.name.chars().map(|c| match c { '.' => '_', '_' => '.', c => c }).collect();
    if *name == *m.key.name {
        name.push('.');
    }
    t.key.name = name.into();
    t
}

#[test]
fn a_later_metric_that_sanitizes_alike_leaves_the_first_series_alone() {
    let cfg = naming_cfg(Selection::Attempted);
    let first = snapshot(1, vec![attempted("ns", "a.b", "s1", Value::Counter(1))]);
    let later = snapshot(2, vec![attempted("ns", "a.b", "s1", Value::Counter(2)), attempted("ns", "a_b", "s1", Value::Counter(3))]);
    let before = series_of(&first, &cfg);
    let after = series_of(&later, &cfg);
    assert!(before.is_subset(&after), "{:?} not in {:?}", before, after);
    assert_eq!(after.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Adding metrics (arbitrary ones and twins that sanitize alike) never changes the series
    /// of a metric already there.
    #[test]
    fn prop_adding_metrics_never_changes_an_existing_series(
        s in arb_snapshot(false, 6),
        extra in arb_snapshot(false, 4),
        twins in prop::collection::vec(any::<bool>(), 6),
        prefix in prop::sample::select(vec!["beam", "", "my_app"])) {
        let mut cfg = naming_cfg(Selection::Both);
        cfg.prefix = prefix.into();
        let mut grown = s.clone();
        grown.metrics.extend(extra.metrics.iter().cloned());
        for (m, t) in s.metrics.iter().zip(&twins) {
            if *t {
                grown.metrics.push(twin(m));
            }
        }
        let all = series_of(&grown, &cfg);
        for m in &s.metrics {
            let alone = series_of(&Snapshot { time_ms: s.time_ms, metrics: vec![m.clone()] }, &cfg);
            let missing: Vec<_> = alone.difference(&all).collect();
            prop_assert!(missing.is_empty(), "{:?} lost {:?} once others were added: {:?}", m, missing, grown);
        }
    }
}

/// UTF-8 names: the Beam name and label names verbatim, no `beam_metric` needed for names that
/// would sanitize alike; `__` label names and empty ones still sanitized; the length cap kept.
#[test]
fn utf8_names_keep_beam_names_verbatim() {
    let cfg = NamingConfig { utf8_names: true, ..naming_cfg(Selection::Attempted) };
    let mut m = attempted("ns", "word.length", "s", Value::Counter(1));
    m.key.labels = vec![("dotted.label".into(), "v".into()), ("__x".into(), "w".into())];
    let s = snapshot(1, vec![m, attempted("ns", "word_length", "s", Value::Counter(2)), attempted("ns", "日本", "s", Value::Counter(3))]);
    let mapped = map(&s, &cfg);
    let names: Vec<&str> = mapped.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["beam_word.length_total", "beam_word_length_total", "beam_日本_total"]);
    let labels: Vec<&str> = mapped.families[0].samples[0].labels.iter().map(|(k, _)| &**k).collect();
    assert!(labels.contains(&"dotted.label") && labels.contains(&"_x") && !labels.contains(&"beam_metric"), "{:?}", labels);
    let long = "ü".repeat(300);
    let n = beam_prometheus::naming::metric_name_utf8("beam", &long, "_total");
    assert!(n.len() <= beam_prometheus::naming::MAX_NAME_LEN && n.ends_with("_total"), "{}", n);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `series_order` sorts by ranks of texts: the result must be that of sorting by the texts'
    /// bytes, whether equal texts share one allocation or not, and must drop exactly the
    /// duplicates (the first of equal series kept).
    #[test]
    fn prop_ranked_series_order_is_the_byte_order(
        rows in prop::collection::vec(
            (0usize..4, prop::collection::vec((0usize..3, 0usize..5), 0..4), any::<bool>(), any::<bool>()),
            0..60,
        )
    ) {
        use beam_prometheus::naming::Sample;
        // A few texts with shared prefixes; each used shared or as a fresh copy.
        let pool: Vec<Text> = ["a", "ab", "abc", "b", "Stage1/ParDo(x)", "Stage1/ParDo(y)", "_", "z"].iter().map(|s| Text::from(*s)).collect();
        let pick = |i: usize, fresh: bool| -> Text { if fresh { Text::from(&*pool[i]) } else { pool[i].clone() } };
        // Label sets are shared too (series of one metric, metrics of one step): some series take
        // the previous one's.
        let mut samples: Vec<Sample> = Vec::new();
        for (n, (name, labels, fresh, share)) in rows.iter().enumerate() {
            let mut l: Vec<(Text, Text)> = labels.iter().map(|&(k, v)| (pick(k + 5, *fresh), pick(v, !*fresh))).collect();
            l.sort_by(|a, b| a.0.cmp(&b.0));
            l.dedup_by(|a, b| a.0 == b.0);
            let mut s = Sample::new(pick(*name, *fresh), l, n as f64);
            if let (true, Some(prev)) = (*share, samples.last()) {
                s.labels = prev.labels.clone();
            }
            samples.push(s);
        }
        let mut expected = samples.clone();
        expected.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        expected.dedup_by(|b, a| a.name == b.name && a.labels == b.labels);
        let dropped = beam_prometheus::series_order::sort_and_dedup(&mut samples);
        prop_assert_eq!(dropped as usize, rows.len() - expected.len());
        prop_assert_eq!(samples, expected);
    }
}

/// Families just under, at and over `series_order::SMALL` series (sorted by their texts below
/// it, by keys taken when a family outgrows it), with duplicates: the order is the steps' byte
/// order, the first pushed of equal series is kept and the rest are counted, on one thread and
/// on two.
#[test]
fn families_around_small_sort_and_dedup_like_bytes() {
    use beam_prometheus::series_order::SMALL;
    for (distinct, dups) in [(SMALL, 0), (SMALL + 1, 0), (SMALL - 4, 4), (SMALL - 3, 4), (30, 10)] {
        // Steps in a scrambled order (7 is prime to every count here).
        let step = |i: usize| format!("s{}", (i * 7) % distinct);
        let mut metrics: Vec<_> = (0..distinct).map(|i| attempted("ns", "c", &step(i), Value::Counter(i as i64))).collect();
        // A copy with a Beam label of empty value (dropped): the same series, pushed later.
        for i in 0..dups {
            let mut m = attempted("ns", "c", &step(i * 2), Value::Counter(1000 + i as i64));
            m.key.labels = vec![("x".into(), "".into())];
            metrics.push(m);
        }
        let s = snapshot(1, metrics);
        let mut want: Vec<(String, f64)> = (0..distinct).map(|i| (step(i), i as f64)).collect();
        want.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for parts in [1, 2] {
            let m = beam_prometheus::naming::map_in(&s, &naming_cfg(Selection::Attempted), parts);
            let f = m.families.iter().find(|f| &*f.name == "beam_c_total").expect("the counter's family");
            let got: Vec<(String, f64)> = f
                .samples
                .iter()
                .map(|x| (x.labels.iter().find(|(k, _)| &**k == "step").unwrap().1.to_string(), x.value))
                .collect();
            assert_eq!(got, want, "{} series and {} copies, {} part(s)", distinct, dups, parts);
            assert_eq!(m.duplicates, dups as u64, "{} series and {} copies, {} part(s)", distinct, dups, parts);
        }
    }
}
