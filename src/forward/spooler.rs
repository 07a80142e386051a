//! The forwarder's side of the disk spool: what goes to disk and when, the replay stream that
//! drains it oldest first, and the outage flag that routes new batches to disk.
//!
//! Routing: while Monasca (or Keystone) is failing, a batch whose POST fails is appended to
//! the spool instead of being retried in memory, and new batches go straight to the spool;
//! a full memory queue also overflows into it. The replay stream is a single POST at a time
//! beside the `monasca.concurrency` live senders: it retries the oldest spooled batch with
//! backoff (it is the outage probe), clears the outage when a POST succeeds, and then drains
//! the backlog at `buffer.replay_rate` metrics per second while live batches keep their own
//! senders. Must never: block the flush thread on the network, or drop a batch uncounted.

use super::{BatchDrop, ForwardStats};
use crate::batch::Batch;
use crate::clock::now_ms;
use crate::spool::{Evicted, RecordId, Recovery, Spool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// How often spooled batches past `buffer.spool_max_age` are looked for.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(5);

pub struct Spooler {
    pub spool: Arc<Spool>,
    stats: Arc<ForwardStats>,
    /// Set by a failed POST, cleared by a delivered one.
    outage: AtomicBool,
    appended: tokio::sync::Notify,
    /// Metrics per second replayed; 0: unpaced.
    pub replay_rate: u64,
}

impl Spooler {
    pub fn new(
        spool: Spool,
        recovery: &Recovery,
        stats: Arc<ForwardStats>,
        replay_rate: u64,
    ) -> Self {
        stats
            .spool_corrupt_records
            .fetch_add(recovery.corrupt_records, Relaxed);
        stats
            .spool_corrupt_bytes
            .fetch_add(recovery.corrupt_bytes, Relaxed);
        stats
            .possible_duplicates
            .fetch_add(recovery.in_flight_metrics, Relaxed);
        if recovery.batches > 0 || recovery.corrupt_records > 0 {
            tracing::info!(
                batches = recovery.batches,
                metrics = recovery.metrics,
                bytes = recovery.bytes,
                corrupt_records = recovery.corrupt_records,
                corrupt_bytes = recovery.corrupt_bytes,
                in_flight_metrics = recovery.in_flight_metrics,
                "spool recovered: replaying oldest first (metrics in flight at the last stop may be sent twice)"
            );
        }
        let s = Spooler {
            spool: Arc::new(spool),
            stats,
            // Until a POST succeeds we do not know Monasca is up; a backlog found at start is
            // replayed before new batches are trusted to memory.
            outage: AtomicBool::new(recovery.batches > 0),
            appended: tokio::sync::Notify::new(),
            replay_rate,
        };
        s.update_gauges();
        s
    }

    pub fn in_outage(&self) -> bool {
        self.outage.load(Relaxed)
    }

    pub fn outage_began(&self) {
        if !self.outage.swap(true, Relaxed) {
            tracing::warn!("Monasca is unreachable: new batches go to the disk spool");
        }
    }

    pub fn outage_ended(&self) {
        if self.outage.swap(false, Relaxed) {
            tracing::info!(
                spooled_batches = self.spool.pending_batches(),
                "Monasca answers again: live batches are sent, the spool is replayed"
            );
        }
    }

    /// Appends `batch`; counts it spooled, or returns false (a disk error) for the caller to
    /// keep it elsewhere or count the drop. Blocking file I/O: not for the async runtime.
    pub fn put(&self, batch: &Batch) -> bool {
        match self.spool.append(batch, now_ms()) {
            Ok(outcome) => {
                self.stats.spooled(batch);
                self.count_evicted(BatchDrop::SpoolFull, outcome.evicted_full);
                self.update_gauges();
                self.appended.notify_one();
                true
            }
            Err(e) => {
                self.stats.spool_failed();
                self.stats.log_once("spool_error", || {
                    tracing::error!(error = %e, "cannot write to buffer.spool_dir; batches stay in memory while it holds, then are dropped (reason spool_error)")
                });
                false
            }
        }
    }

    /// `Spool::replace` for a replayed batch split after a 413: the halves are counted as
    /// spooled (each is replayed and counted again later). False: a disk error, logged;
    /// nothing changed on disk.
    pub fn replace(&self, id: RecordId, parts: [&Batch; 2], created_ms: u64) -> bool {
        let ok = match self.spool.replace(id, parts, created_ms) {
            Ok(outcome) => {
                for b in parts {
                    self.stats.spooled(b);
                }
                self.count_evicted(BatchDrop::SpoolFull, outcome.evicted_full);
                self.appended.notify_one();
                true
            }
            Err(e) => {
                self.stats.log_once("spool_error", || {
                    tracing::error!(error = %e, "cannot write to buffer.spool_dir; the halves of a split batch stay in memory")
                });
                false
            }
        };
        self.update_gauges();
        ok
    }

    /// `put` from async code.
    pub async fn put_async(self: &Arc<Self>, batch: &Batch) -> bool {
        let me = Arc::clone(self);
        let batch = batch.clone();
        tokio::task::spawn_blocking(move || me.put(&batch))
            .await
            .unwrap_or(false)
    }

    fn count_evicted(&self, reason: BatchDrop, evicted: Evicted) {
        if evicted.batches > 0 {
            self.stats
                .drop_counted(reason, evicted.batches, evicted.metrics);
            self.stats.log_once(reason.label(), || {
                tracing::error!(
                    reason = reason.label(),
                    "spooled batches evicted (buffer.spool_max_bytes / spool_max_age)"
                )
            });
        }
    }

    pub fn update_gauges(&self) {
        let s = &self.stats;
        s.spool_bytes.store(self.spool.pending_bytes(), Relaxed);
        s.spool_batches.store(self.spool.pending_batches(), Relaxed);
        s.spool_metrics.store(self.spool.pending_metrics(), Relaxed);
        s.spool_syncs.store(self.spool.syncs(), Relaxed);
        let unreadable = self.spool.unreadable();
        s.batches_dropped[BatchDrop::SpoolCorrupt as usize].store(unreadable.batches, Relaxed);
        s.metrics_dropped[BatchDrop::SpoolCorrupt as usize].store(unreadable.metrics, Relaxed);
    }

    /// Drops what is older than `buffer.spool_max_age`, counted.
    pub fn expire(&self) {
        let expired = self.spool.expire(now_ms());
        self.count_evicted(BatchDrop::SpoolExpired, expired);
        self.update_gauges();
    }

    /// Waits until something is appended, or `timeout`.
    pub async fn wait_for_append(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.appended.notified()).await;
    }

    /// After a replayed batch of `metrics` that took `elapsed`, how long to wait.
    pub fn pace(&self, metrics: usize, elapsed: Duration) -> Duration {
        if self.replay_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(metrics as f64 / self.replay_rate as f64).saturating_sub(elapsed)
    }

    pub fn released(&self, evicted: Evicted) {
        self.count_evicted(BatchDrop::SpoolFull, evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{ForwardSink, Queue};
    use crate::spool::{Fsync, SpoolSettings};

    fn spooler(dir: &std::path::Path, replay_rate: u64) -> Arc<Spooler> {
        let (spool, recovery) = Spool::open(SpoolSettings {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
            segment_bytes: 64 * 1024,
            fsync: Fsync::Never,
        })
        .unwrap();
        let stats = Arc::new(ForwardStats::default());
        Arc::new(Spooler::new(spool, &recovery, stats, replay_rate))
    }

    fn batch(bytes: usize, metrics: usize) -> Batch {
        Batch {
            body: bytes::Bytes::from(vec![b'x'; bytes]),
            metrics,
        }
    }

    #[test]
    fn replay_is_paced_to_the_configured_rate() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spooler(dir.path(), 1000);
        assert_eq!(sp.pace(500, Duration::ZERO), Duration::from_millis(500));
        assert_eq!(
            sp.pace(500, Duration::from_millis(200)),
            Duration::from_millis(300)
        );
        assert_eq!(sp.pace(500, Duration::from_secs(1)), Duration::ZERO);
        let unpaced = spooler(tempfile::tempdir().unwrap().path(), 0);
        assert_eq!(unpaced.pace(1_000_000, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn an_outage_and_a_full_queue_route_batches_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spooler(dir.path(), 0);
        let stats = Arc::new(ForwardStats::default());
        let sink = ForwardSink {
            queue: Arc::new(Queue::new(100)),
            limits: crate::batch::Limits {
                max_metrics: 10,
                max_bytes: 1000,
            },
            stats: Arc::clone(&stats),
            spooler: Some(Arc::clone(&sp)),
        };
        sink.queue_or_spool(batch(60, 1));
        assert_eq!(
            (sink.queue.len(), sp.spool.pending_batches()),
            (1, 0),
            "healthy: memory"
        );
        sink.queue_or_spool(batch(60, 2));
        assert_eq!(
            (sink.queue.len(), sp.spool.pending_batches()),
            (1, 1),
            "queue full: disk"
        );
        sp.outage_began();
        sink.queue_or_spool(batch(10, 3));
        assert_eq!(
            (sink.queue.len(), sp.spool.pending_batches()),
            (1, 2),
            "outage: disk"
        );
        sp.outage_ended();
        assert!(!sp.in_outage());
        assert_eq!(sp.spool.pending_metrics(), 5);
        assert_eq!(stats.dropped_metrics(BatchDrop::SpoolError), 0);
    }
}
