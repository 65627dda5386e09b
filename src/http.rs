//! HTTP client set-up shared by both destinations: TLS (rustls: system roots plus an optional CA
//! file, client certificate, server-name override, opt-in insecure mode), authentication read
//! from files or environment variables at each request, extra headers, proxy.
//! Secrets are never stored in `Config`: only where to read them.

use crate::config::{Config, Secret};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the certificate against another name than the URL's host.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// --prometheusTlsInsecureSkipVerify: signatures still checked, the certificate chain not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read_certs(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--{}: cannot read '{}': {}", option, path, e))?
        .collect();
    let certs = certs.map_err(|e| format!("--{}: '{}' is not a PEM certificate file: {}", option, path, e))?;
    if certs.is_empty() {
        return Err(format!("--{}: '{}' holds no PEM certificate", option, path));
    }
    Ok(certs)
}

fn tls_config(cfg: &Config) -> Result<rustls::ClientConfig, String> {
    let tls = &cfg.tls;
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {}", e))?;
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &tls.ca_file {
        for c in read_certs("prometheusTlsCaFile", ca)? {
            roots.add(c).map_err(|e| format!("--prometheusTlsCaFile: '{}': {}", ca, e))?;
        }
    } else if added == 0 {
        log::warn!("no system CA certificates found; https URLs need --prometheusTlsCaFile");
    }
    let roots = Arc::new(roots);
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        log::warn!("--prometheusTlsInsecureSkipVerify=true: server certificates are NOT verified; anyone on the path can read and alter the metrics and credentials");
        Arc::new(AcceptAnyCertificate(provider.clone()))
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("--prometheusTlsCaFile: {}", e))?;
        match &tls.server_name {
            Some(name) => Arc::new(NameOverride {
                inner: webpki,
                name: ServerName::try_from(name.clone())
                    .map_err(|e| format!("--prometheusTlsServerName: '{}' is not a DNS name or IP address: {}", name, e))?,
            }),
            None => webpki,
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs("prometheusTlsCertFile", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--prometheusTlsKeyFile: '{}' holds no usable PEM private key: {}", key, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("--prometheusTlsCertFile/--prometheusTlsKeyFile: {}", e))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

pub fn build_client(cfg: &Config) -> Result<reqwest::blocking::Client, String> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.connect_timeout)
        .user_agent(concat!("beam-prometheus/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(tls_config(cfg)?);
    if let Some(proxy) = &cfg.proxy_url {
        b = b.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|e| format!("--prometheusProxyUrl: {}", e.without_url()))?);
    }
    // reqwest's blocking client does its I/O on a thread that `build` starts, which inherits the
    // scheduling policy of the thread that builds it: one that gives way (background.rs).
    let built = std::thread::scope(|s| {
        s.spawn(move || {
            crate::background::give_way();
            b.build()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    built.map_err(|e| format!("cannot build the HTTP client: {}", crate::delivery::error_chain(&e.without_url())))
}

/// Adds the configured headers and credentials; secrets are read now, so rotated files apply.
pub fn authorize(cfg: &Config, mut b: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::RequestBuilder, String> {
    for (k, v) in &cfg.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some((user, password)) = &cfg.basic_auth {
        b = b.basic_auth(user, Some(password.read()?));
    }
    if let Some(token) = &cfg.bearer_token {
        b = b.bearer_auth(token.read()?);
    }
    Ok(b)
}

/// Names the usual TLS failures in words a user can act on.
pub fn explain(message: &str) -> String {
    let hint = if message.contains("UnknownIssuer") || message.contains("unknown issuer") {
        " (unknown CA: the server's certificate is not signed by a trusted CA; see --prometheusTlsCaFile)"
    } else if message.contains("NotValidForName") || message.contains("not valid for name") {
        " (name mismatch: the certificate is not valid for this host; see --prometheusTlsServerName)"
    } else if message.contains("Expired") || message.contains("certificate expired") {
        " (the server's certificate has expired)"
    } else if message.contains("CertificateRequired") || message.contains("certificate required") {
        " (the server requires a client certificate: set --prometheusTlsCertFile and --prometheusTlsKeyFile)"
    } else {
        ""
    };
    format!("{}{}", message, hint)
}

impl Secret {
    /// The secret's value, without a trailing newline; errors name the reference, never a value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::File { option, path } => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("--{}: cannot read '{}': {}", option, path, e)),
            Secret::Env { option, name } => {
                std::env::var(name).map_err(|_| format!("--{}: environment variable {} is not set", option, name))
            }
        }
    }
}
