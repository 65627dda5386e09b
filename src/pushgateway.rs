//! The Pushgateway: text exposition format 0.0.4 bodies and grouping-key URLs.
//! API: https://github.com/prometheus/pushgateway#api

use crate::naming::{FamilyType, Mapped};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// As `naming::format_float`, without a String per value.
fn write_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{}", v);
    }
}

fn type_word(t: FamilyType) -> &'static str {
    match t {
        FamilyType::Counter => "counter",
        FamilyType::Gauge | FamilyType::Info => "gauge",
        FamilyType::Summary => "summary",
        FamilyType::Histogram => "histogram",
    }
}

/// Renders the families as one text-format body: one block per family, no timestamps (the
/// gateway rejects them), and without the labels that the grouping key already sets.
pub fn render(mapped: &Mapped, grouping_labels: &[&str]) -> String {
    let mut out = String::with_capacity(mapped.sample_count() * 96);
    for f in &mapped.families {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape_help(&f.help, &mut out);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(type_word(f.typ));
        out.push('\n');
        for s in &f.samples {
            out.push_str(&s.name);
            let mut first = true;
            for (k, v) in s.labels.iter().filter(|(k, _)| !grouping_labels.contains(&&**k)) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(v, &mut out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            write_float(s.value, &mut out);
            out.push('\n');
        }
    }
    out
}

/// base64url with padding, as the gateway's `@base64` suffix expects.
pub fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `{base}/metrics/job@base64/{job}/{label}@base64/{value}…`: every value base64url-encoded,
/// which the gateway accepts for any value and which needs no percent-encoding rules
/// (an empty value becomes `=`).
pub fn group_url(base: &str, job: &str, grouping: &[(String, String)]) -> String {
    let enc = |v: &str| if v.is_empty() { "=".to_string() } else { base64url(v.as_bytes()) };
    let mut url = format!("{}/metrics/job@base64/{}", base.trim_end_matches('/'), enc(job));
    for (k, v) in grouping {
        let _ = write!(url, "/{}@base64/{}", k, enc(v));
    }
    url
}
