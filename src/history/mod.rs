//! History: by-minute summaries for the last hour and by-hour summaries for the last day of
//! the selected series (liz's receiver, `reference/seed-apis.md` §1), and the latest value of
//! each, fed by every flush.
//!
//! Owns: the store (bounded by `history.max_series`), bucket alignment (liz's: minutes and
//! hours of the epoch), its checkpoint, and the views the API and the status page read.
//! Must never: slow a flush by more than a name match per metric, grow past its bounds, or
//! answer a query by holding its lock while serializing.
//! (placeholder: being written)

use crate::batch::Rendered;
use crate::config::HistoryConfig;
use serde_json::Value;

/// The store. `Sync`: the flusher writes, the HTTP handlers read.
#[derive(Debug, Default)]
pub struct History {}

/// One series' latest value.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub name: String,
    pub dimensions: std::collections::BTreeMap<String, String>,
    pub timestamp_ms: u64,
    pub value: f64,
}

/// One summary bucket: liz's point (`start-sec`, `end-sec`, `num-samples`, `avg`) plus the
/// minimum and maximum.
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
    pub series: u64,
    pub refused: u64,
}

impl History {
    pub fn new(_config: &HistoryConfig) -> History {
        History {}
    }

    /// Records a flush's metrics (each at its own timestamp): those whose name `include`
    /// selects and `exclude` does not.
    pub fn observe(&self, _metrics: &Rendered) {}

    /// liz's `GET /api/perf/<host>[/<label>]` body for the series whose `hostname` is `host`:
    /// `{"summary:by-minute:<label>": {...}, "summary:by-hour:<label>": {...}}`, filtered by a
    /// case-insensitive substring of the summary's label; `{}` for an unknown host.
    pub fn liz(&self, _host: &str, _label: Option<&str>, _now_sec: u64) -> Value {
        Value::Object(Default::default())
    }

    /// The latest value of each kept series whose name starts with `prefix` and whose
    /// dimensions include every pair of `dims`, at most `limit`, sorted by name then
    /// dimensions.
    pub fn latest(&self, _prefix: &str, _dims: &[(String, String)], _limit: usize) -> Vec<Latest> {
        Vec::new()
    }

    /// The by-minute points of the series `name` with exactly `dims` (besides `hostname`,
    /// which matches any), oldest first: what the status page draws.
    pub fn minutes(&self, _name: &str, _dims: &[(&str, &str)]) -> Vec<Point> {
        Vec::new()
    }

    pub fn stats(&self) -> HistoryStats {
        HistoryStats::default()
    }
}
