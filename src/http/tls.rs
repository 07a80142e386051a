//! HTTPS on the HTTP listener (`http.tls_cert`, `http.tls_key`, `http.tls_client_ca`).
//!
//! Owns: the listener's rustls config (ALPN `http/1.1`, client certificates when a client
//! CA is set), each accepted connection's handshake under a time bound, the short 400 that a
//! plain-HTTP request to the HTTPS port gets, and the counts of failed handshakes. Must
//! never: run a handshake on the accept loop (a stalled peer holds only its own
//! connection), hand hyper a connection whose handshake has not finished, or log or return
//! key material (errors name the config key and the file).

use super::serve::ListenerStats;
use crate::tls::{ServerTls, TlsFile, TlsFiles};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// The only application protocol served: hyper here speaks HTTP/1.1, so a client that
/// offers ALPN is told so at the handshake rather than after it.
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

/// At most this long, and this many bytes, are read and thrown away after the plain-HTTP
/// answer, so that closing with the request unread does not reset the connection before
/// the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// The HTTP listener's rustls config from `files` (what a reload builds and hands to
/// [`ServerTls::replace`]).
pub fn config(files: &TlsFiles) -> Result<Arc<ServerConfig>, crate::tls::TlsError> {
    crate::tls::server_config(files, ALPN)
}

/// The config key a failure of `file` is about.
pub fn key(file: TlsFile) -> &'static str {
    match file {
        TlsFile::Cert => "http.tls_cert",
        TlsFile::Key => "http.tls_key",
        TlsFile::ClientCa => "http.tls_client_ca",
    }
}

/// The swappable holder the listener takes each connection's config from.
pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<ServerTls>> {
    config(files)
        .map(ServerTls::new)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key(e.file)))
}

/// Why a connection never reached hyper; each is counted on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The handshake failed: not TLS, an alert from the client (it does not trust the
    /// certificate), no or an untrusted client certificate, or closed before finishing.
    Error,
    /// Not finished within the bound (`http.header_timeout`).
    Timeout,
    /// A plain HTTP request on the HTTPS port (answered 400, then closed).
    PlainHttp,
}

fn count(stats: &ListenerStats, failure: Failure) {
    let counter = match failure {
        Failure::Error => &stats.tls_handshake_errors,
        Failure::Timeout => &stats.tls_handshake_timeouts,
        Failure::PlainHttp => &stats.tls_plain_http,
    };
    counter.fetch_add(1, Relaxed);
}

/// Runs the server side of the handshake on `stream` with `config`, all of it (the first
/// byte included) within `within`. `None`: the connection failed, was counted and is closed.
pub async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    within: Duration,
    stats: &ListenerStats,
) -> Option<TlsStream<TcpStream>> {
    let deadline = Instant::now() + within;
    let (failure, detail) = match first_byte(&stream, deadline).await {
        Err(failed) => failed,
        // A TLS record starts with its content type (0x16 for a handshake); an HTTP
        // request starts with an upper-case method.
        Ok(b) if b.is_ascii_uppercase() => {
            // Counted before the answer, so the count is there once the client has it.
            count(stats, Failure::PlainHttp);
            tracing::debug!(%peer, "plain HTTP on the HTTPS port: answered 400");
            answer_plain_http(stream, deadline).await;
            return None;
        }
        Ok(_) => {
            let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
            match tokio::time::timeout_at(deadline, accept).await {
                Ok(Ok(tls)) => return Some(tls),
                Ok(Err(e)) => (Failure::Error, e.to_string()),
                Err(_) => (Failure::Timeout, "handshake not finished in time".into()),
            }
        }
    };
    count(stats, failure);
    // rustls's errors name alerts and messages, never key material.
    tracing::debug!(%peer, ?failure, error = %detail, "https handshake failed");
    None
}

/// The connection's first byte, left in the socket for rustls to read.
async fn first_byte(stream: &TcpStream, deadline: Instant) -> Result<u8, (Failure, String)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => Err((Failure::Timeout, "no byte before the deadline".into())),
        Ok(Err(e)) => Err((Failure::Error, e.to_string())),
        Ok(Ok(0)) => Err((Failure::Error, "closed before a ClientHello".into())),
        Ok(Ok(_)) => Ok(first[0]),
    }
}

/// A 400 with the JSON error shape of every other refusal, so that a sender configured with
/// `http://` learns why instead of seeing a reset.
async fn answer_plain_http(mut stream: TcpStream, deadline: Instant) {
    let body = r#"{"error":"this port serves HTTPS only (http.tls_cert is set): use https://","field":null}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let linger = deadline.min(Instant::now() + LINGER);
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout_at(linger, write).await, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(linger, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_http_keys() {
        assert_eq!(key(TlsFile::Cert), "http.tls_cert");
        assert_eq!(key(TlsFile::Key), "http.tls_key");
        assert_eq!(key(TlsFile::ClientCa), "http.tls_client_ca");
    }

    #[test]
    fn a_certificate_that_is_not_pem_is_refused_naming_http_tls_cert() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not PEM").unwrap();
        let files = TlsFiles {
            cert: cert.display().to_string(),
            key: dir.path().join("absent.key").display().to_string(),
            client_ca: String::new(),
        };
        let e = load(&files).unwrap_err().to_string();
        assert!(e.starts_with("http.tls_cert: "), "{e}");
    }
}
