//! The state that outlives an interval (gauge values, rate and percent change bases), saved after every flush
//! and loaded at start, so a restart neither resets a gauge that receives only deltas nor
//! loses a rate's base.
//!
//! Written to a fresh temporary file (created exclusively, `0600`, never through a symlink:
//! `spool::dir::replace`), synced and renamed over the old one, then the directory synced: a
//! crash leaves the previous checkpoint or the new one, never half of either. A missing file
//! is a first start; an unreadable one is reported and ignored (the gateway starts empty).
//! Must never: write through a path someone else can redirect (a fixed temp name would be
//! followed if a symlink were planted there).

use crate::spool::dir;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub version: u32,
    /// (series key, value, last update in ms)
    pub gauges: Vec<(String, f64, u64)>,
    /// (series key, sample time in ms, sample value, last update in ms)
    pub rates: Vec<(String, u64, f64, u64)>,
    /// (series key, last `pc` value, last update in ms); absent from older checkpoints.
    #[serde(default)]
    pub percents: Vec<(String, f64, u64)>,
}

impl Checkpoint {
    pub fn new() -> Self {
        Checkpoint {
            version: VERSION,
            ..Checkpoint::default()
        }
    }
}

/// Series keys are UTF-8 (the parser refuses anything else); one that is not is skipped.
pub fn key_text(key: &[u8]) -> Option<String> {
    String::from_utf8(key.to_vec()).ok()
}

pub fn save(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    dir::replace(path, |file| {
        let mut writer = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut writer, checkpoint)?;
        writer.flush()
    })
}

/// Removes temp files a crash left beside `path` (call once at start, under the spool lock).
pub fn remove_stale_temps(path: &Path) {
    if let (Some(d), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        let removed = dir::remove_stale_temps(d, name);
        if removed > 0 {
            tracing::info!(removed, "removed the gauge checkpoint's stale temp files");
        }
    }
}

/// `Ok(None)` when there is no checkpoint yet.
pub fn load(path: &Path) -> Result<Option<Checkpoint>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a statsgate checkpoint: {e}", path.display()))?;
    if checkpoint.version != VERSION {
        return Err(format!(
            "{} has version {}, this statsgate reads {VERSION}",
            path.display(),
            checkpoint.version
        ));
    }
    Ok(Some(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gauges.json");
        assert_eq!(load(&path), Ok(None), "no file: first start");
        let mut c = Checkpoint::new();
        c.gauges.push(("g\u{1f}k\u{1e}v".into(), 2.5, 1000));
        c.rates.push(("r".into(), 5, 7.0, 1000));
        c.percents.push(("p".into(), 4.0, 1000));
        save(&path, &c).unwrap();
        assert_eq!(load(&path), Ok(Some(c)));
        let empty = Checkpoint::new();
        save(&path, &empty).unwrap();
        assert_eq!(load(&path), Ok(Some(empty)), "a later save replaces it");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["gauges.json"], "no temp file left");
    }

    /// Guards issue 11 (6): the fixed `<path>.tmp` was opened with `File::create`, which
    /// follows a symlink planted there and overwrote its target.
    #[test]
    fn a_symlink_at_the_old_temp_name_is_neither_followed_nor_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let path = dir.path().join("gauges.json");
        std::os::unix::fs::symlink(&target, dir.path().join("gauges.json.tmp")).unwrap();
        save(&path, &Checkpoint::new()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove_stale_temps(&path);
        assert!(!dir.path().join("gauges.json.tmp").exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(load(&path), Ok(Some(Checkpoint::new())));
    }

    #[test]
    fn a_checkpoint_from_before_percent_changes_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gauges.json");
        std::fs::write(&path, br#"{"version":1,"gauges":[["g",2.0,5]],"rates":[]}"#).unwrap();
        let c = load(&path).unwrap().unwrap();
        assert_eq!((c.gauges.len(), c.percents.len()), (1, 0));
    }

    #[test]
    fn a_damaged_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gauges.json");
        std::fs::write(&path, b"{\"version\":1,\"gauges\":[[\"a\",1.0,").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.contains("not a statsgate checkpoint"), "{err}");
    }
}
