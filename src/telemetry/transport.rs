//! Counters of the statsd transports beyond the UDP readers: TCP, TLS, the Unix datagram
//! and Unix stream sockets. Each transport's lines are parsed by one ingest thread, the only
//! writer of its [`ReaderStats`]; its connection counters are written by many connection
//! tasks and so are plain atomics (off the UDP hot path).

use super::ReaderStats;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A way statsd lines reach the gateway; the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Unix,
    UnixStream,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Unix,
        Transport::UnixStream,
    ];

    /// The transports [`Telemetry::transports`](super::Telemetry::transports) holds.
    pub const OTHERS: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Unix,
        Transport::UnixStream,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Unix => "unix",
            Transport::UnixStream => "unix_stream",
        }
    }

    /// Whether lines arrive on connections (framed by newlines) rather than in datagrams.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Transport::Tcp | Transport::Tls | Transport::UnixStream
        )
    }
}

/// What became of a stream connection; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnOutcome {
    /// Accepted and served.
    Accepted,
    /// Closed at accept: `statsd.tcp_max_connections` were open.
    Limit,
    /// Closed at accept: the peer is outside `statsd.allow`.
    Denied,
    /// Closed after `statsd.tcp_idle_timeout` without a byte.
    Idle,
    /// The TLS handshake failed or did not finish in time.
    Handshake,
    /// A read failed (reset, broken pipe).
    Error,
}

impl ConnOutcome {
    pub const ALL: [ConnOutcome; 6] = [
        ConnOutcome::Accepted,
        ConnOutcome::Limit,
        ConnOutcome::Denied,
        ConnOutcome::Idle,
        ConnOutcome::Handshake,
        ConnOutcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnOutcome::Accepted => "accepted",
            ConnOutcome::Limit => "limit",
            ConnOutcome::Denied => "denied",
            ConnOutcome::Idle => "idle",
            ConnOutcome::Handshake => "handshake",
            ConnOutcome::Error => "error",
        }
    }
}

/// One non-UDP transport's counters.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Written only by the transport's ingest thread (for the Unix datagram socket: its
    /// reader thread). `datagrams` counts datagrams there and line chunks on streams.
    pub lines: ReaderStats,
    pub connections: [AtomicU64; ConnOutcome::ALL.len()],
    pub open: AtomicI64,
    /// Lines over `statsd.max_line` that a stream's framer skipped to their newline;
    /// reported within `lines_rejected{reason="line_too_long"}`.
    pub long_lines: AtomicU64,
}

impl TransportStats {
    pub fn connection(&self, outcome: ConnOutcome) {
        self.connections[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn connections(&self, outcome: ConnOutcome) -> u64 {
        self.connections[outcome as usize].load(Relaxed)
    }
}
