//! Rainbow's user-defined metrics (`reference/seed-apis.md` §2): SDK records (`name`, `val`,
//! `units`, `desc`, `timestamp`, …) from a watched directory of JSONL files
//! (FileUserDefinedMetrics) and from `POST <checks.rainbow_path>` on the HTTP listener
//! (`RainbowUtils.store`). (placeholder: being written)

use crate::passthrough::Passthrough;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::watch;

/// The intake's counters.
#[derive(Debug, Default)]
pub struct RainbowStats {
    /// Records turned into metrics, from files and over HTTP.
    pub file_records: AtomicU64,
    pub http_records: AtomicU64,
    /// Records skipped: not JSON, missing a field, not valid for Monasca.
    pub file_invalid: AtomicU64,
    pub http_invalid: AtomicU64,
    /// Files read whole and removed.
    pub files_read: AtomicU64,
    /// Files left in place: too large, unreadable, or the pending buffer was full.
    pub files_failed: AtomicU64,
}

/// `checks.files_dir` and how to scan it.
#[derive(Debug, Clone)]
pub struct FilesIntake {
    pub dir: PathBuf,
    pub period: Duration,
    pub max_bytes: u64,
}

/// Scans `files.dir` every period until `stop`.
pub async fn run_files(
    files: FilesIntake,
    defaults: Arc<Vec<(String, String)>>,
    passthrough: Arc<Passthrough>,
    stats: Arc<RainbowStats>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = (&files, &defaults, &passthrough, &stats);
    let _ = stop.changed().await;
}
