//! Unix: statsd over a Unix datagram socket (`statsd.unix_listen`, DogStatsD's `unix://`
//! convention) and a Unix stream socket (`statsd.unix_stream_listen`).
//!
//! Owns: the socket files (created with `statsd.unix_mode`; a stale socket left by a crash
//! is replaced at start, any other file at the path is refused with a message; removed at
//! shutdown), the datagram reader thread with its own shard, and the stream socket's accept
//! and read loops through a [`Framer`](super::stream::Framer) into its
//! [`Ingest`](super::stream::Ingest) under the shared stream connection limit. Must never:
//! remove a file it did not create or find as a dead socket, or share a shard with a UDP
//! reader.

// TODO(issue 15): the Unix datagram and stream sockets.

use super::ReaderConfig;
use crate::aggregate::Shard;
use crate::config::Config;
use crate::telemetry::Telemetry;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The Unix sockets, bound (so a bad path fails start-up) but not yet read.
pub struct Bound {}

/// Binds whatever of `statsd.unix_listen` and `statsd.unix_stream_listen` is configured.
pub fn bind(
    _config: &Config,
    _readers: &ReaderConfig,
    _telemetry: &Arc<Telemetry>,
    _connections: &Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Bound> {
    Ok(Bound {})
}

impl Bound {
    /// The shards of the datagram reader and the stream ingest thread, for the flusher.
    pub fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        Vec::new()
    }

    /// Starts reading; the stream socket accepts on `runtime` (the stream listeners' own).
    pub fn start(self, _runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
        Ok(Running {})
    }
}

/// The sockets being read.
pub struct Running {}

impl Running {
    /// (datagram, stream) socket paths; `None` for one not configured.
    pub fn paths(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (None, None)
    }

    /// Stops reading (after what is queued), ends the connections, removes the socket
    /// files; false if still running at `deadline`.
    pub fn stop(self, _deadline: Instant) -> bool {
        true
    }
}
