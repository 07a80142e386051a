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
//! Bounded per shard (entries and line bytes), and dropped with the shard at flush, since the
//! indices it holds are positions in that shard's maps.

use crate::parse::Kind;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Most lines remembered per shard: enough for the distinct lines of a busy reader's
/// interval, small enough (~1.5 MiB of table) not to weigh on 100k-series memory.
pub const MAX_ENTRIES: usize = 1 << 15;
/// Most line bytes remembered per shard (one arena, not one allocation per line).
pub const MAX_BYTES: usize = 1 << 20;

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
}

impl LineMemo {
    /// Computed once per line, for both the lookup and a later insert.
    #[inline]
    pub fn hash(&self, line: &[u8]) -> u64 {
        self.hasher.hash_one(line)
    }

    #[inline]
    pub fn get(&self, hash: u64, line: &[u8]) -> Option<Entry> {
        let bytes = &self.bytes;
        self.table
            .find(hash, |e| {
                e.len as usize == line.len()
                    && bytes.get(e.start as usize..e.start as usize + e.len as usize) == Some(line)
            })
            .copied()
    }

    /// Remembers `line`, unless the memo is full (then the line just takes the full path).
    pub fn insert(&mut self, hash: u64, line: &[u8], kind: Kind, series: usize, op: Op) {
        if self.table.len() >= MAX_ENTRIES || self.bytes.len() + line.len() > MAX_BYTES {
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
            hasher.hash_one(bytes.get(s..s + e.len as usize).unwrap_or_default())
        });
    }

    pub fn entries(&self) -> usize {
        self.table.len()
    }
}
