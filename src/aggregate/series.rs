//! Series map: one metric type's series in a shard, by canonical series key.
//!
//! Owns: the table from key to the series' position and state. Positions are insertion order
//! and stable while the map is only added to (what the line memo and a batch's lookups hold);
//! only [`SeriesMap::retain`], off the readers, moves them.
//! Must never: allocate on a lookup, or let a sender's keys choose the slots (the hasher is
//! randomly seeded).
//!
//! Why not `IndexMap`: at 100k series its lookup was half of a reader's time, two dependent
//! cache misses per line (the index table, then the entry) that nothing could overlap. Here a
//! lookup is split in steps a caller can pipeline over a datagram's lines: [`SeriesMap::hash`]
//! and [`SeriesMap::prefetch_slot`] for every line, then [`SeriesMap::probe`] and
//! [`SeriesMap::prefetch_entry`], then the update, so the misses of twenty lines overlap
//! instead of queueing. Slots are 8 bytes (a 32-bit tag of the hash and the position), eight
//! to a cache line, so a probe rarely leaves the line it started in and touches an entry only
//! when the tag matches.

use super::key::Key;
use super::memo::same_bytes;
use super::prefetch;
use std::hash::{BuildHasher, Hasher};

/// Empty slot marker: a used slot holds position + 1 in its low half.
const EMPTY: u64 = 0;
/// Grow past 4/5 full: linear probing stays short (about 3 slots for a hit, 13 for a miss)
/// and 100k series still fit 2^17 slots.
const LOAD_NUM: usize = 4;
const LOAD_DEN: usize = 5;

/// Insertion-ordered series of one type; see the module doc.
#[derive(Clone)]
pub struct SeriesMap<V> {
    /// Power-of-two long (or empty); `tag << 32 | position + 1`, 0 when free.
    slots: Vec<u64>,
    entries: Vec<(Key, V)>,
    hasher: foldhash::fast::RandomState,
}

impl<V> Default for SeriesMap<V> {
    fn default() -> Self {
        SeriesMap {
            slots: Vec::new(),
            entries: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for SeriesMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 32
}

impl<V> SeriesMap<V> {
    /// One `write` of the bytes, as the line memo hashes (no length prefix: foldhash mixes
    /// the length in already).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish()
    }

    /// Asks the CPU for the cache line where `hash`'s probe starts.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if !self.slots.is_empty() {
            let i = hash as usize & (self.slots.len() - 1);
            prefetch::read(&self.slots[i]);
        }
    }

    /// Asks the CPU for the entry at `position` (one a [`SeriesMap::probe`] answered).
    #[inline]
    pub fn prefetch_entry(&self, position: usize) {
        if let Some(e) = self.entries.get(position) {
            prefetch::write(e);
        }
    }

    /// Asks the CPU for the bytes of the key at `position` (whose entry was prefetched
    /// before: this reads it).
    #[inline]
    pub fn prefetch_key(&self, position: usize) {
        if let Some((k, _)) = self.entries.get(position) {
            prefetch::read(k.as_slice());
        }
    }

    /// The position of the first entry whose tag matches `hash` from its probe start: the
    /// likely position of `key`, found without touching an entry. Confirm with [`Self::find`].
    #[inline]
    pub fn probe(&self, hash: u64) -> Option<usize> {
        self.first_tagged(hash, |_| true)
    }

    /// The position of `key`, whose hash is `hash`.
    #[inline]
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.first_tagged(hash, |at| {
            self.entries
                .get(at)
                .is_some_and(|(k, _)| same_bytes(k, key))
        })
    }

    /// The first position along `hash`'s probe whose tag matches and that `accept` takes.
    #[inline]
    fn first_tagged(&self, hash: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s >> 32 == tag(hash) {
                let at = (s as u32 - 1) as usize;
                if accept(at) {
                    return Some(at);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a key not yet in the map (the caller looked it up); answers its position.
    pub fn push(&mut self, hash: u64, key: Key, value: V) -> usize {
        if (self.entries.len() + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            self.grow();
        }
        let at = self.entries.len();
        self.entries.push((key, value));
        self.place(hash, at);
        at
    }

    fn place(&mut self, hash: u64, at: usize) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        // Positions stay below u32::MAX: the series budget caps a shard far lower.
        self.slots[i] = tag(hash) << 32 | (at as u64 + 1);
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(16);
        self.rebuild(len);
    }

    /// Re-lays every entry in `len` slots (rare: doubling, or after a retain).
    fn rebuild(&mut self, len: usize) {
        self.slots.clear();
        self.slots.resize(len, EMPTY);
        for at in 0..self.entries.len() {
            let hash = self.hash(self.entries[at].0.as_slice());
            self.place(hash, at);
        }
    }

    pub fn get_index_of(&self, key: &[u8]) -> Option<usize> {
        self.find(self.hash(key), key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let at = self.get_index_of(key)?;
        self.entries.get(at).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let at = self.get_index_of(key)?;
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    #[inline]
    pub fn get_index_mut(&mut self, at: usize) -> Option<(&Key, &mut V)> {
        self.entries.get_mut(at).map(|(k, v)| (&*k, v))
    }

    /// Sets `key` to `value`, answering its position.
    pub fn insert(&mut self, key: Key, value: V) -> usize {
        let hash = self.hash(key.as_slice());
        match self.find(hash, key.as_slice()) {
            Some(at) => {
                self.entries[at].1 = value;
                at
            }
            None => self.push(hash, key, value),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` answers true for (it may change them), in order; positions
    /// after a removed one shift down.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.len() != before {
            let len = self.slots.len();
            self.rebuild(len);
        }
    }

    /// Empties the map, keeping its room.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.slots.fill(EMPTY);
    }
}

impl<V> std::ops::Index<usize> for SeriesMap<V> {
    type Output = V;
    fn index(&self, at: usize) -> &V {
        &self.entries[at].1
    }
}

impl<V> std::ops::IndexMut<usize> for SeriesMap<V> {
    fn index_mut(&mut self, at: usize) -> &mut V {
        &mut self.entries[at].1
    }
}

impl<'m, V> IntoIterator for &'m SeriesMap<V> {
    type Item = (&'m Key, &'m V);
    type IntoIter = std::iter::Map<std::slice::Iter<'m, (Key, V)>, fn(&(Key, V)) -> (&Key, &V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_are_insertion_order_and_survive_growth() {
        let mut m = SeriesMap::default();
        for i in 0..10_000u32 {
            let k = format!("series.{i}");
            assert_eq!(m.insert(Key::new(k.as_bytes()), i), i as usize);
        }
        for i in 0..10_000u32 {
            let k = format!("series.{i}");
            assert_eq!(m.get_index_of(k.as_bytes()), Some(i as usize));
            assert_eq!(m[i as usize], i);
        }
        assert_eq!(m.get(b"series.10000"), None);
        assert_eq!(
            m.insert(Key::new(b"series.7"), 70),
            7,
            "an existing key keeps its place"
        );
        assert_eq!(m.get(b"series.7"), Some(&70));
    }

    #[test]
    fn retain_keeps_order_and_every_survivor_findable() {
        let mut m = SeriesMap::default();
        for i in 0..1000u32 {
            m.insert(Key::new(format!("k{i}").as_bytes()), i);
        }
        m.retain(|_, v| *v % 3 == 0);
        let values: Vec<u32> = m.values().copied().collect();
        assert_eq!(values, (0..1000).filter(|v| v % 3 == 0).collect::<Vec<_>>());
        for (at, v) in values.iter().enumerate() {
            assert_eq!(m.get_index_of(format!("k{v}").as_bytes()), Some(at));
        }
        assert_eq!(m.get(b"k1"), None);
        m.clear();
        assert!(m.is_empty() && m.get(b"k0").is_none());
    }

    #[test]
    fn a_tag_match_is_only_a_hint() {
        let mut m = SeriesMap::default();
        let h = m.hash(b"a");
        m.push(h, Key::new(b"a"), 1);
        // Another key given the same hash: the probe points at "a", find does not.
        assert_eq!(m.probe(h), Some(0));
        assert_eq!(m.find(h, b"b"), None);
        let at = m.push(h, Key::new(b"b"), 2);
        assert_eq!(m.find(h, b"b"), Some(at));
        assert_eq!(m.find(h, b"a"), Some(0));
    }

    proptest! {
        /// The same answers as a std map for any keys, inserts and retains.
        #[test]
        fn behaves_like_a_map(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..300),
            drop_every in 1usize..5,
        ) {
            let mut m = SeriesMap::default();
            let mut reference = std::collections::HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                m.insert(Key::new(k), i);
                reference.insert(k.clone(), i);
            }
            prop_assert_eq!(m.len(), reference.len());
            m.retain(|_, v| *v % drop_every == 0);
            reference.retain(|_, v| *v % drop_every == 0);
            prop_assert_eq!(m.len(), reference.len());
            for (k, v) in &reference {
                prop_assert_eq!(m.get(k), Some(v));
            }
        }
    }
}
