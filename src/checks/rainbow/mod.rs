//! Rainbow's user-defined metrics (`reference/seed-apis.md` §2): SDK records (`name`, `val`,
//! `units`, `desc`, `timestamp`, …, `Metric.to_dict()`) from a watched directory of JSONL
//! files ([`files`], FileUserDefinedMetrics) and from `POST <checks.rainbow_path>` on the
//! HTTP listener (`RainbowUtils.store`, `crate::http`'s rainbow route); both turn a record
//! into a metric with [`record_to_metric`].
//!
//! Owns: what a record must hold, and how it maps to a metric (timestamp window, value_meta
//! within Monasca's limits). Must never: accept a record Monasca would refuse.

mod files;

pub use files::{FilesIntake, MAX_FILES_PER_SCAN, SETTLE, run_files};

use crate::metric::Metric;
use crate::validate::cut_to_python_json as cut;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

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
}
