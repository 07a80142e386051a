//! The Unix datagram socket (`statsd.unix_listen`) and its reader thread.
//!
//! Owns: binding the socket (the receive buffer as for UDP), and one blocking reader that
//! drains it in `recvmmsg` batches into its own aggregator shard, exactly as a UDP reader
//! does (a datagram over `statsd.max_datagram` dropped whole and counted, a JSON datagram
//! a heartbeat), and reads what is queued when told to stop. Must never: wait on anything
//! downstream, or share its shard or counters with another thread that writes them.

use super::file::{self, SocketFile};
use crate::aggregate::Shard;
use crate::listen::{LiveReaders, ReaderConfig};
use crate::live::Follower;
use crate::telemetry::{ReaderStats, Telemetry, Transport};
use anyhow::Context;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const KEY: &str = "statsd.unix_listen";

/// How often an idle reader looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Bound, not yet read.
pub struct Bound {
    socket: UnixDatagram,
    pub file: SocketFile,
    pub shard: Arc<Mutex<Shard>>,
}

/// Binds a datagram socket at `path` (cleared first, see [`file::clear`]).
pub fn bind(path: &Path, mode: u32, recv_buffer: usize) -> anyhow::Result<Bound> {
    file::clear(KEY, path)?;
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None).context(KEY)?;
    // Best effort, as for UDP. The queue of a Unix datagram socket is bounded mostly by
    // net.unix.max_dgram_qlen, and a full one makes the sender wait or fail: no silent loss.
    let _ = socket.set_recv_buffer_size(recv_buffer);
    let address = SockAddr::unix(path).with_context(|| format!("{KEY}: {}", path.display()))?;
    socket
        .bind(&address)
        .with_context(|| format!("{KEY}: cannot bind {}", path.display()))?;
    let file = SocketFile::claim(KEY, path, mode)?;
    socket.set_read_timeout(Some(STOP_POLL)).context(KEY)?;
    warn_if_short_queue();
    Ok(Bound {
        socket: socket.into(),
        file,
        shard: Arc::default(),
    })
}

/// The queue length a Unix datagram socket gets (`net.unix.max_dgram_qlen`, read from this
/// network namespace when the socket is made) below which a warning is logged.
const QUEUE_WANTED: u64 = 512;

/// DogStatsD clients send without blocking by default: with the kernel's default queue of
/// 10 datagrams, a burst the reader has not yet drained is dropped in the client, where no
/// counter of ours sees it.
fn warn_if_short_queue() {
    let qlen = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(qlen) = qlen.filter(|q| *q < QUEUE_WANTED) {
        tracing::warn!(
            max_dgram_qlen = qlen,
            "statsd.unix_listen: the kernel queues only {qlen} datagrams per Unix socket; \
             clients that send without blocking (DogStatsD's default) drop bursts beyond it: \
             raise net.unix.max_dgram_qlen (e.g. to {QUEUE_WANTED}) before statsgate starts"
        );
    }
}

/// The reader thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    pub file: SocketFile,
    shard: Arc<Mutex<Shard>>,
}

impl Bound {
    pub fn start(self, config: &LiveReaders, telemetry: &Arc<Telemetry>) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let shard = Arc::clone(&self.shard);
        let reader = Reader {
            socket: self.socket,
            shard: self.shard,
            follow: config.follow(),
        };
        let telemetry = Arc::clone(telemetry);
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("reader-unix".to_owned())
            .spawn(move || {
                if let Some(stats) = telemetry.transport(Transport::Unix) {
                    reader.receive_loop(&stats.lines, &flag);
                }
            })?;
        Ok(Running {
            stop,
            handle,
            file: self.file,
            shard,
        })
    }

    /// Reads into `shard` (a moved socket keeps its reader's shard: the flusher holds it).
    pub fn with_shard(mut self, shard: Arc<Mutex<Shard>>) -> Bound {
        self.shard = shard;
        self
    }
}

impl Running {
    pub fn shard(&self) -> Arc<Mutex<Shard>> {
        Arc::clone(&self.shard)
    }

    /// Tells the reader to read what is queued and end.
    pub fn signal(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// After [`Running::signal`]: false if the reader is still running at `deadline`.
    pub fn join(self, deadline: Instant) -> (bool, SocketFile) {
        (super::join_by(self.handle, deadline), self.file)
    }
}

struct Reader {
    socket: UnixDatagram,
    shard: Arc<Mutex<Shard>>,
    follow: Follower<ReaderConfig>,
}

impl Reader {
    /// The UDP readers' loop: the same batching, drain at stop and reload handling.
    fn receive_loop(self, stats: &ReaderStats, stop: &AtomicBool) {
        crate::listen::receive_loop(&self.socket, &self.shard, self.follow, stats, stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::mmsg::RecvBatch;

    #[test]
    fn a_batch_on_a_unix_socket_reports_the_full_length_of_a_cut_datagram() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        tx.send(b"a:1|c").unwrap();
        tx.send(&[b'x'; 40]).unwrap();
        let mut batch = RecvBatch::new(4, 17);
        assert_eq!(batch.recv(&rx).unwrap(), 2);
        let (data, full, source) = batch.get(0).unwrap();
        assert_eq!((data, full, source), (&b"a:1|c"[..], 5, None));
        let (data, full, _) = batch.get(1).unwrap();
        assert_eq!((data.len(), full), (17, 40));
    }
}
