//! TCP: statsd over plain TCP (`statsd.tcp_listen`) and over TLS (`statsd.tls_listen`).
//!
//! Owns: binding both listeners, accepting under `statsd.tcp_max_connections` (shared with
//! the Unix stream socket) and `statsd.allow` (checked at accept, before a byte is read),
//! the TLS handshake (rustls, with a bounded time to finish it), the idle timeout, and each
//! connection's read loop through a [`Framer`](super::stream::Framer) into its transport's
//! [`Ingest`](super::stream::Ingest). Must never: run on a UDP reader thread, hold more than
//! one read buffer and one partial line per connection, or let a stalled peer hold anything
//! but its own connection.

mod accept;
pub mod conn;

use super::LiveReaders;
use super::stream::Ingest;
use crate::aggregate::Shard;
use crate::config::Config;
use crate::telemetry::{Telemetry, Transport};
use crate::tls::ServerTls;
use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections the kernel may hold completed but not yet accepted, per listener: enough for
/// a thousand senders that all connect at once (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// The longest a TLS handshake may take (or `statsd.tcp_idle_timeout` when shorter): a peer
/// that stalls mid-handshake holds its socket and a connection slot no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One bound listener and the ingest thread its connections feed.
struct Listener {
    transport: Transport,
    socket: tokio::net::TcpListener,
    addr: SocketAddr,
    ingest: Ingest,
    tls: Option<Arc<ServerTls>>,
}

/// The TCP and TLS listeners, bound (so a taken port fails start-up) but not yet accepting.
pub struct Bound {
    listeners: Vec<Listener>,
    settings: Arc<accept::Settings>,
}

/// Binds whatever of `statsd.tcp_listen` and `statsd.tls_listen` is configured.
pub fn bind(
    config: &Config,
    readers: &LiveReaders,
    telemetry: &Arc<Telemetry>,
    connections: &Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Bound> {
    let s = &config.statsd;
    let mut listeners = Vec::new();
    for (transport, key, value) in [
        (Transport::Tcp, "statsd.tcp_listen", &s.tcp_listen),
        (Transport::Tls, "statsd.tls_listen", &s.tls_listen),
    ] {
        if value.is_empty() {
            continue;
        }
        let addr: SocketAddr = value
            .parse()
            .with_context(|| format!("{key}: {value:?} is not an address"))?;
        let socket =
            listen_on(addr).with_context(|| format!("{key}: cannot listen on TCP {addr}"))?;
        let addr = socket.local_addr().unwrap_or(addr);
        let tls = match transport {
            Transport::Tls => {
                // Checked at load already; a file changed since is still refused by name.
                let files = crate::config::statsd_tls(config);
                let server = crate::tls::server_config(&files, &[]).map_err(|e| {
                    let file = match e.file {
                        crate::tls::TlsFile::Cert => "statsd.tls_cert",
                        crate::tls::TlsFile::Key => "statsd.tls_key",
                        crate::tls::TlsFile::ClientCa => "statsd.tls_client_ca",
                    };
                    anyhow::anyhow!("{file}: {}", e.message)
                })?;
                Some(ServerTls::new(server))
            }
            _ => None,
        };
        let ingest = Ingest::start(transport, readers, telemetry)
            .with_context(|| format!("starting the {} ingest thread", transport.label()))?;
        listeners.push(Listener {
            transport,
            socket,
            addr,
            ingest,
            tls,
        });
    }
    let settings = Arc::new(accept::Settings {
        connections: Arc::clone(connections),
        conn: conn::Settings {
            telemetry: Arc::clone(telemetry),
            readers: Arc::clone(readers),
            idle: s.tcp_idle_timeout.get(),
        },
        handshake: HANDSHAKE_TIMEOUT.min(s.tcp_idle_timeout.get()),
    });
    Ok(Bound {
        listeners,
        settings,
    })
}

/// A listening socket: SO_REUSEADDR (a restart rebinds while old connections linger in
/// TIME_WAIT) and, on `[::]`, dual stack as the UDP socket is. Must be called inside the
/// streams runtime, which the socket is registered with.
fn listen_on(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

impl Bound {
    /// The shards of the transports' ingest threads, for the flusher.
    pub fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        self.listeners
            .iter()
            .map(|l| Arc::clone(&l.ingest.shard))
            .collect()
    }

    /// Starts accepting on `runtime` (the stream listeners' own).
    pub fn start(self, runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut running = Running {
            stop,
            ingests: Vec::new(),
            tcp: None,
            tls: None,
        };
        for l in self.listeners {
            let sender = l
                .ingest
                .sender()
                .context("the ingest thread's channel is already closed")?;
            match l.transport {
                Transport::Tls => running.tls = Some((l.addr, l.tls.clone())),
                _ => running.tcp = Some(l.addr),
            }
            runtime.spawn(accept::accept_loop(
                l.socket,
                l.transport,
                l.tls,
                sender,
                Arc::clone(&self.settings),
                stopped.clone(),
            ));
            running.ingests.push(l.ingest);
        }
        Ok(running)
    }
}

/// The accepting listeners.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    ingests: Vec<Ingest>,
    tcp: Option<SocketAddr>,
    tls: Option<(SocketAddr, Option<Arc<ServerTls>>)>,
}

impl Running {
    /// (`tcp`, `tls`) addresses as bound; `None` for one not configured.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.tcp, self.tls.as_ref().map(|(a, _)| *a))
    }

    /// The TLS listener's certificate holder, for a reload to [`ServerTls::replace`];
    /// `None` when `statsd.tls_listen` is off.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.as_ref().and_then(|(_, t)| t.clone())
    }

    /// Stops accepting, ends the connections (each processes what it already read, its
    /// final unterminated line included) and the ingest threads; false if still running at
    /// `deadline`.
    pub fn stop(mut self, deadline: Instant) -> bool {
        // Every accept loop and connection task watches this; each drops its sender once its
        // lines are handed over, and an ingest thread ends when the last sender is gone.
        self.stop.send_replace(true);
        let handles = self
            .ingests
            .iter_mut()
            .filter_map(Ingest::close)
            .collect::<Vec<_>>();
        crate::shutdown::join_until(handles, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv6_wildcard_also_takes_ipv4_peers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Hosts without IPv6 cannot bind `[::]`: nothing to check there.
            let Ok(l) = listen_on("[::]:0".parse().unwrap()) else {
                return;
            };
            let port = l.local_addr().unwrap().port();
            let c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            assert!(c.is_ok(), "{c:?}");
            let (_, peer) = l.accept().await.unwrap();
            assert!(peer.ip().to_canonical().is_loopback());
        });
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
            let taken = first.local_addr().unwrap();
            assert!(listen_on(taken).is_err());
        });
    }
}
