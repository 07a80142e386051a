//! Rainbow's user-defined metrics (`reference/seed-apis.md` §2): SDK records (`name`, `val`,
//! `units`, `desc`, `timestamp`, …, `Metric.to_dict()`) from a watched directory of JSONL
//! files (FileUserDefinedMetrics, [`run_files`]) and from `POST <checks.rainbow_path>` on the
//! HTTP listener (`RainbowUtils.store`, `crate::http`'s rainbow route); both turn a record
//! into a metric with [`record_to_metric`].
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

use crate::clock::now_ms;
use crate::metric::Metric;
use crate::passthrough::Passthrough;
use crate::validate::cut_to_python_json as cut;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};
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

/// How long a claimed file's mtime must be in the past before it is read: an append that
/// opened the file before it was claimed has finished by then.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Most files claimed, and most claimed files held, at once (memory and time per scan).
pub const MAX_FILES_PER_SCAN: usize = 1000;
/// Metrics pushed to the passthrough at once; a file's progress is kept between chunks, so a
/// full buffer retries the rest of the file, not what was already accepted.
const CHUNK: usize = 1000;
/// A record's own timestamp is used when at most this old (older: a broken clock, or a file
/// that sat for a day; the disk spool's default `spool_max_age` drops such data anyway)...
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// ... and at most this far ahead of the gateway's clock (`heartbeat.max_skew`'s default).
pub const MAX_AHEAD: Duration = Duration::from_secs(300);
/// Monasca's value_meta limits (monasca-common).
const META_MAX_CHARS: usize = crate::checks::VALUE_META_MAX_CHARS;
/// `units` is a unit name; anything longer is cut here so `desc` keeps most of the room.
const UNITS_MAX_CHARS: usize = 255;

/// One SDK record as a metric: `name`, `val` (a finite number, or a string holding one, as
/// NetData-fed records carry), the default dimensions, the record's `timestamp` (epoch
/// seconds) when within [`MAX_AGE`]/[`MAX_AHEAD`] of `now_ms` else `now_ms`, and value_meta
/// `units`/`desc` when non-empty (cut to Monasca's 2048 characters). Err: why it is refused.
pub fn record_to_metric(
    record: &Value,
    defaults: &[(String, String)],
    now_ms: u64,
) -> Result<Metric, String> {
    let obj = record.as_object().ok_or("a record must be a JSON object")?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or("name is required and must be a string")?;
    crate::validate::name(name).map_err(|e| format!("name {name:?} {}", e.describe(name)))?;
    let value = match obj.get("val") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => return Err("val is required and must be a number".into()),
    }
    .filter(|v| v.is_finite())
    .ok_or("val must be a finite number")?;

    let mut dimensions = BTreeMap::new();
    for (k, v) in defaults {
        dimensions.insert(k.clone(), v.clone());
    }
    let timestamp = obj
        .get("timestamp")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|secs| (secs * 1000.0).round())
        .filter(|&ms| {
            let oldest = now_ms.saturating_sub(MAX_AGE.as_millis() as u64) as f64;
            let newest = now_ms.saturating_add(MAX_AHEAD.as_millis() as u64) as f64;
            (oldest..=newest).contains(&ms)
        })
        .map_or(now_ms, |ms| ms as u64);
    let text = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    Ok(Metric {
        name: name.to_owned(),
        dimensions,
        timestamp,
        value,
        value_meta: meta(text("units"), text("desc")),
    })
}

/// `{"units": …, "desc": …}` within Monasca's 2048 characters as `json.dumps` writes it:
/// `units` up to [`UNITS_MAX_CHARS`], `desc` cut to what is left. `None` when both are empty.
fn meta(units: Option<&str>, desc: Option<&str>) -> Option<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    // `{}` plus, per entry, `"key": "` and `"`, plus `, ` between two entries.
    let mut room = META_MAX_CHARS - 2;
    if let Some(u) = units {
        let (u, used) = cut(u, UNITS_MAX_CHARS);
        room -= "\"units\": \"\"".len() + used;
        m.insert("units".to_owned(), u.to_owned());
    }
    if let Some(d) = desc {
        let overhead = "\"desc\": \"\"".len() + if m.is_empty() { 0 } else { 2 };
        let (d, _) = cut(d, room.saturating_sub(overhead));
        m.insert("desc".to_owned(), d.to_owned());
    }
    (!m.is_empty()).then_some(m)
}

/// The records of a JSONL text: one per line, blank lines skipped, a last line without its
/// newline included. Each is a metric or a reason.
pub fn parse_lines<'a>(
    text: &'a [u8],
    defaults: &'a [(String, String)],
    now_ms: u64,
) -> impl Iterator<Item = Result<Metric, String>> + 'a {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .map(move |l| {
            let v: Value =
                serde_json::from_slice(l).map_err(|e| format!("not a JSON record: {e}"))?;
            record_to_metric(&v, defaults, now_ms)
        })
}

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
    use serde_json::json;

    const NOW: u64 = 1_795_000_000_000;

    fn defaults() -> Vec<(String, String)> {
        vec![("hostname".into(), "h".into())]
    }

    fn sdk(name: &str, val: Value, ts: u64) -> Value {
        json!({"name": name, "units": "ms", "desc": "a metric", "timestamp": ts, "val": val,
               "higherIsBetter": true, "minVal": -1.7976931348623157e308,
               "maxVal": 1.7976931348623157e308, "group": ""})
    }

    #[test]
    fn an_sdk_record_becomes_a_metric() {
        let m =
            record_to_metric(&sdk("q.depth", json!(4.5), NOW / 1000), &defaults(), NOW).unwrap();
        assert_eq!(m.name, "q.depth");
        assert_eq!((m.value, m.timestamp), (4.5, NOW));
        assert_eq!(m.dimensions["hostname"], "h");
        let meta = m.value_meta.unwrap();
        assert_eq!(
            (meta["units"].as_str(), meta["desc"].as_str()),
            ("ms", "a metric")
        );
        // NetData-fed records carry the value as a string.
        let m = record_to_metric(&sdk("cpu_idle", json!(" 97 "), NOW / 1000), &[], NOW).unwrap();
        assert_eq!(m.value, 97.0);
        // Empty units and desc: no value_meta.
        let r = json!({"name": "n", "val": 1, "units": "", "desc": ""});
        assert_eq!(record_to_metric(&r, &[], NOW).unwrap().value_meta, None);
    }

    #[test]
    fn timestamps_outside_the_window_become_the_read_time() {
        let at = |ts: Value| {
            let r = json!({"name": "n", "val": 1, "timestamp": ts});
            record_to_metric(&r, &[], NOW).unwrap().timestamp
        };
        let secs = NOW / 1000;
        assert_eq!(at(json!(secs - 86_400)), NOW - 86_400_000);
        assert_eq!(at(json!(secs + 300)), NOW + 300_000);
        assert_eq!(at(json!(secs as f64 + 0.25)), NOW + 250);
        for bad in [
            json!(secs - 86_401),
            json!(secs + 301),
            json!(NOW), // milliseconds, read as seconds: far in the future
            json!(0),
            json!(-5),
            json!(""),
            json!("1795000000"),
            Value::Null,
        ] {
            assert_eq!(at(bad.clone()), NOW, "{bad}");
        }
        assert_eq!(
            record_to_metric(&json!({"name": "n", "val": 1}), &[], NOW)
                .unwrap()
                .timestamp,
            NOW
        );
    }

    #[test]
    fn bad_records_name_what_is_wrong() {
        let why = |r: Value| record_to_metric(&r, &[], NOW).unwrap_err();
        assert!(why(json!([1])).contains("object"));
        assert!(why(json!({"val": 1})).contains("name"));
        assert!(why(json!({"name": "a b", "val": 1})).contains("name"));
        assert!(why(json!({"name": "", "val": 1})).contains("name"));
        assert!(why(json!({"name": "n"})).contains("val"));
        assert!(why(json!({"name": "n", "val": ""})).contains("val"));
        assert!(why(json!({"name": "n", "val": "abc"})).contains("val"));
        assert!(why(json!({"name": "n", "val": "inf"})).contains("finite"));
        assert!(why(json!({"name": "n", "val": "NaN"})).contains("finite"));
        assert!(why(json!({"name": "n", "val": true})).contains("val"));
        assert!(why(json!({"name": "n", "val": null})).contains("val"));
    }

    fn python_len(m: &BTreeMap<String, String>) -> usize {
        crate::validate::value_meta_len(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn value_meta_fits_monascas_limit() {
        for desc in [
            "é\"".repeat(3000),
            "x".repeat(5000),
            "\u{1F600}".repeat(900),
        ] {
            let m = meta(Some(&"u".repeat(1000)), Some(&desc)).unwrap();
            let len = python_len(&m);
            assert!(len <= 2048 && len > 2030, "{len}");
            assert_eq!(m["units"].chars().count(), 255);
        }
        let m = meta(None, Some(&"x".repeat(5000))).unwrap();
        assert_eq!(python_len(&m), 2048);
        assert_eq!(
            python_len(&meta(Some("ms"), Some("d")).unwrap()),
            r#"{"desc": "d", "units": "ms"}"#.len()
        );
        assert_eq!(meta(None, None), None);
    }

    #[test]
    fn jsonl_lines_are_records_and_a_bad_line_does_not_spoil_the_rest() {
        let text = b"{\"name\":\"a\",\"val\":1}\n\nnot json\n{\"name\":\"b\",\"val\":\"2\"}\n  \n{\"name\":\"c\",\"val\":3}";
        let got: Vec<_> = parse_lines(text, &[], NOW).collect();
        assert_eq!(got.len(), 4);
        assert!(got[1].as_ref().unwrap_err().contains("JSON"));
        let names: Vec<_> = got.iter().flatten().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c"],
            "a last line without a newline counts"
        );
    }

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
