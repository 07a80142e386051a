//! TLS on the gateway's own listeners (statsd over TLS, HTTPS on the HTTP listener).
//!
//! Owns: reading a PEM certificate chain, its private key and an optional client CA into a
//! rustls [`ServerConfig`], and the swappable holder each listener takes a config from per
//! connection (so a reload can replace a certificate without closing the listener). Must
//! never: log or return key material (errors name the file and the problem, never the PEM),
//! or accept a key that does not match its certificate.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The files of one TLS listener, as configured (`*.tls_cert`, `*.tls_key`, `*.tls_client_ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    /// Empty: no client certificate asked for.
    pub client_ca: String,
}

/// Which of the three files a failure is about, so the caller can name its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
    ClientCa,
}

/// A certificate, key or CA bundle that cannot serve: which file, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    pub file: TlsFile,
    pub message: String,
}

fn fail(file: TlsFile, message: String) -> TlsError {
    TlsError { file, message }
}

/// The crypto provider every TLS config of the gateway uses (the one reqwest links too).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(path: &str, file: TlsFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| fail(file, format!("cannot read {path:?}: {e}")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(file, format!("{path:?} is not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(file, format!("{path:?} holds no PEM certificate")));
    }
    Ok(certs)
}

/// A rustls server config from `files`, offering `alpn` (empty: none).
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert, TlsFile::Cert)?;
    // The error text of pki-types names the PEM section, never its contents.
    let key = PrivateKeyDer::from_pem_file(Path::new(&files.key)).map_err(|e| {
        fail(
            TlsFile::Key,
            format!("{:?} holds no usable PEM private key: {e}", files.key),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(TlsFile::Cert, format!("TLS versions: {e}")))?;
    let builder = if files.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in certificates(&files.client_ca, TlsFile::ClientCa)? {
            roots.add(ca).map_err(|e| {
                fail(
                    TlsFile::ClientCa,
                    format!(
                        "{:?}: a certificate is not a usable CA: {e}",
                        files.client_ca
                    ),
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| fail(TlsFile::ClientCa, format!("{:?}: {e}", files.client_ca)))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        fail(
            TlsFile::Key,
            format!("{:?} does not serve {:?}: {e}", files.key, files.cert),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The config a TLS listener hands each new connection; [`ServerTls::replace`] swaps it for
/// the connections accepted after (open ones keep theirs).
#[derive(Debug)]
pub struct ServerTls {
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    pub fn new(config: Arc<ServerConfig>) -> Arc<ServerTls> {
        Arc::new(ServerTls {
            current: RwLock::new(config),
        })
    }

    /// The config for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut g) => *g = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}
