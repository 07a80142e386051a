//! Series per metric name, by the name's hash: the budget's table.
//!
//! Owns: the counts. Must never: store a name (the budget keeps the few it reports on the
//! side), or cost a reader more than one probe.
//!
//! Why not a `HashMap<u64, u32>`: the flusher counts every carried series here at every
//! flush, and at a million names each count was a few dependent cache misses into a 27 MiB
//! table, a third of the gateway's CPU. Here [`NameCounts::prefetch`] lets a caller overlap a
//! chunk's misses, a slot is 12 bytes (the hash, and the count in an array beside it), and
//! a name unused for an interval leaves a tombstone at rollover: the table is rebuilt only
//! once tombstones outnumber the names, so steady traffic never rehashes.

use super::super::prefetch;

const EMPTY: u64 = 0;
/// A freed name: skipped by lookups, reused by inserts.
const TOMBSTONE: u64 = 1;

#[derive(Debug, Default)]
pub struct NameCounts {
    /// Power-of-two long (or empty): [`tag`] of the name's hash, or EMPTY or TOMBSTONE.
    tags: Vec<u64>,
    counts: Vec<u32>,
    names: usize,
    tombstones: usize,
}

/// A used slot's tag: the hash with bit 1 set, so it is never EMPTY or TOMBSTONE (63 bits
/// tell names apart: at a million names, two share a count with odds of about 1 in 10⁷).
#[inline]
fn tag(hash: u64) -> u64 {
    hash | 2
}

/// Where the probe for `hash` (or for a slot's tag: the same bits) starts: above the bit
/// that tags set, so a rebuild finds each name's start again from its tag alone.
#[inline]
fn start(hash: u64, mask: usize) -> usize {
    (hash >> 2) as usize & mask
}

impl NameCounts {
    /// Asks the CPU for the cache lines where `hash`'s probe starts.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if !self.tags.is_empty() {
            let i = start(hash, self.tags.len() - 1);
            prefetch::read(&self.tags[i]);
            prefetch::write(&self.counts[i]);
        }
    }

    /// Where `hash`'s name is, if held.
    fn find(&self, hash: u64) -> Option<usize> {
        if self.tags.is_empty() {
            return None;
        }
        let (mask, tag) = (self.tags.len() - 1, tag(hash));
        let mut i = start(hash, mask);
        loop {
            match self.tags[i] {
                EMPTY => return None,
                t if t == tag => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Series of the name with `hash` (0 if none).
    pub fn get(&self, hash: u64) -> u32 {
        self.find(hash).map_or(0, |i| self.counts[i])
    }

    /// One more series of the name with `hash`; answers its count.
    pub fn add(&mut self, hash: u64) -> u32 {
        let i = match self.find(hash) {
            Some(i) => i,
            None => self.insert(hash),
        };
        self.counts[i] = self.counts[i].saturating_add(1);
        self.counts[i]
    }

    /// A name with count 0 (the caller found it absent); answers its slot.
    fn insert(&mut self, hash: u64) -> usize {
        if (self.names + self.tombstones + 1) * 5 > self.tags.len() * 4 {
            self.rebuild(self.names + 1);
        }
        let mask = self.tags.len() - 1;
        let mut i = start(hash, mask);
        while self.tags[i] != EMPTY && self.tags[i] != TOMBSTONE {
            i = (i + 1) & mask;
        }
        if self.tags[i] == TOMBSTONE {
            self.tombstones -= 1;
        }
        self.tags[i] = tag(hash);
        self.counts[i] = 0;
        self.names += 1;
        i
    }

    /// Ends an interval: names that had series keep their slot at count 0 (counting them
    /// again allocates nothing); the others are freed.
    pub fn rollover(&mut self) {
        for (t, c) in self.tags.iter_mut().zip(&mut self.counts) {
            if *t == EMPTY || *t == TOMBSTONE {
                continue;
            }
            if *c == 0 {
                *t = TOMBSTONE;
                self.names -= 1;
                self.tombstones += 1;
            }
            *c = 0;
        }
        if self.tombstones > self.names {
            self.rebuild(self.names);
        }
    }

    /// Re-lays the names, without tombstones, in a table that holds `names` at most half
    /// full (it grows again at 4/5).
    fn rebuild(&mut self, names: usize) {
        let len = (names * 2).max(16).next_power_of_two();
        let tags = std::mem::replace(&mut self.tags, vec![EMPTY; len]);
        let counts = std::mem::replace(&mut self.counts, vec![0; len]);
        self.tombstones = 0;
        let mask = len - 1;
        for (t, c) in tags.into_iter().zip(counts) {
            if t == EMPTY || t == TOMBSTONE {
                continue;
            }
            let mut i = start(t, mask);
            while self.tags[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.tags[i] = t;
            self.counts[i] = c;
        }
    }

    /// Names held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain map over intervals where names come, stay and go.
    #[test]
    fn counts_like_a_map_across_rollovers() {
        let mut c = NameCounts::default();
        let mut reference: std::collections::HashMap<u64, u32> = Default::default();
        let hash = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !2;
        for interval in 0..6u64 {
            // Names interval*300 .. interval*300+1000: most carry over, some go, some come.
            for n in interval * 300..interval * 300 + 1000 {
                for _ in 0..=(n % 3) {
                    let got = c.add(hash(n));
                    let want = reference.entry(n).or_insert(0);
                    *want += 1;
                    assert_eq!(got, *want);
                }
            }
            for (n, want) in &reference {
                assert_eq!(c.get(hash(*n)), *want, "interval {interval} name {n}");
            }
            assert_eq!(c.get(hash(999_999)), 0);
            c.rollover();
            reference.retain(|_, v| *v > 0);
            reference.values_mut().for_each(|v| *v = 0);
            // Names unused for a whole interval are freed.
            assert!(c.len() <= 1000, "{}", c.len());
        }
    }
}
