//! Aggregate: per-reader interval state, updated line by line with no shared lock or map.
//!
//! Owns: the [`Shard`] each reader thread fills (one map per metric type, keyed by the
//! canonical series key) and the rules that turn a parsed line into state updates.
//! Must never: be touched by two threads at once on the hot path, or do I/O.
//!
//! Design: every reader owns one `Shard` behind a mutex that only it takes while processing
//! a datagram, so the lock is uncontended except for the instant at flush when the flusher
//! swaps the shard for another (`std::mem::replace`, O(1)). Nothing is shared between
//! readers per line: no global map, no atomic RMW, no channel. The flusher merges the swapped
//! shards off the hot path (see `flush`), then recycles each one ([`Shard::recycle`]): series
//! touched in the interval stay, reset, and the shard goes back to its reader at the next
//! flush, so steady traffic does not re-create every series after every flush.
//!
//! Series identity is name + sorted dimensions; the configured default dimensions
//! (`hostname`, ...) are added at flush, and a line dimension equal to a default is dropped
//! from the key so both spellings are one series.
//!
//! Series maps keep insertion order ([`SeriesMap`]), so a series' position is stable while a
//! reader holds the shard (nothing is removed from a live shard; recycling, off the reader,
//! remaps the memo past freed series): the shard's [`memo`] maps a repeated raw line straight
//! to that position and its already-parsed contribution ([`Aggregator::add_line`]). While
//! the memo sits out (more distinct lines than it holds), a datagram's lines are taken
//! together ([`Aggregator::add_lines`]): all parsed and their series' slots prefetched, then
//! the entries found prefetched, then applied in order, so their cache misses overlap.

mod apply;
mod batch;
mod budget;
mod key;
mod memo;
mod prefetch;
mod series;
mod state;

pub use budget::{NameReport, SeriesBudget, TOP_NAMES};
pub use key::{Key, SeriesKey};
pub use series::SeriesMap;
pub use state::{
    Counter, GaugeUpdate, HistogramSpec, PercentSamples, RateSamples, Recycle, Set,
    TIMER_VALUE_SCALE, Timer,
};

use crate::parse::{Kind, Line};
use crate::reason::Reject;
use apply::{Context, Unhashed, apply_keyed, build_key, series_timestamp};
use memo::{LineMemo, Op};

/// Most dimensions a key holds (config caps `statsd.max_dimensions` at 64).
pub const MAX_KEY_DIMENSIONS: usize = 64;

/// Seed for set-member hashes: fixed so that shards agree on a member's hash.
const SET_MEMBER_SEED: u64 = 0x5747_4154_4553_5354;

/// What the aggregator needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default dimensions (key, value), `hostname` included; a line pair equal to one is
    /// dropped from the series key because flush adds it back.
    pub default_dimensions: Vec<(String, String)>,
    /// Live series allowed in total and per name, shared by every reader.
    pub budget: std::sync::Arc<SeriesBudget>,
    pub max_set_members: usize,
    /// Timer histograms' precision and range (`aggregate.histogram_*`).
    pub histogram: HistogramSpec,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_dimensions: Vec::new(),
            budget: std::sync::Arc::default(),
            max_set_members: 10_000,
            histogram: HistogramSpec::default(),
        }
    }
}

/// Most lines of a datagram taken together by [`Aggregator::add_lines`]: a full datagram
/// at 20 lines fits; longer ones go in chunks.
pub const BATCH_LINES: usize = 32;

/// One reader's state for the open interval.
#[derive(Debug, Default)]
pub struct Shard {
    pub counters: SeriesMap<Counter>,
    pub gauges: SeriesMap<GaugeUpdate>,
    pub timers: SeriesMap<Timer>,
    pub sets: SeriesMap<Set>,
    pub rates: SeriesMap<RateSamples>,
    /// `pc` series: like rates, timed by the receive clock and carried by the flusher.
    pub percents: SeriesMap<PercentSamples>,
    /// Repeated lines → series positions in the maps above; recycled with them.
    memo: LineMemo,
    /// The settings generation of the aggregator whose lines the memo remembers.
    settings_epoch: u64,
}

impl Shard {
    /// Series a line touched since the shard was last recycled.
    pub fn series(&self) -> usize {
        touched_in(&self.counters)
            + touched_in(&self.gauges)
            + touched_in(&self.timers)
            + touched_in(&self.sets)
            + self.rates.len()
            + self.percents.len()
    }

    /// Series the shard holds, touched or not (what it costs in memory and budget).
    pub fn slots(&self) -> usize {
        self.counters.len()
            + self.gauges.len()
            + self.timers.len()
            + self.sets.len()
            + self.rates.len()
            + self.percents.len()
    }

    /// Forgets the remembered lines: their outcome was worked out under other settings
    /// (limits, default dimensions) than the aggregator now holds.
    fn adopt(&mut self, settings_epoch: u64) {
        self.memo.clear();
        self.settings_epoch = settings_epoch;
    }

    /// Lines remembered by the memo.
    pub fn memo_len(&self) -> usize {
        self.memo.entries()
    }

    /// Makes the memo sit out, as it does under more distinct lines than it holds.
    #[cfg(test)]
    fn sit_out_memo(&mut self) {
        self.memo.give_up();
    }

    /// The metric name of every series held (once per series), for the series budget: its
    /// bytes, undecoded (a key's name is validated UTF-8; the budget only hashes it).
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        let keys = self.counters.keys().chain(self.gauges.keys());
        let keys = keys.chain(self.timers.keys()).chain(self.sets.keys());
        keys.chain(self.rates.keys())
            .chain(self.percents.keys())
            .map(|k| key::name_of(k))
    }

    /// Folds the touched series of `other` (a later or concurrent shard) into `self`.
    pub fn merge(&mut self, other: &Shard) {
        merge_map(&mut self.counters, &other.counters, Counter::merge);
        merge_map(&mut self.gauges, &other.gauges, GaugeUpdate::merge);
        merge_map(&mut self.timers, &other.timers, Timer::merge);
        merge_map(&mut self.sets, &other.sets, Set::merge);
        merge_map(&mut self.rates, &other.rates, RateSamples::merge);
        merge_map(&mut self.percents, &other.percents, PercentSamples::merge);
    }

    /// Readies a flushed shard for another interval: series touched in the one just flushed
    /// keep their slot, reset; the others are freed. A reader given this shard back finds its
    /// steady series already there (no parse-and-create burst after every flush, which is
    /// what overflowed the socket buffer with 100k series), and its memo still valid: the
    /// memo's positions are remapped past freed series. Runs on the flusher, never a reader.
    pub fn recycle(&mut self) {
        let counters = keep_touched(&mut self.counters);
        let gauges = keep_touched(&mut self.gauges);
        let timers = keep_touched(&mut self.timers);
        let sets = keep_touched(&mut self.sets);
        // Rates are timed by the receive clock and never memoized: nothing to keep.
        self.rates.clear();
        self.percents.clear();
        let moved = |remap: &Option<Vec<u32>>, series: u32| match remap {
            None => Some(series),
            Some(to) => to.get(series as usize).copied().filter(|&n| n != FREED),
        };
        self.memo.recycle(|op, series| match op {
            Op::Counter(_) => moved(&counters, series),
            Op::GaugeSet(_) | Op::GaugeDelta(_) => moved(&gauges, series),
            Op::Timer { .. } => moved(&timers, series),
            Op::Set(_) => moved(&sets, series),
        });
    }
}

fn touched_in<V: Recycle>(map: &SeriesMap<V>) -> usize {
    map.values().filter(|v| v.touched()).count()
}

/// Where a freed series' position maps to.
const FREED: u32 = u32::MAX;

/// Frees untouched series and resets the rest; answers each old position's new one when a
/// series was freed (positions after it shift down), `None` when every position stands.
fn keep_touched<V: Recycle>(map: &mut SeriesMap<V>) -> Option<Vec<u32>> {
    let mut remap = None;
    if map.values().any(|v| !v.touched()) {
        let mut next = 0u32;
        let to = map.values().map(|v| {
            if v.touched() {
                next += 1;
                next - 1
            } else {
                FREED
            }
        });
        remap = Some(to.collect());
    }
    map.retain(|_, v| {
        let keep = v.touched();
        v.reset();
        keep
    });
    remap
}

fn merge_map<V: Recycle + Clone>(
    into: &mut SeriesMap<V>,
    from: &SeriesMap<V>,
    merge: fn(&mut V, &V),
) {
    for (k, v) in from.iter().filter(|(_, v)| v.touched()) {
        let hash = into.hash(k);
        match into.find(hash, k) {
            Some(at) => merge(&mut into[at], v),
            None => {
                into.push(hash, k.clone(), v.clone());
            }
        }
    }
}

/// Turns lines into shard updates; one per reader thread, reusing its key buffer.
#[derive(Debug)]
pub struct Aggregator {
    settings: Settings,
    /// Bumped by every [`Aggregator::replace_settings`]; a shard whose memo was filled under
    /// another generation forgets it before its next line.
    settings_epoch: u64,
    key_buf: Vec<u8>,
    /// The built keys of a batch's lines, back to back.
    batch_keys: Vec<u8>,
    member_hasher: foldhash::fast::FixedState,
}

impl Aggregator {
    pub fn new(settings: Settings) -> Self {
        Aggregator {
            settings,
            settings_epoch: 0,
            key_buf: Vec::with_capacity(512),
            batch_keys: Vec::with_capacity(4096),
            member_hasher: foldhash::fast::FixedState::with_seed(SET_MEMBER_SEED),
        }
    }

    /// Takes reloaded settings for the lines that follow; series already in a shard keep
    /// their state (the open interval is not lost).
    pub fn replace_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.settings_epoch += 1;
    }

    /// Applies one parsed line; `now_ms` times `r` samples that carry no `|T`.
    #[inline]
    pub fn add(&mut self, shard: &mut Shard, line: &Line<'_>, now_ms: u64) -> Result<(), Reject> {
        self.apply(shard, line, now_ms).map(|_| ())
    }

    /// Applies one raw line: from the shard's memo when the same bytes were accepted before
    /// this interval, else through `parse` and [`Aggregator::add`] (remembering the line when
    /// its effect depends on its bytes alone). Same outcome and shard contents either way, as
    /// long as a shard is fed by one aggregator with one set of parse limits (one reader).
    #[inline]
    pub fn add_line<'a>(
        &mut self,
        shard: &mut Shard,
        raw: &'a [u8],
        now_ms: u64,
        parse: impl FnOnce() -> Result<Line<'a>, Reject>,
    ) -> Result<Kind, Reject> {
        if shard.settings_epoch != self.settings_epoch {
            shard.adopt(self.settings_epoch);
        }
        let mut hash = None;
        if shard.memo.worth_asking() {
            let h = shard.memo.hash(raw);
            if let Some(hit) = shard.memo.get(h, raw)
                && let Some(outcome) = self.replay(shard, hit.series as usize, hit.op)
            {
                return outcome.map(|()| hit.kind);
            }
            hash = Some(h);
        }
        // Matched by reference: moving the parsed line would cost a copy per line.
        match &parse() {
            Ok(line) => {
                let replayable = self.apply(shard, line, now_ms)?;
                if let (Some(hash), Some((series, op))) = (hash, replayable) {
                    shard.memo.insert(hash, raw, line.kind, series, op);
                }
                Ok(line.kind)
            }
            Err(reason) => Err(*reason),
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            settings: &self.settings,
            member_hasher: &self.member_hasher,
        }
    }

    /// A remembered line's effect; `None` if its series is not where the memo says (cannot
    /// happen while the memo lives and dies with its shard), so the caller parses instead.
    #[inline]
    fn replay(&self, shard: &mut Shard, series: usize, op: Op) -> Option<Result<(), Reject>> {
        match op {
            Op::Counter(add) => shard.counters.get_index_mut(series)?.1.add(add),
            Op::GaugeSet(v) => shard.gauges.get_index_mut(series)?.1.apply_set(v),
            Op::GaugeDelta(d) => shard.gauges.get_index_mut(series)?.1.apply_delta(d),
            Op::Timer { value, sample_rate } => {
                shard
                    .timers
                    .get_index_mut(series)?
                    .1
                    .record(value, sample_rate);
            }
            Op::Set(hash) => {
                let set = shard.sets.get_index_mut(series)?.1;
                return Some(set.insert(hash, self.settings.max_set_members));
            }
        }
        Some(Ok(()))
    }

    /// [`Aggregator::add`], answering the series' position and the line's effect when the
    /// line's bytes alone determine it (so the memo may replay it).
    #[inline]
    fn apply(
        &mut self,
        shard: &mut Shard,
        line: &Line<'_>,
        now_ms: u64,
    ) -> Result<Option<(usize, Op)>, Reject> {
        let timestamp = series_timestamp(line);
        let key: &[u8] = if line.dims.is_empty() && timestamp.is_none() {
            line.name.as_bytes()
        } else {
            self.key_buf.clear();
            build_key(&self.settings, &mut self.key_buf, line, timestamp);
            &self.key_buf
        };
        let context = Context {
            settings: &self.settings,
            member_hasher: &self.member_hasher,
        };
        apply_keyed(context, shard, line, key, Unhashed, now_ms)
    }
}

#[cfg(test)]
mod tests;
