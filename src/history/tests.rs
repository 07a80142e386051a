use super::*;
use crate::metric::Metric;

/// 2023-11-14T22:13:20Z, a minute boundary.
const T0: u64 = 1_700_000_000 - 20;

fn config(max_series: usize, max_latest: usize) -> HistoryConfig {
    HistoryConfig {
        max_series,
        max_latest,
        ..HistoryConfig::default()
    }
}

/// One metric: (name, dims, timestamp in seconds, value).
type Sample<'a> = (&'a str, &'a [(&'a str, &'a str)], u64, f64);

/// One flush.
fn flush(metrics: &[Sample<'_>]) -> Rendered {
    let mut r = Rendered::default();
    for (name, dims, sec, value) in metrics {
        let mut dims = dims.to_vec();
        dims.sort();
        r.push(name, "", dims.into_iter(), sec * 1000, *value);
    }
    r
}

const H: &[(&str, &str)] = &[("hostname", "web-1")];

#[test]
fn observe_then_liz_like_the_readme_example() {
    let h = History::new(&config(100, 100));
    let now = 1_465_001_814;
    // Five cpu samples in the current minute, one at its start boundary (the minute before).
    for (i, v) in [5.0, 4.0, 6.0, 5.1, 4.8].iter().enumerate() {
        h.observe_at(&flush(&[("cpu", H, now - 50 + i as u64, *v)]), now * 1000);
    }
    h.observe_at(&flush(&[("cpu", H, 1_465_001_760, 9.0)]), now * 1000);
    let body = h.liz("web-1", Some("by-minute:cpu"), now);
    let summary = &body["summary:by-minute:cpu"];
    assert_eq!(summary["start"], 1_464_998_160);
    assert_eq!(summary["end"], now);
    assert_eq!(summary["average-count"], 2);
    let last = &summary["averages"][1];
    assert_eq!(last["start-sec"], 1_465_001_760);
    assert_eq!(last["end-sec"], 1_465_001_820);
    assert_eq!(last["num-samples"], 5);
    assert_eq!(last["avg"], 4.98);
    assert_eq!(
        (last["min"].as_f64(), last["max"].as_f64()),
        (Some(4.0), Some(6.0))
    );
    assert_eq!(summary["averages"][0]["end-sec"], 1_465_001_760);
    assert_eq!(body.as_object().unwrap().len(), 1, "by-hour filtered out");
    assert_eq!(h.liz("web-1", None, now).as_object().unwrap().len(), 2);
    assert_eq!(
        h.liz("web-2", None, now),
        serde_json::json!({}),
        "unknown host"
    );
    assert_eq!(
        h.liz("WEB-1", None, now),
        serde_json::json!({}),
        "host is exact"
    );
}

#[test]
fn only_selected_names_get_summaries_but_every_series_a_latest_value() {
    let h = History::new(&HistoryConfig {
        exclude: vec!["cpu.idle*".into()],
        ..config(100, 100)
    });
    h.observe_at(
        &flush(&[
            ("cpu.user_perc", H, T0, 1.0),
            ("cpu.idle_perc", H, T0, 2.0),
            ("app.requests", H, T0, 3.0),
        ]),
        T0 * 1000,
    );
    let body = h.liz("web-1", None, T0);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "summary:by-hour:cpu.user_perc",
            "summary:by-minute:cpu.user_perc"
        ]
    );
    let names: Vec<String> = h.latest("", &[], 10).into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["app.requests", "cpu.idle_perc", "cpu.user_perc"]);
    assert_eq!(h.stats().series, 1);
    assert_eq!(h.stats().latest_series, 3);
}

#[test]
fn each_metric_keeps_its_own_timestamp() {
    let h = History::new(&config(100, 100));
    // A pass-through metric 5 minutes old arrives in this flush.
    let m = Metric {
        name: "cpu".into(),
        dimensions: [("hostname".to_owned(), "web-1".to_owned())].into(),
        timestamp: (T0 - 300) * 1000 + 500,
        value: 7.0,
        value_meta: Some([("k".to_owned(), "v".to_owned())].into()),
    };
    let mut r = flush(&[("cpu", H, T0, 1.0)]);
    r.push_raw(&serde_json::to_vec(&m).unwrap());
    h.observe_at(&r, T0 * 1000);
    let p = h.minutes_at("cpu", &[], T0);
    let spans: Vec<_> = p.iter().map(|p| (p.start_sec, p.avg)).collect();
    assert_eq!(spans, [(T0 - 360, 7.0), (T0 - 60, 1.0)]);
    let l = h.latest("cpu", &[], 10);
    assert_eq!(
        (l[0].timestamp_ms, l[0].value),
        (T0 * 1000, 1.0),
        "the newest wins"
    );
}

#[test]
fn minutes_match_any_hostname_and_exact_other_dimensions() {
    let h = History::new(&config(100, 100));
    let d1: &[(&str, &str)] = &[("hostname", "a"), ("device", "sda")];
    let d2: &[(&str, &str)] = &[("hostname", "b"), ("device", "sda")];
    let d3: &[(&str, &str)] = &[("hostname", "a"), ("device", "sdb")];
    h.observe_at(
        &flush(&[
            ("disk.used", d1, T0 - 30, 1.0),
            ("disk.used", d2, T0 - 30, 3.0),
            ("disk.used", d3, T0 - 30, 100.0),
            ("disk.used", d1, T0 - 90, 5.0),
        ]),
        T0 * 1000,
    );
    let p = h.minutes_at("disk.used", &[("device", "sda")], T0);
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].avg, p[0].samples), (5.0, 1));
    assert_eq!(
        (p[1].avg, p[1].samples, p[1].min, p[1].max),
        (2.0, 2, 1.0, 3.0)
    );
    assert!(
        h.minutes_at("disk.used", &[], T0).is_empty(),
        "dims must be equal"
    );
    assert!(h.minutes_at("disk", &[("device", "sda")], T0).is_empty());
    // Several series of one name on a host: labels name the other dimensions.
    let body = h.liz("a", Some("by-minute"), T0);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "summary:by-minute:disk.used{device=sda}",
            "summary:by-minute:disk.used{device=sdb}"
        ]
    );
    let body = h.liz("b", Some("by-minute"), T0);
    assert!(
        body.get("summary:by-minute:disk.used").is_some(),
        "one on b"
    );
}

#[test]
fn latest_filters_by_prefix_and_dimensions_and_limits() {
    let h = History::new(&config(100, 100));
    h.observe_at(
        &flush(&[
            ("b.x", &[("hostname", "a"), ("k", "1")], T0, 1.0),
            ("a.x", &[("hostname", "a"), ("k", "2")], T0, 2.0),
            ("a.y", &[("hostname", "b"), ("k", "1")], T0, 3.0),
            ("a.z", &[("hostname", "a"), ("k", "1")], T0, 4.0),
        ]),
        T0 * 1000,
    );
    let names = |prefix: &str, dims: &[(&str, &str)], limit| -> Vec<String> {
        let dims: Vec<(String, String)> = dims
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        h.latest(prefix, &dims, limit)
            .into_iter()
            .map(|l| l.name)
            .collect()
    };
    assert_eq!(names("a.", &[], 10), ["a.x", "a.y", "a.z"]);
    assert_eq!(names("a.", &[("k", "1")], 10), ["a.y", "a.z"]);
    assert_eq!(
        names("", &[("k", "1"), ("hostname", "a")], 10),
        ["a.z", "b.x"]
    );
    assert_eq!(names("", &[], 2), ["a.x", "a.y"]);
    assert!(names("c", &[], 10).is_empty());
    let l = &h.latest("b.", &[], 1)[0];
    assert_eq!(l.dimensions["k"], "1");
    assert_eq!((l.timestamp_ms, l.value), (T0 * 1000, 1.0));
}

#[test]
fn max_series_and_max_latest_refuse_and_count() {
    let h = History::new(&config(2, 3));
    let f = flush(&[
        ("cpu", &[("hostname", "a")], T0, 1.0),
        ("cpu", &[("hostname", "b")], T0, 1.0),
        ("cpu", &[("hostname", "c")], T0, 1.0),
        ("other", &[], T0, 1.0),
        ("other2", &[], T0, 1.0),
    ]);
    h.observe_at(&f, T0 * 1000);
    assert_eq!(
        h.stats(),
        HistoryStats {
            series: 2,
            refused: 1,
            latest_series: 3,
            latest_refused: 2,
        }
    );
    assert_eq!(h.liz("c", None, T0), serde_json::json!({}));
    // Existing series keep updating; the refused one is refused again.
    h.observe_at(&f, T0 * 1000 + 1000);
    assert_eq!(h.stats().refused, 2);
    assert_eq!(
        h.minutes_at("cpu", &[], T0 + 1).first().map(|p| p.samples),
        Some(4)
    );
}

#[test]
fn idle_series_are_freed_by_the_sweep() {
    let h = History::new(&config(10, 10));
    h.observe_at(&flush(&[("cpu", H, T0, 1.0), ("x", H, T0, 1.0)]), T0 * 1000);
    // An hour and a minute later: the latest value of both is gone, the summaries stay.
    let later = T0 + 3661;
    h.observe_at(&flush(&[("mem", H, later, 1.0)]), later * 1000);
    let stats = h.stats();
    assert_eq!((stats.series, stats.latest_series), (2, 1));
    assert!(
        h.minutes_at("cpu", &[], later).is_empty(),
        "left the minute window"
    );
    assert_eq!(
        h.liz("web-1", Some("by-hour:cpu"), later)
            .as_object()
            .unwrap()
            .len(),
        1
    );
    // A day and an hour later, cpu has left every window.
    let day = T0 + 86_400 + 3600;
    h.observe_at(&flush(&[("mem", H, day, 1.0)]), day * 1000);
    assert_eq!(h.stats().series, 1);
    assert_eq!(h.liz("web-1", Some("cpu"), day), serde_json::json!({}));
}

/// The flush-path cost of `observe`: a 100,000-series flush, none selected (the name match
/// and latest-value lookup each) and with a tenth selected. Prints the figures
/// (`cargo test --release --lib history::tests::observe_cost -- --nocapture`); the bound
/// asserted is loose, for a debug build on a shared machine.
#[test]
fn observe_cost_of_a_100k_series_flush() {
    let h = History::new(&config(20_000, 200_000));
    let mut r = Rendered::default();
    for i in 0..100_000 {
        let id = i.to_string();
        let name = if i % 10 == 0 {
            "cpu.user_perc"
        } else {
            "app.request.count"
        };
        r.push(
            name,
            "",
            [("hostname", "web-1"), ("id", id.as_str())].into_iter(),
            T0 * 1000,
            1.0,
        );
    }
    let mut times = Vec::new();
    for round in 0..4u64 {
        let started = std::time::Instant::now();
        h.observe_at(&r, (T0 + round) * 1000);
        times.push(started.elapsed());
    }
    println!(
        "observe, 100000 series ({} bytes), 10% selected: first flush {:?} (all new), then {:?}, {:?}, {:?}",
        r.bytes(),
        times[0],
        times[1],
        times[2],
        times[3]
    );
    assert_eq!(h.stats().series, 10_000);
    assert_eq!(h.stats().latest_series, 100_000);
    assert!(times[3] < std::time::Duration::from_secs(2), "{times:?}");
}

#[test]
fn checkpoint_round_trip_restores_what_is_still_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(checkpoint::FILE_NAME);
    let h = History::new(&config(100, 100));
    h.observe_at(
        &flush(&[
            ("cpu", H, T0 - 30, 1.0),
            ("cpu", H, T0 - 20, 3.0),
            ("mem", H, T0 - 3000, 5.0),
            (
                "disk.used",
                &[("hostname", "web-1"), ("device", "sda")],
                T0 - 30,
                7.0,
            ),
        ]),
        T0 * 1000,
    );
    assert_eq!(h.restore_at(path.clone(), T0 * 1000), 0, "no file yet");
    h.checkpoint_due(T0 * 1000 + 59_000);
    assert!(!path.exists(), "not a minute yet");
    h.checkpoint_due(T0 * 1000 + 60_000);
    assert!(path.exists());
    // Restored 40 minutes later: mem's minute has left the by-minute window.
    let later = T0 + 2400;
    let back = History::new(&config(100, 100));
    assert_eq!(back.restore_at(path.clone(), later * 1000), 3);
    assert_eq!(back.liz("web-1", None, later), h.liz("web-1", None, later));
    let p = back.minutes_at("cpu", &[], later);
    assert_eq!(
        (p[0].samples, p[0].avg, p[0].min, p[0].max),
        (2, 2.0, 1.0, 3.0)
    );
    assert!(back.minutes_at("mem", &[], later).is_empty());
    assert_eq!(
        back.liz("web-1", Some("by-hour:mem"), later)
            .as_object()
            .unwrap()
            .len(),
        1
    );
    // It keeps recording into the restored series, and saves at the path it loaded.
    back.observe_at(&flush(&[("cpu", H, later, 9.0)]), later * 1000);
    assert_eq!(back.stats().series, 3);
    std::fs::remove_file(&path).unwrap();
    back.checkpoint_now();
    assert!(path.exists(), "saved at shutdown");
    // A smaller store, or one that no longer selects mem, restores fewer.
    let narrow = History::new(&HistoryConfig {
        exclude: vec!["mem".into()],
        ..config(1, 100)
    });
    assert_eq!(narrow.restore_at(path.clone(), later * 1000), 1);
    // Two days later nothing is in any window.
    let gone = History::new(&config(100, 100));
    assert_eq!(gone.restore_at(path, (T0 + 2 * 86_400) * 1000), 0);
    assert_eq!(gone.stats().series, 0);
}

#[test]
fn a_corrupt_or_oversized_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(checkpoint::FILE_NAME);
    std::fs::write(
        &path,
        b"{\"version\":1,\"saved_ms\":1,\"series\":[{\"key\":",
    )
    .unwrap();
    let h = History::new(&config(100, 100));
    assert_eq!(h.restore_at(path.clone(), T0 * 1000), 0);
    // It still records and overwrites the bad file with a good one.
    h.observe_at(&flush(&[("cpu", H, T0, 1.0)]), T0 * 1000);
    h.checkpoint_now();
    assert_eq!(
        History::new(&config(100, 100)).restore_at(path.clone(), T0 * 1000),
        1
    );
    // Well-formed JSON whose keys are not series, and a file past the bound for max_series.
    std::fs::write(
        &path,
        br#"{"version":1,"saved_ms":1,"series":[{"key":"not a key","minutes":[],"hours":[]},{"key":"{\"name\":\"cpu\",\"dimensions\":{}","minutes":[[1,1,1.0,1.0,1.0]],"hours":[]}]}"#,
    )
    .unwrap();
    assert_eq!(
        History::new(&config(100, 100)).restore_at(path.clone(), T0 * 1000),
        0
    );
    let big = vec![b' '; checkpoint::max_bytes(1) as usize + 1];
    std::fs::write(&path, big).unwrap();
    assert_eq!(History::new(&config(1, 100)).restore_at(path, T0 * 1000), 0);
}

/// Resident memory of this process, from `/proc/self/statm` (Linux).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Memory per series with full windows: 10,000 series (`cpu.user_perc` with a hostname and
/// one more dimension, the shape of a probe metric) fed one sample a minute for 25 hours, so
/// each holds 61 minute and 25 hour buckets. Reports the store's heap (estimated from its
/// capacities) and the RSS delta. Run:
/// `cargo test --release --lib history_memory -- --ignored --nocapture`
#[test]
#[ignore = "slow; run on demand for the README's memory figure"]
fn history_memory_per_series() {
    const N: usize = 10_000;
    let before = rss_bytes();
    let h = History::new(&config(N, N));
    let ids: Vec<String> = (0..N).map(|i| format!("web-{i:05}")).collect();
    let start = T0 - 25 * 3600;
    let mut r = Rendered::with_capacity(N, N * 128);
    for minute in 0..=25 * 60 {
        r = Rendered::with_capacity(N, r.bytes());
        let sec = start + minute * 60 + 30;
        for id in &ids {
            r.push(
                "cpu.user_perc",
                "",
                [("device", "sda1"), ("hostname", id.as_str())].into_iter(),
                sec * 1000,
                (minute % 100) as f64,
            );
        }
        h.observe_at(&r, sec * 1000);
    }
    drop(r);
    let after = rss_bytes();
    let store = lock(&h.store).heap_bytes();
    let latest = lock(&h.latest).heap_bytes();
    let s = h.stats();
    assert_eq!((s.series, s.latest_series), (N as u64, N as u64));
    let full = lock(&h.store)
        .iter()
        .all(|(_, s)| s.minutes.len() >= 61 && s.hours.len() >= 25);
    assert!(full, "every series has full windows");
    println!(
        "history memory, {N} series with full windows: summaries {} B/series (heap estimate), latest values {} B/series; RSS grew {} B/series ({} MiB in all)",
        store / N,
        latest / N,
        after.saturating_sub(before) / N,
        after.saturating_sub(before) >> 20
    );
}
