//! A rustls client (the sync API over a std socket) that trusts the test PKI's CA, and the
//! raw ClientHello it would send, for a peer that stalls mid-handshake.

use crate::common::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Trusts `pki.ca`; presents `pki.client_cert` when `with_cert`.
pub fn client_config(pki: &Pki, with_cert: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).expect("CA PEM"))
        .expect("CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = CertificateDer::pem_file_iter(&pki.client_cert)
            .expect("client PEM")
            .collect::<Result<Vec<_>, _>>()
            .expect("client chain");
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).expect("client key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// An open TLS connection to the gateway, verified for `127.0.0.1`.
pub struct Client(StreamOwned<ClientConnection, TcpStream>);

impl Client {
    /// Connects and completes the handshake (from the client's side).
    pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<Client> {
        let name = ServerName::IpAddress(addr.ip().into());
        let conn =
            ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
        let sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client(stream))
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    /// close_notify, then waits for the gateway to close its side.
    pub fn close(mut self) -> std::io::Result<()> {
        self.0.conn.send_close_notify();
        self.0.flush()?;
        self.0.sock.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        // The gateway does not answer on the stream; its close ends the read.
        let _ = self.0.read_to_end(&mut rest);
        Ok(())
    }
}

/// Connects, sends `bytes`, closes: how a short-lived TLS sender behaves.
pub fn send_once(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut c = Client::connect(addr, config)?;
    c.send(bytes)?;
    c.close()
}

/// The first flight a real client sends (its ClientHello record), without any socket.
pub fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = ClientConnection::new(Arc::clone(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write to a Vec");
    }
    out
}
