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
                Some(ServerTls::new(tls_config(config)?))
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

/// The TLS listener's rustls config from `statsd.tls_cert`, `statsd.tls_key` and
/// `statsd.tls_client_ca`, read now (at start and on every reload); an error names the key.
pub fn tls_config(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    crate::tls::server_config(&crate::config::statsd_tls(config), &[]).map_err(|e| {
        let file = match e.file {
            crate::tls::TlsFile::Cert => "statsd.tls_cert",
            crate::tls::TlsFile::Key => "statsd.tls_key",
            crate::tls::TlsFile::ClientCa => "statsd.tls_client_ca",
        };
        anyhow::anyhow!("{file}: {}", e.message)
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
            stopped,
            runtime: runtime.clone(),
            settings: self.settings,
            ingests: Vec::new(),
            accepting: Vec::new(),
        };
        for l in self.listeners {
            running.ingests.push(l.ingest);
            running.accept(l.socket, l.transport, l.addr, l.tls)?;
        }
        Ok(running)
    }
}

/// One listener's accept loop, as a reload may retire it.
struct Accepting {
    transport: Transport,
    addr: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    retire: tokio::sync::watch::Sender<bool>,
}

/// The accepting listeners.
pub struct Running {
    /// Ends the accept loops and the connections (at shutdown).
    stop: tokio::sync::watch::Sender<bool>,
    stopped: tokio::sync::watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
    settings: Arc<accept::Settings>,
    ingests: Vec<Ingest>,
    accepting: Vec<Accepting>,
}

impl Running {
    /// Starts accepting on `socket` into `transport`'s ingest thread; the loop it replaces,
    /// if any, stops accepting (its connections live on).
    fn accept(
        &mut self,
        socket: tokio::net::TcpListener,
        transport: Transport,
        addr: SocketAddr,
        tls: Option<Arc<ServerTls>>,
    ) -> anyhow::Result<()> {
        let sender = self
            .ingests
            .iter()
            .find(|i| i.transport == transport)
            .and_then(Ingest::sender)
            .context("the ingest thread's channel is already closed")?;
        let (retire, retired) = tokio::sync::watch::channel(false);
        self.runtime.spawn(accept::accept_loop(
            socket,
            transport,
            tls.clone(),
            sender,
            Arc::clone(&self.settings),
            self.stopped.clone(),
            retired,
        ));
        let new = Accepting {
            transport,
            addr,
            tls,
            retire,
        };
        if let Some(old) = self.accepting.iter_mut().find(|a| a.transport == transport) {
            std::mem::replace(old, new).retire.send_replace(true);
        } else {
            self.accepting.push(new);
        }
        Ok(())
    }

    fn of(&self, transport: Transport) -> Option<&Accepting> {
        self.accepting.iter().find(|a| a.transport == transport)
    }

    /// (`tcp`, `tls`) addresses as bound; `None` for one not configured.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |t| self.of(t).map(|a| a.addr);
        (addr(Transport::Tcp), addr(Transport::Tls))
    }

    /// The TLS listener's certificate holder, for a reload to [`ServerTls::replace`];
    /// `None` when `statsd.tls_listen` is off.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.of(Transport::Tls).and_then(|a| a.tls.clone())
    }

    /// Binds `addr` for [`Running::move_to`] (a reload changed `statsd.tcp_listen` or
    /// `statsd.tls_listen`); nothing changes yet, so a later failure of the reload costs
    /// nothing but this socket.
    pub fn bind_new(&self, addr: SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
        let _guard = self.runtime.enter();
        listen_on(addr).with_context(|| format!("{key}: cannot listen on TCP {addr}"))
    }

    /// Moves `transport`'s listener to `socket`: the new address accepts before the old
    /// stops accepting, and connections open on the old one live on into the same ingest
    /// thread. The other listener is untouched.
    pub fn move_to(
        &mut self,
        transport: Transport,
        socket: tokio::net::TcpListener,
    ) -> anyhow::Result<SocketAddr> {
        let Some(tls) = self.of(transport).map(|a| a.tls.clone()) else {
            anyhow::bail!("turning a stream listener on needs a restart");
        };
        let bound = socket.local_addr()?;
        self.accept(socket, transport, bound, tls)?;
        Ok(bound)
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
