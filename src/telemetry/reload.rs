//! Reload telemetry: how each configuration reload ended, and the last one's message.
//!
//! Owns: `statsgate_reloads_total{outcome}` and what `/healthz` says of the last reload.
//! Must never: hold a configuration value (a message names keys, never their values).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration runs.
    Applied,
    /// The file and environment say what is running already.
    Unchanged,
    /// The new configuration is invalid, or applying it failed: the old one runs on.
    Failed,
    /// A changed key cannot change while running: the old configuration runs on.
    Refused,
}

impl ReloadOutcome {
    pub const ALL: [ReloadOutcome; 4] = [
        ReloadOutcome::Applied,
        ReloadOutcome::Unchanged,
        ReloadOutcome::Failed,
        ReloadOutcome::Refused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Failed => "failed",
            ReloadOutcome::Refused => "refused",
        }
    }

    /// Whether the new configuration runs (or already ran).
    pub fn ok(self) -> bool {
        matches!(self, ReloadOutcome::Applied | ReloadOutcome::Unchanged)
    }
}

/// The last reload: when, how, and its message (the error naming the key, or what changed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    pub at_unix: u64,
    pub outcome: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct ReloadStats {
    counts: [AtomicU64; 4],
    last: Mutex<Option<LastReload>>,
}

impl ReloadStats {
    pub fn record(&self, outcome: ReloadOutcome, message: &str, at_unix: u64) {
        self.counts[outcome as usize].fetch_add(1, Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastReload {
            at_unix,
            outcome: outcome.label(),
            message: message.to_owned(),
        });
    }

    pub fn count(&self, outcome: ReloadOutcome) -> u64 {
        self.counts[outcome as usize].load(Relaxed)
    }

    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A stage's counters that a reload may replace (a restarted probes or checks stage).
#[derive(Debug)]
pub struct Slot<T>(std::sync::RwLock<Option<std::sync::Arc<T>>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(std::sync::RwLock::new(None))
    }
}

impl<T> Slot<T> {
    pub fn get(&self) -> Option<std::sync::Arc<T>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, value: Option<std::sync::Arc<T>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_outcome_and_keeps_the_last_message() {
        let r = ReloadStats::default();
        r.record(
            ReloadOutcome::Failed,
            "flush.interval: must be at least 1s",
            10,
        );
        r.record(ReloadOutcome::Applied, "flush.interval", 20);
        assert_eq!(r.count(ReloadOutcome::Failed), 1);
        assert_eq!(r.count(ReloadOutcome::Applied), 1);
        assert_eq!(r.count(ReloadOutcome::Refused), 0);
        let last = r.last().unwrap();
        assert_eq!((last.at_unix, last.outcome), (20, "applied"));
    }
}
