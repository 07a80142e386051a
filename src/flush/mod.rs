//! Flush: every `flush.interval`, on wall-clock multiples, swap each reader's shard for an
//! empty one, merge them, and hand the interval's metrics to the sink.
//!
//! Owns: interval timing, the state that outlives an interval (gauge values, rate bases) and
//! its idle expiry, and the final flush at shutdown. Must never: hold a reader's lock for
//! more than the O(1) swap, or do per-series work on a reader thread.

pub mod checkpoint;
mod render;
mod self_metrics;

pub use render::{TimerOutput, percentile_label};

use crate::aggregate::{SeriesKey, Shard};
use crate::batch::Rendered;
use crate::heartbeat::Heartbeats;
use crate::passthrough::Passthrough;
use crate::reason::EmitDrop;
use crate::sink::Sink;
use crate::telemetry::Telemetry;
use hashbrown::HashMap;
use render::Emitter;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Alive instances per enabler and version, at each flush.
pub const HEARTBEAT_ALIVE: &str = "heartbeat.alive";

/// What the flusher needs from the configuration.
#[derive(Debug, Clone)]
pub struct FlushSettings {
    pub interval: Duration,
    pub idle_expiry: Duration,
    pub counters_as_rate: bool,
    pub timer_outputs: Vec<TimerOutput>,
    /// Added to every metric unless its series has the key; sorted by key.
    pub default_dimensions: Arc<[(String, String)]>,
    /// Most gauges carried across intervals (`aggregate.max_series`).
    pub max_persisted: usize,
}

/// A gauge's value carried across intervals.
#[derive(Debug, Clone, Copy)]
struct PersistedGauge {
    value: f64,
    updated_ms: u64,
}

/// The last sample of a rate series, the start of the next interval's rate.
#[derive(Debug, Clone, Copy)]
struct RateBase {
    sample: (u64, f64),
    updated_ms: u64,
}

pub struct Flusher {
    shards: Vec<Arc<Mutex<Shard>>>,
    settings: FlushSettings,
    gauges: HashMap<Vec<u8>, PersistedGauge>,
    rate_bases: HashMap<Vec<u8>, RateBase>,
    telemetry: Arc<Telemetry>,
    sink: Box<dyn Sink>,
    interval_start_ms: u64,
    /// Metrics and bytes rendered by the last flush.
    last_size: (usize, usize),
    /// Heartbeats and client metrics that skip aggregation, sent with each flush.
    passthrough: Option<Arc<Passthrough>>,
    heartbeats: Option<(Arc<Heartbeats>, bool)>,
    /// `statsgate.*` metrics at each flush, and the counters at the last one.
    self_metrics: Option<self_metrics::Totals>,
    /// Series per type each shard held at the last flush.
    shard_sizes: Vec<[usize; 5]>,
    /// Where gauge values and rate bases are saved after each flush.
    checkpoint: Option<std::path::PathBuf>,
    checkpoint_failing: bool,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Frees entries not updated within `expiry` of `now`; returns how many.
fn expire_idle<V>(
    map: &mut HashMap<Vec<u8>, V>,
    now: u64,
    expiry: Duration,
    updated_ms: fn(&V) -> u64,
) -> u64 {
    let expiry = expiry.as_millis() as u64;
    let before = map.len();
    map.retain(|_, v| now.saturating_sub(updated_ms(v)) <= expiry);
    (before - map.len()) as u64
}

/// The first multiple of `interval_ms` after `t`.
fn next_boundary(t: u64, interval_ms: u64) -> u64 {
    (t / interval_ms + 1) * interval_ms
}

impl Flusher {
    pub fn new(
        shards: Vec<Arc<Mutex<Shard>>>,
        settings: FlushSettings,
        telemetry: Arc<Telemetry>,
        sink: Box<dyn Sink>,
    ) -> Self {
        let mut settings = settings;
        // Rendering merges these with each series' sorted dimensions in one pass.
        if !settings.default_dimensions.is_sorted() {
            let mut sorted = settings.default_dimensions.to_vec();
            sorted.sort();
            settings.default_dimensions = sorted.into();
        }
        Flusher {
            shard_sizes: vec![[0; 5]; shards.len()],
            shards,
            settings,
            gauges: HashMap::new(),
            rate_bases: HashMap::new(),
            telemetry,
            sink,
            interval_start_ms: now_ms(),
            last_size: (0, 0),
            passthrough: None,
            heartbeats: None,
            self_metrics: None,
            checkpoint: None,
            checkpoint_failing: false,
        }
    }

    /// Restores gauge values and rate bases from `path` and saves them there after every
    /// flush. An unreadable checkpoint is logged and the flusher starts empty.
    pub fn with_checkpoint(mut self, path: std::path::PathBuf) -> Self {
        match checkpoint::load(&path) {
            Ok(Some(saved)) => {
                for (key, value, updated_ms) in saved.gauges {
                    let g = PersistedGauge { value, updated_ms };
                    self.gauges.insert(key.into_bytes(), g);
                }
                for (key, at, value, updated_ms) in saved.rates {
                    let base = RateBase {
                        sample: (at, value),
                        updated_ms,
                    };
                    self.rate_bases.insert(key.into_bytes(), base);
                }
                tracing::info!(
                    gauges = self.gauges.len(),
                    rates = self.rate_bases.len(),
                    path = %path.display(),
                    "restored gauge values and rate bases"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "gauge checkpoint ignored; gauges start empty"),
        }
        self.checkpoint = Some(path);
        self
    }

    fn save_checkpoint(&mut self) {
        let Some(path) = &self.checkpoint else {
            return;
        };
        let mut c = checkpoint::Checkpoint::new();
        for (key, g) in &self.gauges {
            if let Some(k) = checkpoint::key_text(key) {
                c.gauges.push((k, g.value, g.updated_ms));
            }
        }
        for (key, b) in &self.rate_bases {
            if let Some(k) = checkpoint::key_text(key) {
                c.rates.push((k, b.sample.0, b.sample.1, b.updated_ms));
            }
        }
        match checkpoint::save(path, &c) {
            Ok(()) if self.checkpoint_failing => {
                self.checkpoint_failing = false;
                tracing::info!(path = %path.display(), "gauge checkpoint saved again");
            }
            Ok(()) => {}
            Err(e) => {
                self.telemetry.flush.checkpoint_failures.add(1);
                if !self.checkpoint_failing {
                    self.checkpoint_failing = true;
                    tracing::error!(error = %e, path = %path.display(), "cannot save the gauge checkpoint; gauges would restart empty");
                }
            }
        }
    }

    /// Also emits the gateway's own counters as `statsgate.*` metrics at each flush.
    pub fn with_self_metrics(mut self) -> Self {
        self.self_metrics = Some(self_metrics::Totals::default());
        self
    }

    /// Also sends what `passthrough` holds at each flush, expires idle heartbeat senders, and
    /// (with `alive_gauges`) emits `heartbeat.alive` per enabler and version.
    pub fn with_passthrough(
        mut self,
        passthrough: Arc<Passthrough>,
        heartbeats: Option<(Arc<Heartbeats>, bool)>,
    ) -> Self {
        self.passthrough = Some(passthrough);
        self.heartbeats = heartbeats;
        self
    }

    /// Flushes at every boundary until `stop` fires (or its sender is gone), then flushes
    /// the open interval once more and returns.
    pub fn run(mut self, stop: Receiver<()>) {
        let interval_ms = (self.settings.interval.as_millis() as u64).max(1);
        let mut boundary = next_boundary(now_ms(), interval_ms);
        loop {
            let now = now_ms();
            if now >= boundary {
                self.flush(boundary);
                // A flush slower than an interval merges the missed boundaries into the next.
                boundary = next_boundary(now.max(boundary), interval_ms);
                continue;
            }
            match stop.recv_timeout(Duration::from_millis(boundary - now)) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(now_ms());
                    return;
                }
            }
        }
    }

    /// Swaps every shard out, merges them and emits one interval ending at `timestamp_ms`.
    pub fn flush(&mut self, timestamp_ms: u64) {
        let started = Instant::now();
        let mut merged = Shard::default();
        for (i, shard) in self.shards.iter().enumerate() {
            // Allocated before the lock: the reader waits only for the swap itself.
            let sizes = self.shard_sizes.get(i).copied().unwrap_or_default();
            let fresh = Shard::with_capacity(sizes);
            let taken = {
                let mut guard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                std::mem::replace(&mut *guard, fresh)
            };
            if let Some(s) = self.shard_sizes.get_mut(i) {
                *s = taken.sizes();
            }
            merged.merge(taken);
        }
        if let Some(budget) = self.telemetry.budget.get() {
            let top = budget.rollover();
            *self
                .telemetry
                .top_names
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = top;
        }
        // The first interval after start and the last before exit are partial.
        let interval_secs =
            (timestamp_ms.saturating_sub(self.interval_start_ms) as f64 / 1000.0).max(0.001);
        self.interval_start_ms = timestamp_ms;

        // Sized like the last flush: steady traffic renders without regrowing the buffer.
        let room = Rendered::with_capacity(
            self.last_size.0 + self.last_size.0 / 8,
            self.last_size.1 + self.last_size.1 / 8,
        );
        let mut e = Emitter::with_capacity(
            Arc::clone(&self.settings.default_dimensions),
            timestamp_ms,
            room,
        );
        for (key, c) in &merged.counters {
            let value = if self.settings.counters_as_rate {
                c.sum / interval_secs
            } else {
                c.sum
            };
            e.emit(&SeriesKey::decode(key), "", value);
        }
        for (key, t) in &merged.timers {
            let key = SeriesKey::decode(key);
            for out in &self.settings.timer_outputs {
                e.emit(&key, &out.suffix, out.value(t));
            }
        }
        for (key, s) in &merged.sets {
            e.emit(&SeriesKey::decode(key), "", s.members.len() as f64);
        }
        let series = merged.series();
        self.emit_gauges(&mut e, merged.gauges, timestamp_ms);
        self.emit_rates(&mut e, merged.rates, timestamp_ms);
        if let Some((beats, alive_gauges)) = &self.heartbeats {
            beats.liveness.expire(timestamp_ms);
            if *alive_gauges {
                for (enabler, version, alive) in beats.liveness.alive_counts(timestamp_ms) {
                    let dims = [
                        ("enabler_id", enabler.as_str()),
                        ("enabler_version", version.as_str()),
                    ];
                    e.emit_gauge(HEARTBEAT_ALIVE, &dims, alive as f64);
                }
            }
        }
        if let Some(p) = &self.passthrough {
            e.metrics.append(p.take());
        }
        if let Some(last) = self.self_metrics {
            let live = (series + self.gauges.len()) as u64;
            self.self_metrics = Some(self_metrics::emit(&mut e, &self.telemetry, last, live));
        }

        let stats = &self.telemetry.flush;
        let emitted = e.metrics.len() as u64;
        self.last_size = (e.metrics.len(), e.metrics.bytes());
        for (i, n) in e.dropped.iter().enumerate() {
            stats.dropped[i].add(*n);
        }
        if let Err(err) = self.sink.submit(e.metrics) {
            tracing::error!(error = %err, metrics = emitted, "sink failed; this flush is lost");
            stats.dropped[EmitDrop::SinkFailed as usize].add(emitted);
        } else {
            stats.metrics_emitted.add(emitted);
        }
        let took = started.elapsed().as_micros() as u64;
        stats.flushes.add(1);
        stats.series.set((series + self.gauges.len()) as u64);
        stats.gauges_persisted.set(self.gauges.len() as u64);
        stats.last_flush_micros.set(took);
        stats.flush_micros_total.add(took);
        stats.last_flush_unix.set(timestamp_ms / 1000);
        self.save_checkpoint();
    }

    /// Applies this interval's updates to the persisted gauges, emits every live gauge and
    /// frees the idle ones. `|T` gauges are points in time and do not persist.
    fn emit_gauges(
        &mut self,
        e: &mut Emitter,
        updates: crate::aggregate::SeriesMap<crate::aggregate::GaugeUpdate>,
        now: u64,
    ) {
        for (key, update) in updates {
            let decoded = SeriesKey::decode(&key);
            if decoded.timestamp.is_some() {
                e.emit(&decoded, "", update.resolve(None));
                continue;
            }
            let previous = self.gauges.get(&key).map(|g| g.value);
            if previous.is_none() && self.gauges.len() >= self.settings.max_persisted {
                e.dropped[EmitDrop::SeriesLimit as usize] += 1;
                continue;
            }
            self.gauges.insert(
                key,
                PersistedGauge {
                    value: update.resolve(previous),
                    updated_ms: now,
                },
            );
        }
        let expired = expire_idle(&mut self.gauges, now, self.settings.idle_expiry, |g| {
            g.updated_ms
        });
        self.telemetry.flush.series_expired.add(expired);
        for (key, g) in &self.gauges {
            e.emit(&SeriesKey::decode(key), "", g.value);
        }
    }

    /// Rate = (last − first) / Δt in seconds, where `first` is the previous interval's last
    /// sample when there is one (as monasca-agent does), so one sample per interval suffices.
    fn emit_rates(
        &mut self,
        e: &mut Emitter,
        rates: crate::aggregate::SeriesMap<crate::aggregate::RateSamples>,
        now: u64,
    ) {
        for (key, r) in rates {
            // Rate keys never carry `|T` (it times the samples instead), so every one persists.
            let start = match self.rate_bases.get(&key) {
                Some(base) if base.sample.0 < r.first.0 => base.sample,
                _ => r.first,
            };
            if r.last.0 > start.0 {
                let secs = (r.last.0 - start.0) as f64 / 1000.0;
                e.emit(&SeriesKey::decode(&key), "", (r.last.1 - start.1) / secs);
            }
            self.rate_bases.insert(
                key,
                RateBase {
                    sample: r.last,
                    updated_ms: now,
                },
            );
        }
        let expired = expire_idle(&mut self.rate_bases, now, self.settings.idle_expiry, |b| {
            b.updated_ms
        });
        self.telemetry.flush.series_expired.add(expired);
    }
}

#[cfg(test)]
mod tests;
