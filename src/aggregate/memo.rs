//! Line memo: raw line bytes → the series and contribution they produced this interval.
//!
//! Real statsd traffic repeats lines byte for byte within an interval (`requests:1|c`,
//! `queue:5|g`), so a repeated line can skip parse, validation, key building and the series
//! lookup: one hash and probe here, then an O(1) index into the shard's series map. Only
//! lines that were accepted and whose effect depends on nothing but their bytes and the
//! reader's fixed settings are recorded: single-value counters, gauges, timers and sets.
//! Rates (timed by the receive clock when they carry no `|T`) and packed values (whose
//! per-value float additions must stay in order) always take the full path.
//!
//! Bounded per shard (entries and line bytes), and recycled with the shard after its flush
//! (the indices it holds are positions in that shard's maps: entries of freed series go,
//! the others are re-pointed). Once full, it is consulted only while it keeps paying: with
//! mostly distinct lines (random timer values, a million series) a lookup that misses is pure
//! cost, so a full memo that hits less than half the time stops being asked for the rest of
//! the interval; a full memo starts empty in the shard's next interval. One that gave up
//! frees its room and sits out the shard's next intervals (1, 2, 4, then 8 in a row while it
//! keeps giving up), so traffic it cannot serve (100k+ distinct lines) pays neither its
//! lookups nor its memory; then it is tried afresh.

use crate::parse::Kind;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hasher};

/// Most lines remembered per shard: enough for the distinct lines of a busy reader's
/// interval, small enough (~1.3 MiB of table) not to weigh on 100k-series memory. 7/8 of a
/// power of two: the most a table of 2^15 buckets holds, one more would double it.
pub const MAX_ENTRIES: usize = (1 << 15) / 8 * 7;
/// Most line bytes remembered per shard (one arena, not one allocation per line).
pub const MAX_BYTES: usize = 1 << 20;
/// Lookups a full memo gets before it is judged on its hit rate.
const TRIAL_LOOKUPS: u32 = 1 << 16;
/// Most intervals a memo that keeps giving up sits out between trials.
const MAX_REST: u8 = 8;

/// What a remembered line does to its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Added to the counter's sum: the value already divided by the sample rate.
    Counter(f64),
    GaugeSet(f64),
    GaugeDelta(f64),
    Timer {
        value: f64,
        sample_rate: f64,
    },
    /// The member's hash.
    Set(u64),
}

/// One remembered line.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    start: u32,
    len: u32,
    /// Position of the series in the map `op` names.
    pub series: u32,
    pub kind: Kind,
    pub op: Op,
}

#[derive(Debug, Default)]
pub struct LineMemo {
    table: HashTable<Entry>,
    /// The remembered lines, back to back.
    bytes: Vec<u8>,
    /// Randomly seeded: the lines are sender-controlled.
    hasher: foldhash::fast::RandomState,
    /// Set when a line was refused for want of room.
    full: bool,
    /// Lookups since the memo filled up, and how many of them hit.
    full_lookups: u32,
    full_hits: u32,
    /// Set once a full memo has missed more often than it hit: no more lookups.
    given_up: bool,
    /// Recycles left before a memo that gave up is tried again, and how many it sat out
    /// last time (doubled each time it gives up again, reset when it pays).
    rest: u8,
    last_rest: u8,
}

impl LineMemo {
    /// Computed once per line, for both the lookup and a later insert.
    #[inline]
    pub fn hash(&self, line: &[u8]) -> u64 {
        hash_line(&self.hasher, line)
    }

    /// False once a full memo has shown it misses more often than it hits.
    #[inline]
    pub fn worth_asking(&self) -> bool {
        !self.given_up
    }

    #[inline]
    pub fn get(&mut self, hash: u64, line: &[u8]) -> Option<Entry> {
        let bytes = &self.bytes;
        let found = self
            .table
            .find(hash, |e| {
                e.len as usize == line.len()
                    && bytes
                        .get(e.start as usize..e.start as usize + e.len as usize)
                        .is_some_and(|seen| same_bytes(seen, line))
            })
            .copied();
        if self.full {
            self.judge(found.is_some());
        }
        found
    }

    /// Out of line: a memo that still has room (the common case) pays one branch.
    #[cold]
    #[inline(never)]
    fn judge(&mut self, hit: bool) {
        self.full_lookups += 1;
        self.full_hits += u32::from(hit);
        if self.full_lookups >= TRIAL_LOOKUPS {
            self.given_up = self.full_hits < self.full_lookups / 2;
            // A new trial, so the counts never overflow.
            self.full_lookups = 0;
            self.full_hits = 0;
        }
    }

    /// Remembers `line`, unless the memo is full (then the line just takes the full path).
    pub fn insert(&mut self, hash: u64, line: &[u8], kind: Kind, series: usize, op: Op) {
        if self.table.len() >= MAX_ENTRIES || self.bytes.len() + line.len() > MAX_BYTES {
            self.full = true;
            return;
        }
        let (Ok(start), Ok(len), Ok(series)) = (
            u32::try_from(self.bytes.len()),
            u32::try_from(line.len()),
            u32::try_from(series),
        ) else {
            return;
        };
        self.bytes.extend_from_slice(line);
        let entry = Entry {
            start,
            len,
            series,
            kind,
            op,
        };
        let (bytes, hasher) = (&self.bytes, &self.hasher);
        self.table.insert_unique(hash, entry, |e| {
            let s = e.start as usize;
            hash_line(hasher, bytes.get(s..s + e.len as usize).unwrap_or_default())
        });
    }

    /// Carries the memo into the shard's next interval: every entry whose series moved is
    /// re-pointed (`to` answers its new position, or `None` when it was freed), so steady
    /// traffic keeps hitting after a flush. A memo that filled up or gave up starts empty
    /// instead, judged afresh on the next interval's lines (stale gauge values and one-off
    /// lines would otherwise hold its room for good).
    pub fn recycle(&mut self, mut to: impl FnMut(Op, u32) -> Option<u32>) {
        if self.rest > 0 {
            // Sitting out: still given up, and empty.
            self.rest -= 1;
            self.given_up = self.rest > 0;
            return;
        }
        if self.given_up {
            // Freed, not kept: a memo that does not pay should not weigh on memory either.
            self.table = HashTable::new();
            self.bytes = Vec::new();
            self.last_rest = (self.last_rest.saturating_mul(2)).clamp(1, MAX_REST);
            self.rest = self.last_rest;
            self.full = false;
            self.full_lookups = 0;
            self.full_hits = 0;
            return;
        }
        self.last_rest = 0;
        if self.full {
            self.table.clear();
            self.bytes.clear();
            self.full = false;
            self.full_lookups = 0;
            self.full_hits = 0;
            return;
        }
        self.table.retain(|e| match to(e.op, e.series) {
            Some(series) => {
                e.series = series;
                true
            }
            None => false,
        });
    }

    /// Forgets every line, keeping the allocations (and whether it sits out: the lines are
    /// no more memorable under new settings than they were).
    pub fn clear(&mut self) {
        self.table.clear();
        self.bytes.clear();
        self.full = false;
        self.full_lookups = 0;
        self.full_hits = 0;
    }

    /// As if a trial had just failed: no lookups until the next recycles.
    #[cfg(test)]
    pub fn give_up(&mut self) {
        self.given_up = true;
        self.rest = MAX_REST;
    }

    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

/// One `write` of the bytes, not `hash_one(line)`: `[u8]`'s `Hash` also writes a length
/// prefix, which costs foldhash a second multiply per line, and foldhash's `write` already
/// mixes the length in (a length-dependent rotation of the seed).
#[inline]
fn hash_line(hasher: &foldhash::fast::RandomState, line: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(line);
    h.finish()
}

/// `a == b`, without a libc call for the short slices statsd lines are: a few 8-byte words
/// at fixed offsets from both ends, overlapping where the length is not a multiple of 8, so
/// every byte is compared and there is no byte-by-byte tail.
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // The two words at `at` xor'ed: zero when equal. Always in bounds for the offsets below;
    // were one not, it would count as a difference.
    let diff = |at: usize| -> u64 {
        let word = |s: &[u8]| {
            s.get(at..)?
                .first_chunk::<8>()
                .map(|w| u64::from_ne_bytes(*w))
        };
        match (word(a), word(b)) {
            (Some(x), Some(y)) => x ^ y,
            _ => 1,
        }
    };
    match n {
        8..=16 => diff(0) | diff(n - 8) == 0,
        17..=32 => diff(0) | diff(8) | diff(n - 16) | diff(n - 8) == 0,
        33..=64 => {
            let head = diff(0) | diff(8) | diff(16) | diff(24);
            let tail = diff(n - 32) | diff(n - 24) | diff(n - 16) | diff(n - 8);
            head | tail == 0
        }
        // Shorter than a word, or long enough for `memcmp` to pay.
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(memo: &mut LineMemo) {
        for i in 0..=MAX_ENTRIES {
            let line = format!("s{i}:1|c");
            let h = memo.hash(line.as_bytes());
            memo.insert(h, line.as_bytes(), Kind::Counter, i, Op::Counter(1.0));
        }
        assert_eq!(memo.entries(), MAX_ENTRIES);
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let text: Vec<u8> = (0..80u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=72 {
            let a = &text[..n];
            // Equal, from another place (another alignment) in memory.
            let copy = a.to_vec();
            assert!(same_bytes(a, &copy), "{n}");
            // One byte different, at every position, in the low and in the top bit.
            for at in 0..n {
                for flip in [0x01, 0x80] {
                    let mut b = copy.clone();
                    b[at] ^= flip;
                    assert_eq!(same_bytes(a, &b), a == b.as_slice(), "{n} {at} {flip}");
                }
            }
            // A prefix, or one byte more.
            assert!(!same_bytes(a, &text[..n + 1]), "{n}");
            if let Some(shorter) = n.checked_sub(1) {
                assert!(!same_bytes(a, &text[..shorter]), "{n}");
            }
        }
        assert!(same_bytes(b"", b""));
    }

    #[test]
    fn a_full_memo_that_keeps_missing_stops_being_asked() {
        let mut memo = LineMemo::default();
        fill(&mut memo);
        let line = b"s0:1|c";
        let h = memo.hash(line);
        assert_eq!(
            memo.get(h, line).map(|e| (e.series, e.op)),
            Some((0, Op::Counter(1.0)))
        );
        for i in 1..TRIAL_LOOKUPS {
            assert!(memo.worth_asking());
            let miss = format!("other{i}:1|c");
            assert!(
                memo.get(memo.hash(miss.as_bytes()), miss.as_bytes())
                    .is_none()
            );
        }
        assert!(!memo.worth_asking());
    }

    #[test]
    fn a_memo_that_gave_up_sits_out_longer_each_time_then_is_tried_again() {
        let mut memo = LineMemo::default();
        let mut sat_out = Vec::new();
        for _ in 0..5 {
            fill(&mut memo);
            for i in 0..TRIAL_LOOKUPS {
                let miss = format!("other{i}:1|c");
                memo.get(memo.hash(miss.as_bytes()), miss.as_bytes());
            }
            assert!(!memo.worth_asking());
            let mut n = 0;
            loop {
                memo.recycle(|_, s| Some(s));
                assert_eq!(memo.entries(), 0, "freed while it sits out");
                if memo.worth_asking() {
                    break;
                }
                n += 1;
            }
            sat_out.push(n);
        }
        assert_eq!(sat_out, [1, 2, 4, 8, 8]);
        // One that pays is kept, and its next give-up rests one interval again.
        fill(&mut memo);
        memo.recycle(|_, s| Some(s));
        assert!(memo.worth_asking());
        assert_eq!(memo.last_rest, 0);
    }

    #[test]
    fn a_full_memo_that_hits_stays() {
        let mut memo = LineMemo::default();
        fill(&mut memo);
        let line = b"s7:1|c";
        for _ in 0..2 * TRIAL_LOOKUPS {
            assert!(memo.get(memo.hash(line), line).is_some());
        }
        assert!(memo.worth_asking());
    }
}
