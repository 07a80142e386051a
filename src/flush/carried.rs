//! What the flusher carries across intervals: gauge values, rate and percent-change bases,
//! their idle expiry, and the checkpoint they are saved to and restored from.
//!
//! Owns: how an interval's updates apply to that state and what it emits. Must never: hold
//! more than `aggregate.max_series` of each (the rest are refused and counted).

use super::render::Emitter;
use super::{Flusher, checkpoint, pass_on};
use crate::aggregate::{Recycle, SeriesKey};
use crate::reason::EmitDrop;
use hashbrown::HashMap;
use std::time::Duration;

/// A gauge's value carried across intervals.
#[derive(Debug, Clone, Copy)]
pub(super) struct PersistedGauge {
    pub(super) value: f64,
    pub(super) updated_ms: u64,
}

/// The last sample of a rate series, the start of the next interval's rate.
#[derive(Debug, Clone, Copy)]
pub(super) struct RateBase {
    pub(super) sample: (u64, f64),
    pub(super) updated_ms: u64,
}

/// The last value of a `pc` series: the previous value of its next one.
#[derive(Debug, Clone, Copy)]
pub(super) struct PercentBase {
    pub(super) value: f64,
    pub(super) updated_ms: u64,
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

impl Flusher {
    /// Restores gauge values and rate bases from `path` and saves them there after every
    /// flush. An unreadable checkpoint is logged and the flusher starts empty. Temp files a
    /// crash left beside it are removed: the caller holds the spool directory's lock.
    pub fn with_checkpoint(mut self, path: std::path::PathBuf) -> Self {
        checkpoint::remove_stale_temps(&path);
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
                for (key, value, updated_ms) in saved.percents {
                    let base = PercentBase { value, updated_ms };
                    self.percent_bases.insert(key.into_bytes(), base);
                }
                tracing::info!(
                    gauges = self.gauges.len(),
                    rates = self.rate_bases.len(),
                    percent_changes = self.percent_bases.len(),
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

    pub(super) fn save_checkpoint(&mut self) {
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
        for (key, b) in &self.percent_bases {
            if let Some(k) = checkpoint::key_text(key) {
                c.percents.push((k, b.value, b.updated_ms));
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

    /// Applies this interval's updates to the persisted gauges, emits every live gauge and
    /// frees the idle ones. `|T` gauges are points in time and do not persist.
    pub(super) fn emit_gauges(
        &mut self,
        e: &mut Emitter,
        updates: &crate::aggregate::SeriesMap<crate::aggregate::GaugeUpdate>,
        now: u64,
    ) {
        for (key, update) in updates.iter().filter(|(_, u)| u.touched()) {
            let decoded = SeriesKey::decode(key);
            if decoded.timestamp.is_some() {
                e.emit(&decoded, "", update.resolve(None));
                pass_on(&mut *self.sink, &self.telemetry, e);
                continue;
            }
            let persisted = PersistedGauge {
                value: 0.0,
                updated_ms: now,
            };
            let full = self.gauges.len() >= self.settings.max_persisted;
            // Looked up by reference: a steady gauge allocates nothing at flush.
            match self.gauges.get_mut(key.as_slice()) {
                Some(g) => {
                    *g = PersistedGauge {
                        value: update.resolve(Some(g.value)),
                        ..persisted
                    }
                }
                None if full => {
                    e.dropped[EmitDrop::SeriesLimit as usize] += 1;
                }
                None => {
                    let value = update.resolve(None);
                    self.gauges
                        .insert(key.to_vec(), PersistedGauge { value, ..persisted });
                }
            }
        }
        let expired = expire_idle(&mut self.gauges, now, self.settings.idle_expiry, |g| {
            g.updated_ms
        });
        self.telemetry.flush.series_expired.add(expired);
        for (key, g) in &self.gauges {
            e.emit(&SeriesKey::decode(key), "", g.value);
            pass_on(&mut *self.sink, &self.telemetry, e);
        }
    }

    /// Rate = (last − first) / Δt in seconds, where `first` is the previous interval's last
    /// sample when there is one (as monasca-agent does), so one sample per interval suffices.
    pub(super) fn emit_rates(
        &mut self,
        e: &mut Emitter,
        rates: &crate::aggregate::SeriesMap<crate::aggregate::RateSamples>,
        now: u64,
    ) {
        for (key, r) in rates {
            // Rate keys never carry `|T` (it times the samples instead), so every one persists.
            let start = match self.rate_bases.get(key.as_slice()) {
                Some(base) if base.sample.0 < r.first.0 => base.sample,
                _ => r.first,
            };
            if r.last.0 > start.0 {
                let secs = (r.last.0 - start.0) as f64 / 1000.0;
                e.emit(&SeriesKey::decode(key), "", (r.last.1 - start.1) / secs);
                pass_on(&mut *self.sink, &self.telemetry, e);
            }
            let base = RateBase {
                sample: r.last,
                updated_ms: now,
            };
            let full = self.rate_bases.len() >= self.settings.max_persisted;
            match self.rate_bases.get_mut(key.as_slice()) {
                Some(b) => *b = base,
                // Bounded like the gauges: a flood of fresh rate names must not pile up bases
                // until idle expiry (each interval admits max_series new ones).
                None if full => e.dropped[EmitDrop::RateBaseLimit as usize] += 1,
                None => {
                    self.rate_bases.insert(key.to_vec(), base);
                }
            }
        }
        let expired = expire_idle(&mut self.rate_bases, now, self.settings.idle_expiry, |b| {
            b.updated_ms
        });
        self.telemetry.flush.series_expired.add(expired);
    }

    /// Percent change (Rainbow's DiffMetric) between a series' last two values: the
    /// interval's last two, or its only one and the last of an earlier interval. A series'
    /// first value ever, or a previous value of 0, gives 0, as the SDK does. Emitted only in
    /// intervals that received a value; bases are bounded and expire like rate bases.
    pub(super) fn emit_percents(
        &mut self,
        e: &mut Emitter,
        percents: &crate::aggregate::SeriesMap<crate::aggregate::PercentSamples>,
        now: u64,
    ) {
        for (key, p) in percents {
            let prev = p
                .prev
                .map(|(_, v)| v)
                .or_else(|| self.percent_bases.get(key.as_slice()).map(|b| b.value));
            let value = crate::aggregate::PercentSamples::percent(prev, p.last.1);
            e.emit(&SeriesKey::decode(key), "", value);
            pass_on(&mut *self.sink, &self.telemetry, e);
            let base = PercentBase {
                value: p.last.1,
                updated_ms: now,
            };
            let full = self.percent_bases.len() >= self.settings.max_persisted;
            match self.percent_bases.get_mut(key.as_slice()) {
                Some(b) => *b = base,
                // The same bound and drop reason as rate bases: that series' next single
                // value reads as a first one (0).
                None if full => e.dropped[EmitDrop::RateBaseLimit as usize] += 1,
                None => {
                    self.percent_bases.insert(key.to_vec(), base);
                }
            }
        }
        let expired = expire_idle(
            &mut self.percent_bases,
            now,
            self.settings.idle_expiry,
            |b| b.updated_ms,
        );
        self.telemetry.flush.series_expired.add(expired);
    }
}
