//! Listen: the statsd UDP sockets and the reader threads that drain them.
//!
//! Owns: binding (`statsd.listen`, IPv4 or IPv6, one SO_REUSEPORT socket per reader, the
//! configured receive buffer), the batched receive loop (`recvmmsg`, see [`mmsg`], the one
//! module with `unsafe`), and handing each datagram's lines to the reader's own aggregator
//! shard, allocating nothing per datagram or line (only a new series, or a line the shard's
//! memo sees for the first time, grows the shard's tables). Must never: wait on anything
//! downstream (flush, sink, network), share a lock or map with another reader, or stop on
//! bad input.

pub mod mmsg;
pub mod stream;
pub mod tcp;
pub mod unix;

use crate::aggregate::{Aggregator, BATCH_LINES, Settings, Shard};
use crate::allow::AllowList;
use crate::clock::now_ms;
use crate::heartbeat::{self, Heartbeats, Via};
use crate::live::{Follower, Live};
use crate::parse::{Kind, Limits, is_heartbeat, lines, parse_line};
use crate::reason::Reject;
use crate::telemetry::{ReaderStats, Telemetry, socket_inode};
use arrayvec::ArrayVec;
use mmsg::RecvBatch;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often an idle reader looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The bound statsd sockets, one per reader.
pub struct Listener {
    pub sockets: Vec<UdpSocket>,
    pub local_addr: SocketAddr,
}

/// Binds `readers` sockets to `addr`. Port 0 picks a free port, shared by all of them.
/// A port another process already holds is refused: SO_REUSEPORT would otherwise let a
/// second gateway join silently and take a share of every sender's datagrams.
pub fn bind(addr: SocketAddr, readers: usize, recv_buffer: usize) -> io::Result<Listener> {
    if addr.port() != 0 {
        refuse_if_held(addr)?;
    }
    let first = bind_one(addr, recv_buffer)?;
    let local_addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..readers {
        sockets.push(bind_one(local_addr, recv_buffer)?);
    }
    if let Some(s) = sockets.first() {
        let got = socket2::SockRef::from(s).recv_buffer_size().unwrap_or(0);
        // Linux reports double the usable size and caps requests at net.core.rmem_max.
        if got / 2 < recv_buffer {
            tracing::warn!(
                requested = recv_buffer,
                granted = got / 2,
                "statsd.recv_buffer capped by the kernel; raise net.core.rmem_max to get it"
            );
        }
    }
    Ok(Listener {
        sockets,
        local_addr,
    })
}

/// A plain bind (no SO_REUSEPORT) fails exactly when some socket holds the port, ours or
/// not; the probe is closed again before the readers bind.
fn refuse_if_held(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        probe.set_only_v6(false)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holder = match crate::telemetry::kernel::udp_port_holder(addr.port()) {
                Some(pid) => format!("process {pid}"),
                None => "another process (not visible to this user)".to_owned(),
            };
            Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "UDP port {} is already held by {holder}; a second gateway would split \
                     the datagrams with it",
                    addr.port()
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

fn bind_one(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` serves IPv4 too, as operators expect from a wildcard.
        socket.set_only_v6(false)?;
    }
    // Best effort: the kernel clamps it, and `bind` warns when it did.
    let _ = socket.set_recv_buffer_size(recv_buffer);
    socket.set_read_timeout(Some(STOP_POLL))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Everything one reader thread needs. Shared as [`LiveReaders`]: a reload replaces it and
/// every reader and ingest thread takes the new one before its next batch.
#[derive(Clone)]
pub struct ReaderConfig {
    pub limits: Limits,
    pub max_datagram: usize,
    pub aggregate: Settings,
    /// `statsd.allow`; empty: any source.
    pub allow: AllowList,
    /// After the stop flag: how long a reader keeps reading what is already queued.
    pub drain_for: Duration,
    pub heartbeats: Option<Arc<Heartbeats>>,
}

/// The readers' settings as a reload replaces them.
pub type LiveReaders = Arc<Live<ReaderConfig>>;

/// Starts one reader thread per socket; they return once `stop` is set.
pub fn spawn_readers(
    listener: Listener,
    shards: &[Arc<Mutex<Shard>>],
    telemetry: &Arc<Telemetry>,
    config: &LiveReaders,
    stop: &Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    telemetry.set_socket_inodes(listener.sockets.iter().filter_map(socket_inode).collect());
    let mut handles = Vec::new();
    for (i, socket) in listener.sockets.into_iter().enumerate() {
        let shard = Arc::clone(&shards[i]);
        let telemetry = Arc::clone(telemetry);
        let stop = Arc::clone(stop);
        let follow = config.follow();
        let handle = std::thread::Builder::new()
            .name(format!("reader-{i}"))
            .spawn(move || {
                let stats = &telemetry.readers[i];
                receive_loop(&socket, &shard, follow, stats, &stop);
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// A datagram socket a reader drains: the UDP sockets, or the Unix datagram socket.
pub trait DatagramSocket: std::os::fd::AsRawFd {
    /// Whether datagrams carry an IP source (`statsd.allow` applies).
    const HAS_SOURCES: bool;
    /// For the warning about a failed receive.
    const NAME: &'static str;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl DatagramSocket for UdpSocket {
    const HAS_SOURCES: bool = true;
    const NAME: &'static str = "UDP";
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UdpSocket::set_nonblocking(self, on)
    }
}

impl DatagramSocket for std::os::unix::net::UnixDatagram {
    // A Unix datagram has no IP peer, so `statsd.allow` does not apply.
    const HAS_SOURCES: bool = false;
    const NAME: &'static str = "Unix datagram";
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        std::os::unix::net::UnixDatagram::set_nonblocking(self, on)
    }
}

/// Receives in batches (one `recvmmsg` per wake-up) and processes a whole batch under one
/// take of the shard lock and one clock read. After each receive it looks (one atomic load)
/// whether a reload replaced its settings.
pub fn receive_loop<S: DatagramSocket>(
    socket: &S,
    shard: &Mutex<Shard>,
    mut follow: Follower<ReaderConfig>,
    stats: &ReaderStats,
    stop: &AtomicBool,
) {
    let mut config = follow.current();
    let mut aggregator = Aggregator::new(config.aggregate.clone());
    // One byte more than allowed, so an oversized datagram shows itself by its length.
    let mut batch = RecvBatch::new(mmsg::DEFAULT_BATCH, config.max_datagram + 1);
    // After `stop`: what the kernel already queued for this socket was sent to a gateway
    // that was running, so it is read too, until the queue is empty or `drain_until`.
    let mut draining: Option<std::time::Instant> = None;
    let mut resize = false;
    loop {
        if draining.is_none() && stop.load(Ordering::Relaxed) {
            if socket.set_nonblocking(true).is_err() {
                break;
            }
            draining = Some(std::time::Instant::now() + config.drain_for);
        }
        if draining.is_some_and(|until| std::time::Instant::now() >= until) {
            break;
        }
        if resize {
            batch = RecvBatch::new(mmsg::DEFAULT_BATCH, config.max_datagram + 1);
            resize = false;
        }
        match batch.recv(socket) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if draining.is_some() && e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
                continue;
            }
            Err(e) => {
                stats.recv_errors.add(1);
                tracing::warn!(error = %e, socket = S::NAME, "statsd receive failed");
                std::thread::sleep(STOP_POLL);
                continue;
            }
        }
        // After the receive, which may have waited across a reload: what arrives after one
        // is judged by the new settings. (A larger `max_datagram` sizes the next receive.)
        if let Some(new) = follow.changed() {
            aggregator.replace_settings(new.aggregate.clone());
            resize = new.max_datagram != config.max_datagram;
            config = new;
        }
        let now = now_ms();
        let beats = config.heartbeats.as_deref();
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for i in 0..batch.len() {
            let Some((datagram, full_len, source)) = batch.get(i) else {
                break;
            };
            stats.datagrams.add(1);
            stats.bytes.add(full_len as u64);
            if S::HAS_SOURCES
                && !config.allow.is_empty()
                && !source.is_some_and(|s| config.allow.permits(s.ip()))
            {
                stats.source_denied.add(1);
                continue;
            }
            if full_len > config.max_datagram {
                stats.datagrams_too_large.add(1);
                continue;
            }
            process_into(
                datagram,
                &mut shard,
                &mut aggregator,
                stats,
                &config.limits,
                beats,
                source,
                now,
            );
        }
    }
}

/// Parses and aggregates every line of one datagram under one (uncontended) shard lock.
/// Counters are updated under the lock too, so a count seen on `/metrics` is in a shard
/// the next flush will take. Heartbeats (a JSON datagram, or `_hb|` lines) go to `beats`.
pub fn process_datagram(
    datagram: &[u8],
    shard: &Mutex<Shard>,
    aggregator: &mut Aggregator,
    stats: &ReaderStats,
    limits: &Limits,
    beats: Option<&Heartbeats>,
    source: Option<SocketAddr>,
) {
    let mut shard = shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    process_into(
        datagram,
        &mut shard,
        aggregator,
        stats,
        limits,
        beats,
        source,
        now_ms(),
    );
}

/// [`process_datagram`] for a caller that already holds the shard and read the clock.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn process_into(
    datagram: &[u8],
    shard: &mut Shard,
    aggregator: &mut Aggregator,
    stats: &ReaderStats,
    limits: &Limits,
    beats: Option<&Heartbeats>,
    source: Option<SocketAddr>,
    now: u64,
) {
    if is_heartbeat(datagram) {
        udp_beat(
            || heartbeat::parse_json(datagram),
            stats,
            beats,
            source,
            now,
        );
        return;
    }
    process_lines_into(
        datagram, shard, aggregator, stats, limits, beats, source, now,
    );
}

/// The lines of `data` (a datagram's, or whole lines framed off a stream connection: a JSON
/// heartbeat is a datagram of its own, never a line) into `shard`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn process_lines_into(
    data: &[u8],
    shard: &mut Shard,
    aggregator: &mut Aggregator,
    stats: &ReaderStats,
    limits: &Limits,
    beats: Option<&Heartbeats>,
    source: Option<SocketAddr>,
    now: u64,
) {
    // Lines are split on bytes and looked up in the shard's line memo first: a repeated
    // line was valid UTF-8 when first seen, so a hit needs no UTF-8 check at all; a miss is
    // checked (and parsed) on its own, so one bad line never costs its neighbours. They go
    // to the aggregator a datagram (or BATCH_LINES) at a time, so that their series lookups
    // can overlap.
    let mut batch: ArrayVec<&[u8], BATCH_LINES> = ArrayVec::new();
    let outcome = |result: Result<Kind, Reject>| match result {
        Ok(kind) => stats.accept(kind),
        Err(reason) => stats.reject(reason),
    };
    let parse = |line| parse_line(line, limits);
    for line in lines(data) {
        if heartbeat::is_compact(line) {
            udp_beat(|| heartbeat::parse_compact(line), stats, beats, source, now);
            continue;
        }
        if batch.is_full() {
            aggregator.add_lines(shard, &batch, now, parse, outcome);
            batch.clear();
        }
        batch.push(line);
    }
    aggregator.add_lines(shard, &batch, now, parse, outcome);
}

/// A heartbeat datagram or `_hb|` line: counted, and parsed and accepted into `beats` when
/// the gateway has them (otherwise not parsed at all).
fn udp_beat(
    parse: impl FnOnce() -> Result<heartbeat::Beat, heartbeat::BeatError>,
    stats: &ReaderStats,
    beats: Option<&Heartbeats>,
    source: Option<SocketAddr>,
    now: u64,
) {
    stats.heartbeats.add(1);
    if let Some(b) = beats {
        match parse() {
            Ok(beat) => {
                if b.accept(beat, source, Via::Udp, now).is_ok() {
                    stats.heartbeats_accepted.add(1);
                }
            }
            Err(e) => b.stats.reject(e.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_one_port_and_ipv6_binds() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 3, 1 << 20).unwrap();
        assert_eq!(l.sockets.len(), 3);
        let port = l.local_addr.port();
        assert!(
            l.sockets
                .iter()
                .all(|s| s.local_addr().unwrap().port() == port)
        );
        if let Ok(v6) = bind("[::1]:0".parse().unwrap(), 1, 1 << 20) {
            assert!(v6.local_addr.is_ipv6());
        }
    }

    /// One datagram through a fresh reader: its counters and shard.
    fn run(datagram: &[u8]) -> (ReaderStats, Shard) {
        let shard = Mutex::new(Shard::default());
        let stats = ReaderStats::default();
        let mut agg = Aggregator::new(Settings::default());
        let limits = Limits::default();
        process_datagram(datagram, &shard, &mut agg, &stats, &limits, None, None);
        let shard = shard.into_inner().unwrap();
        (stats, shard)
    }

    fn accepted_counters(stats: &ReaderStats) -> u64 {
        stats.accepted[crate::parse::Kind::Counter as usize].get()
    }

    fn rejected(stats: &ReaderStats, reason: crate::reason::Reject) -> u64 {
        stats.rejected[reason as usize].get()
    }

    #[test]
    fn a_line_that_is_not_utf8_costs_only_itself() {
        let (stats, _) = run(b"a:1|c\r\nb\xff:1|c\n\nc:2|c");
        assert_eq!(accepted_counters(&stats), 2);
        assert_eq!(rejected(&stats, crate::reason::Reject::BadEncoding), 1);
    }

    #[test]
    fn a_bad_line_does_not_stop_the_rest_of_the_datagram() {
        let (stats, shard) = run(b"a:1|c\nbroken\nb:x|c\nc:2|c\n");
        assert_eq!(accepted_counters(&stats), 2);
        assert_eq!(rejected(&stats, crate::reason::Reject::MissingValue), 1);
        assert_eq!(rejected(&stats, crate::reason::Reject::BadValue), 1);
        assert_eq!(shard.counters.len(), 2);
    }
}
