//! Accepting a parsed beat, the same for UDP and HTTP: the empty-ID rule, the timestamp, the
//! liveness table and the pending `GE_Heartbeat` measurement.

use super::{Beat, Liveness, beat_timestamp};
use crate::passthrough::Passthrough;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why an otherwise well-formed beat was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `ID` is empty and `heartbeat.derive_id` is off: 422.
    EmptyId,
    /// `buffer.max_pending` is full: 503, try again.
    Full,
}

/// Where a beat came in, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Any statsd transport (UDP, TCP, TLS, Unix); the reader's own counters split them.
    Udp,
    Http,
}

#[derive(Debug, Default)]
pub struct HeartbeatStats {
    pub accepted_udp: AtomicU64,
    pub accepted_http: AtomicU64,
    /// Refused beats, by label: not_json, not_object, missing_field, invalid_field,
    /// empty_id, buffer_full, too_large (an HTTP body over `http.max_body`).
    pub rejected: [AtomicU64; REJECT_LABELS.len()],
    /// Beats forwarded but not tracked because the liveness table was full.
    pub untracked: AtomicU64,
}

pub const REJECT_LABELS: [&str; 7] = [
    "not_json",
    "not_object",
    "missing_field",
    "invalid_field",
    "empty_id",
    "buffer_full",
    "too_large",
];

impl HeartbeatStats {
    pub fn reject(&self, label: &str) {
        if let Some(i) = REJECT_LABELS.iter().position(|l| *l == label) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }
}

pub struct Heartbeats {
    pub liveness: Liveness,
    pub stats: HeartbeatStats,
    passthrough: Arc<Passthrough>,
    max_skew: Duration,
    derive_id: bool,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats")
            .field("senders", &self.liveness.len())
            .finish_non_exhaustive()
    }
}

impl Heartbeats {
    pub fn new(
        liveness: Liveness,
        passthrough: Arc<Passthrough>,
        max_skew: Duration,
        derive_id: bool,
    ) -> Self {
        Heartbeats {
            liveness,
            stats: HeartbeatStats::default(),
            passthrough,
            max_skew,
            derive_id,
        }
    }

    pub fn accept(
        &self,
        mut beat: Beat,
        source: Option<SocketAddr>,
        via: Via,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if beat.id.is_empty() {
            match source.filter(|_| self.derive_id) {
                Some(addr) => beat.id = addr.ip().to_string(),
                None => {
                    self.stats.reject("empty_id");
                    return Err(Refusal::EmptyId);
                }
            }
        }
        let timestamp = beat_timestamp(&beat, now_ms, self.max_skew);
        if self
            .passthrough
            .push_beat(&beat.id, &beat.enabler_id, &beat.enabler_version, timestamp)
            .is_err()
        {
            self.stats.reject("buffer_full");
            return Err(Refusal::Full);
        }
        if self.liveness.record(&beat, source, now_ms).is_err() {
            self.stats.untracked.fetch_add(1, Relaxed);
        }
        match via {
            Via::Udp => self.stats.accepted_udp.fetch_add(1, Relaxed),
            Via::Http => self.stats.accepted_http.fetch_add(1, Relaxed),
        };
        Ok(())
    }
}
