//! Apply: one parsed line's effect on its series, the rules both the line-by-line and the
//! batched path share.
//!
//! Owns: building the canonical series key and updating (or creating, within the series
//! budget) the series a line names. Must never: allocate for a series that exists, or touch
//! any series but the line's.

use super::memo::{self, Op};
use super::{
    Counter, GaugeUpdate, Key, MAX_KEY_DIMENSIONS, PercentSamples, RateSamples, SeriesMap, Set,
    Settings, Shard, Timer, key,
};
use crate::parse::{GaugeOp, Kind, Line};
use crate::reason::Reject;
use arrayvec::ArrayVec;
use std::hash::BuildHasher;

/// What applying a line reads from its aggregator.
#[derive(Clone, Copy)]
pub(super) struct Context<'s> {
    pub(super) settings: &'s Settings,
    pub(super) member_hasher: &'s foldhash::fast::FixedState,
}

/// A key's hash in the map its line goes to, when the caller worked it out already.
pub(super) trait KeyHash: Copy {
    fn of<V>(self, map: &SeriesMap<V>, key: &[u8]) -> u64;
}

#[derive(Clone, Copy)]
pub(super) struct Unhashed;

#[derive(Clone, Copy)]
pub(super) struct Hashed(pub(super) u64);

impl KeyHash for Unhashed {
    #[inline]
    fn of<V>(self, map: &SeriesMap<V>, key: &[u8]) -> u64 {
        map.hash(key)
    }
}

impl KeyHash for Hashed {
    #[inline]
    fn of<V>(self, _: &SeriesMap<V>, _: &[u8]) -> u64 {
        self.0
    }
}

/// The `|T` that is part of a series' key: a rate's (and a percent change's) `|T` times its
/// sample; for every other type it makes a point of its own.
#[inline]
pub(super) fn series_timestamp(line: &Line<'_>) -> Option<u64> {
    if matches!(line.kind, Kind::Rate | Kind::PercentChange) {
        None
    } else {
        line.timestamp
    }
}

/// One line applied to the series `key` names (whose hash in its map `hash` knows, or works
/// out), creating the series if the budget admits it; answers its position and, when the
/// line's bytes alone determine it, its effect (so the memo may replay it).
#[inline]
pub(super) fn apply_keyed(
    cx: Context<'_>,
    shard: &mut Shard,
    line: &Line<'_>,
    key: &[u8],
    hash: impl KeyHash,
    now_ms: u64,
) -> Result<Option<(usize, Op)>, Reject> {
    let s = cx.settings;
    let room = || s.budget.admit(line.name);
    let single = line.values.single();
    let memo = match line.kind {
        Kind::Counter => {
            let (i, c) = slot(&mut shard.counters, key, hash, room, Counter::default)?;
            let weight = 1.0 / line.sample_rate;
            for v in line.values.numbers() {
                c.add(v * weight);
            }
            single.map(|v| (i, Op::Counter(v * weight)))
        }
        Kind::Gauge => {
            let (i, g) = slot(&mut shard.gauges, key, hash, room, GaugeUpdate::default)?;
            let mut last = None;
            for op in line.values.gauge_ops() {
                match op {
                    GaugeOp::Set(v) => g.apply_set(v),
                    GaugeOp::Delta(d) => g.apply_delta(d),
                }
                last = Some(op);
            }
            match (single, last) {
                (Some(_), Some(GaugeOp::Set(v))) => Some((i, Op::GaugeSet(v))),
                (Some(_), Some(GaugeOp::Delta(d))) => Some((i, Op::GaugeDelta(d))),
                _ => None,
            }
        }
        Kind::Timer | Kind::Histogram | Kind::Distribution => {
            let spec = s.histogram;
            let (i, t) = slot(&mut shard.timers, key, hash, room, || Timer::new(spec))?;
            for v in line.values.numbers() {
                t.record(v, line.sample_rate);
            }
            single.map(|value| {
                let sample_rate = line.sample_rate;
                (i, Op::Timer { value, sample_rate })
            })
        }
        Kind::Set => {
            let member = cx.member_hasher.hash_one(line.values.member());
            let (i, set) = slot(&mut shard.sets, key, hash, room, Set::default)?;
            set.insert(member, s.max_set_members)?;
            Some((i, Op::Set(member)))
        }
        Kind::Rate => {
            let at = line.timestamp.map_or(now_ms, |t| t.saturating_mul(1000));
            let mut values = line.values.numbers();
            let first = values.next().unwrap_or(0.0);
            let new = || RateSamples::new(at, first);
            let (_, r) = slot(&mut shard.rates, key, hash, room, new)?;
            r.record(at, first);
            values.for_each(|v| r.record(at, v));
            // Timed by the receive clock: never replayed.
            None
        }
        Kind::PercentChange => {
            // The sample rate is ignored, as for gauges and rates: a sampled series'
            // last two values are still its last two values.
            let at = line.timestamp.map_or(now_ms, |t| t.saturating_mul(1000));
            let mut values = line.values.numbers();
            let first = values.next().unwrap_or(0.0);
            let mut created = false;
            let (_, p) = slot(&mut shard.percents, key, hash, room, || {
                created = true;
                PercentSamples::new(at, first)
            })?;
            // A series just created holds `first` already; an existing one records it.
            if !created {
                p.record(at, first);
            }
            values.for_each(|v| p.record(at, v));
            None
        }
    };
    Ok(memo)
}

/// Sorted, deduplicated (last wins), defaults stripped, appended to `buf`.
pub(super) fn build_key(
    settings: &Settings,
    buf: &mut Vec<u8>,
    line: &Line<'_>,
    timestamp: Option<u64>,
) {
    let mut dims: ArrayVec<(&str, &str), MAX_KEY_DIMENSIONS> = ArrayVec::new();
    line.dims.for_each(|k, v| {
        // The parser caps dimensions below this; a full vector can only drop extras.
        let _ = dims.try_push((k, v));
    });
    insertion_sort_by_key(&mut dims);
    let mut kept: ArrayVec<(&str, &str), MAX_KEY_DIMENSIONS> = ArrayVec::new();
    for (i, &(k, v)) in dims.iter().enumerate() {
        let overridden = dims.get(i + 1).is_some_and(|next| same_str(next.0, k));
        let is_default = settings
            .default_dimensions
            .iter()
            .any(|(dk, dv)| same_str(dk, k) && same_str(dv, v));
        if !overridden && !is_default {
            kept.push((k, v));
        }
    }
    key::encode(buf, line.name, timestamp, &kept);
}

/// Stable and allocation-free for the handful of dimensions a line has.
fn insertion_sort_by_key(v: &mut [(&str, &str)]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && greater(v[j - 1].0, v[j].0) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// `a > b` for dimension keys, a few bytes long: a byte loop, where `str`'s order calls
/// `memcmp` (which was a tenth of a reader's time with two tags a line).
#[inline]
fn greater(a: &str, b: &str) -> bool {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x > y;
        }
    }
    a.len() > b.len()
}

/// `a == b` without a `memcmp` call (see [`greater`]).
#[inline]
fn same_str(a: &str, b: &str) -> bool {
    memo::same_bytes(a.as_bytes(), b.as_bytes())
}

/// The series' position and state, created if the budget (`room`) admits one more series.
#[inline]
fn slot<'m, V>(
    map: &'m mut SeriesMap<V>,
    key: &[u8],
    hash: impl KeyHash,
    room: impl FnOnce() -> Result<(), Reject>,
    new: impl FnOnce() -> V,
) -> Result<(usize, &'m mut V), Reject> {
    // Looked up by the borrowed key so a hit copies nothing; the owned key is made only for
    // a new series.
    let hash = hash.of(map, key);
    let i = match map.find(hash, key) {
        Some(i) => i,
        None => {
            room()?;
            map.push(hash, Key::new(key), new())
        }
    };
    Ok((i, &mut map[i]))
}
