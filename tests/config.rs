//! Exporter options: every bad value names the option to fix; good ones parse with defaults.

mod common;

use beam_prometheus::config::{defaults, Config, PushMethod};
use beam_prometheus::naming::{Selection, RESERVED_LABELS};
use common::pairs;
use std::time::Duration;

const RW: &str = "http://127.0.0.1:9090/api/v1/write";
const PG: &str = "http://127.0.0.1:9091";

fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p = pairs(&[("prometheusRemoteWriteUrl", RW), ("prometheusJobName", "wordcount")]);
    p.extend(pairs(extra));
    p
}

fn error_of(p: &[(String, String)]) -> String {
    match Config::from_pairs(p) {
        Ok(c) => panic!("expected an error for {:?}, got {:?}", p, c),
        Err(e) => e.0,
    }
}

#[test]
fn bad_values_name_their_option() {
    let mut cases: Vec<(&str, String, &str)> = vec![
        // (option, value, expected prefix)
        ("prometheusRemoteWriteUrl", "not a url".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusRemoteWriteUrl", "ftp://host/write".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusRemoteWriteUrl", "file:///tmp/x".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusRemoteWriteUrl", "127.0.0.1:9090".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusRemoteWriteUrl", "http://".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusRemoteWriteUrl", "mailto:a@b".into(), "--prometheusRemoteWriteUrl:"),
        ("prometheusPushgatewayUrl", "gw:9091".into(), "--prometheusPushgatewayUrl:"),
        ("prometheusPushgatewayUrl", "ftp://gw".into(), "--prometheusPushgatewayUrl:"),
        ("prometheusTimeoutMillis", "abc".into(), "--prometheusTimeoutMillis:"),
        ("prometheusTimeoutMillis", "-1".into(), "--prometheusTimeoutMillis:"),
        ("prometheusTimeoutMillis", "0".into(), "--prometheusTimeoutMillis:"),
        ("prometheusTimeoutMillis", "1.5".into(), "--prometheusTimeoutMillis:"),
        ("prometheusTimeoutMillis", "".into(), "--prometheusTimeoutMillis:"),
        ("prometheusTimeoutMillis", "99999999999999999999999".into(), "--prometheusTimeoutMillis:"),
        ("prometheusMetricValues", "SOMETIMES".into(), "--prometheusMetricValues:"),
        ("prometheusMetricValues", "".into(), "--prometheusMetricValues:"),
        ("prometheusPushMethod", "PATCH".into(), "--prometheusPushMethod:"),
        ("prometheusDeleteOnEnd", "yes".into(), "--prometheusDeleteOnEnd:"),
        ("prometheusStaleOnEnd", "1".into(), "--prometheusStaleOnEnd:"),
        ("prometheusSelfMetrics", "maybe".into(), "--prometheusSelfMetrics:"),
        ("prometheusMaxBufferedSamples", "0".into(), "--prometheusMaxBufferedSamples:"),
        ("prometheusMaxBufferedSamples", "lots".into(), "--prometheusMaxBufferedSamples:"),
        ("prometheusMaxSamplesPerRequest", "0".into(), "--prometheusMaxSamplesPerRequest:"),
        ("prometheusMaxAttempts", "-1".into(), "--prometheusMaxAttempts:"),
        ("prometheusRetryBudgetMillis", "0".into(), "--prometheusRetryBudgetMillis:"),
        ("prometheusRetryBudgetMillis", "15m".into(), "--prometheusRetryBudgetMillis:"),
        ("prometheusBufferDirMaxBytes", "1000".into(), "--prometheusBufferDirMaxBytes:"),
        ("prometheusMaxAttempts", "4294967296".into(), "--prometheusMaxAttempts:"),
        ("prometheusMinBackoffMillis", "0".into(), "--prometheusMinBackoffMillis:"),
        ("prometheusMaxBackoffMillis", "x".into(), "--prometheusMaxBackoffMillis:"),
        ("prometheusSetCap", "0".into(), "--prometheusSetCap:"),
        ("prometheusMetricPrefix", "1bad".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "a-b".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "a__b".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "a_".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "a:b".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "_a".into(), "--prometheusMetricPrefix:"),
        ("prometheusMetricPrefix", "préfixe".into(), "--prometheusMetricPrefix:"),
        ("prometheusLabels.a-b", "v".into(), "--prometheusLabels:"),
        ("prometheusLabels.__x", "v".into(), "--prometheusLabels:"),
        ("prometheusLabels.1a", "v".into(), "--prometheusLabels:"),
        ("prometheusLabels.", "v".into(), "--prometheusLabels:"),
        ("prometheusLabels.a.b", "v".into(), "--prometheusLabels:"),
        ("prometheusLabels.ünï", "v".into(), "--prometheusLabels:"),
        ("prometheusGroupingKey.job", "j".into(), "--prometheusGroupingKey:"),
        ("prometheusGroupingKey.a-b", "v".into(), "--prometheusGroupingKey:"),
        ("prometheusGroupingKey.__name__", "v".into(), "--prometheusGroupingKey:"),
        ("prometheusJobName", "".into(), "--prometheusJobName:"),
        ("prometheusJobName", "  ".into(), "--prometheusJobName:"),
    ];
    // Every label the mapping uses itself is reserved for constant labels.
    let reserved: Vec<String> = RESERVED_LABELS.iter().map(|l| format!("prometheusLabels.{}", l)).collect();
    for r in &reserved {
        cases.push((r.as_str(), "v".into(), "--prometheusLabels:"));
    }
    for (option, value, prefix) in &cases {
        let e = error_of(&with(&[(option, value)]));
        assert!(e.starts_with(prefix), "{}={:?}: error {:?} does not start with {:?}", option, value, e, prefix);
        assert!(e.len() > prefix.len() + 5, "the message explains: {:?}", e);
        if !value.trim().is_empty() && !option.starts_with("prometheusLabels.") && !option.starts_with("prometheusGroupingKey.") {
            assert!(e.contains(value.as_str()), "{}={:?}: the message shows the bad value: {:?}", option, value, e);
        }
    }
}

/// Issue 19 item 1: a constant label where a grouping key moves Beam's label is refused.
#[test]
fn a_constant_label_where_the_grouping_key_moves_beams_label_is_refused() {
    let e = error_of(&with(&[("prometheusGroupingKey.namespace", "team-a"), ("prometheusLabels.beam_namespace", "x")]));
    assert!(e.starts_with("--prometheusLabels:") && e.contains("beam_namespace"), "{}", e);
    for name in ["le", "value", "path", "truncated", "beam_metric", "quantile", "beam_step", "exporter_id"] {
        let e = error_of(&with(&[(&format!("prometheusGroupingKey.{}", name), "v")]));
        assert!(e.starts_with("--prometheusGroupingKey:") && e.contains(name), "{}", e);
    }
}

#[test]
fn reserved_and_invalid_label_names_are_explained() {
    for name in ["job", "le", "result", "beam_metric", "namespace", "step", "quantile"] {
        let e = error_of(&with(&[(&format!("prometheusLabels.{}", name), "v")]));
        assert!(e.contains("reserved") && e.contains(name), "{}", e);
    }
    let e = error_of(&with(&[("prometheusLabels.a-b", "v")]));
    assert!(e.contains("a-b") && !e.contains("reserved"), "{}", e);
}

#[test]
fn min_backoff_above_max_backoff() {
    let e = error_of(&with(&[("prometheusMinBackoffMillis", "500"), ("prometheusMaxBackoffMillis", "100")]));
    assert!(e.starts_with("--prometheusMinBackoffMillis:"), "{}", e);
    assert!(e.contains("500") && e.contains("100") && e.contains("prometheusMaxBackoffMillis"), "{}", e);
    // Equal is fine.
    let c = Config::from_pairs(&with(&[("prometheusMinBackoffMillis", "100"), ("prometheusMaxBackoffMillis", "100")])).unwrap();
    assert_eq!((c.min_backoff, c.max_backoff), (Duration::from_millis(100), Duration::from_millis(100)));
    // Only a min above the default max is also an error.
    let e = error_of(&with(&[("prometheusMinBackoffMillis", &(defaults::MAX_BACKOFF_MS + 1).to_string())]));
    assert!(e.starts_with("--prometheusMinBackoffMillis:"), "{}", e);
}

#[test]
fn a_destination_and_a_job_are_required() {
    let e = error_of(&pairs(&[("prometheusJobName", "j")]));
    assert!(e.starts_with("--prometheusRemoteWriteUrl"), "{}", e);
    assert!(e.contains("--prometheusPushgatewayUrl:"), "{}", e);
    // Empty URLs count as unset.
    let e = error_of(&pairs(&[("prometheusJobName", "j"), ("prometheusRemoteWriteUrl", ""), ("prometheusPushgatewayUrl", "")]));
    assert!(e.starts_with("--prometheusRemoteWriteUrl"), "{}", e);
    let e = error_of(&pairs(&[("prometheusRemoteWriteUrl", RW)]));
    assert!(e.starts_with("--prometheusJobName:"), "{}", e);
}

#[test]
fn unknown_options_are_errors() {
    for k in ["prometheusTimeout", "prometheusJobName.x", "prometheusTimeoutMillis.x", "other", ""] {
        let e = error_of(&with(&[(k, "1")]));
        assert!(e.contains(&format!("'{}'", k)), "{:?}: {}", k, e);
    }
}

#[test]
fn duplicate_label_names_are_errors() {
    // A label name twice would give series with two labels of one name, which receivers reject.
    let e = error_of(&with(&[("prometheusLabels.env", "a"), ("prometheusLabels.env", "b")]));
    assert!(e.starts_with("--prometheusLabels:") && e.contains("env"), "{}", e);
    let e = error_of(&with(&[("prometheusPushgatewayUrl", PG), ("prometheusGroupingKey.i", "a"), ("prometheusGroupingKey.i", "b")]));
    assert!(e.starts_with("--prometheusGroupingKey:") && e.contains("'i'"), "{}", e);
}

#[test]
fn defaults() {
    let c = Config::from_pairs(&with(&[])).unwrap();
    assert_eq!(c.remote_write_url.as_deref(), Some(RW));
    assert_eq!(c.pushgateway_url, None);
    assert_eq!(c.naming.prefix, "beam");
    assert_eq!(c.naming.job, "wordcount");
    assert_eq!(c.naming.const_labels, vec![]);
    assert_eq!(c.naming.selection, Selection::Attempted);
    assert_eq!(c.naming.set_cap, 100);
    assert_eq!(c.grouping, vec![]);
    assert_eq!(c.push_method, PushMethod::Put);
    assert!(!c.delete_on_end);
    assert!(!c.stale_on_close);
    assert!(c.export_self_metrics);
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.max_buffered_samples, 2_000_000);
    assert_eq!(c.max_samples_per_request, 2_000);
    // Retries are bounded by time (15 minutes) and the buffer, not by a count.
    assert_eq!(c.max_attempts, None);
    assert_eq!(c.retry_budget, Duration::from_secs(15 * 60));
    assert_eq!((c.buffer_dir.as_deref(), c.buffer_dir_max_bytes), (None, 1 << 30));
    assert_eq!(c.min_backoff, Duration::from_millis(30));
    assert_eq!(c.max_backoff, Duration::from_millis(5_000));
    assert!(c.min_backoff <= c.max_backoff);
    // The named defaults agree with what is applied.
    assert_eq!(c.timeout, Duration::from_millis(defaults::TIMEOUT_MS));
    assert_eq!(c.retry_budget, Duration::from_millis(defaults::RETRY_BUDGET_MS));
}

#[test]
fn every_option_parses() {
    let c = Config::from_pairs(&pairs(&[
        ("prometheusRemoteWriteUrl", "https://mimir.example/api/v1/push"),
        ("prometheusPushgatewayUrl", PG),
        ("prometheusJobName", "my job"),
        ("prometheusMetricPrefix", "my_app"),
        ("prometheusLabels.zone", "z1"),
        ("prometheusLabels.env", ""),
        ("prometheusLabels.Team", "data"),
        ("prometheusGroupingKey.instance", "w-1"),
        ("prometheusGroupingKey.dc", ""),
        ("prometheusMetricValues", "both"),
        ("prometheusTimeoutMillis", " 2500 "),
        ("prometheusPushMethod", "post"),
        ("prometheusDeleteOnEnd", "TRUE"),
        ("prometheusMaxBufferedSamples", "10"),
        ("prometheusMaxSamplesPerRequest", "3"),
        ("prometheusMaxAttempts", "4"),
        ("prometheusMinBackoffMillis", "5"),
        ("prometheusMaxBackoffMillis", "50"),
        ("prometheusSetCap", "7"),
        ("prometheusStaleOnEnd", "true"),
        ("prometheusSelfMetrics", "False"),
        ("prometheusRetryBudgetMillis", "60000"),
        ("prometheusBufferDir", "/var/tmp/beam-buffer"),
        ("prometheusBufferDirMaxBytes", "1048576"),
    ]))
    .unwrap();
    assert_eq!(c.retry_budget, Duration::from_secs(60));
    assert_eq!((c.buffer_dir.as_deref(), c.buffer_dir_max_bytes), (Some("/var/tmp/beam-buffer"), 1 << 20));
    assert_eq!(c.remote_write_url.as_deref(), Some("https://mimir.example/api/v1/push"));
    assert_eq!(c.pushgateway_url.as_deref(), Some(PG));
    assert_eq!(c.naming.job, "my job");
    assert_eq!(c.naming.prefix, "my_app");
    assert_eq!(c.naming.const_labels, pairs(&[("Team", "data"), ("env", ""), ("zone", "z1")]), "sorted by name");
    assert_eq!(c.grouping, pairs(&[("instance", "w-1"), ("dc", "")]), "in the order given");
    assert_eq!(c.naming.selection, Selection::Both);
    assert_eq!(c.timeout, Duration::from_millis(2500));
    assert_eq!(c.connect_timeout, Duration::from_millis(2500), "never above the total timeout");
    assert_eq!(c.push_method, PushMethod::Post);
    assert!(c.delete_on_end && c.stale_on_close && !c.export_self_metrics);
    assert_eq!((c.max_buffered_samples, c.max_samples_per_request, c.max_attempts, c.naming.set_cap), (10, 3, Some(4), 7));
    assert_eq!((c.min_backoff, c.max_backoff), (Duration::from_millis(5), Duration::from_millis(50)));
}

#[test]
fn small_choices() {
    let sel = |v: &str| Config::from_pairs(&with(&[("prometheusMetricValues", v)])).unwrap().naming.selection;
    assert_eq!(sel("ATTEMPTED"), Selection::Attempted);
    assert_eq!(sel("Committed"), Selection::Committed);
    assert_eq!(sel("BOTH"), Selection::Both);
    let pg = |v: &str| {
        Config::from_pairs(&pairs(&[("prometheusPushgatewayUrl", PG), ("prometheusJobName", "j"), ("prometheusPushMethod", v)]))
            .unwrap()
            .push_method
    };
    assert_eq!(pg("PUT"), PushMethod::Put);
    assert_eq!(pg("Post"), PushMethod::Post);
    // An empty prefix is allowed: names without prefix.
    assert_eq!(Config::from_pairs(&with(&[("prometheusMetricPrefix", "")])).unwrap().naming.prefix, "");
    // Pushgateway only.
    let c = Config::from_pairs(&pairs(&[("prometheusPushgatewayUrl", PG), ("prometheusJobName", "j")])).unwrap();
    assert_eq!((c.remote_write_url, c.pushgateway_url.as_deref()), (None, Some(PG)));
    // The connect timeout is capped at its own default.
    let c = Config::from_pairs(&with(&[("prometheusTimeoutMillis", "60000")])).unwrap();
    assert_eq!((c.timeout, c.connect_timeout), (Duration::from_secs(60), Duration::from_millis(defaults::CONNECT_TIMEOUT_MS)));
}

fn options_bytes(p: &[(&str, &str)]) -> Vec<u8> {
    let mut b = (p.len() as u32).to_be_bytes().to_vec();
    for (k, v) in p {
        for s in [k, v] {
            b.extend((s.len() as u32).to_be_bytes());
            b.extend(s.as_bytes());
        }
    }
    b
}

#[test]
fn from_bytes() {
    let c = Config::from_bytes(&options_bytes(&[("prometheusRemoteWriteUrl", RW), ("prometheusJobName", "j")])).unwrap();
    assert_eq!(c.naming.job, "j");
    let e = Config::from_bytes(&options_bytes(&[("prometheusRemoteWriteUrl", "ftp://x"), ("prometheusJobName", "j")])).unwrap_err();
    assert!(e.0.starts_with("--prometheusRemoteWriteUrl:"), "{}", e);
    // Malformed buffers: errors, no panics, no huge allocations.
    let good = options_bytes(&[("prometheusRemoteWriteUrl", RW), ("prometheusJobName", "j")]);
    for cut in 0..good.len() {
        let e = Config::from_bytes(&good[..cut]).unwrap_err();
        assert!(e.0.starts_with("malformed options buffer"), "{}", e);
    }
    let e = Config::from_bytes(&u32::MAX.to_be_bytes()).unwrap_err();
    assert!(e.0.starts_with("malformed options buffer"), "{}", e);
    let mut bad_utf8 = 1u32.to_be_bytes().to_vec();
    bad_utf8.extend(2u32.to_be_bytes());
    bad_utf8.extend([0xc3, 0x28]);
    bad_utf8.extend(0u32.to_be_bytes());
    assert!(Config::from_bytes(&bad_utf8).unwrap_err().0.starts_with("malformed options buffer"));
}

#[test]
fn retry_and_buffer_dir_options() {
    // 0 or empty: no attempt bound, only the retry budget.
    for v in ["0", ""] {
        assert_eq!(Config::from_pairs(&with(&[("prometheusMaxAttempts", v)])).unwrap().max_attempts, None, "{:?}", v);
    }
    let e = error_of(&pairs(&[("prometheusPushgatewayUrl", PG), ("prometheusJobName", "j"), ("prometheusBufferDir", "/tmp/x")]));
    assert!(e.starts_with("--prometheusBufferDir:") && e.contains("--prometheusRemoteWriteUrl"), "{}", e);
}

#[test]
fn remote_write_protocol_and_utf8_names() {
    use beam_prometheus::config::RemoteWriteProtocol;
    assert_eq!(Config::from_pairs(&with(&[])).unwrap().remote_write_protocol, RemoteWriteProtocol::V1);
    assert_eq!(Config::from_pairs(&with(&[("prometheusRemoteWriteProtocol", "2.0")])).unwrap().remote_write_protocol, RemoteWriteProtocol::V2);
    assert_eq!(Config::from_pairs(&with(&[("prometheusRemoteWriteProtocol", "1.0")])).unwrap().remote_write_protocol, RemoteWriteProtocol::V1);
    let e = error_of(&with(&[("prometheusRemoteWriteProtocol", "3")]));
    assert!(e.starts_with("--prometheusRemoteWriteProtocol: '3' is not 1.0 or 2.0"), "{}", e);
    let e = error_of(&with(&[("prometheusUtf8Names", "yes")]));
    assert!(e.starts_with("--prometheusUtf8Names:"), "{}", e);
    assert!(Config::from_pairs(&with(&[("prometheusUtf8Names", "true")])).unwrap().naming.utf8_names);
    let e = error_of(&with(&[("prometheusUtf8Names", "true"), ("prometheusPushgatewayUrl", "http://localhost:9091")]));
    assert!(e.starts_with("--prometheusUtf8Names:") && e.contains("Pushgateway"), "{}", e);
}
