//! The live-series budget shared by every reader: `aggregate.max_series` in total and
//! `aggregate.max_series_per_name` per metric name, for the open interval.
//!
//! Owns: the counts of series live this interval (created in it, or carried into it by a
//! recycled shard) and the per-name tally behind the admin API's top offenders. Must never:
//! be consulted for a line of an existing series (only creating a series takes its lock), or
//! hold names nobody used in the last two intervals.

use crate::reason::Reject;
use hashbrown::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Names listed as top offenders after each interval.
pub const TOP_NAMES: usize = 20;
/// Names counted per take of the lock by [`SeriesBudget::carry`].
const CARRY_CHUNK: usize = 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct NameUse {
    series: usize,
    refused: u64,
}

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
    names: Mutex<HashMap<Box<str>, NameUse>>,
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
            names: Mutex::new(HashMap::new()),
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
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let used = match names.get_mut(name) {
            Some(u) => u,
            None => names.entry(name.into()).or_default(),
        };
        if used.series >= self.max_per_name.load(Relaxed) {
            used.refused += 1;
            return Err(Reject::NameSeriesLimit);
        }
        used.series += 1;
        self.total.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Counts series a recycled shard carries into the open interval, without refusing any:
    /// they were admitted when created and are still live. Takes the lock a chunk at a
    /// time, so a reader creating a series never waits for a whole shard's worth.
    pub fn carry<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let mut names = names.peekable();
        while names.peek().is_some() {
            let mut table = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let mut carried = 0;
            for name in names.by_ref().take(CARRY_CHUNK) {
                match table.get_mut(name) {
                    Some(used) => used.series += 1,
                    None => table.entry(name.into()).or_default().series += 1,
                }
                carried += 1;
            }
            drop(table);
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
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        self.total.store(0, Relaxed);
        let top = top_of(names.iter());
        names.retain(|_, used| {
            let keep = used.series > 0;
            *used = NameUse::default();
            keep
        });
        top
    }

    /// The open interval's top names so far (for the admin API; takes the lock briefly).
    pub fn top(&self) -> Vec<NameReport> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        top_of(names.iter())
    }
}

fn top_of<'a>(names: impl Iterator<Item = (&'a Box<str>, &'a NameUse)>) -> Vec<NameReport> {
    let order = |u: &NameUse| (std::cmp::Reverse(u.refused), std::cmp::Reverse(u.series));
    let mut top: Vec<(&Box<str>, &NameUse)> = names.collect();
    let n = top.len().min(TOP_NAMES);
    if n > 0 && top.len() > n {
        top.select_nth_unstable_by_key(n - 1, |(_, u)| order(u));
        top.truncate(n);
    }
    top.sort_by(|a, b| order(a.1).cmp(&order(b.1)).then_with(|| a.0.cmp(b.0)));
    top.into_iter()
        .map(|(name, u)| NameReport {
            name: name.to_string(),
            series: u.series,
            refused: u.refused,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        b.carry(["a", "a", "b"].into_iter());
        assert_eq!(b.live(), 3);
        assert_eq!(b.admit("a"), Err(Reject::NameSeriesLimit));
        assert_eq!(b.admit("c"), Ok(()));
        assert_eq!(b.admit("d"), Err(Reject::SeriesLimit));
        let top = b.rollover();
        assert_eq!((top[0].name.as_str(), top[0].series), ("a", 2));
        // More than one chunk of names.
        b.carry((0..3000).map(|_| "many"));
        assert_eq!(b.live(), 3000);
        assert_eq!(b.top()[0].series, 3000);
    }
}
