//! Unix: statsd over a Unix datagram socket (`statsd.unix_listen`, DogStatsD's `unix://`
//! convention) and a Unix stream socket (`statsd.unix_stream_listen`).
//!
//! Owns: the socket files (created with `statsd.unix_mode`; a stale socket left by a crash
//! is replaced at start, any other file at the path is refused with a message; removed at
//! shutdown; see [`file`]), the datagram reader thread with its own shard ([`dgram`]), and
//! the stream socket's accept and read loops ([`conn`]) through a [`framing::Decoder`]
//! into its [`Ingest`](super::stream::Ingest) under the shared stream connection limit.
//! Must never: remove a file it did not create or find as a dead socket, or share a shard
//! with a UDP reader. `statsd.allow` does not apply here: a Unix peer has no IP address
//! (access is the file's mode and its directory's).

mod conn;
mod dgram;
mod file;
mod framing;

use super::LiveReaders;
use crate::aggregate::Shard;
use crate::config::Config;
use crate::telemetry::Telemetry;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Unix sockets, bound (so a bad path fails start-up) but not yet read.
pub struct Bound {
    dgram: Option<dgram::Bound>,
    stream: Option<conn::Bound>,
    readers: LiveReaders,
    conn: conn::ConnConfig,
    telemetry: Arc<Telemetry>,
    connections: Arc<tokio::sync::Semaphore>,
}

/// Binds whatever of `statsd.unix_listen` and `statsd.unix_stream_listen` is configured.
/// Call inside the streams runtime's context (the stream listener registers with it).
pub fn bind(
    config: &Config,
    readers: &LiveReaders,
    telemetry: &Arc<Telemetry>,
    connections: &Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Bound> {
    let s = &config.statsd;
    let mode = crate::config::unix_mode(config);
    let dgram = if s.unix_listen.is_empty() {
        None
    } else {
        Some(dgram::bind(
            Path::new(&s.unix_listen),
            mode,
            s.recv_buffer.bytes() as usize,
        )?)
    };
    // On failure here the datagram socket file bound above is removed as `dgram` drops.
    let stream = if s.unix_stream_listen.is_empty() {
        None
    } else {
        Some(conn::bind(
            Path::new(&s.unix_stream_listen),
            mode,
            readers,
            telemetry,
        )?)
    };
    Ok(Bound {
        dgram,
        stream,
        readers: Arc::clone(readers),
        conn: conn::ConnConfig {
            readers: Arc::clone(readers),
            idle: s.tcp_idle_timeout.get(),
        },
        telemetry: Arc::clone(telemetry),
        connections: Arc::clone(connections),
    })
}

impl Bound {
    /// The shards of the datagram reader and the stream ingest thread, for the flusher.
    pub fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        let dgram = self.dgram.as_ref().map(|d| Arc::clone(&d.shard));
        let stream = self.stream.as_ref().map(|s| Arc::clone(&s.ingest.shard));
        dgram.into_iter().chain(stream).collect()
    }

    /// Starts reading; the stream socket accepts on `runtime` (the stream listeners' own).
    pub fn start(self, runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
        let dgram = match self.dgram {
            Some(d) => Some(d.start(&self.readers, &self.telemetry)?),
            None => None,
        };
        let stream = match self.stream {
            Some(s) => Some(s.start(conn::Shared {
                runtime: runtime.clone(),
                config: self.conn,
                connections: self.connections,
                telemetry: Arc::clone(&self.telemetry),
            })?),
            None => None,
        };
        Ok(Running {
            dgram,
            stream,
            readers: self.readers,
            telemetry: self.telemetry,
        })
    }
}

/// The sockets being read.
pub struct Running {
    dgram: Option<dgram::Running>,
    stream: Option<conn::Running>,
    readers: LiveReaders,
    telemetry: Arc<Telemetry>,
}

/// A socket bound at a new path for [`Running::move_to`] (a reload).
pub enum NewSocket {
    Dgram(dgram::Bound),
    Stream(tokio::net::UnixListener, file::SocketFile),
}

impl Running {
    /// Binds `path` for `key` (`statsd.unix_listen` or `statsd.unix_stream_listen`) with
    /// `mode`; nothing changes until [`Running::move_to`]. Call inside the streams runtime.
    pub fn bind_new(
        &self,
        key: &str,
        path: &Path,
        mode: u32,
        recv_buffer: usize,
    ) -> anyhow::Result<NewSocket> {
        match key {
            dgram::KEY if self.dgram.is_some() => {
                Ok(NewSocket::Dgram(dgram::bind(path, mode, recv_buffer)?))
            }
            conn::KEY if self.stream.is_some() => {
                let (listener, file) = conn::listen_at(path, mode)?;
                Ok(NewSocket::Stream(listener, file))
            }
            _ => anyhow::bail!("{key}: turning a listener on needs a restart"),
        }
    }

    /// Moves a socket to its new path: the datagram reader drains the old socket and a new
    /// one reads the new (same shard and counters); the stream socket accepts at the new
    /// path and connections open on the old live on. The old file is removed.
    pub fn move_to(&mut self, socket: NewSocket, deadline: Instant) -> anyhow::Result<()> {
        match socket {
            NewSocket::Dgram(bound) => {
                let Some(old) = self.dgram.take() else {
                    anyhow::bail!("{}: turning a listener on needs a restart", dgram::KEY);
                };
                old.signal();
                let shard = old.shard();
                // The old file goes as it drops here, after the drain.
                let (drained, _old_file) = old.join(deadline);
                if !drained {
                    tracing::warn!("{}: the old socket's reader is still draining", dgram::KEY);
                }
                self.dgram = Some(
                    bound
                        .with_shard(shard)
                        .start(&self.readers, &self.telemetry)?,
                );
                Ok(())
            }
            NewSocket::Stream(listener, file) => match self.stream.as_mut() {
                Some(s) => s.move_to(listener, file),
                None => anyhow::bail!("{}: turning a listener on needs a restart", conn::KEY),
            },
        }
    }

    /// (datagram, stream) socket paths; `None` for one not configured.
    pub fn paths(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (
            self.dgram.as_ref().map(|d| d.file.path().to_owned()),
            self.stream.as_ref().map(|s| s.file.path().to_owned()),
        )
    }

    /// Stops reading (after what is queued), ends the connections, removes the socket
    /// files; false if still running at `deadline`.
    pub fn stop(self, deadline: Instant) -> bool {
        if let Some(d) = &self.dgram {
            d.signal();
        }
        if let Some(s) = &self.stream {
            s.signal();
        }
        let mut done = true;
        // Each socket file goes (if still ours) as its `SocketFile` drops here.
        if let Some(d) = self.dgram {
            done &= d.join(deadline).0;
        }
        if let Some(s) = self.stream {
            done &= s.join(deadline).0;
        }
        done
    }
}

/// Joins `handle` unless it is still running at `deadline`.
fn join_by(handle: JoinHandle<()>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.join().is_ok()
}
