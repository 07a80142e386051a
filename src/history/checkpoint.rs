//! The history's checkpoint, `<buffer.spool_dir>/history.checkpoint.json`: every series'
//! key and buckets, saved every minute and at shutdown, loaded at start, so a restart keeps
//! the last hour and day.
//!
//! Written like the gauge checkpoint (`spool::dir::replace`: a fresh temp file created
//! exclusively `0600`, never through a symlink, synced, renamed, the directory synced): a
//! crash leaves the old file or the new one. Read with a size bound from the configuration
//! (`history.max_series`), checked bucket by bucket. Owns: the file's format and its checks.
//! Must never: make a bad, oversized or foreign file fatal (it is logged and ignored), or
//! write under the store's lock.

use super::store::{BY_HOUR, BY_MINUTE, Bucket, Resolution, Series};
use crate::spool::dir;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const FILE_NAME: &str = "history.checkpoint.json";

const VERSION: u32 = 1;

/// A series' key is a rendered name and dimensions: Monasca's limits keep it well under this.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Bytes a series may take in the file: its key and 88 buckets of five numbers.
const PER_SERIES_BYTES: u64 = MAX_KEY_BYTES as u64 + 16 * 1024;

/// The largest file `load` reads for a store of `max_series`.
pub fn max_bytes(max_series: usize) -> u64 {
    64 * 1024 + max_series as u64 * PER_SERIES_BYTES
}

/// (bucket number, count, sum, min, max)
pub type SavedBucket = (u32, u32, f64, f64, f64);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub version: u32,
    pub saved_ms: u64,
    pub series: Vec<SavedSeries>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSeries {
    /// The rendered `{"name":…,"dimensions":{…}`, as the store keys it.
    pub key: String,
    pub minutes: Vec<SavedBucket>,
    pub hours: Vec<SavedBucket>,
}

fn saved(buckets: &VecDeque<Bucket>) -> Vec<SavedBucket> {
    buckets
        .iter()
        // A sum that overflowed would not serialize as a number.
        .filter(|b| b.sum.is_finite())
        .map(|b| (b.n, b.count, b.sum, b.min, b.max))
        .collect()
}

impl SavedSeries {
    /// `None` for a key `load` would not take back.
    pub fn of(key: &[u8], series: &Series) -> Option<SavedSeries> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        Some(SavedSeries {
            key: String::from_utf8(key.to_vec()).ok()?,
            minutes: saved(&series.minutes),
            hours: saved(&series.hours),
        })
    }
}

/// The buckets of `saved` that could have been built by the store and are in `r`'s window
/// at `now_sec`, sorted, at most the window's count.
pub fn restored(r: Resolution, saved: &[SavedBucket], now_sec: u64) -> VecDeque<Bucket> {
    let first = r.window_start(now_sec) / r.size;
    let mut buckets: Vec<Bucket> = saved
        .iter()
        .map(|&(n, count, sum, min, max)| Bucket {
            n,
            count,
            sum,
            min,
            max,
        })
        .filter(|b| {
            u64::from(b.n) >= first
                && u64::from(b.n) * r.size <= now_sec
                && b.count > 0
                && b.sum.is_finite()
                && b.min.is_finite()
                && b.max.is_finite()
                && b.min <= b.max
        })
        .collect();
    buckets.sort_by_key(|b| b.n);
    buckets.dedup_by_key(|b| b.n);
    let excess = buckets.len().saturating_sub(r.max_buckets);
    buckets.drain(..excess);
    buckets.into()
}

pub fn restored_minutes(s: &SavedSeries, now_sec: u64) -> VecDeque<Bucket> {
    restored(BY_MINUTE, &s.minutes, now_sec)
}

pub fn restored_hours(s: &SavedSeries, now_sec: u64) -> VecDeque<Bucket> {
    restored(BY_HOUR, &s.hours, now_sec)
}

pub fn save(path: &Path, file: &File) -> std::io::Result<()> {
    dir::replace(path, |f| {
        let mut writer = std::io::BufWriter::new(f);
        serde_json::to_writer(&mut writer, file)?;
        writer.flush()
    })
}

/// `Ok(None)` when there is no checkpoint yet; an error for a file that is unreadable,
/// larger than `max_bytes`, not ours, or of another version.
pub fn load(path: &Path, max_bytes: u64) -> Result<Option<File>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    // One byte more than allowed tells an oversized file from one exactly at the bound.
    f.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "{} is larger than {max_bytes} bytes, the most history.max_series allows",
            path.display()
        ));
    }
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a statsgate history checkpoint: {e}",
            path.display()
        )
    })?;
    if file.version != VERSION {
        return Err(format!(
            "{} has version {}, this statsgate reads {VERSION}",
            path.display(),
            file.version
        ));
    }
    Ok(Some(file))
}

pub fn new_file(saved_ms: u64, series: Vec<SavedSeries>) -> File {
    File {
        version: VERSION,
        saved_ms,
        series,
    }
}

/// Where the checkpoint goes, once the gateway has a spool directory, and when it was last
/// written.
#[derive(Debug, Default)]
pub struct Slot(Mutex<Option<Target>>);

#[derive(Debug)]
struct Target {
    path: PathBuf,
    last_save_ms: u64,
    failing: bool,
}

impl Slot {
    pub fn set(&self, path: PathBuf, now_ms: u64) {
        *self.lock() = Some(Target {
            path,
            last_save_ms: now_ms,
            failing: false,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Target>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The path to save to now: always with `force`, else once a minute has passed.
    pub fn due(&self, now_ms: u64, force: bool) -> Option<PathBuf> {
        let mut guard = self.lock();
        let t = guard.as_mut()?;
        if !force && now_ms.saturating_sub(t.last_save_ms) < 60_000 {
            return None;
        }
        t.last_save_ms = now_ms;
        Some(t.path.clone())
    }

    /// Logs the first failure of a run of them, and the recovery.
    pub fn saved(&self, path: &Path, result: std::io::Result<()>) {
        let mut guard = self.lock();
        let Some(t) = guard.as_mut() else {
            return;
        };
        match result {
            Ok(()) if t.failing => {
                t.failing = false;
                tracing::info!(path = %path.display(), "history checkpoint saved again");
            }
            Ok(()) => {}
            Err(e) => {
                if !t.failing {
                    t.failing = true;
                    tracing::error!(error = %e, path = %path.display(), "cannot save the history checkpoint; a restart would lose the history");
                }
            }
        }
    }
}

/// Removes temp files a crash left beside `path` (at start, under the spool lock).
pub fn remove_stale_temps(path: &Path) {
    if let (Some(d), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        let removed = dir::remove_stale_temps(d, name);
        if removed > 0 {
            tracing::info!(removed, "removed the history checkpoint's stale temp files");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_bound_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path, 1 << 20), Ok(None), "no file: first start");
        let f = new_file(
            5,
            vec![SavedSeries {
                key: r#"{"name":"cpu","dimensions":{"hostname":"h"}"#.into(),
                minutes: vec![(1, 2, 3.5, 1.0, 2.5)],
                hours: vec![(0, 2, 3.5, 1.0, 2.5)],
            }],
        );
        save(&path, &f).unwrap();
        assert_eq!(load(&path, 1 << 20), Ok(Some(f.clone())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(load(&path, size), Ok(Some(f)), "exactly at the bound");
        let err = load(&path, size - 1).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        std::fs::write(&path, b"{\"version\":1,\"saved_ms\":5,\"series\":[{\"key\"").unwrap();
        let err = load(&path, 1 << 20).unwrap_err();
        assert!(err.contains("not a statsgate history checkpoint"), "{err}");
        std::fs::write(&path, b"{\"version\":2,\"saved_ms\":5,\"series\":[]}").unwrap();
        assert!(load(&path, 1 << 20).unwrap_err().contains("version 2"));
    }

    #[test]
    fn restored_buckets_are_checked_windowed_and_sorted() {
        let now = 1_000_000;
        let first = BY_MINUTE.window_start(now) / 60;
        let n = |i: u64| (first + i) as u32;
        let saved = [
            (n(5), 1, 1.0, 1.0, 1.0),
            (n(2), 1, 1.0, 1.0, 1.0),
            (n(2), 1, 9.0, 9.0, 9.0),
            (first as u32 - 1, 1, 1.0, 1.0, 1.0),
            (n(3), 0, 0.0, 0.0, 0.0),
            (n(4), 2, 1.0, 3.0, 2.0),
            (n(6), 1, f64::NAN, 1.0, 1.0),
            ((now / 60 + 5) as u32, 1, 1.0, 1.0, 1.0),
        ];
        let b = restored(BY_MINUTE, &saved, now);
        let ns: Vec<u32> = b.iter().map(|b| b.n).collect();
        assert_eq!(
            ns,
            [n(2), n(5)],
            "old, empty, inverted, NaN, future and repeated dropped"
        );
    }
}
