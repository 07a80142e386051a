//! The live-series budget shared by every reader: `aggregate.max_series` in total and
//! `aggregate.max_series_per_name` per metric name, for the open interval.
//!
//! Owns: the counts of series live this interval (created in it, or carried into it by a
//! recycled shard) and the per-name tally behind the admin API's top offenders. Must never:
//! be consulted for a line of an existing series (only creating a series takes its lock), or
//! hold names nobody used in the last two intervals.
//!
//! The per-name counts are kept by the name's 64-bit hash (randomly seeded), not the name:
//! 17 bytes a name instead of ~60 (at a million names, ~35 MiB instead of ~100). Two names
//! with one hash would share a count; at a million names the odds are about 3 in 10⁸, and a
//! sender cannot aim for it without the seed. The names the report needs are kept on the
//! side: the ones refused this interval, and the [`LEADERS`] with the most series.

mod counts;

use super::key::Key;
use crate::reason::Reject;
use counts::NameCounts;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Names listed as top offenders after each interval.
pub const TOP_NAMES: usize = 20;
/// Names with the most series remembered by name: twice the report, so that refused names
/// among them still leave [`TOP_NAMES`] others.
const LEADERS: usize = 2 * TOP_NAMES;
/// Names counted per take of the lock by [`SeriesBudget::carry`].
const CARRY_CHUNK: usize = 1024;
/// Names whose slots [`SeriesBudget::carry`] prefetches together.
const PREFETCHED: usize = 16;

/// One metric name's use of the budget in an interval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameReport {
    pub name: String,
    pub series: usize,
    pub refused: u64,
}

#[derive(Debug)]
pub struct SeriesBudget {
    /// Settable live (a reload): series over a lowered limit stay until they go idle.
    max_total: AtomicUsize,
    max_per_name: AtomicUsize,
    total: AtomicUsize,
    names: Mutex<Tally>,
}

/// The open interval's per-name counts.
#[derive(Debug, Default)]
struct Tally {
    /// Series per name, by the name's hash.
    series: NameCounts,
    /// Names refused this interval and how often (few: a name is refused only once it has
    /// `max_per_name` series).
    refused: HashMap<Key, u64>,
    /// The names with the most series so far (name, hash, series), at most [`LEADERS`].
    /// Counts only rise within an interval, so no other name has more than the fewest here.
    leaders: Vec<(Key, u64, u32)>,
    /// The fewest series among `leaders` once it is full.
    leaders_min: u32,
    hasher: foldhash::fast::RandomState,
}

impl Tally {
    fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    /// One more series of `name`; answers its count.
    fn add(&mut self, name: &[u8], hash: u64) -> u32 {
        let count = self.series.add(hash);
        self.lead(name, hash, count);
        count
    }

    /// Keeps `leaders` the names with the most series, `name` now having `count`.
    fn lead(&mut self, name: &[u8], hash: u64, count: u32) {
        // The common case: the list is full and this name has no more than its fewest, so
        // it is not in it (a leader's count was at least that fewest before this series).
        if self.leaders.len() == LEADERS && count <= self.leaders_min {
            return;
        }
        if let Some(l) = self.leaders.iter_mut().find(|l| l.1 == hash) {
            l.2 = count;
        } else if self.leaders.len() < LEADERS {
            self.leaders.push((Key::new(name), hash, count));
        } else if let Some(fewest) = self.leaders.iter_mut().min_by_key(|l| l.2) {
            *fewest = (Key::new(name), hash, count);
        }
        if self.leaders.len() == LEADERS {
            self.leaders_min = self.leaders.iter().map(|l| l.2).min().unwrap_or(0);
        }
    }

    /// The names with the most refusals, then series, then by name, at most [`TOP_NAMES`].
    fn top(&self) -> Vec<NameReport> {
        let mut all: Vec<NameReport> = Vec::with_capacity(LEADERS + self.refused.len());
        for (name, _, series) in &self.leaders {
            all.push(self.report(name, *series));
        }
        for name in self.refused.keys() {
            if !self.leaders.iter().any(|l| l.0 == *name) {
                let series = self.series.get(self.hash(name));
                all.push(self.report(name, series));
            }
        }
        all.sort_by(|a, b| {
            (Reverse(a.refused), Reverse(a.series), &a.name).cmp(&(
                Reverse(b.refused),
                Reverse(b.series),
                &b.name,
            ))
        });
        all.truncate(TOP_NAMES);
        all
    }

    fn report(&self, name: &Key, series: u32) -> NameReport {
        NameReport {
            name: String::from_utf8_lossy(name.as_slice()).into_owned(),
            series: series as usize,
            refused: self.refused.get(name.as_slice()).copied().unwrap_or(0),
        }
    }
}

impl Default for SeriesBudget {
    fn default() -> Self {
        SeriesBudget::new(1_000_000, 100_000)
    }
}

impl SeriesBudget {
    pub fn new(max_total: usize, max_per_name: usize) -> Self {
        SeriesBudget {
            max_total: AtomicUsize::new(max_total),
            max_per_name: AtomicUsize::new(max_per_name),
            total: AtomicUsize::new(0),
            names: Mutex::new(Tally::default()),
        }
    }

    /// `aggregate.max_series` now.
    pub fn max_total(&self) -> usize {
        self.max_total.load(Relaxed)
    }

    /// `aggregate.max_series_per_name` now.
    pub fn max_per_name(&self) -> usize {
        self.max_per_name.load(Relaxed)
    }

    /// New limits for the series created from now on (a reload).
    pub fn set_limits(&self, max_total: usize, max_per_name: usize) {
        self.max_total.store(max_total, Relaxed);
        self.max_per_name.store(max_per_name, Relaxed);
    }

    /// May a new series of metric `name` be created?
    pub fn admit(&self, name: &str) -> Result<(), Reject> {
        // Over the total, refuse without the lock: a cardinality flood must stay cheap.
        if self.total.load(Relaxed) >= self.max_total.load(Relaxed) {
            return Err(Reject::SeriesLimit);
        }
        let mut tally = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let hash = tally.hash(name.as_bytes());
        let used = tally.series.get(hash);
        if used as usize >= self.max_per_name.load(Relaxed) {
            match tally.refused.get_mut(name.as_bytes()) {
                Some(n) => *n += 1,
                None => {
                    tally.refused.insert(Key::new(name.as_bytes()), 1);
                }
            }
            return Err(Reject::NameSeriesLimit);
        }
        tally.add(name.as_bytes(), hash);
        self.total.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Counts series a recycled shard carries into the open interval, without refusing any:
    /// they were admitted when created and are still live. Takes the lock a chunk at a
    /// time, so a reader creating a series never waits for a whole shard's worth; within a
    /// chunk, [`PREFETCHED`] names are hashed and their slots prefetched before they are
    /// counted, so their cache misses overlap.
    pub fn carry<'a>(&self, names: impl Iterator<Item = &'a [u8]>) {
        let mut names = names.peekable();
        let mut group: Vec<(&[u8], u64)> = Vec::with_capacity(PREFETCHED);
        while names.peek().is_some() {
            let mut tally = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let mut carried = 0;
            let mut chunk = names.by_ref().take(CARRY_CHUNK).peekable();
            while chunk.peek().is_some() {
                group.clear();
                for name in chunk.by_ref().take(PREFETCHED) {
                    let hash = tally.hash(name);
                    tally.series.prefetch(hash);
                    group.push((name, hash));
                }
                for &(name, hash) in &group {
                    tally.add(name, hash);
                }
                carried += group.len();
            }
            drop(tally);
            self.total.fetch_add(carried, Relaxed);
        }
    }

    /// Series live in the open interval.
    pub fn live(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// Ends the interval: resets the counts and returns the names with the most refusals,
    /// then series, at most [`TOP_NAMES`]. Names that had series keep their entry (zeroed),
    /// so carrying them into the next interval allocates nothing; the others are freed.
    pub fn rollover(&self) -> Vec<NameReport> {
        let mut tally = self.names.lock().unwrap_or_else(|p| p.into_inner());
        self.total.store(0, Relaxed);
        let top = tally.top();
        tally.series.rollover();
        tally.refused.clear();
        tally.leaders.clear();
        tally.leaders_min = 0;
        top
    }

    /// The open interval's top names so far (for the admin API; takes the lock briefly).
    pub fn top(&self) -> Vec<NameReport> {
        let tally = self.names.lock().unwrap_or_else(|p| p.into_inner());
        tally.top()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaders list against a plain count of every name, with names whose counts rise
    /// in a shuffled order, past the list's size.
    #[test]
    fn the_top_names_are_those_of_an_exact_count() {
        let b = SeriesBudget::new(1_000_000, 50);
        let mut exact: std::collections::HashMap<String, usize> = Default::default();
        let mut refused: std::collections::HashMap<String, u64> = Default::default();
        // name i gets (i * 7919 % 61) series over a pseudo-random order of admissions.
        let mut order: Vec<usize> = (0..500).flat_map(|i| vec![i; i * 7919 % 61]).collect();
        let mut x = 12345u64;
        for i in (1..order.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        for i in order {
            let name = format!("n{i}");
            match b.admit(&name) {
                Ok(()) => *exact.entry(name).or_default() += 1,
                Err(Reject::NameSeriesLimit) => *refused.entry(name).or_default() += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        let mut want: Vec<NameReport> = exact
            .iter()
            .map(|(n, &s)| NameReport {
                name: n.clone(),
                series: s,
                refused: refused.get(n).copied().unwrap_or(0),
            })
            .collect();
        want.sort_by(|a, b| {
            (Reverse(a.refused), Reverse(a.series), &a.name).cmp(&(
                Reverse(b.refused),
                Reverse(b.series),
                &b.name,
            ))
        });
        want.truncate(TOP_NAMES);
        let got = b.rollover();
        assert_eq!(got.len(), TOP_NAMES);
        // Ties at the cut may pick other names of the same counts: compare the counts, and
        // the names above the last tie.
        let counts = |v: &[NameReport]| v.iter().map(|r| (r.refused, r.series)).collect::<Vec<_>>();
        assert_eq!(counts(&got), counts(&want));
        assert!(got.iter().all(|r| exact.get(&r.name) == Some(&r.series)));
    }

    #[test]
    fn per_name_then_total_limits() {
        let b = SeriesBudget::new(5, 2);
        assert_eq!(b.admit("a"), Ok(()));
        assert_eq!(b.admit("a"), Ok(()));
        assert_eq!(b.admit("a"), Err(Reject::NameSeriesLimit));
        assert_eq!(b.admit("b"), Ok(()));
        assert_eq!(b.admit("c"), Ok(()));
        assert_eq!(b.admit("d"), Ok(()));
        assert_eq!(b.live(), 5);
        assert_eq!(b.admit("e"), Err(Reject::SeriesLimit));
        let top = b.rollover();
        assert_eq!(
            top[0],
            NameReport {
                name: "a".into(),
                series: 2,
                refused: 1
            }
        );
        assert_eq!(top.len(), 4, "e was never admitted, so it is not tallied");
        assert_eq!(b.live(), 0, "a new interval starts empty");
        assert_eq!(b.admit("a"), Ok(()));
    }

    #[test]
    fn rollover_keeps_the_top_names_only() {
        let b = SeriesBudget::new(10_000, 10_000);
        for i in 0..100 {
            for _ in 0..=i {
                b.admit(&format!("m{i}")).unwrap();
            }
        }
        let top = b.rollover();
        assert_eq!(top.len(), TOP_NAMES);
        assert_eq!(top[0].name, "m99");
        assert_eq!(top[0].series, 100);
        assert_eq!(top[TOP_NAMES - 1].series, 100 - TOP_NAMES + 1);
    }

    #[test]
    fn carried_series_count_against_the_limits() {
        let b = SeriesBudget::new(4, 2);
        b.carry([&b"a"[..], b"a", b"b"].into_iter());
        assert_eq!(b.live(), 3);
        assert_eq!(b.admit("a"), Err(Reject::NameSeriesLimit));
        assert_eq!(b.admit("c"), Ok(()));
        assert_eq!(b.admit("d"), Err(Reject::SeriesLimit));
        let top = b.rollover();
        assert_eq!((top[0].name.as_str(), top[0].series), ("a", 2));
        // More than one chunk of names.
        b.carry((0..3000).map(|_| &b"many"[..]));
        assert_eq!(b.live(), 3000);
        assert_eq!(b.top()[0].series, 3000);
    }
}
