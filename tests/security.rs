//! Authentication, headers and proxy against the test server of tests/common; secrets never show
//! up in `Debug`, errors or `last_error`. TLS itself is tested end to end (SecurityE2ETest).

mod common;

use beam_prometheus::config::{redact_url, Config};
use beam_prometheus::delivery::{stats_names, Exporter};
use beam_prometheus::model::Value;
use common::*;
use std::time::Duration;

fn opts(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut with_url = vec![("prometheusRemoteWriteUrl", url)];
    with_url.extend_from_slice(extra);
    quick_opts(&with_url)
}

fn one_counter(v: i64) -> beam_prometheus::model::Snapshot {
    snapshot(1_700_000_000_000 + v, vec![attempted("ns", "c", "s", Value::Counter(v))])
}

fn stat(ex: &Exporter, name: &str) -> i64 {
    ex.stats().values()[stats_names().iter().position(|n| *n == name).unwrap()]
}

fn temp_file(content: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("beamprom-secret-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&p, content).unwrap();
    p
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn bearer_token_file_is_reread_after_rotation() {
    let server = Server::start(|_, _| ok());
    let token = temp_file("first-token\n");
    let cfg = Config::from_pairs(&opts(&server.url("/api/v1/write"), &[("prometheusBearerTokenFile", token.to_str().unwrap())])).unwrap();
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&one_counter(1));
    assert!(ex.flush(Duration::from_secs(10)));
    std::fs::write(&token, "second-token").unwrap();
    ex.export(&one_counter(2));
    assert!(ex.flush(Duration::from_secs(10)));
    let r = server.wait_for(2, Duration::from_secs(10));
    assert_eq!(r[0].header("authorization"), Some("Bearer first-token"));
    assert_eq!(r[1].header("authorization"), Some("Bearer second-token"));
}

#[test]
fn unauthorized_is_retried_and_a_rotated_token_delivers_the_same_batch() {
    let server = Server::start(|req, _| {
        if req.header("authorization") == Some("Bearer good") { ok() } else { status(401) }
    });
    let token = temp_file("bad");
    let cfg = Config::from_pairs(&opts(
        &server.url("/api/v1/write"),
        &[("prometheusBearerTokenFile", token.to_str().unwrap()), ("prometheusMaxAttempts", "1000")],
    ))
    .unwrap();
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&one_counter(7));
    server.wait_for(2, Duration::from_secs(10));
    let err = ex.last_error().expect("the 401 is reported");
    assert!(err.contains("HTTP 401") && err.contains("--prometheusBearerToken"), "{}", err);
    assert!(!err.contains("bad"), "the token leaked into the error: {}", err);
    std::fs::write(&token, "good").unwrap();
    assert!(ex.flush(Duration::from_secs(10)));
    assert_eq!(stat(&ex, "samples_rejected"), 0);
    assert_eq!(stat(&ex, "samples_sent"), 1);
    let last = server.requests().last().cloned().unwrap();
    assert_eq!(last.status, Some(200));
}

#[test]
fn basic_auth_from_an_environment_variable() {
    let server = Server::start(|_, _| ok());
    std::env::set_var("BEAMPROM_TEST_BASIC_PW", "s3cret pw");
    let cfg = Config::from_pairs(&opts(
        &server.url("/api/v1/write"),
        &[("prometheusBasicAuthUser", "alice"), ("prometheusBasicAuthPasswordEnv", "BEAMPROM_TEST_BASIC_PW")],
    ))
    .unwrap();
    assert!(!format!("{:?}", cfg).contains("s3cret"), "the password is held in Config");
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&one_counter(1));
    assert!(ex.flush(Duration::from_secs(10)));
    // base64("alice:s3cret pw")
    assert_eq!(server.wait_for(1, Duration::from_secs(5))[0].header("authorization"), Some("Basic YWxpY2U6czNjcmV0IHB3"));
}

#[test]
fn tenant_and_extra_headers_are_sent_but_protocol_headers_are_protected() {
    let server = Server::start(|_, _| ok());
    let cfg = Config::from_pairs(&opts(&server.url("/api/v1/write"), &[("prometheusHeaders.X-Scope-OrgID", "tenant-1")])).unwrap();
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&one_counter(1));
    assert!(ex.flush(Duration::from_secs(10)));
    let r = &server.wait_for(1, Duration::from_secs(5))[0];
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    for h in ["Content-Encoding", "content-type", "X-Prometheus-Remote-Write-Version", "Authorization", "User-Agent"] {
        let key = format!("prometheusHeaders.{}", h);
        let e = Config::from_pairs(&opts(&server.url("/"), &[(key.as_str(), "x")])).unwrap_err();
        assert!(e.0.starts_with("--prometheusHeaders:") && e.0.contains(h), "{}", e);
    }
    let e = Config::from_pairs(&opts(&server.url("/"), &[("prometheusHeaders.Bad Name", "x")])).unwrap_err();
    assert!(e.0.starts_with("--prometheusHeaders:"), "{}", e);
}

#[test]
fn requests_go_through_the_configured_proxy() {
    let proxy = Server::start(|_, _| ok());
    // The receiver's host does not resolve: only the proxy can deliver.
    let cfg = Config::from_pairs(&opts(
        "http://receiver.invalid:9/api/v1/write",
        &[("prometheusProxyUrl", &proxy.url(""))],
    ))
    .unwrap();
    let ex = Exporter::new(cfg).unwrap();
    ex.export(&one_counter(1));
    assert!(ex.flush(Duration::from_secs(10)), "{:?}", ex.last_error());
    let r = &proxy.wait_for(1, Duration::from_secs(5))[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "http://receiver.invalid:9/api/v1/write");
}

#[test]
fn secret_options_are_checked_without_revealing_values() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("prometheusBasicAuthUser", "u")], "--prometheusBasicAuthPasswordFile:"),
        (&[("prometheusBasicAuthUser", "u"), ("prometheusBasicAuthPasswordEnv", "BEAMPROM_TEST_UNSET_VAR")], "--prometheusBasicAuthPasswordEnv:"),
        (&[("prometheusBasicAuthPasswordEnv", "BEAMPROM_TEST_UNSET_VAR")], "--prometheusBasicAuthUser:"),
        (&[("prometheusBearerTokenFile", "/nonexistent/token")], "--prometheusBearerTokenFile:"),
        (&[("prometheusBearerTokenEnv", "BEAMPROM_TEST_UNSET_VAR")], "--prometheusBearerTokenEnv:"),
        (&[("prometheusTlsCertFile", "/nonexistent/c.pem")], "--prometheusTlsCertFile:"),
        (&[("prometheusTlsInsecureSkipVerify", "maybe")], "--prometheusTlsInsecureSkipVerify:"),
        (&[("prometheusProxyUrl", "not a url")], "--prometheusProxyUrl:"),
    ];
    for (extra, prefix) in cases {
        let e = Config::from_pairs(&opts("http://127.0.0.1:9/", extra)).unwrap_err();
        assert!(e.0.starts_with(prefix), "{:?} -> {}", extra, e);
    }
    std::env::set_var("BEAMPROM_TEST_TOKEN_BOTH", "t");
    let token = temp_file("t");
    let e = Config::from_pairs(&opts(
        "http://127.0.0.1:9/",
        &[("prometheusBearerTokenFile", token.to_str().unwrap()), ("prometheusBearerTokenEnv", "BEAMPROM_TEST_TOKEN_BOTH")],
    ))
    .unwrap_err();
    assert!(e.0.starts_with("--prometheusBearerTokenFile:"), "{}", e);
}

#[test]
fn urls_with_credentials_are_redacted_in_messages() {
    assert_eq!(redact_url("https://user:hunter2@host:9090/api/v1/write"), "https://***@host:9090/api/v1/write");
    assert_eq!(redact_url("http://host/path@x"), "http://host/path@x");
    assert_eq!(redact_url("http://host:1/"), "http://host:1/");
    let e = Config::from_pairs(&opts("ftp://user:hunter2@host/x", &[])).unwrap_err();
    assert!(!e.0.contains("hunter2") && e.0.starts_with("--prometheusRemoteWriteUrl:"), "{}", e);
}

#[test]
fn credentials_in_urls_are_refused_and_redacted_up_to_the_last_at() {
    assert_eq!(redact_url("https://u:p@ss@host:9090/w"), "https://***@host:9090/w");
    let e = Config::from_pairs(&opts("https://user:p@ss@host/api/v1/write", &[])).unwrap_err();
    assert!(e.0.starts_with("--prometheusRemoteWriteUrl:") && e.0.contains("--prometheusBasicAuth"), "{}", e);
    assert!(!e.0.contains("p@ss") && !e.0.contains("ss@host"), "{}", e);
}

#[test]
fn redirects_are_not_followed_and_count_as_rejected() {
    let server = Server::start(|req, _| {
        if req.path == "/w" {
            Reply::Status(301, vec![("Location".into(), "/elsewhere".into())], String::new())
        } else {
            ok()
        }
    });
    let ex = Exporter::new(Config::from_pairs(&opts(&server.url("/w"), &[("prometheusHeaders.X-Api-Key", "k")])).unwrap()).unwrap();
    ex.export(&one_counter(1));
    assert!(ex.flush(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    let r = server.requests();
    assert_eq!(r.len(), 1, "the redirect was followed: {:?}", r);
    assert_eq!(stat(&ex, "samples_sent"), 0);
    assert_eq!(stat(&ex, "samples_rejected"), 1);
    let err = ex.last_error().unwrap();
    assert!(err.contains("HTTP 301") && err.contains("/elsewhere"), "{}", err);
}
