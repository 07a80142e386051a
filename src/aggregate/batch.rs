//! Batch: a datagram's lines applied together, so that their series lookups overlap.
//!
//! Owns: [`Aggregator::add_lines`], the path a reader takes while its shard's line memo sits
//! out (more distinct lines than the memo holds: 100k series and up), where every line is
//! parsed and looked up. Must never: reorder lines' effects on a series (gauge sets and
//! deltas, budget admissions and refusals happen in line order), or answer an outcome other
//! than `add_line`'s for the same line.

use super::apply::{Hashed, apply_keyed, build_key, series_timestamp};
use super::{Aggregator, BATCH_LINES, Key, Shard};
use crate::parse::{Kind, Line};
use crate::reason::Reject;
use arrayvec::ArrayVec;

impl Aggregator {
    /// Applies up to [`BATCH_LINES`] raw lines (the rest are ignored), in order, answering
    /// each one's outcome to `done`: the same outcomes and shard contents as
    /// [`Aggregator::add_line`] line by line. While the memo is consulted, that is what it
    /// does; while the memo sits out, every line is parsed first and its series' slot
    /// prefetched, then each slot is probed and the entry it points at prefetched (and a
    /// long key's bytes), then the lines are applied, so a datagram's cache misses overlap
    /// instead of queueing.
    pub fn add_lines<'a>(
        &mut self,
        shard: &mut Shard,
        raws: &[&'a [u8]],
        now_ms: u64,
        parse: impl Fn(&'a [u8]) -> Result<Line<'a>, Reject>,
        mut done: impl FnMut(Result<Kind, Reject>),
    ) {
        let raws = raws.get(..BATCH_LINES).unwrap_or(raws);
        if shard.settings_epoch != self.settings_epoch {
            shard.adopt(self.settings_epoch);
        }
        if shard.memo.worth_asking() {
            for &raw in raws {
                done(self.add_line(shard, raw, now_ms, || parse(raw)));
            }
            return;
        }
        // Refused lines keep their place, so outcomes are answered in line order.
        let mut pending: ArrayVec<Result<Pending<'a>, Reject>, BATCH_LINES> = ArrayVec::new();
        self.batch_keys.clear();
        for &raw in raws {
            let line = match parse(raw) {
                Ok(line) => line,
                Err(reason) => {
                    pending.push(Err(reason));
                    continue;
                }
            };
            let key = match series_timestamp(&line) {
                None if line.dims.is_empty() => KeyAt::Name,
                timestamp => {
                    let start = self.batch_keys.len();
                    build_key(&self.settings, &mut self.batch_keys, &line, timestamp);
                    KeyAt::Built(start..self.batch_keys.len())
                }
            };
            let bytes = key.bytes(&line, &self.batch_keys);
            let hash = series_of!(shard, line.kind, |m| {
                let hash = m.hash(bytes);
                m.prefetch_slot(hash);
                hash
            });
            pending.push(Ok(Pending { line, key, hash }));
        }
        let mut found: ArrayVec<Option<usize>, BATCH_LINES> = ArrayVec::new();
        for p in &pending {
            let Ok(p) = p else {
                found.push(None);
                continue;
            };
            found.push(series_of!(shard, p.line.kind, |m| {
                let at = m.probe(p.hash);
                if let Some(at) = at {
                    m.prefetch_entry(at);
                }
                at
            }));
        }
        // A key too long to sit in its entry is one more pointer away.
        for (p, at) in pending.iter().zip(&found) {
            if let (Ok(p), Some(at)) = (p, *at)
                && let KeyAt::Built(range) = &p.key
                && range.len() > Key::INLINE
            {
                series_of!(shard, p.line.kind, |m| m.prefetch_key(at));
            }
        }
        for p in &pending {
            let p = match p {
                Ok(p) => p,
                Err(reason) => {
                    done(Err(*reason));
                    continue;
                }
            };
            let key = p.key.bytes(&p.line, &self.batch_keys);
            let hashed = Hashed(p.hash);
            let outcome = apply_keyed(self.context(), shard, &p.line, key, hashed, now_ms);
            done(outcome.map(|_| p.line.kind));
        }
    }
}

/// Runs `$body` with `$m` bound to the shard's series map for `$kind`.
macro_rules! series_of {
    ($shard:expr, $kind:expr, |$m:ident| $body:expr) => {
        match $kind {
            Kind::Counter => {
                let $m = &$shard.counters;
                $body
            }
            Kind::Gauge => {
                let $m = &$shard.gauges;
                $body
            }
            Kind::Timer | Kind::Histogram | Kind::Distribution => {
                let $m = &$shard.timers;
                $body
            }
            Kind::Set => {
                let $m = &$shard.sets;
                $body
            }
            Kind::Rate => {
                let $m = &$shard.rates;
                $body
            }
            Kind::PercentChange => {
                let $m = &$shard.percents;
                $body
            }
        }
    };
}
use series_of;

/// A parsed line of a batch, waiting for its turn.
struct Pending<'a> {
    line: Line<'a>,
    key: KeyAt,
    hash: u64,
}

/// Where a pending line's series key is.
enum KeyAt {
    /// Its plain name.
    Name,
    /// Built, in the batch's key bytes.
    Built(std::ops::Range<usize>),
}

impl KeyAt {
    fn bytes<'k>(&self, line: &Line<'k>, built: &'k [u8]) -> &'k [u8] {
        match self {
            KeyAt::Name => line.name.as_bytes(),
            KeyAt::Built(range) => built.get(range.clone()).unwrap_or_default(),
        }
    }
}
