//! The Pushgateway body (text exposition format 0.0.4) and grouping-key URLs. The rendered text is
//! validated with an independent parser: Python's `prometheus_client` (the test fails when it is
//! not installed: `pip install prometheus_client`).

mod common;

use beam_prometheus::model::{Histogram, Snapshot, TriePath, Value};
use beam_prometheus::naming::{map, Family, FamilyType, Mapped, NamingConfig, Sample, Selection};
use beam_prometheus::pushgateway::{base64url, group_url, render, render_protobuf, CONTENT_TYPE};
use common::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

fn family(name: &str, typ: FamilyType, help: &str, samples: Vec<Sample>) -> Family {
    Family { name: name.into(), typ, help: help.into(), unit: "", samples }
}

fn sample(name: &str, l: &[(&str, &str)], value: f64) -> Sample {
    Sample::new(name.into(), text_labels(l), value)
}

fn mapped(families: Vec<Family>) -> Mapped {
    Mapped { families, capped: 0, duplicates: 0 }
}

// ---------------------------------------------------------------------------------------------
// Exact output
// ---------------------------------------------------------------------------------------------

#[test]
fn content_type_is_text_0_0_4() {
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

#[test]
fn render_escapes_label_values() {
    let cases: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("back\\slash", "back\\\\slash"),
        ("dq\"uote", "dq\\\"uote"),
        ("new\nline", "new\\nline"),
        ("\\n", "\\\\n"), // a backslash followed by 'n' is not a newline
        ("\"\\\n", "\\\"\\\\\\n"),
        ("tab\tcr\r", "tab\tcr\r"),
        ("日本語 😀", "日本語 😀"),
        ("{},=", "{},="),
    ];
    for (raw, escaped) in cases {
        let m = mapped(vec![family("m", FamilyType::Gauge, "h", vec![sample("m", &[("l", raw)], 1.0)])]);
        let expected = format!("# HELP m h\n# TYPE m gauge\nm{{l=\"{}\"}} 1\n", escaped);
        assert_eq!(render(&m, &[]), expected, "label value {:?}", raw);
    }
}

#[test]
fn render_escapes_help() {
    let cases: &[(&str, &str)] = &[
        ("plain help", "plain help"),
        ("back\\slash", "back\\\\slash"),
        ("new\nline", "new\\nline"),
        // Double quotes are not escaped in HELP.
        ("say \"hi\"", "say \"hi\""),
        ("a\\nb", "a\\\\nb"),
    ];
    for (raw, escaped) in cases {
        let m = mapped(vec![family("m", FamilyType::Counter, raw, vec![sample("m", &[], 2.0)])]);
        let expected = format!("# HELP m {}\n# TYPE m counter\nm 2\n", escaped);
        assert_eq!(render(&m, &[]), expected, "help {:?}", raw);
    }
}

#[test]
fn render_values() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (1.0, "1"),
        (-3.0, "-3"),
        (0.25, "0.25"),
        (1.5e-7, "0.00000015"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (9007199254740993.0, "9007199254740992"),
    ];
    for (v, text) in cases {
        let m = mapped(vec![family("m", FamilyType::Gauge, "h", vec![sample("m", &[], *v)])]);
        assert_eq!(render(&m, &[]), format!("# HELP m h\n# TYPE m gauge\nm {}\n", text), "{}", v);
    }
}

#[test]
fn render_one_block_per_family_and_omits_grouping_labels() {
    let m = mapped(vec![
        family(
            "beam_lat_distribution",
            FamilyType::Summary,
            "Beam distribution lat",
            vec![
                sample("beam_lat_distribution_count", &[("instance", "w1"), ("job", "j"), ("step", "s")], 2.0),
                sample("beam_lat_distribution_sum", &[("instance", "w1"), ("job", "j"), ("step", "s")], 10.0),
            ],
        ),
        family(
            "beam_size_histogram",
            FamilyType::Histogram,
            "Beam histogram size",
            vec![
                sample("beam_size_histogram_bucket", &[("job", "j"), ("le", "1")], 1.0),
                sample("beam_size_histogram_bucket", &[("job", "j"), ("le", "+Inf")], 2.0),
                sample("beam_size_histogram_count", &[("job", "j")], 2.0),
                sample("beam_size_histogram_sum", &[("job", "j")], 3.5),
            ],
        ),
        family("beam_u_string_set_info", FamilyType::Info, "Beam string set u", vec![sample("beam_u_string_set_info", &[("job", "j"), ("value", "a")], 1.0)]),
        family("beam_x_total", FamilyType::Counter, "Beam counter x", vec![sample("beam_x_total", &[("job", "j")], 7.0)]),
    ]);
    let expected = "\
# HELP beam_lat_distribution Beam distribution lat
# TYPE beam_lat_distribution summary
beam_lat_distribution_count{step=\"s\"} 2
beam_lat_distribution_sum{step=\"s\"} 10
# HELP beam_size_histogram Beam histogram size
# TYPE beam_size_histogram histogram
beam_size_histogram_bucket{le=\"1\"} 1
beam_size_histogram_bucket{le=\"+Inf\"} 2
beam_size_histogram_count 2
beam_size_histogram_sum 3.5
# HELP beam_u_string_set_info Beam string set u
# TYPE beam_u_string_set_info gauge
beam_u_string_set_info{value=\"a\"} 1
# HELP beam_x_total Beam counter x
# TYPE beam_x_total counter
beam_x_total 7
";
    assert_eq!(render(&m, &["job", "instance"]), expected);
    // Without grouping labels every label is kept.
    let all = render(&m, &[]);
    assert!(all.contains("beam_x_total{job=\"j\"} 7\n"), "{}", all);
    assert!(all.contains("beam_lat_distribution_sum{instance=\"w1\",job=\"j\",step=\"s\"} 10\n"), "{}", all);
    assert_eq!(render(&mapped(vec![]), &["job"]), "");
}

#[test]
fn render_has_no_timestamps() {
    let s = snapshot(1_700_000_000_123, vec![attempted("ns", "c", "s", Value::Counter(1))]);
    let text = render(&map(&s, &naming_cfg(Selection::Attempted)), &["job"]);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // "name{labels} value" or "name value": exactly two fields once the label block is gone.
        let without_labels = match (line.find('{'), line.rfind('}')) {
            (Some(a), Some(b)) => format!("{}{}", &line[..a], &line[b + 1..]),
            _ => line.to_string(),
        };
        assert_eq!(without_labels.split_whitespace().count(), 2, "{}", line);
    }
    assert!(!text.contains("1700000000123"), "{}", text);
}

// ---------------------------------------------------------------------------------------------
// Validation with prometheus_client
// ---------------------------------------------------------------------------------------------

/// What Python's `str.strip()` removes (it strips every line it reads).
fn py_strip(s: &str) -> &str {
    let ws = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    s.trim_matches(ws)
}

fn compare(m: &Mapped, grouping: &[&str], parsed: &[PyFamily]) -> Result<(), String> {
    if parsed.len() != m.families.len() {
        return Err(format!(
            "{} families rendered, python parsed {}: {:?}",
            m.families.len(),
            parsed.len(),
            parsed.iter().map(|f| (&f.name, &f.typ)).collect::<Vec<_>>()
        ));
    }
    for (f, p) in m.families.iter().zip(parsed) {
        let (name, typ) = match f.typ {
            // prometheus_client names counter families without `_total`.
            FamilyType::Counter => (f.name.strip_suffix("_total").unwrap_or(&f.name), "counter"),
            FamilyType::Gauge | FamilyType::Info => (&*f.name, "gauge"),
            FamilyType::Summary => (&*f.name, "summary"),
            FamilyType::Histogram => (&*f.name, "histogram"),
        };
        if p.name != name || p.typ != typ {
            return Err(format!("family {} {:?} parsed as {} {}", f.name, f.typ, p.name, p.typ));
        }
        if p.help != py_strip(&f.help) {
            return Err(format!("family {}: help {:?} parsed as {:?}", f.name, f.help, p.help));
        }
        if p.samples.len() != f.samples.len() {
            return Err(format!("family {}: {} samples, parsed {}", f.name, f.samples.len(), p.samples.len()));
        }
        for (s, ps) in f.samples.iter().zip(&p.samples) {
            let expected: Vec<(String, String)> =
                owned(&s.labels).into_iter().filter(|(k, _)| !grouping.contains(&k.as_str())).collect();
            let same_value = s.value == ps.value || (s.value.is_nan() && ps.value.is_nan());
            if *ps.name != *s.name || ps.labels != expected || !same_value {
                return Err(format!("sample {} {:?} {} parsed as {} {:?} {}", s.name, expected, s.value, ps.name, ps.labels, ps.value));
            }
        }
    }
    Ok(())
}

fn rich_snapshot() -> Snapshot {
    snapshot(
        1_700_000_000_000,
        vec![
            metric("my.ns", "elements", "Read/ParDo(1)", Some(Value::Counter(5)), Some(Value::Counter(4))),
            attempted("ns", "a.b", "s", Value::Counter(1)),
            attempted("ns", "a_b", "s", Value::Counter(2)),
            attempted("ns", "lat", "s", Value::Distribution { sum: 10, count: 2, min: 3, max: 7 }),
            attempted("ns", "empty", "s", Value::Distribution { sum: 0, count: 0, min: i64::MAX, max: i64::MIN }),
            attempted("ns", "queue", "s", Value::Gauge { value: -4, timestamp_ms: 1_699_999_999_999 }),
            attempted("ns", "users", "s", Value::StringSet(vec!["x\"y".into(), "back\\slash".into(), "new\nline".into(), "日本".into()])),
            attempted(
                "ns",
                "files",
                "s",
                Value::BoundedTrie(vec![
                    TriePath { segments: vec!["gs:".into(), "bucket".into()], truncated: true },
                    TriePath { segments: vec![], truncated: false },
                ]),
            ),
            attempted(
                "ns",
                "size",
                "s",
                Value::Histogram(Histogram { sum: f64::NAN, buckets: vec![(0.5, 1), (10.0, 2), (2.5, 0), (f64::INFINITY, 3)] }),
            ),
            attempted("ns", "help\\with\nnewline", "s", Value::Counter(3)),
            attempted("ns", &"long".repeat(80), "s", Value::Histogram(Histogram { sum: 1.0, buckets: vec![(1.0, 1)] })),
            attempted("ns", &"long".repeat(80), "s", Value::Distribution { sum: 1, count: 1, min: 1, max: 1 }),
        ],
    )
}

#[test]
fn python_prometheus_client_parses_the_mapping() {
    let mut cfg = naming_cfg(Selection::Both);
    cfg.const_labels = labels(&[("env", "prod \"eu\"\\1"), ("instance", "w-1")]);
    let m = map(&rich_snapshot(), &cfg);
    let grouping = ["job", "instance"];
    let text = render(&m, &grouping);
    let parsed = python_parse(std::slice::from_ref(&text));
    let families = parsed[0].as_ref().unwrap_or_else(|e| panic!("prometheus_client rejected the body: {}\n{}", e, text));
    compare(&m, &grouping, families).unwrap_or_else(|e| panic!("{}\n{}", e, text));
    assert!(text.contains("# TYPE beam_size_histogram histogram\n"), "{}", text);
    assert!(!text.contains("instance="), "grouping labels must not be in the body:\n{}", text);
    assert!(!text.contains("job="), "{}", text);
}

#[test]
fn python_parses_hand_written_escapes() {
    let m = mapped(vec![family(
        "m",
        FamilyType::Gauge,
        "help \\ with \n all \"escapes\"",
        vec![sample("m", &[("a", "\\"), ("b", "\""), ("c", "\n"), ("d", "\\n\\\"\n")], 1.0)],
    )]);
    let text = render(&m, &[]);
    let parsed = python_parse(std::slice::from_ref(&text));
    compare(&m, &[], parsed[0].as_ref().unwrap()).unwrap_or_else(|e| panic!("{}\n{}", e, text));
}

#[test]
fn python_parses_arbitrary_snapshots() {
    // Many generated snapshots, rendered and parsed in one python3 run.
    let mut runner = TestRunner::deterministic();
    let strategy = arb_snapshot(true, 10);
    let mut cases = Vec::new();
    for i in 0..400 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let cfg = NamingConfig {
            prefix: ["beam", "", "p"][i % 3].into(),
            job: "job".into(),
            const_labels: labels(&[("env", "a\\b\"c\nd"), ("zone", "z")]),
            selection: [Selection::Attempted, Selection::Committed, Selection::Both][i % 3],
            set_cap: 1 + i % 4,
            taken_labels: vec![],
            utf8_names: false,
        };
        let grouping: &[&str] = if i % 2 == 0 { &["job"] } else { &["job", "zone"] };
        let m = map(&s, &cfg);
        let text = render(&m, grouping);
        cases.push((s, m, grouping, text));
    }
    let texts: Vec<String> = cases.iter().map(|c| c.3.clone()).collect();
    let parsed = python_parse(&texts);
    assert_eq!(parsed.len(), cases.len());
    let mut failures = Vec::new();
    for ((s, m, grouping, text), p) in cases.iter().zip(&parsed) {
        let r = match p {
            Err(e) => Err(format!("prometheus_client rejected the body: {}", e)),
            Ok(families) => compare(m, grouping, families),
        };
        if let Err(e) = r {
            failures.push(format!("{}\nsnapshot: {:?}\ntext:\n{}", e, s, text));
        }
    }
    assert!(failures.is_empty(), "{} of {} failed; first:\n{}", failures.len(), cases.len(), failures[0]);
}

/// The protobuf body carries exactly the series of the text body (as Python parses it), for the
/// same generated snapshots; counts below zero become 0 (metrics.proto's uint64; Beam's counts
/// are never negative).
#[test]
fn protobuf_bodies_carry_the_text_bodies_series() {
    let mut runner = TestRunner::deterministic();
    let strategy = arb_snapshot(true, 10);
    let mut cases = Vec::new();
    for i in 0..400 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let mut cfg = naming_cfg([Selection::Attempted, Selection::Committed, Selection::Both][i % 3]);
        cfg.set_cap = 1 + i % 4;
        let grouping: &[&str] = if i % 2 == 0 { &["job"] } else { &["job", "env"] };
        let m = map(&s, &cfg);
        cases.push((m, grouping));
    }
    let texts: Vec<String> = cases.iter().map(|(m, g)| render(m, g)).collect();
    let parsed = python_parse(&texts);
    for (((m, grouping), text), p) in cases.iter().zip(&texts).zip(&parsed) {
        let families = p.as_ref().unwrap_or_else(|e| panic!("{}\n{}", e, text));
        let counts: std::collections::HashSet<String> = m
            .families
            .iter()
            .filter(|f| matches!(f.typ, FamilyType::Summary | FamilyType::Histogram))
            .flat_map(|f| [format!("{}_count", f.name), format!("{}_bucket", f.name)])
            .collect();
        let mut expected: Vec<(String, Vec<(String, String)>, f64)> = families
            .iter()
            .flat_map(|f| f.samples.iter())
            .map(|s| {
                let mut l = s.labels.clone();
                l.sort();
                let v = if counts.contains(&s.name) { if s.value > 0.0 { s.value.trunc() } else { 0.0 } } else { s.value };
                (s.name.clone(), l, v)
            })
            .collect();
        expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let body = render_protobuf(m, grouping);
        // Byte for byte what prost writes for the same messages.
        let mut again = Vec::new();
        for f in decode_delimited(&body) {
            prost::Message::encode_length_delimited(&f, &mut again).unwrap();
        }
        assert!(again == body, "the body differs from prost's encoding of the same families\n{}", text);
        let got = protobuf_series(&decode_delimited(&body));
        let same = got.len() == expected.len()
            && got.iter().zip(&expected).all(|(g, e)| g.0 == e.0 && g.1 == e.1 && (g.2 == e.2 || (g.2.is_nan() && e.2.is_nan())));
        assert!(same, "protobuf {:?}\ntext {:?}\n{}", got, expected, text);
        // Family names and types as the text's # TYPE lines say.
        let types: Vec<(String, i32)> = decode_delimited(&body).iter().map(|f| (f.name.clone().unwrap(), f.r#type.unwrap())).collect();
        let want: Vec<(String, i32)> = m
            .families
            .iter()
            .map(|f| (f.name.to_string(), match f.typ { FamilyType::Counter => 0, FamilyType::Gauge | FamilyType::Info => 1, FamilyType::Summary => 2, FamilyType::Histogram => 4 }))
            .collect();
        assert_eq!(types, want);
    }
}

// ---------------------------------------------------------------------------------------------
// base64url and grouping-key URLs
// ---------------------------------------------------------------------------------------------

#[test]
fn base64url_rfc4648_vectors() {
    // RFC 4648 section 10, plus inputs whose standard encoding uses '+' and '/'
    // (which the URL alphabet replaces by '-' and '_').
    let cases: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
        (&[0xfb, 0xff], "-_8="),
        (&[0xfb, 0xef, 0xbe], "----"),
        (&[0xff, 0xff, 0xff], "____"),
        (&[0x00], "AA=="),
        (&[0x00, 0x00, 0x00], "AAAA"),
        (b"a/b", "YS9i"),
        ("ü".as_bytes(), "w7w="),
        (b"?>>", "Pz4-"),
        (b"??", "Pz8="),
        (b"???", "Pz8_"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64url(input), *expected, "base64url({:?})", input);
    }
}

#[test]
fn base64url_matches_python_urlsafe_b64encode() {
    // Every length 0..64 and every byte value, checked against Python's base64 module.
    let inputs: Vec<Vec<u8>> = (0..64usize)
        .map(|n| (0..n).map(|i| (i * 97 + n * 31) as u8).collect())
        .chain([(0..=255u8).collect::<Vec<u8>>()])
        .collect();
    let hex: Vec<String> = inputs.iter().map(|b| b.iter().map(|x| format!("{:02x}", x)).collect()).collect();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, base64\nfor h in sys.argv[1:]:\n    print(base64.urlsafe_b64encode(bytes.fromhex(h)).decode())")
        .args(hex.iter().map(|h| if h.is_empty() { "".to_string() } else { h.clone() }))
        .output()
        .expect("this test needs python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<String> = String::from_utf8(out.stdout).unwrap().split('\n').map(String::from).collect();
    for (i, input) in inputs.iter().enumerate() {
        assert_eq!(base64url(input), expected[i], "input {:02x?}", input);
    }
}

#[test]
fn group_url_table() {
    let g = |l: &[(&str, &str)]| pairs(l);
    let cases: Vec<(&str, &str, Vec<(String, String)>, &str)> = vec![
        ("http://gw:9091", "job", g(&[]), "http://gw:9091/metrics/job@base64/am9i"),
        ("http://gw:9091/", "job", g(&[]), "http://gw:9091/metrics/job@base64/am9i"),
        ("https://gw.example/prefix/", "foobar", g(&[]), "https://gw.example/prefix/metrics/job@base64/Zm9vYmFy"),
        (
            "http://gw:9091",
            "wordcount",
            g(&[("instance", "a/b"), ("empty", ""), ("q", "??")]),
            "http://gw:9091/metrics/job@base64/d29yZGNvdW50/instance@base64/YS9i/empty@base64/=/q@base64/Pz8=",
        ),
        ("http://gw:9091", "", g(&[]), "http://gw:9091/metrics/job@base64/="),
        ("http://gw:9091", "f", g(&[("z", "fo"), ("a", "foo")]), "http://gw:9091/metrics/job@base64/Zg==/z@base64/Zm8=/a@base64/Zm9v"),
    ];
    for (base, job, grouping, expected) in cases {
        assert_eq!(group_url(base, job, &grouping), expected, "{} {} {:?}", base, job, grouping);
    }
}
