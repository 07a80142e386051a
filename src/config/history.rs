//! `history.*`: the local history of selected series (liz's by-minute and by-hour summaries,
//! latest values), kept in memory, checkpointed beside the gauges when `buffer.spool_dir` is
//! set.
//!
//! Owns: the section's schema, defaults and checks. Must never: keep history (that is
//! `crate::history`).

use super::validate::{Invalid, bad};
use serde::{Deserialize, Serialize};

/// `history.*`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep history at all. Default `true`.
    pub enabled: bool,
    /// Metric names kept, as patterns (`*` matches any run of characters). Default: the probe
    /// and check metrics, `heartbeat.alive`, `statsgate.*`, and the names liz-monitor posts.
    pub include: Vec<String>,
    /// Names never kept, even when `include` matches (same patterns). Default empty.
    pub exclude: Vec<String>,
    /// Most series kept; a new series past it is refused and counted. Default `2000`.
    pub max_series: usize,
    /// Most series whose latest value is kept for `/api/metrics` (every flushed series, not
    /// only the selected ones); a new series past it is left out and counted. Default 10000.
    pub max_latest: usize,
}

/// What `history.include` holds by default: monasca-agent's probe and check names (README
/// "Host and container metrics", "Checks"), the liveness gauge, the gateway's own metrics, and
/// liz-monitor's two keys.
pub const DEFAULT_INCLUDE: [&str; 17] = [
    "cpu.*",
    "mem.*",
    "load.*",
    "disk.*",
    "io.*",
    "net.*",
    "container.*",
    "http_status",
    "http_response_time",
    "network.tcp.*",
    "host_alive_status",
    "process.*",
    "nagios.*",
    "heartbeat.alive",
    "statsgate.*",
    "cpu",
    "mem",
];

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            include: DEFAULT_INCLUDE.iter().map(|s| (*s).to_owned()).collect(),
            exclude: Vec::new(),
            max_series: 2000,
            max_latest: 10_000,
        }
    }
}

pub fn validate(c: &super::Config) -> Result<(), Invalid> {
    let h = &c.history;
    if h.max_series > 1_000_000 {
        bad(
            "history.max_series",
            format!("must be at most 1000000 (got {})", h.max_series),
        )?;
    }
    if h.max_latest > 1_000_000 {
        bad(
            "history.max_latest",
            format!("must be at most 1000000 (got {})", h.max_latest),
        )?;
    }
    for (key, patterns) in [
        ("history.include", &h.include),
        ("history.exclude", &h.exclude),
    ] {
        if let Some(p) = patterns.iter().find(|p| p.is_empty() || p.len() > 255) {
            bad(key, format!("{p:?}: a pattern must be 1 to 255 characters"))?;
        }
    }
    Ok(())
}
