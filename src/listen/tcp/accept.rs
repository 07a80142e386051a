//! Accepting on one TCP or TLS listener: the allow-list, the shared connection limit, the
//! connection counters and, for TLS, the bounded handshake.
//!
//! Owns: what happens between `accept` and a connection's first read. Must never: read a
//! byte from a peer outside `statsd.allow` or beyond `statsd.tcp_max_connections`, wait on a
//! connection in the accept loop (each runs in its own task), or spin on a failing accept.

use super::conn;
use crate::listen::stream::ChunkSender;
use crate::telemetry::{ConnOutcome, Telemetry, Transport, TransportStats};
use crate::tls::ServerTls;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// After a failed accept (out of file descriptors, say): the pause before the next, so a
/// failure that persists costs no CPU.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this long about failing accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What every accept loop and connection task of the TCP module shares.
pub struct Settings {
    /// `statsd.tcp_max_connections`, shared with the Unix stream socket.
    pub connections: Arc<Semaphore>,
    /// How connections read; its telemetry is the counters' too.
    pub conn: conn::Settings,
    /// The time a TLS handshake may take.
    pub handshake: Duration,
}

/// Accepts until `stop` (which ends the connections too) or `retire` (a reload moved the
/// listener: only accepting ends here); each connection gets a task of its own.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    transport: Transport,
    tls: Option<Arc<ServerTls>>,
    sender: ChunkSender,
    settings: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
    mut retire: watch::Receiver<bool>,
) {
    let Some(stats) = settings.conn.telemetry.transport(transport) else {
        return;
    };
    let mut warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = retire.changed() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        transport = transport.label(),
                        error = %e,
                        "statsd stream accept failed; retrying (raise `ulimit -n` if out of files)"
                    );
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // `statsd.allow` as it is now: a reload applies from the next connection.
        if !settings.conn.readers.get().allow.permits(peer.ip()) {
            stats.connection(ConnOutcome::Denied);
            continue;
        }
        let Ok(permit) = Arc::clone(&settings.connections).try_acquire_owned() else {
            stats.connection(ConnOutcome::Limit);
            continue;
        };
        stats.connection(ConnOutcome::Accepted);
        let open = Open::new(transport, &settings.conn.telemetry, permit);
        tokio::spawn(connection(
            stream,
            peer,
            open,
            tls.as_ref().map(|t| t.current()),
            sender.clone(),
            Arc::clone(&settings),
            stop.clone(),
        ));
    }
}

/// One open connection: counted in `stream_connections_open` and holding a slot of the
/// shared limit until dropped, however the connection ends.
struct Open {
    transport: Transport,
    telemetry: Arc<Telemetry>,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(transport: Transport, telemetry: &Arc<Telemetry>, permit: OwnedSemaphorePermit) -> Open {
        if let Some(s) = telemetry.transport(transport) {
            s.open.fetch_add(1, Relaxed);
        }
        Open {
            transport,
            telemetry: Arc::clone(telemetry),
            _permit: permit,
        }
    }

    fn stats(&self) -> Option<&TransportStats> {
        self.telemetry.transport(self.transport)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(s) = self.stats() {
            s.open.fetch_sub(1, Relaxed);
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    open: Open,
    tls: Option<Arc<rustls::ServerConfig>>,
    sender: ChunkSender,
    settings: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
) {
    let transport = open.transport;
    let ended = match tls {
        None => conn::serve(stream, Some(peer), transport, &sender, &settings.conn, stop).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = tokio::time::timeout(settings.handshake, acceptor.accept(stream));
            let done = tokio::select! {
                biased;
                // Nothing was read from a peer still shaking hands: nothing to hand over.
                _ = stop.changed() => return,
                r = handshake => r,
            };
            match done {
                Ok(Ok(tls)) => {
                    conn::serve(tls, Some(peer), transport, &sender, &settings.conn, stop).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "statsd TLS handshake failed");
                    Some(ConnOutcome::Handshake)
                }
                Err(_) => {
                    tracing::debug!(%peer, "statsd TLS handshake timed out");
                    Some(ConnOutcome::Handshake)
                }
            }
        }
    };
    if let (Some(outcome), Some(s)) = (ended, open.stats()) {
        s.connection(outcome);
    }
}
