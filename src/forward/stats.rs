//! The forwarder's counters (written by several senders, so atomics with `fetch_add`), and a
//! log limiter so that an outage is reported, not repeated for every batch.

use crate::batch::Batch;
use crate::reason::BatchDrop;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The same problem is logged at most once per this interval.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct ForwardStats {
    pub batches_sent: AtomicU64,
    pub metrics_sent: AtomicU64,
    pub retries: AtomicU64,
    pub reauthentications: AtomicU64,
    pub splits: AtomicU64,
    pub batches_dropped: [AtomicU64; BatchDrop::COUNT],
    pub metrics_dropped: [AtomicU64; BatchDrop::COUNT],
    pub queue_batches: AtomicU64,
    pub queue_bytes: AtomicU64,
    /// Batches written to the disk spool, and batches replayed from it.
    pub spooled_batches: AtomicU64,
    pub spooled_metrics: AtomicU64,
    pub replayed_batches: AtomicU64,
    pub replayed_metrics: AtomicU64,
    /// What the spool holds now.
    pub spool_bytes: AtomicU64,
    pub spool_batches: AtomicU64,
    pub spool_metrics: AtomicU64,
    /// Damaged records skipped when the spool was opened (a torn tail after a crash).
    pub spool_corrupt_records: AtomicU64,
    pub spool_corrupt_bytes: AtomicU64,
    /// Times the spool's unsynced writes were forced to disk (`buffer.spool_fsync: <d>`: by
    /// an append or ack once `d` passed, by the timer every `d`, at shutdown).
    pub spool_syncs: AtomicU64,
    /// Metrics that were in flight at a crash or at the end of a grace period and are sent
    /// again: Monasca may have stored them already.
    pub possible_duplicates: AtomicU64,
    /// POSTs that failed in a row (5xx, timeout, connection error); a 2xx resets it. What
    /// `/healthz` calls an outage.
    pub consecutive_failures: AtomicU64,
    /// Wall-clock milliseconds of the last 2xx from Monasca; 0 before the first.
    pub last_success_ms: AtomicU64,
    /// Wall-clock milliseconds of the last failed write to the disk spool; 0 if none.
    pub last_spool_error_ms: AtomicU64,
    in_flight_metrics: AtomicI64,
    /// POSTs by outcome label: (count, seconds).
    posts: Mutex<BTreeMap<&'static str, (u64, f64)>>,
    last_logged: Mutex<HashMap<&'static str, Instant>>,
}

impl ForwardStats {
    pub fn delivered(&self, b: &Batch) {
        self.batches_sent.fetch_add(1, Relaxed);
        self.metrics_sent.fetch_add(b.metrics as u64, Relaxed);
    }

    pub fn drop_batch(&self, reason: BatchDrop, b: &Batch) {
        self.batches_dropped[reason as usize].fetch_add(1, Relaxed);
        self.metrics_dropped[reason as usize].fetch_add(b.metrics as u64, Relaxed);
    }

    pub fn drop_counted(&self, reason: BatchDrop, batches: u64, metrics: u64) {
        self.batches_dropped[reason as usize].fetch_add(batches, Relaxed);
        self.metrics_dropped[reason as usize].fetch_add(metrics, Relaxed);
    }

    pub fn spooled(&self, b: &Batch) {
        self.spooled_batches.fetch_add(1, Relaxed);
        self.spooled_metrics.fetch_add(b.metrics as u64, Relaxed);
    }

    pub fn replayed(&self, b: &Batch) {
        self.replayed_batches.fetch_add(1, Relaxed);
        self.replayed_metrics.fetch_add(b.metrics as u64, Relaxed);
    }

    pub fn drop_metrics(&self, reason: BatchDrop, metrics: u64) {
        if metrics > 0 {
            self.metrics_dropped[reason as usize].fetch_add(metrics, Relaxed);
        }
    }

    pub fn dropped_metrics(&self, reason: BatchDrop) -> u64 {
        self.metrics_dropped[reason as usize].load(Relaxed)
    }

    pub fn set_queue(&self, batches: usize, bytes: usize) {
        self.queue_batches.store(batches as u64, Relaxed);
        self.queue_bytes.store(bytes as u64, Relaxed);
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight_metrics.fetch_add(delta, Relaxed);
    }

    /// Metrics still in flight (at the end of the grace period), reset to zero.
    pub fn take_in_flight(&self) -> u64 {
        self.in_flight_metrics.swap(0, Relaxed).max(0) as u64
    }

    pub fn posted(&self, outcome: &'static str, took: Duration) {
        // 4xx are answers about one batch (refused, re-authenticate, split), not an outage.
        // Only 204 is a delivery; a redirect or another 2xx (a proxy's page) means nothing is
        // being stored, like a 5xx.
        match outcome {
            "204" => {
                self.consecutive_failures.store(0, Relaxed);
                self.last_success_ms.store(crate::clock::now_ms(), Relaxed);
            }
            "2xx" | "3xx" => {
                self.consecutive_failures.fetch_add(1, Relaxed);
            }
            _ => match outcome.as_bytes().first() {
                Some(b'5') | Some(b't') | Some(b'c') | Some(b'n') => {
                    self.consecutive_failures.fetch_add(1, Relaxed);
                }
                _ => {}
            },
        }
        let mut posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        let e = posts.entry(outcome).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    /// A write to the disk spool failed.
    pub fn spool_failed(&self) {
        self.last_spool_error_ms
            .store(crate::clock::now_ms(), Relaxed);
    }

    pub fn posts(&self) -> Vec<(&'static str, u64, f64)> {
        let posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        posts.iter().map(|(k, (n, s))| (*k, *n, *s)).collect()
    }

    /// Runs `log` unless the same `kind` was logged within the last minute.
    pub fn log_once(&self, kind: &'static str, log: impl FnOnce()) {
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last
            .get(kind)
            .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY)
        {
            last.insert(kind, now);
            drop(last);
            log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_kind_per_minute() {
        let s = ForwardStats::default();
        let mut n = 0;
        s.log_once("a", || n += 1);
        s.log_once("a", || n += 1);
        s.log_once("b", || n += 1);
        assert_eq!(n, 2);
    }

    #[test]
    fn failures_in_a_row_are_counted_until_a_success() {
        let s = ForwardStats::default();
        for outcome in ["connection_error", "timeout", "503", "5xx", "500"] {
            s.posted(outcome, Duration::ZERO);
        }
        s.posted("422", Duration::ZERO);
        assert_eq!(
            s.consecutive_failures.load(Relaxed),
            5,
            "a 4xx is not an outage"
        );
        assert_eq!(s.last_success_ms.load(Relaxed), 0);
        s.posted("204", Duration::ZERO);
        assert_eq!(s.consecutive_failures.load(Relaxed), 0);
        assert!(s.last_success_ms.load(Relaxed) > 0);
    }
}
