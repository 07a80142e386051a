//! Telemetry: the gateway's own counters and their Prometheus/OpenMetrics rendering.
//!
//! Owns: every counter the pipeline increments (per reader, per flush), the kernel's UDP drop
//! count, and the `/metrics` text. Must never: make a hot-path thread wait (reader counters
//! are single-writer, cache-line padded, updated without atomic read-modify-write).

pub mod kernel;
mod prometheus;
pub mod reload;
pub mod transport;

pub use kernel::{socket_inode, udp_drops};
pub use prometheus::{CONTENT_TYPE, render};
pub use transport::{ConnOutcome, Transport, TransportStats};

use crate::parse::Kind;
use crate::reason::{EmitDrop, Reject};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter written by exactly one thread and read by any. Plain load+store instead of
/// `fetch_add` keeps the hot path free of locked instructions; one writer makes it exact.
#[derive(Debug, Default)]
pub struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One reader thread's counters; padded so two readers never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub struct ReaderStats {
    pub datagrams: OwnedCounter,
    pub bytes: OwnedCounter,
    /// Datagrams over `statsd.max_datagram`, dropped whole.
    pub datagrams_too_large: OwnedCounter,
    /// Heartbeat datagrams and `_hb|` lines (valid or not; `heartbeat` counts the outcome).
    pub heartbeats: OwnedCounter,
    /// Of those, the beats the acceptor took: `heartbeats_accepted{via}` per transport.
    pub heartbeats_accepted: OwnedCounter,
    pub recv_errors: OwnedCounter,
    /// Datagrams from a source outside `statsd.allow`.
    pub source_denied: OwnedCounter,
    pub accepted: [OwnedCounter; Kind::ALL.len()],
    pub rejected: [OwnedCounter; Reject::COUNT],
}

impl Default for ReaderStats {
    fn default() -> Self {
        ReaderStats {
            datagrams: OwnedCounter::default(),
            bytes: OwnedCounter::default(),
            datagrams_too_large: OwnedCounter::default(),
            heartbeats: OwnedCounter::default(),
            heartbeats_accepted: OwnedCounter::default(),
            recv_errors: OwnedCounter::default(),
            source_denied: OwnedCounter::default(),
            accepted: std::array::from_fn(|_| OwnedCounter::default()),
            rejected: std::array::from_fn(|_| OwnedCounter::default()),
        }
    }
}

impl ReaderStats {
    #[inline]
    pub fn accept(&self, kind: Kind) {
        self.accepted[kind as usize].add(1);
    }

    #[inline]
    pub fn reject(&self, reason: Reject) {
        self.rejected[reason as usize].add(1);
    }
}

/// The flusher's counters (it is their only writer).
#[derive(Debug, Default)]
pub struct FlushStats {
    pub flushes: OwnedCounter,
    pub metrics_emitted: OwnedCounter,
    pub dropped: [OwnedCounter; EmitDrop::COUNT],
    /// Series in the last flushed interval (all types, persisted gauges included).
    pub series: OwnedCounter,
    /// Gauges carried across intervals.
    pub gauges_persisted: OwnedCounter,
    /// Idle gauges and rate bases freed by `flush.idle_expiry`.
    pub series_expired: OwnedCounter,
    /// Timer samples above `aggregate.histogram_max_value`, ranked at it in the percentiles.
    pub timer_samples_clamped: OwnedCounter,
    /// Duration of the last flush, in microseconds.
    pub last_flush_micros: OwnedCounter,
    pub flush_micros_total: OwnedCounter,
    /// Unix time of the last flush, in seconds.
    pub last_flush_unix: OwnedCounter,
    /// Flushes after which the gauge checkpoint could not be saved.
    pub checkpoint_failures: OwnedCounter,
}

/// All of the gateway's own counters.
#[derive(Debug)]
pub struct Telemetry {
    pub readers: Vec<ReaderStats>,
    /// TCP, TLS, Unix datagram, Unix stream, in [`Transport::OTHERS`] order; see
    /// [`Telemetry::transport`].
    pub transports: [TransportStats; 4],
    pub flush: FlushStats,
    pub forward: std::sync::Arc<crate::forward::ForwardStats>,
    pub http: std::sync::Arc<crate::http::HttpStats>,
    /// The heartbeat acceptor, for its counters and the liveness table's size.
    pub heartbeats: std::sync::OnceLock<std::sync::Arc<crate::heartbeat::Heartbeats>>,
    /// Set when Keystone is configured, for its renewal and failure counts.
    pub auth: std::sync::OnceLock<std::sync::Arc<crate::auth::Auth>>,
    /// The live-series budget, and its top names in the last flushed interval.
    pub budget: std::sync::OnceLock<std::sync::Arc<crate::aggregate::SeriesBudget>>,
    /// Set when the probes stage runs, for its error, sample and duration counters.
    pub probes: reload::Slot<crate::probes::ProbeStats>,
    /// Set when the checks stage starts, for its run, duration and metric counters.
    pub checks: reload::Slot<crate::checks::CheckStats>,
    /// The local history (`history.enabled`): the flusher feeds it, the admin port reads it.
    pub history: std::sync::OnceLock<std::sync::Arc<crate::history::History>>,
    pub top_names: Mutex<Vec<crate::aggregate::NameReport>>,
    /// How configuration reloads ended.
    pub reloads: reload::ReloadStats,
    /// `flush.interval` as running now (a reload changes it at the next boundary), in ms.
    pub flush_interval_ms: std::sync::atomic::AtomicU64,
    /// Inodes of the statsd sockets, to find their drop counts in `/proc/net/udp*`.
    socket_inodes: Mutex<Vec<u64>>,
    started: std::time::Instant,
}

impl Telemetry {
    pub fn new(readers: usize) -> Self {
        Telemetry {
            readers: (0..readers).map(|_| ReaderStats::default()).collect(),
            transports: Default::default(),
            flush: FlushStats::default(),
            forward: Default::default(),
            http: Default::default(),
            heartbeats: std::sync::OnceLock::new(),
            auth: std::sync::OnceLock::new(),
            budget: std::sync::OnceLock::new(),
            probes: Default::default(),
            checks: Default::default(),
            history: std::sync::OnceLock::new(),
            top_names: Mutex::new(Vec::new()),
            reloads: Default::default(),
            flush_interval_ms: Default::default(),
            socket_inodes: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
        }
    }

    pub fn set_socket_inodes(&self, inodes: Vec<u64>) {
        if let Ok(mut g) = self.socket_inodes.lock() {
            *g = inodes;
        }
    }

    /// Datagrams the kernel dropped because a socket's receive buffer was full.
    pub fn kernel_drops(&self) -> u64 {
        let inodes = self
            .socket_inodes
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        udp_drops(&inodes)
    }

    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A non-UDP transport's counters; `None` for UDP (its counters are `readers`).
    pub fn transport(&self, t: Transport) -> Option<&TransportStats> {
        let i = Transport::OTHERS.iter().position(|o| *o == t)?;
        self.transports.get(i)
    }

    /// One reader counter summed over all UDP readers and the other transports.
    pub fn sum(&self, f: impl Fn(&ReaderStats) -> &OwnedCounter) -> u64 {
        self.readers
            .iter()
            .chain(self.transports.iter().map(|t| &t.lines))
            .map(|r| f(r).get())
            .sum()
    }

    /// One counter of one transport's lines.
    pub fn sum_of(&self, t: Transport, f: impl Fn(&ReaderStats) -> &OwnedCounter) -> u64 {
        match self.transport(t) {
            Some(s) => f(&s.lines).get(),
            None => self.readers.iter().map(|r| f(r).get()).sum(),
        }
    }

    pub fn datagrams(&self) -> u64 {
        self.sum(|r| &r.datagrams)
    }

    pub fn accepted(&self, kind: Kind) -> u64 {
        self.sum(|r| &r.accepted[kind as usize])
    }

    pub fn accepted_total(&self) -> u64 {
        Kind::ALL.iter().map(|k| self.accepted(*k)).sum()
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        let skipped = if reason == Reject::LineTooLong {
            self.transports
                .iter()
                .map(|t| t.long_lines.load(Relaxed))
                .sum()
        } else {
            0
        };
        self.sum(|r| &r.rejected[reason as usize]) + skipped
    }
}
