//! The summaries themselves: per series, liz's by-minute buckets over the last hour and
//! by-hour buckets over the last day, each bucket holding count, sum, min and max.
//!
//! Alignment is liz's (`reference/seed-apis.md` §1): buckets are multiples of the interval
//! since the epoch, a sample belongs to `(start, end]` (a sample at exactly a minute boundary
//! closes the minute before it), and a window starts at `now − oldest` aligned down to the
//! interval, so it holds 61 minutes or 25 hours, the last one partial.
//!
//! Owns: the buckets, their pruning, and the series table (bounded by `history.max_series`,
//! freed when a series has no bucket left in any window). Must never: keep a bucket outside
//! its window past the next sweep, hold more buckets per series than its window has, or grow
//! the table past its bound.

use super::Point;
use super::select::Head;
use hashbrown::HashMap;
use std::collections::VecDeque;

/// One summary resolution: bucket size and how far back its window reaches (liz's
/// `interval` and `oldest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub size: u64,
    pub oldest: u64,
    /// Most buckets a series keeps: the window's count plus one for a sample slightly ahead.
    pub max_buckets: usize,
}

pub const BY_MINUTE: Resolution = Resolution {
    size: 60,
    oldest: 3600,
    max_buckets: 62,
};
pub const BY_HOUR: Resolution = Resolution {
    size: 3600,
    oldest: 86_400,
    max_buckets: 26,
};

/// How far ahead of the gateway's clock a sample may be and still be kept (a client's clock
/// slightly ahead); later ones would only crowd out real buckets.
pub const MAX_AHEAD_SEC: u64 = 120;

/// Most points a summary returns (liz keeps the last 60 non-empty buckets).
pub const MAX_POINTS: usize = 60;

impl Resolution {
    /// liz's `A`: `now − oldest` aligned down to the bucket size.
    pub fn window_start(&self, now_sec: u64) -> u64 {
        now_sec.saturating_sub(self.oldest) / self.size * self.size
    }

    /// The number of the bucket `(start, start + size]` that holds `sec`.
    pub fn bucket_of(&self, sec: u64) -> u64 {
        sec.saturating_sub(1) / self.size
    }

    /// Adds a sample to `buckets` (sorted by bucket number), if its bucket is in the window
    /// at `now_sec`.
    fn add(&self, buckets: &mut VecDeque<Bucket>, sec: u64, value: f64, now_sec: u64) {
        let n = self.bucket_of(sec);
        if n * self.size < self.window_start(now_sec) {
            return;
        }
        let Ok(n) = u32::try_from(n) else {
            return;
        };
        match buckets.back_mut() {
            Some(b) if b.n == n => b.add(value),
            Some(b) if b.n > n => match buckets.binary_search_by_key(&n, |b| b.n) {
                Ok(i) => buckets[i].add(value),
                Err(i) => buckets.insert(i, Bucket::first(n, value)),
            },
            _ => buckets.push_back(Bucket::first(n, value)),
        }
        while buckets.len() > self.max_buckets {
            buckets.pop_front();
        }
    }

    /// Drops the buckets that start before the window at `now_sec`.
    fn prune(&self, buckets: &mut VecDeque<Bucket>, now_sec: u64) {
        let first = self.window_start(now_sec) / self.size;
        while buckets.front().is_some_and(|b| u64::from(b.n) < first) {
            buckets.pop_front();
        }
    }

    /// The window's non-empty buckets at `now_sec` (start ≥ `A`, start < now), the last 60,
    /// oldest first.
    pub fn points(&self, buckets: &VecDeque<Bucket>, now_sec: u64) -> Vec<Point> {
        let a = self.window_start(now_sec);
        let mut points: Vec<Point> = buckets
            .iter()
            .map(|b| (u64::from(b.n) * self.size, b))
            .filter(|(start, _)| *start >= a && *start < now_sec)
            .map(|(start, b)| Point {
                start_sec: start,
                end_sec: start + self.size,
                samples: u64::from(b.count),
                avg: b.sum / f64::from(b.count),
                min: b.min,
                max: b.max,
            })
            .collect();
        let excess = points.len().saturating_sub(MAX_POINTS);
        points.drain(..excess);
        points
    }
}

/// One bucket: number `n` covers `(n × size, (n + 1) × size]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub n: u32,
    pub count: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Bucket {
    fn first(n: u32, value: f64) -> Bucket {
        Bucket {
            n,
            count: 1,
            sum: value,
            min: value,
            max: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.count = self.count.saturating_add(1);
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Folds another bucket of the same number in (a checkpoint's, or another series').
    pub fn merge(&mut self, other: &Bucket) {
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// One selected series: its identity (parsed once, when it first appears) and buckets.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: Box<str>,
    /// The `hostname` dimension, if any: what liz's `/api/perf/<host>` selects on.
    pub host: Option<Box<str>>,
    /// Every other dimension, sorted by key.
    pub others: Box<[(Box<str>, Box<str>)]>,
    pub minutes: VecDeque<Bucket>,
    pub hours: VecDeque<Bucket>,
}

impl Series {
    pub fn new(head: Head) -> Series {
        let mut host = None;
        let mut others = Vec::with_capacity(head.dimensions.len());
        for (k, v) in head.dimensions {
            if k == "hostname" {
                host = Some(v.into_boxed_str());
            } else {
                others.push((k.into_boxed_str(), v.into_boxed_str()));
            }
        }
        Series {
            name: head.name.into_boxed_str(),
            host,
            others: others.into_boxed_slice(),
            minutes: VecDeque::new(),
            hours: VecDeque::new(),
        }
    }

    pub fn add(&mut self, sec: u64, value: f64, now_sec: u64) {
        BY_MINUTE.add(&mut self.minutes, sec, value, now_sec);
        BY_HOUR.add(&mut self.hours, sec, value, now_sec);
    }

    fn prune(&mut self, now_sec: u64) {
        BY_MINUTE.prune(&mut self.minutes, now_sec);
        BY_HOUR.prune(&mut self.hours, now_sec);
    }

    /// Nothing left in any window: the by-hour window reaches furthest back.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty() && self.hours.is_empty()
    }

    /// Whether `dims` (besides `hostname`, which matches any) are exactly this series' other
    /// dimensions.
    pub fn has_dims(&self, dims: &[(&str, &str)]) -> bool {
        let mut wanted: Vec<(&str, &str)> = dims
            .iter()
            .copied()
            .filter(|(k, _)| *k != "hostname")
            .collect();
        wanted.sort_unstable();
        wanted.len() == self.others.len()
            && wanted
                .iter()
                .zip(self.others.iter())
                .all(|((k, v), (k2, v2))| *k == &**k2 && *v == &**v2)
    }
}

/// What one sample did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Existing,
    New,
    /// A new series past `max_series`.
    Refused,
    /// Outside every window (too old, or too far ahead): nothing recorded.
    OutOfWindow,
    /// Its key did not parse (never expected).
    Malformed,
}

/// The series table: key → slot, slots, and the slots of each host.
#[derive(Debug, Default)]
pub struct Store {
    index: HashMap<Box<[u8]>, u32>,
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
    hosts: HashMap<Box<str>, Vec<u32>>,
    pub max_series: usize,
}

impl Store {
    pub fn new(max_series: usize) -> Store {
        Store {
            max_series,
            ..Store::default()
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Records `value` at `sec` for the series `key` (a rendered `{"name":…,"dimensions":{…}`),
    /// creating it (its key parsed by `head`) if there is room.
    pub fn add(
        &mut self,
        key: &[u8],
        sec: u64,
        value: f64,
        now_sec: u64,
        head: impl FnOnce(&[u8]) -> Option<Head>,
    ) -> Added {
        if sec <= BY_HOUR.window_start(now_sec) || sec > now_sec + MAX_AHEAD_SEC {
            return Added::OutOfWindow;
        }
        if let Some(&slot) = self.index.get(key)
            && let Some(Some(series)) = self.slots.get_mut(slot as usize)
        {
            series.add(sec, value, now_sec);
            return Added::Existing;
        }
        if self.index.len() >= self.max_series {
            return Added::Refused;
        }
        let Some(head) = head(key) else {
            return Added::Malformed;
        };
        let mut series = Series::new(head);
        series.add(sec, value, now_sec);
        self.insert(key.into(), series);
        Added::New
    }

    /// Adds a whole series (from a checkpoint); false when the table is full.
    pub fn insert(&mut self, key: Box<[u8]>, series: Series) -> bool {
        if self.index.len() >= self.max_series || self.index.contains_key(&key) {
            return false;
        }
        let host = series.host.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(series);
                slot
            }
            None => {
                self.slots.push(Some(series));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        if let Some(host) = host {
            self.hosts.entry(host).or_default().push(slot);
        }
        true
    }

    /// Prunes every series to its windows and frees those left empty; returns how many.
    pub fn sweep(&mut self, now_sec: u64) -> usize {
        let mut freed = Vec::new();
        let slots = &mut self.slots;
        self.index.retain(|_, slot| {
            let Some(Some(series)) = slots.get_mut(*slot as usize) else {
                return false;
            };
            series.prune(now_sec);
            if series.is_empty() {
                freed.push(*slot);
                false
            } else {
                true
            }
        });
        for &slot in &freed {
            if let Some(series) = self.slots[slot as usize].take()
                && let Some(host) = series.host
                && let Some(list) = self.hosts.get_mut(&host)
            {
                list.retain(|s| *s != slot);
                if list.is_empty() {
                    self.hosts.remove(&host);
                }
            }
            self.free.push(slot);
        }
        freed.len()
    }

    /// An estimate of the heap the table holds: keys, identities, buckets and both maps'
    /// tables (what the memory test reports beside the RSS it measures).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let table = |cap: usize, entry: usize| cap * 8 / 7 * (entry + 1);
        let mut bytes = table(self.index.capacity(), size_of::<(Box<[u8]>, u32)>())
            + table(self.hosts.capacity(), size_of::<(Box<str>, Vec<u32>)>())
            + self.slots.capacity() * size_of::<Option<Series>>()
            + self.free.capacity() * size_of::<u32>();
        bytes += self.index.keys().map(|k| k.len()).sum::<usize>();
        for (host, list) in &self.hosts {
            bytes += host.len() + list.capacity() * size_of::<u32>();
        }
        for s in self.slots.iter().flatten() {
            bytes += s.name.len()
                + s.host.as_ref().map_or(0, |h| h.len())
                + s.others.len() * size_of::<(Box<str>, Box<str>)>()
                + s.others
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                + (s.minutes.capacity() + s.hours.capacity()) * size_of::<Bucket>();
        }
        bytes
    }

    /// The series of `host`.
    pub fn of_host<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a Series> + 'a {
        self.hosts
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|&slot| self.slots.get(slot as usize).and_then(Option::as_ref))
    }

    /// Every series with its key.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Series)> {
        self.index.iter().filter_map(|(key, &slot)| {
            let series = self.slots.get(slot as usize).and_then(Option::as_ref)?;
            Some((&**key, series))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::select::{head, key_of};

    #[test]
    fn windows_start_like_liz() {
        // seed-apis.md §1: now=1465001814 → start=1464998160, the current minute
        // 1465001760–1465001820 its last bucket.
        let now = 1_465_001_814;
        assert_eq!(BY_MINUTE.window_start(now), 1_464_998_160);
        let count = |r: Resolution| {
            (0..)
                .map(|i| r.window_start(now) + i * r.size)
                .take_while(|s| *s < now)
                .count()
        };
        assert_eq!((count(BY_MINUTE), count(BY_HOUR)), (61, 25));
        // Exactly on a boundary the window holds 60 (liz's loop: start < now).
        assert_eq!(BY_MINUTE.window_start(1_465_002_000), 1_464_998_400);
    }

    #[test]
    fn membership_is_start_exclusive_end_inclusive() {
        let mut b = VecDeque::new();
        let now = 1_000_020;
        // 999_960 is a minute boundary: it closes the minute (999_900, 999_960].
        BY_MINUTE.add(&mut b, 999_960, 1.0, now);
        BY_MINUTE.add(&mut b, 999_961, 3.0, now);
        BY_MINUTE.add(&mut b, 1_000_020, 5.0, now);
        let p = BY_MINUTE.points(&b, now);
        let spans: Vec<_> = p
            .iter()
            .map(|p| (p.start_sec, p.end_sec, p.samples))
            .collect();
        assert_eq!(
            spans,
            [(999_900, 999_960, 1), (999_960, 1_000_020, 2)],
            "the sample at the boundary closes the earlier minute"
        );
        assert_eq!((p[1].avg, p[1].min, p[1].max), (4.0, 3.0, 5.0));
    }

    #[test]
    fn a_bucket_starting_at_now_is_not_in_the_window() {
        let mut b = VecDeque::new();
        // The sample at 1_000_021 is in (1_000_020, 1_000_080], which starts at now.
        BY_MINUTE.add(&mut b, 1_000_021, 1.0, 1_000_020);
        assert!(BY_MINUTE.points(&b, 1_000_020).is_empty());
        assert_eq!(BY_MINUTE.points(&b, 1_000_021).len(), 1);
    }

    #[test]
    fn old_buckets_leave_the_window_and_at_most_60_points_show() {
        let mut b = VecDeque::new();
        let start = 6_000_000;
        // 70 minutes of one sample per minute, out of order at the end.
        for m in 0..70 {
            BY_MINUTE.add(&mut b, start + m * 60 + 30, m as f64, start + m * 60 + 30);
        }
        BY_MINUTE.add(&mut b, start + 68 * 60 + 10, 100.0, start + 69 * 60 + 30);
        assert!(b.len() <= BY_MINUTE.max_buckets);
        let now = start + 69 * 60 + 30;
        let p = BY_MINUTE.points(&b, now);
        assert_eq!(p.len(), 60, "the 61 in the window, cut to the last 60");
        assert_eq!(p.last().unwrap().avg, 69.0);
        assert_eq!(
            p[p.len() - 2].samples,
            2,
            "the late sample joined its minute"
        );
        assert_eq!(p[0].avg, 10.0);
        assert!(p.windows(2).all(|w| w[0].start_sec < w[1].start_sec));
        // An hour later the minute window is empty, the hour window still holds them.
        let later = now + 3700;
        assert!(BY_MINUTE.points(&b, later).is_empty());
        let mut h = VecDeque::new();
        for m in 0..70 {
            BY_HOUR.add(&mut h, start + m * 60 + 30, 1.0, start + m * 60 + 30);
        }
        assert!(!BY_HOUR.points(&h, later).is_empty());
    }

    fn add(store: &mut Store, name: &str, dims: &[(&str, &str)], sec: u64, now: u64) -> Added {
        store.add(&key_of(name, dims), sec, 1.0, now, head)
    }

    #[test]
    fn the_table_refuses_past_max_series_and_frees_a_series_a_day_old() {
        let mut s = Store::new(2);
        let now = 10_000_000;
        assert_eq!(add(&mut s, "a", &[("hostname", "h")], now, now), Added::New);
        assert_eq!(
            add(&mut s, "a", &[("hostname", "h")], now, now),
            Added::Existing
        );
        assert_eq!(
            add(&mut s, "b", &[("hostname", "h")], now - 4000, now),
            Added::New
        );
        assert_eq!(add(&mut s, "c", &[], now, now), Added::Refused);
        assert_eq!(add(&mut s, "a", &[], now + 121, now), Added::OutOfWindow);
        assert_eq!(add(&mut s, "a", &[], now - 90_000, now), Added::OutOfWindow);
        assert_eq!(s.of_host("h").count(), 2);
        // `b` ages out of the by-hour window first (its hour starts before A).
        let t = now - 4000 + 86_400 + 3600;
        assert_eq!(s.sweep(t), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.of_host("h").map(|x| &*x.name).collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            add(&mut s, "c", &[], t, t),
            Added::New,
            "its room is free again"
        );
        assert_eq!(s.sweep(t + 86_400 + 3600), 2);
        assert_eq!((s.len(), s.of_host("h").count()), (0, 0));
        assert!(s.hosts.is_empty());
    }

    #[test]
    fn a_day_of_samples_still_ages_out_bucket_by_bucket() {
        let mut s = Store::new(10);
        let t0 = 20_000_000;
        add(&mut s, "a", &[("hostname", "h")], t0, t0);
        // Still in the by-hour window just under 24 h later.
        assert_eq!(s.sweep(t0 + 86_000), 0);
        let series = s.iter().next().unwrap().1;
        assert!(series.minutes.is_empty(), "the minute bucket is pruned");
        assert_eq!(series.hours.len(), 1);
    }

    #[test]
    fn dims_match_ignoring_hostname() {
        let h = head(&key_of("n", &[("b", "2"), ("hostname", "x"), ("a", "1")])).unwrap();
        let s = Series::new(h);
        assert!(s.has_dims(&[("a", "1"), ("b", "2")]));
        assert!(s.has_dims(&[("b", "2"), ("a", "1"), ("hostname", "other")]));
        assert!(!s.has_dims(&[("a", "1")]));
        assert!(!s.has_dims(&[("a", "1"), ("b", "3")]));
    }
}
