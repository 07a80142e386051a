//! Per-series aggregation state for one interval, and how two shards' states merge.
//!
//! A shard outlives its interval (see [`Recycle`]): each state knows whether a line touched it
//! this interval, and resets to "untouched" in place so the series keeps its slot.

mod timer;

#[cfg(test)]
use timer::{Hdr, Samples};
pub use timer::{HistogramSpec, TIMER_VALUE_SCALE, Timer};

use crate::reason::Reject;

/// A series' state across intervals: a shard is reused after its flush, keeping every series
/// a line touched (and its position, which the line memo relies on) with the state reset.
pub trait Recycle {
    /// Did a line update this series since the last reset?
    fn touched(&self) -> bool;
    /// Back to untouched, keeping what allocation is worth keeping.
    fn reset(&mut self);
}

/// `c`: the weighted sum, 8 bytes (a series' state is most of a shard's memory).
///
/// Untouched is `sum == -0.0` (bitwise): every line adds `v + 0.0`, never `-0.0` (that turns
/// a `-0` into `+0`), and no sum of addends that are not `-0.0`, starting from `-0.0`, is
/// `-0.0` in IEEE arithmetic. So a `x:0|c` (or `x:-0|c`) still marks a count of zero to emit,
/// and merging is plain addition (`-0.0` is the identity).
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub sum: f64,
}

const UNTOUCHED: f64 = -0.0;

impl Default for Counter {
    fn default() -> Self {
        Counter { sum: UNTOUCHED }
    }
}

impl Counter {
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.sum += v + 0.0;
    }

    pub fn merge(&mut self, other: &Counter) {
        self.sum += other.sum;
    }
}

impl Recycle for Counter {
    #[inline]
    fn touched(&self) -> bool {
        self.sum.to_bits() != UNTOUCHED.to_bits()
    }

    fn reset(&mut self) {
        *self = Counter::default();
    }
}

/// `g` within one interval: an optional absolute value, then the deltas that followed it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugeUpdate {
    pub set: Option<f64>,
    pub delta: f64,
    /// Set by every line: `x:+0|g` still marks the gauge as updated.
    pub touched: bool,
}

impl GaugeUpdate {
    #[inline]
    pub fn apply_set(&mut self, v: f64) {
        self.set = Some(v);
        self.delta = 0.0;
        self.touched = true;
    }

    #[inline]
    pub fn apply_delta(&mut self, d: f64) {
        self.delta += d;
        self.touched = true;
    }

    /// Later updates win over earlier ones; deltas accumulate.
    pub fn merge(&mut self, later: &GaugeUpdate) {
        if !later.touched {
            return;
        }
        if later.set.is_some() {
            *self = *later;
        } else {
            self.delta += later.delta;
            self.touched = true;
        }
    }

    /// The gauge's value after this update, given its value before.
    pub fn resolve(&self, previous: Option<f64>) -> f64 {
        self.set.or(previous).unwrap_or(0.0) + self.delta
    }
}

impl Recycle for GaugeUpdate {
    fn touched(&self) -> bool {
        self.touched
    }

    fn reset(&mut self) {
        *self = GaugeUpdate::default();
    }
}

/// `s`: distinct members, as 64-bit hashes, bounded per interval.
#[derive(Debug, Clone, Default)]
pub struct Set {
    pub members: hashbrown::HashSet<u64>,
}

impl Set {
    pub fn insert(&mut self, member_hash: u64, max_members: usize) -> Result<(), Reject> {
        if self.members.len() >= max_members && !self.members.contains(&member_hash) {
            return Err(Reject::SetMemberLimit);
        }
        self.members.insert(member_hash);
        Ok(())
    }

    pub fn merge(&mut self, other: &Set) {
        self.members.extend(other.members.iter().copied());
    }
}

/// Member tables up to this many slots are kept across intervals; a bigger one is freed.
const SET_KEPT_CAPACITY: usize = 1024;

impl Recycle for Set {
    /// A line either adds a member or is refused at the member limit, which needs members.
    fn touched(&self) -> bool {
        !self.members.is_empty()
    }

    fn reset(&mut self) {
        if self.members.capacity() > SET_KEPT_CAPACITY {
            self.members = hashbrown::HashSet::new();
        } else {
            self.members.clear();
        }
    }
}

/// `r`: the first and last sample of the interval, with their times in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSamples {
    pub first: (u64, f64),
    pub last: (u64, f64),
}

/// Rates are never carried: a recycled shard clears them (see `Shard::recycle`).
impl Recycle for RateSamples {
    fn touched(&self) -> bool {
        true
    }

    fn reset(&mut self) {}
}

impl RateSamples {
    pub fn new(at_ms: u64, v: f64) -> Self {
        RateSamples {
            first: (at_ms, v),
            last: (at_ms, v),
        }
    }

    pub fn record(&mut self, at_ms: u64, v: f64) {
        if at_ms < self.first.0 {
            self.first = (at_ms, v);
        }
        if at_ms >= self.last.0 {
            self.last = (at_ms, v);
        }
    }

    pub fn merge(&mut self, other: &RateSamples) {
        self.record(other.first.0, other.first.1);
        self.record(other.last.0, other.last.1);
    }
}

/// `pc`: the interval's last two samples by time (ms), later ones replacing earlier ones;
/// `prev` is `None` until a second one arrives (the flusher then uses the previous interval's
/// last value). Equal times keep arrival order: packed values share one receive time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentSamples {
    pub last: (u64, f64),
    pub prev: Option<(u64, f64)>,
}

/// Never carried: a recycled shard clears them, as it does rates (see `Shard::recycle`).
impl Recycle for PercentSamples {
    fn touched(&self) -> bool {
        true
    }

    fn reset(&mut self) {}
}

impl PercentSamples {
    pub fn new(at_ms: u64, v: f64) -> Self {
        PercentSamples {
            last: (at_ms, v),
            prev: None,
        }
    }

    pub fn record(&mut self, at_ms: u64, v: f64) {
        if at_ms >= self.last.0 {
            self.prev = Some(self.last);
            self.last = (at_ms, v);
        } else if self.prev.is_none_or(|p| at_ms >= p.0) {
            // Older than the last (another shard's sample, or a `|T` one): second newest.
            self.prev = Some((at_ms, v));
        }
    }

    /// Folds a concurrent shard's samples in: the two newest of both remain.
    pub fn merge(&mut self, other: &PercentSamples) {
        if let Some((at, v)) = other.prev {
            self.record(at, v);
        }
        self.record(other.last.0, other.last.1);
    }

    /// Rainbow's DiffMetric: `(cur − prev) / prev × 100`, 0 when `prev` is 0 (the SDK's
    /// ZeroDivisionError branch) or there is no previous value (its first update).
    pub fn percent(prev: Option<f64>, cur: f64) -> f64 {
        match prev {
            Some(p) if p != 0.0 => (cur - p) / p * 100.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests;
