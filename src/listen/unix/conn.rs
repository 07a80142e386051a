//! The Unix stream socket (`statsd.unix_stream_listen`): accept loop and connections.
//!
//! Owns: binding the listener, accepting under the stream connection limit shared with TCP
//! and TLS (`statsd.tcp_max_connections`), each connection's read loop (idle timeout
//! `statsd.tcp_idle_timeout`; newline or DogStatsD framing, see [`Decoder`]) into the
//! transport's [`Ingest`], and at stop: reading what connections (and the accept queue)
//! already hold, then ending them. Must never: parse on a connection task (the ingest
//! thread does), or hold more than one read buffer and one partial line per connection.

use super::file::{self, SocketFile};
use super::framing::Decoder;
use crate::listen::LiveReaders;
use crate::listen::stream::{Chunk, ChunkSender, Ingest, count_skipped};
use crate::telemetry::{ConnOutcome, Telemetry, Transport};
use anyhow::Context;
use socket2::{Domain, SockAddr, Socket, Type};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub const KEY: &str = "statsd.unix_stream_listen";

const TRANSPORT: Transport = Transport::UnixStream;
/// Per connection.
const READ_BUFFER: usize = 16 * 1024;
const BACKLOG: i32 = 1024;

/// What a connection task needs.
#[derive(Clone)]
pub struct ConnConfig {
    /// `statsd.max_line` and the drain time, as they are when a connection opens.
    pub readers: LiveReaders,
    pub idle: Duration,
}

/// Bound (the listener registered with the streams runtime), not yet accepting.
pub struct Bound {
    listener: UnixListener,
    pub file: SocketFile,
    pub ingest: Ingest,
}

/// Binds a stream socket at `path` and starts its ingest thread. Call inside the streams
/// runtime's context.
pub fn bind(
    path: &Path,
    mode: u32,
    readers: &LiveReaders,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<Bound> {
    let (listener, file) = listen_at(path, mode)?;
    let ingest =
        Ingest::start(TRANSPORT, readers, telemetry).context("starting the unix_stream ingest")?;
    Ok(Bound {
        listener,
        file,
        ingest,
    })
}

/// The listening socket and its file at `path` (a stale socket file is replaced, any other
/// file refused). Call inside the streams runtime's context.
pub fn listen_at(path: &Path, mode: u32) -> anyhow::Result<(UnixListener, SocketFile)> {
    file::clear(KEY, path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).context(KEY)?;
    let address = SockAddr::unix(path).with_context(|| format!("{KEY}: {}", path.display()))?;
    socket
        .bind(&address)
        .with_context(|| format!("{KEY}: cannot bind {}", path.display()))?;
    let file = SocketFile::claim(KEY, path, mode)?;
    socket.listen(BACKLOG).context(KEY)?;
    socket.set_nonblocking(true).context(KEY)?;
    let listener = UnixListener::from_std(socket.into()).context(KEY)?;
    Ok((listener, file))
}

/// What a (re)started accept loop shares with the others.
pub struct Shared {
    pub runtime: tokio::runtime::Handle,
    pub config: ConnConfig,
    pub connections: Arc<Semaphore>,
    pub telemetry: Arc<Telemetry>,
}

/// The accept loop, running.
pub struct Running {
    stop: watch::Sender<bool>,
    /// Tells the current accept loop to stop accepting (a reload moved the socket).
    retire: watch::Sender<bool>,
    /// One per accept loop started, moved ones included: each reports once its
    /// connections are done.
    done: Vec<std::sync::mpsc::Receiver<()>>,
    pub file: SocketFile,
    pub ingest: Ingest,
    shared: Shared,
}

impl Bound {
    pub fn start(self, shared: Shared) -> anyhow::Result<Running> {
        let (stop, _) = watch::channel(false);
        let (retire, _) = watch::channel(false);
        let mut running = Running {
            stop,
            retire,
            done: Vec::new(),
            file: self.file,
            ingest: self.ingest,
            shared,
        };
        running.accept(self.listener)?;
        Ok(running)
    }
}

impl Running {
    fn accept(&mut self, listener: UnixListener) -> anyhow::Result<()> {
        let sender = self
            .ingest
            .sender()
            .context("the unix_stream ingest is closed")?;
        let (retire, retired) = watch::channel(false);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let s = &self.shared;
        s.runtime.spawn(accept_loop(
            listener,
            sender,
            s.config.clone(),
            Arc::clone(&s.connections),
            Arc::clone(&s.telemetry),
            Ends {
                stop: self.stop.subscribe(),
                retire: retired,
                done: done_tx,
            },
        ));
        std::mem::replace(&mut self.retire, retire).send_replace(true);
        self.done.push(done);
        Ok(())
    }

    /// Moves to the socket `listener` at `file` (a reload changed
    /// `statsd.unix_stream_listen`): it accepts before the old one stops accepting and its
    /// file is removed; connections open on the old one live on into the same ingest thread.
    pub fn move_to(&mut self, listener: UnixListener, file: SocketFile) -> anyhow::Result<()> {
        self.accept(listener)?;
        // The old file goes as it drops: nothing accepts there any more.
        drop(std::mem::replace(&mut self.file, file));
        Ok(())
    }

    /// Stops accepting; connections read what they already hold and end.
    pub fn signal(&self) {
        self.stop.send_replace(true);
    }

    /// After [`Running::signal`]: waits for the connections, then the ingest thread (which
    /// ends once every connection's sender is gone); false if not done at `deadline`.
    pub fn join(mut self, deadline: Instant) -> (bool, SocketFile) {
        let mut done = true;
        for loop_done in &self.done {
            let left = deadline.saturating_duration_since(Instant::now());
            done &= loop_done.recv_timeout(left).is_ok();
        }
        done &= self
            .ingest
            .close()
            .is_none_or(|h| super::join_by(h, deadline));
        (done, self.file)
    }
}

/// Resolves once stop is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped at once: it must not live across an await.
    let _ = stop.wait_for(|s| *s).await;
}

/// How an accept loop ends: `stop` (shutdown: the connections end too) or `retire` (a
/// reload moved the socket: only accepting ends), and where it reports its connections done.
struct Ends {
    stop: watch::Receiver<bool>,
    retire: watch::Receiver<bool>,
    done: std::sync::mpsc::SyncSender<()>,
}

async fn accept_loop(
    listener: UnixListener,
    sender: ChunkSender,
    config: ConnConfig,
    connections: Arc<Semaphore>,
    telemetry: Arc<Telemetry>,
    ends: Ends,
) {
    let Ends {
        mut stop,
        mut retire,
        done,
    } = ends;
    let mut tasks = JoinSet::new();
    let mut warned = false;
    let for_connections = stop.clone();
    let admit = |stream: UnixStream, tasks: &mut JoinSet<()>| {
        let Some(stats) = telemetry.transport(TRANSPORT) else {
            return;
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            stats.connection(ConnOutcome::Limit);
            return;
        };
        stats.connection(ConnOutcome::Accepted);
        stats.open.fetch_add(1, Relaxed);
        let (sender, config, telemetry, stop) = (
            sender.clone(),
            config.clone(),
            Arc::clone(&telemetry),
            for_connections.clone(),
        );
        tasks.spawn(async move {
            serve(stream, sender, &config, &telemetry, stop).await;
            drop(permit);
            if let Some(s) = telemetry.transport(TRANSPORT) {
                s.open.fetch_sub(1, Relaxed);
            }
        });
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = stopped(&mut retire) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(stream, &mut tasks),
                Err(e) => {
                    // E.g. the open-files limit: wait rather than spin; warn once.
                    if !warned {
                        tracing::warn!(error = %e, "accept on {KEY} failed");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Connections already in the accept queue wrote to a running gateway: they are read too
    // (each sees the stop at once, so it takes only what it already holds).
    while let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
        admit(stream, &mut tasks);
    }
    drop(listener);
    drop(sender);
    while tasks.join_next().await.is_some() {}
    let _ = done.send(());
}

/// How a connection ended.
#[derive(PartialEq)]
enum End {
    Closed,
    Stop,
    Idle,
    Error,
}

async fn serve(
    mut stream: UnixStream,
    sender: ChunkSender,
    config: &ConnConfig,
    telemetry: &Telemetry,
    mut stop: watch::Receiver<bool>,
) {
    let mut decoder = Decoder::new(config.readers.get().limits.max_line);
    let mut buf = vec![0u8; READ_BUFFER];
    let send = async |decoder: &mut Decoder, bytes: &[u8]| -> bool {
        let (lines, skipped) = decoder.push(bytes);
        count_skipped(telemetry, TRANSPORT, skipped);
        match lines {
            Some(lines) => sender
                .send(Chunk {
                    lines,
                    source: None,
                })
                .await
                .is_ok(),
            None => true,
        }
    };
    let end = loop {
        let read = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break End::Stop,
            read = tokio::time::timeout(config.idle, stream.read(&mut buf)) => read,
        };
        match read {
            Err(_) => break End::Idle,
            Ok(Ok(0)) => break End::Closed,
            Ok(Ok(n)) => {
                if !send(&mut decoder, &buf[..n]).await {
                    break End::Closed;
                }
            }
            Ok(Err(_)) => break End::Error,
        }
    };
    let mut end = end;
    if end == End::Stop {
        // What the peer wrote before the stop is read, up to `drain_for`; nothing is waited for.
        let until = Instant::now() + config.readers.get().drain_for;
        while Instant::now() < until {
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !send(&mut decoder, &buf[..n]).await {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    end = End::Error;
                    break;
                }
            }
        }
    }
    let Some(stats) = telemetry.transport(TRANSPORT) else {
        return;
    };
    match end {
        End::Idle => stats.connection(ConnOutcome::Idle),
        End::Error => stats.connection(ConnOutcome::Error),
        End::Closed | End::Stop => {}
    }
    if end == End::Error {
        // A line cut by a failed read may be a wrong value ("lat:12" of "lat:125"): dropped.
        return;
    }
    match decoder.finish() {
        Ok(Some(lines)) => {
            let _ = sender
                .send(Chunk {
                    lines,
                    source: None,
                })
                .await;
        }
        Ok(None) => {}
        // Ended inside a DogStatsD packet: the sender died mid-write.
        Err(_) => stats.connection(ConnOutcome::Error),
    }
}
