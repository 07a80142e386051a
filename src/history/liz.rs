//! liz's `GET /api/perf/<host>[/<label>]` body, built from a copy of one host's series taken
//! under the store's lock (`reference/seed-apis.md` §1 "Storage and summarisation").
//!
//! Owns: labels, the label filter, the summary and point shapes and liz's rounding. Must
//! never: run under the store's lock, or return a summary with no point (liz kept a stale
//! one forever; we omit it).

use super::Point;
use super::store::{BY_HOUR, BY_MINUTE, Resolution};
use serde_json::{Map, Value, json};

/// One series of the host, copied out of the store: its name, its dimensions other than
/// `hostname` (sorted by key), and its points in each window.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSeries {
    pub name: String,
    pub others: Vec<(String, String)>,
    pub minutes: Vec<Point>,
    pub hours: Vec<Point>,
}

/// Python's `round(x, 2)`: the decimal nearest to the exact binary value, ties to even
/// (`round(2.675, 2)` is 2.67 because 2.675 is stored as 2.67499…). Rust's `{:.2}` formats
/// the exact value the same way.
pub fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// `name`, or `name{k=v,k2=v2}` (the other dimensions, sorted by key, no escaping) when the
/// host has several series of that name.
fn label(s: &HostSeries, several: bool) -> String {
    if !several {
        return s.name.clone();
    }
    let dims: Vec<String> = s.others.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", s.name, dims.join(","))
}

fn point(p: &Point) -> Value {
    json!({
        "start-sec": p.start_sec,
        "end-sec": p.end_sec,
        "interval-size-sec": p.end_sec - p.start_sec,
        "num-samples": p.samples,
        "avg": round2(p.avg),
        "min": p.min,
        "max": p.max,
    })
}

fn summary(r: Resolution, points: &[Point], now_sec: u64) -> Value {
    json!({
        "start": r.window_start(now_sec),
        "end": now_sec,
        "averages": points.iter().map(point).collect::<Vec<_>>(),
        "timeslice-size-sec": r.size,
        "average-count": points.len(),
    })
}

/// The body: `summary:by-minute:<label>` and `summary:by-hour:<label>` per series, those
/// whose whole key holds `filter` (case-insensitive), none without a point.
pub fn body(series: &[HostSeries], filter: Option<&str>, now_sec: u64) -> Value {
    let filter = filter.map(str::to_lowercase);
    let mut per_name: hashbrown::HashMap<&str, usize> = hashbrown::HashMap::new();
    for s in series {
        *per_name.entry(s.name.as_str()).or_default() += 1;
    }
    let mut out = Map::new();
    for s in series {
        let several = per_name.get(s.name.as_str()).copied().unwrap_or(0) > 1;
        let label = label(s, several);
        for (kind, r, points) in [
            ("by-minute", BY_MINUTE, &s.minutes),
            ("by-hour", BY_HOUR, &s.hours),
        ] {
            let key = format!("summary:{kind}:{label}");
            if points.is_empty()
                || filter
                    .as_ref()
                    .is_some_and(|f| !key.to_lowercase().contains(f.as_str()))
            {
                continue;
            }
            out.insert(key, summary(r, points, now_sec));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_python() {
        // Python 3: round(4.98333, 2) = 4.98, round(2.675, 2) = 2.67, round(0.125, 2) =
        // 0.12, round(0.375, 2) = 0.38, round(35.0, 2) = 35.0, round(-1.005, 2) = -1.0
        for (x, want) in [
            (4.983_333, 4.98),
            (2.675, 2.67),
            (0.125, 0.12),
            (0.375, 0.38),
            (35.0, 35.0),
            (-1.005, -1.0),
            (1e300, 1e300),
        ] {
            assert_eq!(round2(x), want, "{x}");
        }
        assert_eq!(serde_json::to_string(&round2(35.0)).unwrap(), "35.0");
    }

    fn p(start: u64, samples: u64, avg: f64) -> Point {
        Point {
            start_sec: start,
            end_sec: start + 60,
            samples,
            avg,
            min: avg - 1.0,
            max: avg + 1.0,
        }
    }

    fn s(name: &str, others: &[(&str, &str)], minutes: Vec<Point>) -> HostSeries {
        HostSeries {
            name: name.into(),
            others: others
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            hours: minutes
                .iter()
                .map(|p| Point {
                    start_sec: p.start_sec / 3600 * 3600,
                    end_sec: p.start_sec / 3600 * 3600 + 3600,
                    ..*p
                })
                .collect(),
            minutes,
        }
    }

    #[test]
    fn liz_readme_example_shape() {
        let now = 1_465_001_814;
        let body = body(
            &[s("cpu", &[], vec![p(1_465_001_760, 5, 4.983_333)])],
            Some("by-minute:cpu"),
            now,
        );
        assert_eq!(
            body,
            json!({"summary:by-minute:cpu": {
                "averages": [{"start-sec": 1_465_001_760, "avg": 4.98, "interval-size-sec": 60,
                    "end-sec": 1_465_001_820, "num-samples": 5, "min": 3.983_333, "max": 5.983_333}],
                "start": 1_464_998_160, "end": now, "timeslice-size-sec": 60, "average-count": 1}})
        );
    }

    #[test]
    fn labels_name_the_other_dimensions_only_when_a_name_repeats() {
        let series = [
            s("cpu", &[], vec![p(60, 1, 1.0)]),
            s(
                "disk.used",
                &[("device", "sda"), ("mount", "/")],
                vec![p(60, 1, 2.0)],
            ),
            s(
                "disk.used",
                &[("device", "sdb"), ("mount", "/d")],
                vec![p(60, 1, 3.0)],
            ),
            s("mem", &[("x", "y")], vec![p(60, 1, 3.0)]),
        ];
        let body = body(&series, None, 200);
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "summary:by-hour:cpu",
                "summary:by-hour:disk.used{device=sda,mount=/}",
                "summary:by-hour:disk.used{device=sdb,mount=/d}",
                "summary:by-hour:mem",
                "summary:by-minute:cpu",
                "summary:by-minute:disk.used{device=sda,mount=/}",
                "summary:by-minute:disk.used{device=sdb,mount=/d}",
                "summary:by-minute:mem",
            ]
        );
        assert_eq!(
            body["summary:by-hour:cpu"]["timeslice-size-sec"], 3600,
            "by-hour summary"
        );
    }

    #[test]
    fn the_filter_is_a_case_insensitive_substring_of_the_key() {
        let series = [
            s("cpu", &[], vec![p(60, 1, 1.0)]),
            s("mem", &[], vec![p(60, 1, 1.0)]),
            s("empty", &[], vec![]),
        ];
        let keys = |f: Option<&str>| -> Vec<String> {
            body(&series, f, 200)
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            keys(Some("CPU")),
            ["summary:by-hour:cpu", "summary:by-minute:cpu"]
        );
        assert_eq!(keys(Some("By-Minute:cpu")), ["summary:by-minute:cpu"]);
        assert_eq!(keys(Some("summary:")).len(), 4, "no summary without points");
        assert!(keys(Some("disk")).is_empty());
        assert!(
            keys(Some("empty")).is_empty(),
            "a series with no point is omitted"
        );
    }
}
