//! History: by-minute summaries for the last hour and by-hour summaries for the last day of
//! the selected series (liz's receiver, `reference/seed-apis.md` §1), and the latest value of
//! every series, fed by every flush.
//!
//! Owns: the store (bounded by `history.max_series` and `history.max_latest`), bucket
//! alignment (liz's: minutes and hours of the epoch), its checkpoint, and the views the API
//! and the status page read. Must never: slow a flush by more than a name match and a hash
//! lookup per metric, grow past its bounds, or answer a query by holding its lock while
//! serializing.

mod latest;
pub mod liz;
mod select;
mod store;

pub use select::glob;

use crate::batch::Rendered;
use crate::config::HistoryConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use store::{Added, BY_HOUR, BY_MINUTE, Store};

/// How often idle series are freed and old buckets dropped.
const SWEEP_MS: u64 = 60_000;

/// The store. `Sync`: the flusher writes, the HTTP handlers read.
#[derive(Debug)]
pub struct History {
    patterns: select::Patterns,
    store: Mutex<Store>,
    latest: Mutex<latest::LatestMap>,
    /// Samples of new series refused because `max_series` was reached.
    refused: AtomicU64,
    /// Samples of new series not added to the latest values because `max_latest` was reached.
    latest_refused: AtomicU64,
    last_sweep_ms: AtomicU64,
}

impl Default for History {
    fn default() -> Self {
        History::new(&HistoryConfig::default())
    }
}

/// One series' latest value.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    pub timestamp_ms: u64,
    pub value: f64,
}

/// One summary bucket: liz's point (`start-sec`, `end-sec`, `num-samples`, `avg`) plus the
/// minimum and maximum. `avg` is the exact mean (liz's body rounds it to 2 decimals).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub start_sec: u64,
    pub end_sec: u64,
    pub samples: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct HistoryStats {
    /// Series with summaries.
    pub series: u64,
    /// Samples of new series refused: `max_series` reached.
    pub refused: u64,
    /// Series with a latest value.
    pub latest_series: u64,
    /// Samples of new series left out of the latest values: `max_latest` reached.
    pub latest_refused: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl History {
    pub fn new(config: &HistoryConfig) -> History {
        History {
            patterns: select::Patterns::new(&config.include, &config.exclude),
            store: Mutex::new(Store::new(config.max_series)),
            latest: Mutex::new(latest::LatestMap::new(config.max_latest)),
            refused: AtomicU64::new(0),
            latest_refused: AtomicU64::new(0),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Whether `name` is kept: an `include` pattern matches it and no `exclude` pattern does.
    pub fn selects(&self, name: &str) -> bool {
        self.patterns.selects(name.as_bytes())
    }

    /// Records a flush's metrics (each at its own timestamp): the latest value of every
    /// one, summaries of those whose name `include` selects and `exclude` does not.
    pub fn observe(&self, metrics: &Rendered) {
        self.observe_at(metrics, crate::clock::now_ms());
    }

    /// `observe` with the gateway's clock at `now_ms` (what the windows and expiry use).
    pub fn observe_at(&self, metrics: &Rendered, now_ms: u64) {
        if metrics.is_empty() {
            return;
        }
        let now_sec = now_ms / 1000;
        let (mut refused, mut latest_refused) = (0, 0);
        {
            let mut store = lock(&self.store);
            let mut latest = lock(&self.latest);
            for object in metrics.iter() {
                let Some(p) = select::parts(object) else {
                    continue;
                };
                if !latest.record(p.key, p.timestamp_ms, p.value, now_ms) {
                    latest_refused += 1;
                }
                let selected = match p.plain_name {
                    Some(name) => self.patterns.selects(name),
                    // An escaped name (never from statsd; validation refuses `"` and `\`).
                    None => select::head(p.key)
                        .is_some_and(|h| self.patterns.selects(h.name.as_bytes())),
                };
                if !selected {
                    continue;
                }
                let sec = p.timestamp_ms / 1000;
                if store.add(p.key, sec, p.value, now_sec, select::head) == Added::Refused {
                    refused += 1;
                }
            }
            let last = self.last_sweep_ms.load(Relaxed);
            if now_ms.saturating_sub(last) >= SWEEP_MS {
                self.last_sweep_ms.store(now_ms, Relaxed);
                store.sweep(now_sec);
                latest.sweep(now_ms);
            }
        }
        self.refused.fetch_add(refused, Relaxed);
        self.latest_refused.fetch_add(latest_refused, Relaxed);
    }

    /// liz's `GET /api/perf/<host>[/<label>]` body for the series whose `hostname` is `host`:
    /// `{"summary:by-minute:<label>": {...}, "summary:by-hour:<label>": {...}}`, filtered by a
    /// case-insensitive substring of the summary's key; `{}` for an unknown host.
    pub fn liz(&self, host: &str, label: Option<&str>, now_sec: u64) -> Value {
        let mut series: Vec<liz::HostSeries> = {
            let store = lock(&self.store);
            store
                .of_host(host)
                .map(|s| liz::HostSeries {
                    name: s.name.to_string(),
                    others: s
                        .others
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    minutes: BY_MINUTE.points(&s.minutes, now_sec),
                    hours: BY_HOUR.points(&s.hours, now_sec),
                })
                .collect()
        };
        series.sort_by(|a, b| (&a.name, &a.others).cmp(&(&b.name, &b.others)));
        liz::body(&series, label, now_sec)
    }

    /// The latest value of each series whose name starts with `prefix` and whose
    /// dimensions include every pair of `dims`, at most `limit`, sorted by name then
    /// dimensions.
    pub fn latest(&self, prefix: &str, dims: &[(String, String)], limit: usize) -> Vec<Latest> {
        let prefix_bytes = prefix.as_bytes();
        // Copied under the lock by their raw name; parsed after it.
        let candidates: Vec<(Vec<u8>, latest::Entry)> = {
            let latest = lock(&self.latest);
            latest
                .iter()
                .filter(|(key, _)| {
                    let name = &key[key.len().min(9)..];
                    name.starts_with(prefix_bytes) || name.contains(&b'\\')
                })
                .map(|(key, e)| (key.to_vec(), *e))
                .collect()
        };
        let mut out: Vec<Latest> = candidates
            .into_iter()
            .filter_map(|(key, e)| {
                let head = select::head(&key)?;
                let wanted = head.name.starts_with(prefix)
                    && dims
                        .iter()
                        .all(|(k, v)| head.dimensions.get(k).is_some_and(|x| x == v));
                wanted.then_some(Latest {
                    name: head.name,
                    dimensions: head.dimensions,
                    timestamp_ms: e.timestamp_ms,
                    value: e.value,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.dimensions).cmp(&(&b.name, &b.dimensions)));
        out.truncate(limit);
        out
    }

    /// The by-minute points of the series `name` with exactly `dims` (besides `hostname`,
    /// which matches any: several hosts' buckets are merged), oldest first: what the status
    /// page draws.
    pub fn minutes(&self, name: &str, dims: &[(&str, &str)]) -> Vec<Point> {
        self.minutes_at(name, dims, crate::clock::now_ms() / 1000)
    }

    pub fn minutes_at(&self, name: &str, dims: &[(&str, &str)], now_sec: u64) -> Vec<Point> {
        let mut merged: BTreeMap<u32, store::Bucket> = BTreeMap::new();
        {
            let store = lock(&self.store);
            for (_, s) in store.iter() {
                if &*s.name != name || !s.has_dims(dims) {
                    continue;
                }
                for b in &s.minutes {
                    merged.entry(b.n).and_modify(|m| m.merge(b)).or_insert(*b);
                }
            }
        }
        BY_MINUTE.points(&merged.into_values().collect(), now_sec)
    }

    pub fn stats(&self) -> HistoryStats {
        let series = lock(&self.store).len() as u64;
        let latest_series = lock(&self.latest).len() as u64;
        HistoryStats {
            series,
            refused: self.refused.load(Relaxed),
            latest_series,
            latest_refused: self.latest_refused.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
