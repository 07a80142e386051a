//! Certificates re-read on reload (issue 15's "certificate reload on SIGHUP"): the same
//! paths with a new certificate from another CA serve the new one to the next handshake,
//! on the HTTPS listener and on the statsd TLS listener; a broken key keeps the old one.

use super::common::pki::Pki;
use super::common::start;
use std::path::Path;
use std::time::Duration;

fn trusts(ca: &Path, url: &str) -> bool {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { client.get(url).send().await.is_ok() })
}

/// Whether a TLS handshake with `addr`, trusting only `ca`, succeeds (rustls, as a statsd
/// TLS sender would).
fn statsd_tls_trusts(ca: &Path, addr: std::net::SocketAddr) -> bool {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            return false;
        }
    }
    true
}

fn copy(from: &Pki, to: &Path) {
    std::fs::copy(&from.cert, to.join("server.pem")).unwrap();
    std::fs::copy(&from.key, to.join("server.key")).unwrap();
}

#[test]
fn new_certificates_at_the_same_paths_serve_the_next_handshake() {
    let (a, b) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    copy(&a, dir.path());
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let yaml = format!(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nhttp:\n  tls_cert: {c}\n  tls_key: {k}\nstatsd:\n  tls_listen: 127.0.0.1:0\n  tls_cert: {c}\n  tls_key: {k}\n",
        c = cert.display(),
        k = key.display()
    );
    let gw = start(&yaml);
    let url = format!("https://127.0.0.1:{}/status", gw.http.port());
    let tls = gw.stream_addr("tls");
    assert!(trusts(&a.ca, &url) && !trusts(&b.ca, &url));
    assert!(statsd_tls_trusts(&a.ca, tls) && !statsd_tls_trusts(&b.ca, tls));

    copy(&b, dir.path());
    let (outcome, message) = gw.reload_with(&yaml);
    assert_eq!(outcome, "unchanged", "{message}");
    assert!(message.contains("HTTPS certificate re-read"), "{message}");
    assert!(
        message.contains("statsd TLS certificate re-read"),
        "{message}"
    );
    assert!(
        trusts(&b.ca, &url) && !trusts(&a.ca, &url),
        "HTTPS serves the new one"
    );
    assert!(statsd_tls_trusts(&b.ca, tls) && !statsd_tls_trusts(&a.ca, tls));

    // A key that is not the certificate's: refused by name, the running certificate stays.
    std::fs::copy(&a.key, &key).unwrap();
    let (outcome, message) = gw.reload_with(&yaml);
    assert_eq!(outcome, "failed", "{message}");
    assert!(
        message.contains("statsd.tls_key") || message.contains("http.tls_key"),
        "{message}"
    );
    assert!(trusts(&b.ca, &url), "the old certificate still serves");
}
