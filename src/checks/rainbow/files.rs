//! Rainbow's FileUserDefinedMetrics: the watched directory `checks.files_dir`.
//!
//! The directory: applications append lines to `rainbow.metrics.jsonl` (open, write one line,
//! close) or drop whole `*.jsonl` files. A scan claims each such file by renaming it to a
//! private `.<name>.<n>.claimed` (atomic: later appends create a fresh file), then reads a
//! claimed file only once it is quiet (same size and mtime at two scans, mtime older than
//! [`SETTLE`]), so an append begun before the rename lands before the read. It is removed
//! only once all its metrics were accepted by the passthrough; claimed files a crash left
//! are resumed at start. A file larger than `files_max_bytes` is renamed `.<name>.<n>.failed`
//! and left for the operator.
//!
//! Must never: follow a symlink or read anything but a regular file, read a file while it may
//! still be growing, delete a file whose metrics were not accepted, hold more than
//! `files_max_bytes` of one file in memory, block the checks runtime (scans run in
//! `spawn_blocking`), or send a metric Monasca would refuse.

use super::{RainbowStats, parse_lines};
use crate::clock::now_ms;
use crate::passthrough::Passthrough;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// `checks.files_dir` and how to scan it.
#[derive(Debug, Clone)]
pub struct FilesIntake {
    pub dir: PathBuf,
    pub period: Duration,
    pub max_bytes: u64,
}

/// How long a claimed file's mtime must be in the past before it is read: an append that
/// opened the file before it was claimed has finished by then.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Most files claimed, and most claimed files held, at once (memory and time per scan).
pub const MAX_FILES_PER_SCAN: usize = 1000;
/// Metrics pushed to the passthrough at once; a file's progress is kept between chunks, so a
/// full buffer retries the rest of the file, not what was already accepted.
const CHUNK: usize = 1000;
/// Scans `files.dir` every period until `stop`.
pub async fn run_files(
    files: FilesIntake,
    defaults: Arc<Vec<(String, String)>>,
    passthrough: Arc<Passthrough>,
    stats: Arc<RainbowStats>,
    mut stop: watch::Receiver<bool>,
) {
    let stopping = Arc::new(AtomicBool::new(false));
    let mut scanner = Some(Scanner::new(files.clone(), defaults, passthrough, stats));
    let mut tick = tokio::time::interval(files.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(mut s) = scanner.take() else { return };
        let flag = Arc::clone(&stopping);
        let mut job = tokio::task::spawn_blocking(move || {
            s.scan(&flag);
            s
        });
        // A stop during a scan lets it finish the file in hand (so nothing accepted is left
        // undeleted), then returns.
        let joined = tokio::select! {
            j = &mut job => j,
            _ = stop.changed() => {
                stopping.store(true, Relaxed);
                let _ = job.await;
                return;
            }
        };
        match joined {
            Ok(s) => scanner = Some(s),
            Err(e) => {
                tracing::error!(error = %e, "checks.files_dir scan failed; the intake stops");
                return;
            }
        }
    }
}

/// A claimed file as last seen: its size and mtime, and how many of its lines were handled
/// (pushed or counted invalid) before the buffer was full.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    size: u64,
    mtime: SystemTime,
}

struct Scanner {
    files: FilesIntake,
    defaults: Arc<Vec<(String, String)>>,
    passthrough: Arc<Passthrough>,
    stats: Arc<RainbowStats>,
    /// Claimed file name → its last look.
    looks: HashMap<String, Look>,
    /// Claimed file name → lines already handled (the buffer was full after them).
    progress: HashMap<String, usize>,
    /// Unique suffixes for claimed names: seeded from the clock, so a restart cannot reuse one.
    next_id: u64,
    /// The directory could not be listed at the last scan (logged once per episode).
    dir_failing: bool,
    /// The pending buffer refused a file at the last try (logged once per episode).
    full: bool,
}

/// `.<name>.<id>.<suffix>`, the name cut so the whole stays well within NAME_MAX.
fn private_name(name: &str, id: u64, suffix: &str) -> String {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.{id}.{suffix}", &name[..end])
}

impl Scanner {
    fn new(
        files: FilesIntake,
        defaults: Arc<Vec<(String, String)>>,
        passthrough: Arc<Passthrough>,
        stats: Arc<RainbowStats>,
    ) -> Self {
        Scanner {
            files,
            defaults,
            passthrough,
            stats,
            looks: HashMap::new(),
            progress: HashMap::new(),
            next_id: now_ms(),
            dir_failing: false,
            full: false,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.dir.join(name)
    }

    /// One pass: claim new `*.jsonl` files, then read and remove the claimed ones that are
    /// quiet.
    fn scan(&mut self, stopping: &AtomicBool) {
        let (fresh, claimed) = match self.list() {
            Ok(l) => l,
            Err(e) => {
                if !self.dir_failing {
                    self.dir_failing = true;
                    tracing::warn!(dir = %self.files.dir.display(), error = %e, "checks.files_dir cannot be listed");
                }
                return;
            }
        };
        if self.dir_failing {
            self.dir_failing = false;
            tracing::info!(dir = %self.files.dir.display(), "checks.files_dir can be listed again");
        }
        // Forget files no longer there (deleted by someone else).
        self.looks.retain(|n, _| claimed.contains(n));
        self.progress.retain(|n, _| claimed.contains(n));
        let mut claimed = claimed;
        let room = MAX_FILES_PER_SCAN.saturating_sub(claimed.len());
        for name in fresh.into_iter().take(room) {
            if stopping.load(Relaxed) {
                return;
            }
            if let Some(c) = self.claim(&name) {
                claimed.push(c);
            }
        }
        for name in claimed {
            if stopping.load(Relaxed) {
                return;
            }
            self.consider(&name);
        }
    }

    /// The directory's `*.jsonl` names (not yet claimed) and its `.….claimed` ones, at most
    /// [`MAX_FILES_PER_SCAN`] of each.
    fn list(&self) -> std::io::Result<(Vec<String>, Vec<String>)> {
        let mut fresh = Vec::new();
        let mut claimed = Vec::new();
        for entry in std::fs::read_dir(&self.files.dir)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                if name.ends_with(".claimed") && claimed.len() < MAX_FILES_PER_SCAN {
                    claimed.push(name);
                }
            } else if name.ends_with(".jsonl") && fresh.len() < MAX_FILES_PER_SCAN {
                fresh.push(name);
            }
            if fresh.len() >= MAX_FILES_PER_SCAN && claimed.len() >= MAX_FILES_PER_SCAN {
                break;
            }
        }
        Ok((fresh, claimed))
    }

    /// Renames a regular `*.jsonl` file to its private claimed name (or, when already too
    /// large, its `.failed` one). Anything else (a symlink, a directory, a FIFO) is ignored.
    fn claim(&mut self, name: &str) -> Option<String> {
        let path = self.path(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let id = self.id();
        if meta.len() > self.files.max_bytes {
            self.fail(name, &path, id, meta.len());
            return None;
        }
        let claimed = private_name(name, id, "claimed");
        match std::fs::rename(&path, self.path(&claimed)) {
            Ok(()) => Some(claimed),
            Err(e) => {
                // Gone already (another reader, or the app removed it): nothing to do.
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %e, "cannot claim a checks.files_dir file");
                }
                None
            }
        }
    }

    /// Sets a too-large file aside as `.<name>.<id>.failed`, counted and logged once (it is
    /// never scanned again).
    fn fail(&mut self, name: &str, path: &Path, id: u64, size: u64) {
        let base = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".claimed"))
            .unwrap_or(name);
        let failed = private_name(base, id, "failed");
        self.stats.files_failed.fetch_add(1, Relaxed);
        match std::fs::rename(path, self.path(&failed)) {
            Ok(()) => tracing::warn!(
                file = %path.display(), size, max = self.files.max_bytes, kept_as = %failed,
                "checks.files_dir file larger than checks.files_max_bytes: left unread"
            ),
            Err(e) => tracing::warn!(
                file = %path.display(), size, error = %e,
                "checks.files_dir file larger than checks.files_max_bytes cannot be set aside"
            ),
        }
    }

    /// Reads a claimed file once it has been quiet for two looks, pushes its metrics and
    /// removes it.
    fn consider(&mut self, name: &str) {
        let path = self.path(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        if !meta.file_type().is_file() {
            // Not ours (we only ever rename regular files): left alone.
            return;
        }
        let Ok(mtime) = meta.modified() else { return };
        let look = Look {
            size: meta.len(),
            mtime,
        };
        let quiet = SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= SETTLE);
        let settled = self.looks.insert(name.to_owned(), look) == Some(look) && quiet;
        if !settled {
            return;
        }
        if look.size > self.files.max_bytes {
            let id = self.id();
            self.looks.remove(name);
            self.progress.remove(name);
            self.fail(name, &path, id, look.size);
            return;
        }
        let text = match self.read(&path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let id = self.id();
                self.looks.remove(name);
                self.progress.remove(name);
                self.fail(name, &path, id, look.size);
                return;
            }
            Err(e) => {
                self.stats.files_failed.fetch_add(1, Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "cannot read a checks.files_dir file; retried next scan");
                return;
            }
        };
        if self.push(name, &text) {
            self.looks.remove(name);
            self.progress.remove(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.stats.files_read.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a read checks.files_dir file")
                }
            }
        }
    }

    /// The file's bytes, never through a symlink and never more than `max_bytes`; `None`
    /// when it holds more.
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.file_type().is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut buf = Vec::new();
        file.take(self.files.max_bytes + 1).read_to_end(&mut buf)?;
        Ok((buf.len() as u64 <= self.files.max_bytes).then_some(buf))
    }

    /// Pushes the file's metrics in chunks, past the lines a full buffer stopped at before.
    /// True when every line is handled (the file may go).
    fn push(&mut self, name: &str, text: &[u8]) -> bool {
        let done = self.progress.get(name).copied().unwrap_or(0);
        let now = now_ms();
        let mut handled = done;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut chunk_lines = 0;
        let mut invalid = 0u64;
        let mut first_reason = None;
        let records = parse_lines(text, &self.defaults, now).skip(done);
        let mut records = records.peekable();
        while let Some(r) = records.next() {
            chunk_lines += 1;
            match r {
                Ok(m) => chunk.push(m),
                Err(reason) => {
                    invalid += 1;
                    first_reason.get_or_insert(reason);
                }
            }
            if chunk.len() < CHUNK && records.peek().is_some() {
                continue;
            }
            if !chunk.is_empty() && self.passthrough.push_metrics(&chunk).is_err() {
                // This chunk's lines (invalid ones too) are handled, and counted, on the retry.
                self.progress.insert(name.to_owned(), handled);
                self.stats.files_failed.fetch_add(1, Relaxed);
                if !self.full {
                    self.full = true;
                    tracing::warn!(file = %name, "buffer.max_pending is full: a checks.files_dir file waits for the next scan");
                }
                return false;
            }
            self.stats
                .file_records
                .fetch_add(chunk.len() as u64, Relaxed);
            handled += chunk_lines;
            chunk.clear();
            chunk_lines = 0;
            self.count_invalid(name, invalid, first_reason.take());
            invalid = 0;
        }
        self.full = false;
        true
    }

    fn count_invalid(&self, name: &str, invalid: u64, reason: Option<String>) {
        if invalid == 0 {
            return;
        }
        self.stats.file_invalid.fetch_add(invalid, Relaxed);
        if let Some(reason) = reason {
            tracing::warn!(file = %name, invalid, first = %reason, "checks.files_dir records skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_names_stay_short_and_keep_the_original() {
        assert_eq!(
            private_name("rainbow.metrics.jsonl", 7, "claimed"),
            ".rainbow.metrics.jsonl.7.claimed"
        );
        let long = "é".repeat(150);
        let p = private_name(&long, u64::MAX, "failed");
        assert!(p.len() < 255 && p.ends_with(".failed"), "{p}");
    }
}
