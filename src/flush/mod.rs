//! Flush: every `flush.interval`, on wall-clock multiples, swap each reader's shard for its
//! recycled one, merge them, and hand the interval's metrics to the sink.
//!
//! Owns: interval timing, the state that outlives an interval (gauge values, rate and percent
//! change bases, and their idle expiry: `carried`), recycling flushed shards (a reader gets
//! back the shard it filled the interval before last, its steady series reset in place),
//! settings a reload sends (taken at a boundary), and the final flush at shutdown.
//! Must never: hold a reader's lock for more than the O(1) swap, or do per-series work on a
//! reader thread.

mod carried;
pub mod checkpoint;
use carried::{PercentBase, PersistedGauge, RateBase};
mod render;
mod self_metrics;

pub use render::{TimerOutput, percentile_label};

use crate::aggregate::{Recycle, SeriesKey, Shard};
use crate::batch::Rendered;
use crate::clock::now_ms;
use crate::heartbeat::Heartbeats;
use crate::passthrough::Passthrough;
use crate::reason::EmitDrop;
use crate::sink::Sink;
use crate::telemetry::Telemetry;
use hashbrown::HashMap;
use render::Emitter;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Most gauges, and most rate bases, carried across intervals (`aggregate.max_series`).
    pub max_persisted: usize,
    /// Metrics per part handed to the sink ([`part_metrics`]).
    pub part_metrics: usize,
}

/// Metrics per part of a flush for a sink that packs `batch_metrics` per POST: the smallest
/// multiple of it from [`render::PART_METRICS`] up, so that no POST straddles two parts.
pub fn part_metrics(batch_metrics: usize) -> usize {
    let batch = batch_metrics.max(1);
    render::PART_METRICS.div_ceil(batch) * batch
}

impl FlushSettings {
    /// Rendering merges the defaults with each series' sorted dimensions in one pass.
    fn sorted(mut self) -> Self {
        if !self.default_dimensions.is_sorted() {
            let mut sorted = self.default_dimensions.to_vec();
            sorted.sort();
            self.default_dimensions = sorted.into();
        }
        self
    }
}

pub struct Flusher {
    shards: Vec<Arc<Mutex<Shard>>>,
    settings: FlushSettings,
    gauges: HashMap<Vec<u8>, PersistedGauge>,
    rate_bases: HashMap<Vec<u8>, RateBase>,
    percent_bases: HashMap<Vec<u8>, PercentBase>,
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
    /// Whether the `statsgate.*` metrics go to the sink, or only to the history (an edge node
    /// on the console sink still charts them; its console prints only what was sent to it).
    self_metrics_to_sink: bool,
    /// Per reader, the shard it flushed last time, recycled: swapped in at the next flush.
    spares: Vec<Option<Shard>>,
    /// With several readers, their shards merged; kept and recycled like a reader's shard,
    /// so steady series cost no allocation at flush either.
    merged: Shard,
    /// Where gauge values and rate bases are saved after each flush.
    checkpoint: Option<std::path::PathBuf>,
    checkpoint_failing: bool,
    /// Settings a reload sent; taken at the next boundary, after its flush.
    updates: Option<std::sync::mpsc::Receiver<FlushSettings>>,
}

/// Hands the emitter's part to the history and the sink once it is full, so a flush is
/// never held whole.
fn pass_on(sink: &mut dyn Sink, telemetry: &Telemetry, e: &mut Emitter) {
    if let Some(part) = e.full_part() {
        hand_off(sink, telemetry, part, &mut e.failed);
    }
}

/// One part to the history and the sink; a refused part's metrics are added to `failed`.
fn hand_off(
    sink: &mut dyn Sink,
    telemetry: &Telemetry,
    part: Rendered,
    failed: &mut (u64, Option<std::io::Error>),
) {
    if let Some(history) = telemetry.history.get() {
        history.observe(&part);
    }
    let n = part.len() as u64;
    if let Err(err) = sink.submit_part(part) {
        failed.0 += n;
        failed.1.get_or_insert(err);
    }
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
        let flusher = Flusher {
            spares: shards.iter().map(|_| None).collect(),
            merged: Shard::default(),
            shards,
            settings: settings.sorted(),
            gauges: HashMap::new(),
            rate_bases: HashMap::new(),
            percent_bases: HashMap::new(),
            telemetry,
            sink,
            interval_start_ms: now_ms(),
            last_size: (0, 0),
            passthrough: None,
            heartbeats: None,
            self_metrics: None,
            self_metrics_to_sink: false,
            checkpoint: None,
            checkpoint_failing: false,
            updates: None,
        };
        flusher.publish_interval();
        flusher
    }

    /// `flush.interval` as running, in ms, for `/healthz`'s stuck-flusher rule.
    fn publish_interval(&self) {
        self.telemetry
            .flush_interval_ms
            .store(self.interval_ms(), Relaxed);
    }

    fn interval_ms(&self) -> u64 {
        (self.settings.interval.as_millis() as u64).max(1)
    }

    /// Takes new settings from `updates` (a reload) at each boundary: the interval open when
    /// they arrive is flushed as it was configured when it opened, and the next one runs
    /// with them (its length, timer outputs, defaults, expiry).
    pub fn with_updates(mut self, updates: std::sync::mpsc::Receiver<FlushSettings>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// The newest settings a reload sent since the last boundary, applied.
    fn take_update(&mut self) -> bool {
        let Some(updates) = &self.updates else {
            return false;
        };
        let Some(newest) = updates.try_iter().last() else {
            return false;
        };
        self.settings = newest.sorted();
        self.publish_interval();
        true
    }

    /// Also emits the gateway's own counters as `statsgate.*` metrics at each flush.
    pub fn with_self_metrics(mut self) -> Self {
        self.self_metrics = Some(self_metrics::Totals::default());
        self.self_metrics_to_sink = true;
        self
    }

    /// Computes the `statsgate.*` metrics at each flush for the history alone, unless
    /// `with_self_metrics` already sends them: the sink gets exactly what it got before.
    pub fn with_history_self_metrics(mut self) -> Self {
        if self.self_metrics.is_none() {
            self.self_metrics = Some(self_metrics::Totals::default());
            self.self_metrics_to_sink = false;
        }
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
    ///
    /// Pings the service manager's watchdog from this loop alone (see [`Flusher::run_watched`]).
    pub fn run(self, stop: Receiver<()>) {
        let every = crate::service::watchdog_ping_every();
        self.run_watched(stop, every, crate::service::watchdog_ping);
    }

    /// [`Flusher::run`], calling `ping` on every pass of the loop: after each flush and at
    /// least every `ping_every` between them (waking early without flushing early). A flush
    /// that hangs stops the pings, which is what a watchdog is for.
    pub fn run_watched(
        mut self,
        stop: Receiver<()>,
        ping_every: Option<Duration>,
        mut ping: impl FnMut(),
    ) {
        let mut interval_ms = self.interval_ms();
        let mut boundary = next_boundary(now_ms(), interval_ms);
        loop {
            if ping_every.is_some() {
                ping();
            }
            let now = now_ms();
            if now >= boundary {
                self.flush(boundary);
                if self.take_update() {
                    interval_ms = self.interval_ms();
                }
                // A flush slower than an interval merges the missed boundaries into the next.
                boundary = next_boundary(now.max(boundary), interval_ms);
                continue;
            }
            let wait = Duration::from_millis(boundary - now);
            match stop.recv_timeout(ping_every.map_or(wait, |p| wait.min(p))) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(now_ms());
                    if let Some(history) = self.telemetry.history.get() {
                        history.checkpoint_now();
                    }
                    return;
                }
            }
        }
    }

    /// Swaps every shard out, merges them and emits one interval ending at `timestamp_ms`.
    pub fn flush(&mut self, timestamp_ms: u64) {
        let started = Instant::now();
        let budget = self.telemetry.budget.get();
        if let Some(budget) = budget {
            let top = budget.rollover();
            *self
                .telemetry
                .top_names
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = top;
        }
        let mut taken = Vec::with_capacity(self.shards.len());
        for (i, shard) in self.shards.iter().enumerate() {
            // Prepared before the lock: the reader waits only for the swap itself.
            let next = self.spares.get_mut(i).and_then(Option::take);
            let next = next.unwrap_or_default();
            if let Some(budget) = budget {
                budget.carry(next.names());
            }
            let mut guard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            taken.push(std::mem::replace(&mut *guard, next));
        }
        // A shard that took lines is rendered as it is when it is the only one (one busy
        // reader, the others and the stream transports idle); several are merged first. A
        // merged copy of the one busy shard would hold every series a third time.
        let busy: Vec<&Shard> = taken.iter().filter(|s| s.series() > 0).collect();
        let merged = (busy.len() > 1).then(|| {
            let mut merged = std::mem::take(&mut self.merged);
            for shard in &busy {
                merged.merge(shard);
            }
            merged
        });
        if merged.is_none() {
            // Not needed this interval: its recycled series would only hold memory.
            self.merged = Shard::default();
        }
        let empty = Shard::default();
        let view = merged.as_ref().or(busy.first().copied()).unwrap_or(&empty);
        self.render(view, timestamp_ms);
        for (spare, mut shard) in self.spares.iter_mut().zip(taken) {
            shard.recycle();
            *spare = Some(shard);
        }
        if let Some(mut merged) = merged {
            merged.recycle();
            self.merged = merged;
        }
        let took = started.elapsed().as_micros() as u64;
        self.telemetry.flush.flush_micros_total.add(took);
        self.telemetry.flush.last_flush_micros.set(took);
        self.save_checkpoint();
        if let Some(history) = self.telemetry.history.get() {
            history.checkpoint_due(now_ms());
        }
    }

    /// Emits the interval's touched series of `merged`, the persisted gauges, heartbeats and
    /// pass-through metrics, and submits them to the sink.
    fn render(&mut self, merged: &Shard, timestamp_ms: u64) {
        // The first interval after start and the last before exit are partial.
        let interval_secs =
            (timestamp_ms.saturating_sub(self.interval_start_ms) as f64 / 1000.0).max(0.001);
        self.interval_start_ms = timestamp_ms;

        // A part sized like the last flush's metrics (at most a full part): steady traffic
        // renders without regrowing the buffer.
        let (metrics, bytes) = self.last_size;
        let part = metrics.min(self.settings.part_metrics);
        let part_bytes = bytes / metrics.max(1) * part;
        let room = Rendered::with_capacity(part + part / 8, part_bytes + part_bytes / 8);
        let mut e = Emitter::with_capacity(
            Arc::clone(&self.settings.default_dimensions),
            timestamp_ms,
            room,
        )
        .with_part(self.settings.part_metrics);
        for (key, c) in merged.counters.iter().filter(|(_, c)| c.touched()) {
            let value = if self.settings.counters_as_rate {
                c.sum / interval_secs
            } else {
                c.sum
            };
            e.emit(&SeriesKey::decode(key), "", value);
            pass_on(&mut *self.sink, &self.telemetry, &mut e);
        }
        let mut clamped = 0;
        for (key, t) in merged.timers.iter().filter(|(_, t)| t.touched()) {
            let key = SeriesKey::decode(key);
            for out in &self.settings.timer_outputs {
                e.emit(&key, &out.suffix, out.value(t));
            }
            pass_on(&mut *self.sink, &self.telemetry, &mut e);
            clamped += t.clamped();
        }
        // Counted here, once per sample: the rendered view holds every shard's samples.
        self.telemetry.flush.timer_samples_clamped.add(clamped);
        for (key, s) in merged.sets.iter().filter(|(_, s)| s.touched()) {
            e.emit(&SeriesKey::decode(key), "", s.members.len() as f64);
            pass_on(&mut *self.sink, &self.telemetry, &mut e);
        }
        let series = merged.series();
        self.emit_gauges(&mut e, &merged.gauges, timestamp_ms);
        self.emit_rates(&mut e, &merged.rates, timestamp_ms);
        self.emit_percents(&mut e, &merged.percents, timestamp_ms);
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
        let mut history_only = None;
        if let Some(last) = self.self_metrics {
            let live = (series + self.gauges.len()) as u64;
            if self.self_metrics_to_sink {
                self.self_metrics = Some(self_metrics::emit(&mut e, &self.telemetry, last, live));
            } else {
                let mut own = Emitter::with_capacity(
                    Arc::clone(&self.settings.default_dimensions),
                    timestamp_ms,
                    Rendered::with_capacity(16, 2048),
                );
                let totals = self_metrics::emit(&mut own, &self.telemetry, last, live);
                self.self_metrics = Some(totals);
                history_only = Some(own.metrics);
            }
        }

        self.last_size = e.total();
        let emitted = e.total().0 as u64;
        let last = std::mem::take(&mut e.metrics);
        hand_off(&mut *self.sink, &self.telemetry, last, &mut e.failed);
        if let Some(history) = self.telemetry.history.get()
            && let Some(own) = &history_only
        {
            history.observe(own);
        }
        let mut failed = std::mem::take(&mut e.failed);
        if let Err(err) = self.sink.end_flush() {
            // The sink could not finish the flush: none of it counts as delivered.
            failed.0 = emitted;
            failed.1.get_or_insert(err);
        }
        let stats = &self.telemetry.flush;
        for (i, n) in e.dropped.iter().enumerate() {
            stats.dropped[i].add(*n);
        }
        if let Some(err) = failed.1 {
            let lost = failed.0;
            tracing::error!(error = %err, metrics = emitted, lost, "sink failed; this flush's metrics (or part of them) are lost");
            stats.dropped[EmitDrop::SinkFailed as usize].add(lost);
        }
        stats.metrics_emitted.add(emitted - failed.0);
        stats.flushes.add(1);
        stats.series.set((series + self.gauges.len()) as u64);
        stats.gauges_persisted.set(self.gauges.len() as u64);
        stats.last_flush_unix.set(timestamp_ms / 1000);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod watchdog_tests;
