//! Exporter options. The Java side passes them as (option name, value) pairs whose names are the
//! `PipelineOptions` names, so every error here names the option the user has to fix.

use crate::naming::{label_name, NamingConfig, Selection, RESERVED_LABELS};
use std::fmt;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The body format of Pushgateway pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    /// Delimited protobuf `MetricFamily` messages: the gateway takes them 1.5–1.8× faster than text.
    Protobuf,
    /// Text exposition format 0.0.4.
    Text,
}

/// The remote-write protocol version sent (README, "Remote-write 2.0").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteWriteProtocol {
    /// `prometheus.WriteRequest`: every receiver takes it (Prometheus 2.x and 3.x, VictoriaMetrics,
    /// Mimir, Cortex, Thanos), hence the default.
    V1,
    /// `io.prometheus.write.v2.Request`; a receiver that refuses it makes the exporter fall back to 1.0.
    V2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMethod {
    Put,
    Post,
}

/// Where a secret is read from; its value is never held here, so `Debug` cannot leak it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    File { option: &'static str, path: String },
    Env { option: &'static str, name: String },
}

#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// Headers the protocols own: a user header may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-encoding", "content-type", "content-length", "x-prometheus-remote-write-version",
    "user-agent", "host", "authorization", "transfer-encoding", "connection",
];

#[derive(Clone, Debug)]
pub struct Config {
    pub remote_write_url: Option<String>,
    pub pushgateway_url: Option<String>,
    pub remote_write_protocol: RemoteWriteProtocol,
    pub naming: NamingConfig,
    /// Pushgateway grouping key besides `job`, in the order given.
    pub grouping: Vec<(String, String)>,
    pub push_method: PushMethod,
    pub push_format: PushFormat,
    pub delete_on_end: bool,
    /// Total time one HTTP request may take, connect included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Remote-write samples held while the receiver is unreachable; the oldest go first.
    pub max_buffered_samples: usize,
    pub max_samples_per_request: usize,
    /// Tries of one request that keeps failing with a retryable error before it is dropped;
    /// none by default: the retry budget and the buffer bound it.
    pub max_attempts: Option<u32>,
    /// How long a request is retried after it was queued before it is given up.
    pub retry_budget: Duration,
    /// Optional disk buffer (disk_buffer.rs) for remote-write requests, and its bound in bytes.
    pub buffer_dir: Option<String>,
    pub buffer_dir_max_bytes: u64,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Send staleness markers for every series when the exporter closes.
    pub stale_on_close: bool,
    pub export_self_metrics: bool,
    pub tls: TlsConfig,
    pub basic_auth: Option<(String, Secret)>,
    pub bearer_token: Option<Secret>,
    /// Extra headers for every request, e.g. `X-Scope-OrgID` for Mimir/Cortex tenants.
    pub headers: Vec<(String, String)>,
    pub proxy_url: Option<String>,
}

/// A URL for messages: user info (`user:password@`) replaced by `***@`.
pub fn redact_url(v: &str) -> String {
    match (v.find("://"), v.find('@')) {
        // The last '@' before the path ends the user info, as URL parsers read it.
        (Some(s), Some(_)) => {
            let authority_end = v[s + 3..].find(['/', '?', '#']).map_or(v.len(), |i| s + 3 + i);
            match v[..authority_end].rfind('@') {
                Some(at) if at > s => format!("{}***{}", &v[..s + 3], &v[at..]),
                _ => v.to_string(),
            }
        }
        _ => v.to_string(),
    }
}

pub mod defaults {
    pub const PREFIX: &str = "beam";
    pub const TIMEOUT_MS: u64 = 10_000;
    pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
    /// A 10-minute outage of 10k series pushed every 5 s is 1.2M samples (README).
    pub const MAX_BUFFERED_SAMPLES: usize = 2_000_000;
    pub const MAX_SAMPLES_PER_REQUEST: usize = 2_000;
    /// 15 minutes: longer than the outages the issue plans for (10 minutes).
    pub const RETRY_BUDGET_MS: u64 = 900_000;
    pub const BUFFER_DIR_MAX_BYTES: u64 = 1 << 30;
    pub const MIN_BACKOFF_MS: u64 = 30;
    pub const MAX_BACKOFF_MS: u64 = 5_000;
    pub const SET_CAP: usize = 100;
}

fn err<T>(option: &str, msg: impl fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("--{}: {}", option, msg)))
}

fn url(option: &str, v: &str) -> Result<String, ConfigError> {
    let shown = redact_url(v);
    let parsed = match reqwest::Url::parse(v) {
        Ok(u) => u,
        Err(e) => return err(option, format!("'{}' is not a valid URL ({})", shown, e)),
    };
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return err(option, format!("'{}' must be an http:// or https:// URL", shown));
    }
    if parsed.host_str().is_none() {
        return err(option, format!("'{}' has no host", shown));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Options are displayed and shipped by runners: credentials belong in files or variables.
        return err(option, "credentials in the URL are not accepted; use --prometheusBasicAuthUser with --prometheusBasicAuthPasswordFile or --prometheusBasicAuthPasswordEnv");
    }
    Ok(v.to_string())
}

fn number<T: std::str::FromStr>(option: &str, v: &str, min: T) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display + Copy,
{
    match v.trim().parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => err(option, format!("'{}' is below the minimum {}", v, min)),
        Err(_) => err(option, format!("'{}' is not a whole number", v)),
    }
}

fn boolean(option: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => err(option, format!("'{}' is not true or false", v)),
    }
}

/// A label (constant or grouping) whose name must already be valid: silently renaming a label
/// the user typed would surprise more than a clear error.
fn user_label(option: &str, name: &str, reserved: &[&str]) -> Result<String, ConfigError> {
    if label_name(name) != name || name.starts_with("__") {
        return err(option, format!("label name '{}' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", name));
    }
    if reserved.contains(&name) {
        return err(option, format!("label name '{}' is reserved by the exporter (reserved: {})", name, reserved.join(", ")));
    }
    Ok(name.to_string())
}

impl Config {
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut remote_write_url = None;
        let mut pushgateway_url = None;
        let mut job = None;
        let mut prefix = defaults::PREFIX.to_string();
        let mut const_labels = Vec::new();
        let mut grouping = Vec::new();
        let mut selection = Selection::Attempted;
        let mut timeout_ms = defaults::TIMEOUT_MS;
        let mut push_method = PushMethod::Put;
        let mut push_format = PushFormat::Protobuf;
        let mut delete_on_end = false;
        let mut max_buffered_samples = defaults::MAX_BUFFERED_SAMPLES;
        let mut max_samples_per_request = defaults::MAX_SAMPLES_PER_REQUEST;
        let mut max_attempts = None;
        let mut retry_budget_ms = defaults::RETRY_BUDGET_MS;
        let mut buffer_dir = None;
        let mut buffer_dir_max_bytes = defaults::BUFFER_DIR_MAX_BYTES;
        let mut min_backoff_ms = defaults::MIN_BACKOFF_MS;
        let mut max_backoff_ms = defaults::MAX_BACKOFF_MS;
        let mut set_cap = defaults::SET_CAP;
        let mut stale_on_close = false;
        let mut export_self_metrics = true;
        let mut tls = TlsConfig::default();
        let mut basic_user: Option<String> = None;
        let mut basic_password: Vec<Secret> = Vec::new();
        let mut bearer: Vec<Secret> = Vec::new();
        let mut headers = Vec::new();
        let mut proxy_url = None;
        let mut remote_write_protocol = RemoteWriteProtocol::V1;
        let mut utf8_names = false;
        let file = |option: &'static str, v: &str| -> Result<String, ConfigError> {
            match std::fs::metadata(v) {
                Ok(m) if m.is_file() => Ok(v.to_string()),
                Ok(_) => err(option, format!("'{}' is not a file", v)),
                Err(e) => err(option, format!("cannot read '{}': {}", v, e)),
            }
        };
        for (k, v) in pairs {
            let (option, sub) = match k.split_once('.') {
                Some((o, s)) => (o, Some(s)),
                None => (k.as_str(), None),
            };
            match (option, sub) {
                ("prometheusRemoteWriteUrl", None) if !v.is_empty() => remote_write_url = Some(url(option, v)?),
                ("prometheusPushgatewayUrl", None) if !v.is_empty() => pushgateway_url = Some(url(option, v)?),
                ("prometheusRemoteWriteUrl" | "prometheusPushgatewayUrl", None) => {}
                ("prometheusJobName", None) => job = Some(v.clone()),
                ("prometheusMetricPrefix", None) => {
                    if !v.is_empty() && (crate::naming::metric_name(v, "x", "") != format!("{}_x", v)) {
                        return err(option, format!("'{}' is not a valid metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*, no trailing or repeated _)", v));
                    }
                    prefix = v.clone();
                }
                ("prometheusLabels", Some(name)) => {
                    let name = user_label(option, name, RESERVED_LABELS)?;
                    if const_labels.iter().any(|(n, _)| *n == name) {
                        return err(option, format!("label name '{}' is given twice", name));
                    }
                    const_labels.push((name, v.clone()));
                }
                ("prometheusGroupingKey", Some(name)) => {
                    let name = user_label(option, name, crate::naming::RESERVED_GROUPING_LABELS)?;
                    if grouping.iter().any(|(n, _)| *n == name) {
                        return err(option, format!("label name '{}' is given twice", name));
                    }
                    grouping.push((name, v.clone()));
                }
                ("prometheusMetricValues", None) => {
                    selection = match v.to_ascii_uppercase().as_str() {
                        "ATTEMPTED" => Selection::Attempted,
                        "COMMITTED" => Selection::Committed,
                        "BOTH" => Selection::Both,
                        _ => return err(option, format!("'{}' is not ATTEMPTED, COMMITTED or BOTH", v)),
                    }
                }
                ("prometheusTimeoutMillis", None) => timeout_ms = number(option, v, 1u64)?,
                ("prometheusPushMethod", None) => {
                    push_method = match v.to_ascii_uppercase().as_str() {
                        "PUT" => PushMethod::Put,
                        "POST" => PushMethod::Post,
                        _ => return err(option, format!("'{}' is not PUT or POST", v)),
                    }
                }
                ("prometheusPushgatewayFormat", None) => {
                    push_format = match v.to_ascii_uppercase().as_str() {
                        "PROTOBUF" => PushFormat::Protobuf,
                        "TEXT" => PushFormat::Text,
                        _ => return err(option, format!("'{}' is not PROTOBUF or TEXT", v)),
                    }
                }
                ("prometheusRemoteWriteProtocol", None) => {
                    remote_write_protocol = match v.trim() {
                        "1.0" | "1" => RemoteWriteProtocol::V1,
                        "2.0" | "2" => RemoteWriteProtocol::V2,
                        _ => return err(option, format!("'{}' is not 1.0 or 2.0", v)),
                    }
                }
                ("prometheusUtf8Names", None) => utf8_names = boolean(option, v)?,
                ("prometheusDeleteOnEnd", None) => delete_on_end = boolean(option, v)?,
                ("prometheusMaxBufferedSamples", None) => max_buffered_samples = number(option, v, 1usize)?,
                ("prometheusMaxSamplesPerRequest", None) => max_samples_per_request = number(option, v, 1usize)?,
                // Empty or 0: no attempt bound (the default), only the retry budget.
                ("prometheusMaxAttempts", None) if v.trim().is_empty() || v.trim() == "0" => max_attempts = None,
                ("prometheusMaxAttempts", None) => max_attempts = Some(number(option, v, 1u32)?),
                ("prometheusRetryBudgetMillis", None) => retry_budget_ms = number(option, v, 1u64)?,
                ("prometheusBufferDir", None) if !v.is_empty() => buffer_dir = Some(v.clone()),
                ("prometheusBufferDirMaxBytes", None) => buffer_dir_max_bytes = number(option, v, 65_536u64)?,
                ("prometheusMinBackoffMillis", None) => min_backoff_ms = number(option, v, 1u64)?,
                ("prometheusMaxBackoffMillis", None) => max_backoff_ms = number(option, v, 1u64)?,
                ("prometheusSetCap", None) => set_cap = number(option, v, 1usize)?,
                ("prometheusStaleOnEnd", None) => stale_on_close = boolean(option, v)?,
                ("prometheusSelfMetrics", None) => export_self_metrics = boolean(option, v)?,
                ("prometheusTlsCaFile", None) if !v.is_empty() => tls.ca_file = Some(file("prometheusTlsCaFile", v)?),
                ("prometheusTlsCertFile", None) if !v.is_empty() => tls.cert_file = Some(file("prometheusTlsCertFile", v)?),
                ("prometheusTlsKeyFile", None) if !v.is_empty() => tls.key_file = Some(file("prometheusTlsKeyFile", v)?),
                ("prometheusTlsServerName", None) if !v.is_empty() => tls.server_name = Some(v.clone()),
                ("prometheusTlsInsecureSkipVerify", None) => tls.insecure_skip_verify = boolean(option, v)?,
                ("prometheusBasicAuthUser", None) if !v.is_empty() => basic_user = Some(v.clone()),
                ("prometheusBasicAuthPasswordFile", None) if !v.is_empty() => basic_password
                    .push(Secret::File { option: "prometheusBasicAuthPasswordFile", path: file("prometheusBasicAuthPasswordFile", v)? }),
                ("prometheusBasicAuthPasswordEnv", None) if !v.is_empty() => {
                    basic_password.push(Secret::Env { option: "prometheusBasicAuthPasswordEnv", name: v.clone() })
                }
                ("prometheusBearerTokenFile", None) if !v.is_empty() => {
                    bearer.push(Secret::File { option: "prometheusBearerTokenFile", path: file("prometheusBearerTokenFile", v)? })
                }
                ("prometheusBearerTokenEnv", None) if !v.is_empty() => {
                    bearer.push(Secret::Env { option: "prometheusBearerTokenEnv", name: v.clone() })
                }
                ("prometheusHeaders", Some(name)) => {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return err(option, format!("'{}' is not a valid HTTP header name", name));
                    }
                    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                        return err(option, format!("header '{}' is set by the exporter and cannot be overridden (use the auth options for Authorization)", name));
                    }
                    if reqwest::header::HeaderValue::from_str(v).is_err() {
                        return err(option, format!("the value of header '{}' is not a valid HTTP header value", name));
                    }
                    headers.push((name.to_string(), v.clone()));
                }
                ("prometheusProxyUrl", None) if !v.is_empty() => proxy_url = Some(url(option, v)?),
                ("prometheusTlsCaFile" | "prometheusTlsCertFile" | "prometheusTlsKeyFile" | "prometheusTlsServerName"
                | "prometheusBasicAuthUser" | "prometheusBasicAuthPasswordFile" | "prometheusBasicAuthPasswordEnv"
                | "prometheusBearerTokenFile" | "prometheusBearerTokenEnv" | "prometheusProxyUrl" | "prometheusBufferDir", None) => {}
                _ => return Err(ConfigError(format!("unknown exporter option '{}'", k))),
            }
        }
        if remote_write_url.is_none() && pushgateway_url.is_none() {
            return Err(ConfigError(
                "--prometheusRemoteWriteUrl or --prometheusPushgatewayUrl: set at least one (both to export both ways)".into(),
            ));
        }
        let job = match job {
            Some(j) if !j.trim().is_empty() => j,
            _ => return err("prometheusJobName", "must not be empty"),
        };
        if buffer_dir.is_some() && remote_write_url.is_none() {
            return err("prometheusBufferDir", "buffers remote-write requests; set --prometheusRemoteWriteUrl too (the Pushgateway only ever needs the newest push)");
        }
        if min_backoff_ms > max_backoff_ms {
            return err("prometheusMinBackoffMillis", format!("{} is above --prometheusMaxBackoffMillis {}", min_backoff_ms, max_backoff_ms));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let missing = if tls.cert_file.is_none() { "prometheusTlsCertFile" } else { "prometheusTlsKeyFile" };
            return err(missing, "a client certificate needs both --prometheusTlsCertFile and --prometheusTlsKeyFile");
        }
        if basic_password.len() > 1 {
            return err("prometheusBasicAuthPasswordFile", "set either it or --prometheusBasicAuthPasswordEnv, not both");
        }
        if bearer.len() > 1 {
            return err("prometheusBearerTokenFile", "set either it or --prometheusBearerTokenEnv, not both");
        }
        let basic_auth = match (basic_user, basic_password.pop()) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => return err("prometheusBasicAuthPasswordFile", "--prometheusBasicAuthUser needs a password: --prometheusBasicAuthPasswordFile or --prometheusBasicAuthPasswordEnv"),
            (None, Some(_)) => return err("prometheusBasicAuthUser", "a basic-auth password is set but no user"),
        };
        let bearer_token = bearer.pop();
        if basic_auth.is_some() && bearer_token.is_some() {
            return err("prometheusBearerTokenFile", "choose basic auth or a bearer token, not both");
        }
        for secret in basic_auth.iter().map(|(_, s)| s).chain(bearer_token.iter()) {
            secret.read().map_err(ConfigError)?;
        }
        if remote_write_url.is_some() && pushgateway_url.is_some() && grouping.is_empty() {
            log::warn!(
                "exporting both ways with no --prometheusGroupingKey: if the receiver also scrapes the gateway, \
                 both copies are one series and Prometheus refuses one (\"out of order sample\"); add e.g. {{\"instance\":\"…\"}}"
            );
        }
        // A grouping key `namespace` moves Beam's label to `beam_namespace`: a constant label of
        // that name would be a second one.
        for (k, _) in grouping.iter().filter(|(k, _)| crate::naming::RENAMED_FOR_GROUPING.contains(&k.as_str())) {
            let moved = format!("beam_{}", k);
            if const_labels.iter().any(|(c, _)| *c == moved) {
                return err("prometheusLabels", format!("label name '{}' is where --prometheusGroupingKey '{}' moves Beam's label", moved, k));
            }
        }
        if utf8_names && pushgateway_url.is_some() {
            // The gateway (1.5.1 here) and the 0.0.4 text format take only legacy names.
            return err("prometheusUtf8Names", "UTF-8 names are for remote-write receivers that accept them; the Pushgateway takes legacy names only: leave --prometheusPushgatewayUrl unset");
        }
        const_labels.sort();
        Ok(Config {
            remote_write_url,
            pushgateway_url,
            remote_write_protocol,
            naming: NamingConfig {
                prefix,
                job,
                const_labels,
                selection,
                set_cap,
                taken_labels: grouping.iter().map(|(k, _)| k.clone()).collect(),
                utf8_names,
            },
            grouping,
            push_method,
            push_format,
            delete_on_end,
            timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_millis(timeout_ms.min(defaults::CONNECT_TIMEOUT_MS)),
            max_buffered_samples,
            max_samples_per_request,
            max_attempts,
            retry_budget: Duration::from_millis(retry_budget_ms),
            buffer_dir,
            buffer_dir_max_bytes,
            min_backoff: Duration::from_millis(min_backoff_ms),
            max_backoff: Duration::from_millis(max_backoff_ms),
            stale_on_close,
            export_self_metrics,
            tls,
            basic_auth,
            bearer_token,
            headers,
            proxy_url,
        })
    }

    /// Parses the pairs from the contract's string encoding (`u32 count`, then key and value
    /// strings), as the Java side sends them.
    pub fn from_bytes(buf: &[u8]) -> Result<Config, ConfigError> {
        let mut r = crate::contract::Reader::new(buf);
        let pairs = (|| {
            let n = r.count(8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.string()?, r.string()?));
            }
            Ok::<_, crate::contract::DecodeError>(pairs)
        })()
        .map_err(|e| ConfigError(format!("malformed options buffer: {}", e)))?;
        Config::from_pairs(&pairs)
    }
}
