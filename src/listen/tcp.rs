//! TCP: statsd over plain TCP (`statsd.tcp_listen`) and over TLS (`statsd.tls_listen`).
//!
//! Owns: binding both listeners, accepting under `statsd.tcp_max_connections` (shared with
//! the Unix stream socket) and `statsd.allow` (checked at accept, before a byte is read),
//! the TLS handshake (rustls, with a bounded time to finish it), the idle timeout, and each
//! connection's read loop through a [`Framer`](super::stream::Framer) into its transport's
//! [`Ingest`](super::stream::Ingest). Must never: run on a UDP reader thread, hold more than
//! one read buffer and one partial line per connection, or let a stalled peer hold anything
//! but its own connection.

// TODO(issue 15): the TCP and TLS listeners.

use super::ReaderConfig;
use crate::aggregate::Shard;
use crate::config::Config;
use crate::telemetry::Telemetry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The TCP and TLS listeners, bound (so a taken port fails start-up) but not yet accepting.
pub struct Bound {}

/// Binds whatever of `statsd.tcp_listen` and `statsd.tls_listen` is configured.
pub fn bind(
    _config: &Config,
    _readers: &ReaderConfig,
    _telemetry: &Arc<Telemetry>,
    _connections: &Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Bound> {
    Ok(Bound {})
}

impl Bound {
    /// The shards of the transports' ingest threads, for the flusher.
    pub fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        Vec::new()
    }

    /// Starts accepting on `runtime` (the stream listeners' own).
    pub fn start(self, _runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
        Ok(Running {})
    }
}

/// The accepting listeners.
pub struct Running {}

impl Running {
    /// (`tcp`, `tls`) addresses as bound; `None` for one not configured.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (None, None)
    }

    /// Stops accepting, ends the connections (each processes what it already read, its
    /// final unterminated line included) and the ingest threads; false if still running at
    /// `deadline`.
    pub fn stop(self, _deadline: Instant) -> bool {
        true
    }
}
