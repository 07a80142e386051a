//! The state that outlives an interval (gauge values, rate bases), saved after every flush
//! and loaded at start, so a restart neither resets a gauge that receives only deltas nor
//! loses a rate's base.
//!
//! Written to a temporary file, synced and renamed over the old one: a crash leaves the
//! previous checkpoint or the new one, never half of either. A missing file is a first
//! start; an unreadable one is reported and ignored (the gateway starts empty).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub version: u32,
    /// (series key, value, last update in ms)
    pub gauges: Vec<(String, f64, u64)>,
    /// (series key, sample time in ms, sample value, last update in ms)
    pub rates: Vec<(String, u64, f64, u64)>,
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
    let tmp = temp_path(path);
    let mut file = std::fs::File::create(&tmp)?;
    let mut writer = std::io::BufWriter::new(&mut file);
    serde_json::to_writer(&mut writer, checkpoint)?;
    writer.flush()?;
    drop(writer);
    file.sync_all()?;
    std::fs::rename(&tmp, path)
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

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
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
        save(&path, &c).unwrap();
        assert_eq!(load(&path), Ok(Some(c)));
        let empty = Checkpoint::new();
        save(&path, &empty).unwrap();
        assert_eq!(load(&path), Ok(Some(empty)), "a later save replaces it");
        assert!(!temp_path(&path).exists());
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
