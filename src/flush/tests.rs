use super::*;
use crate::aggregate::{Aggregator, Settings};
use crate::config::TimerAggregate;
use crate::metric::Metric;
use crate::parse::{Limits, parse_line};
use crate::sink::MemorySink;

struct Rig {
    flusher: Flusher,
    shards: Vec<Arc<Mutex<Shard>>>,
    agg: Aggregator,
    out: Arc<Mutex<Vec<Vec<Metric>>>>,
}

fn rig(counters_as_rate: bool, idle_expiry_s: u64) -> Rig {
    rig_with(
        counters_as_rate,
        idle_expiry_s,
        vec![("hostname".to_owned(), "gw".to_owned())],
    )
}

fn rig_with(counters_as_rate: bool, idle_expiry_s: u64, defaults: Vec<(String, String)>) -> Rig {
    rig_readers(2, counters_as_rate, idle_expiry_s, defaults)
}

fn rig_readers(
    readers: usize,
    counters_as_rate: bool,
    idle_expiry_s: u64,
    defaults: Vec<(String, String)>,
) -> Rig {
    let shards: Vec<_> = (0..readers)
        .map(|_| Arc::new(Mutex::new(Shard::default())))
        .collect();
    let sink = MemorySink::default();
    let out = Arc::clone(&sink.flushes);
    let settings = FlushSettings {
        interval: Duration::from_secs(10),
        idle_expiry: Duration::from_secs(idle_expiry_s),
        counters_as_rate,
        timer_outputs: TimerOutput::list(
            &[
                TimerAggregate::Count,
                TimerAggregate::Sum,
                TimerAggregate::Min,
                TimerAggregate::Max,
                TimerAggregate::Avg,
                TimerAggregate::Median,
            ],
            &[0.95],
        ),
        default_dimensions: defaults.clone().into(),
        max_persisted: 1_000_000,
        part_metrics: 5000,
    };
    let mut flusher = Flusher::new(
        shards.clone(),
        settings,
        Arc::new(Telemetry::new(2)),
        Box::new(sink),
    );
    flusher.interval_start_ms = 1_000_000;
    let agg = Aggregator::new(Settings {
        default_dimensions: defaults,
        ..Settings::default()
    });
    Rig {
        flusher,
        shards,
        agg,
        out,
    }
}

impl Rig {
    fn send(&mut self, shard: usize, lines: &[&str], now_ms: u64) {
        let mut guard = self.shards[shard].lock().unwrap();
        for l in lines {
            let line = parse_line(l.as_bytes(), &Limits::default()).unwrap();
            self.agg.add(&mut guard, &line, now_ms).unwrap();
        }
    }

    fn flush(&mut self, at: u64) -> Vec<Metric> {
        self.flusher.flush(at);
        self.out.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

fn value(metrics: &[Metric], name: &str) -> Option<f64> {
    metrics.iter().find(|m| m.name == name).map(|m| m.value)
}

#[test]
fn counters_sum_across_shards_with_default_dimensions() {
    let mut r = rig(false, 300);
    r.send(0, &["hits:1|c", "hits:1|c|@0.5"], 0);
    r.send(1, &["hits:3|c", "hits:1|c|#hostname:web"], 0);
    let m = r.flush(1_010_000);
    let gw: Vec<_> = m
        .iter()
        .filter(|m| m.dimensions["hostname"] == "gw")
        .collect();
    assert_eq!(gw.len(), 1);
    assert_eq!((gw[0].value, gw[0].timestamp), (6.0, 1_010_000));
    let web = m
        .iter()
        .find(|m| m.dimensions["hostname"] == "web")
        .unwrap();
    assert_eq!(web.value, 1.0);
    assert!(
        r.flush(1_020_000).is_empty(),
        "counters are not re-sent once emitted"
    );
}

#[test]
fn counters_as_per_second_rate() {
    let mut r = rig(true, 300);
    r.send(0, &["hits:50|c"], 0);
    assert_eq!(value(&r.flush(1_010_000), "hits"), Some(5.0));
}

#[test]
fn gauges_persist_apply_deltas_and_expire() {
    let mut r = rig(false, 25);
    r.send(0, &["q:10|g"], 0);
    assert_eq!(value(&r.flush(1_010_000), "q"), Some(10.0));
    r.send(1, &["q:+5|g", "q:-1|g"], 0);
    assert_eq!(value(&r.flush(1_020_000), "q"), Some(14.0));
    assert_eq!(
        value(&r.flush(1_030_000), "q"),
        Some(14.0),
        "unchanged gauges are re-sent"
    );
    assert_eq!(value(&r.flush(1_040_000), "q"), Some(14.0));
    assert_eq!(
        value(&r.flush(1_050_000), "q"),
        None,
        "idle past expiry: freed"
    );
    assert_eq!(r.flusher.telemetry.flush.series_expired.get(), 1);
}

#[test]
fn timers_emit_every_configured_aggregate() {
    let mut r = rig(false, 300);
    let lines: Vec<String> = (1..=100).map(|v| format!("lat:{v}|ms")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    r.send(0, &refs[..50], 0);
    r.send(1, &refs[50..], 0);
    let m = r.flush(1_010_000);
    assert_eq!(value(&m, "lat.count"), Some(100.0));
    assert_eq!(value(&m, "lat.sum"), Some(5050.0));
    assert_eq!(value(&m, "lat.min"), Some(1.0));
    assert_eq!(value(&m, "lat.max"), Some(100.0));
    assert_eq!(value(&m, "lat.avg"), Some(50.5));
    let p95 = value(&m, "lat.95percentile").unwrap();
    assert!((p95 - 95.0).abs() <= 0.95 + 1e-9, "p95 {p95} within 1%");
    let median = value(&m, "lat.median").unwrap();
    assert!(
        (median - 50.0).abs() <= 0.5 + 1e-9,
        "median {median} within 1%"
    );
}

#[test]
fn sets_count_distinct_members() {
    let mut r = rig(false, 300);
    r.send(0, &["u:a|s", "u:b|s"], 0);
    r.send(1, &["u:b|s", "u:c|s"], 0);
    assert_eq!(value(&r.flush(1_010_000), "u"), Some(3.0));
}

#[test]
fn rates_span_the_previous_sample() {
    let mut r = rig(false, 300);
    r.send(0, &["rx:100|r"], 1_001_000);
    assert_eq!(
        value(&r.flush(1_010_000), "rx"),
        None,
        "one sample ever: no rate yet"
    );
    r.send(0, &["rx:300|r"], 1_011_000);
    assert_eq!(value(&r.flush(1_020_000), "rx"), Some(20.0));
    r.send(1, &["rx:400|r", "rx:600|r"], 1_021_000);
    // Both samples share a time; the span starts at the previous interval's sample.
    assert_eq!(value(&r.flush(1_030_000), "rx"), Some(30.0));
}

/// Guards: rate bases were kept for every `r` series ever seen until idle expiry, with no
/// bound (8 intervals of 1,000 fresh names under `max_series: 1000` kept 8,000).
#[test]
fn rate_bases_are_bounded_and_refusals_counted() {
    let mut r = rig(false, 3600);
    r.flusher.settings.max_persisted = 3;
    for round in 0..4u64 {
        let lines: Vec<String> = (0..3).map(|i| format!("rx.{round}.{i}:{i}|r")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        r.send(0, &refs, 1_001_000 + round * 10_000);
        r.flush(1_010_000 + round * 10_000);
    }
    assert_eq!(r.flusher.rate_bases.len(), 3, "at most max_series bases");
    let dropped = &r.flusher.telemetry.flush.dropped;
    assert_eq!(dropped[EmitDrop::RateBaseLimit as usize].get(), 9);
    assert_eq!(dropped[EmitDrop::SeriesLimit as usize].get(), 0);
    // A kept base still serves its series: one sample gives a rate.
    r.send(1, &["rx.0.2:12|r"], 1_041_000);
    assert_eq!(value(&r.flush(1_050_000), "rx.0.2"), Some(0.25));
}

#[test]
fn percent_changes_follow_the_sdks_diff_metric_across_intervals_and_shards() {
    let mut r = rig(false, 25);
    r.send(0, &["depth:50|pc"], 1_001_000);
    assert_eq!(
        value(&r.flush(1_010_000), "depth"),
        Some(0.0),
        "a first value ever gives 0"
    );
    // One value: against the previous interval's last.
    r.send(1, &["depth:75|pc"], 1_011_000);
    assert_eq!(value(&r.flush(1_020_000), "depth"), Some(50.0));
    assert_eq!(
        value(&r.flush(1_030_000), "depth"),
        None,
        "no value this interval: nothing emitted"
    );
    // Several values over two readers: the last two by receive time.
    r.send(0, &["depth:10|pc", "depth:40|pc"], 1_031_000);
    r.send(1, &["depth:100|pc"], 1_032_000);
    r.send(1, &["depth:20|pc"], 1_030_500);
    assert_eq!(value(&r.flush(1_040_000), "depth"), Some(150.0));
    r.send(0, &["depth:0|pc"], 1_041_000);
    assert_eq!(value(&r.flush(1_050_000), "depth"), Some(-100.0));
    r.send(0, &["depth:5|pc"], 1_051_000);
    assert_eq!(
        value(&r.flush(1_060_000), "depth"),
        Some(0.0),
        "prev 0 gives 0"
    );
    // Idle past expiry: the base is freed, so the next value is a first one again.
    for at in [1_070_000, 1_080_000, 1_090_000] {
        r.flush(at);
    }
    assert!(r.flusher.percent_bases.is_empty());
    r.send(0, &["depth:9|pc"], 1_091_000);
    assert_eq!(value(&r.flush(1_100_000), "depth"), Some(0.0));
}

#[test]
fn percent_change_bases_are_bounded_and_checkpointed() {
    let mut r = rig(false, 3600);
    r.flusher.settings.max_persisted = 2;
    r.send(0, &["a:1|pc", "b:1|pc", "c:1|pc"], 1_001_000);
    r.flush(1_010_000);
    assert_eq!(r.flusher.percent_bases.len(), 2);
    let dropped = &r.flusher.telemetry.flush.dropped;
    assert_eq!(dropped[EmitDrop::RateBaseLimit as usize].get(), 1);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gauges.json");
    let mut first = rig(false, 3600).flusher.with_checkpoint(path.clone());
    first.percent_bases.insert(
        b"q".to_vec(),
        PercentBase {
            value: 8.0,
            updated_ms: 1_000_000,
        },
    );
    first.save_checkpoint();
    let mut again = rig(false, 3600);
    again.flusher = again.flusher.with_checkpoint(path);
    again.send(0, &["q:10|pc"], 1_001_000);
    assert_eq!(
        value(&again.flush(1_010_000), "q"),
        Some(25.0),
        "a restart keeps the previous value"
    );
}

/// Guards: samples above the histogram's range were ranked at the range's end uncounted.
#[test]
fn clamped_timer_samples_are_counted_once() {
    let mut r = rig(false, 300);
    r.agg = Aggregator::new(Settings {
        histogram: crate::aggregate::HistogramSpec::new(2, 100.0),
        ..Settings::default()
    });
    let mut lines: Vec<String> = (1..=60).map(|v| format!("lat:{v}|ms")).collect();
    lines.extend((0..10).map(|_| "lat:1e12|ms".to_owned()));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    r.send(0, &refs[..35], 0);
    r.send(1, &refs[35..], 0);
    let m = r.flush(1_010_000);
    assert_eq!(value(&m, "lat.max"), Some(1e12), "exact");
    assert_eq!(value(&m, "lat.sum"), Some(1830.0 + 1e13), "exact");
    assert_eq!(r.flusher.telemetry.flush.timer_samples_clamped.get(), 10);
    r.send(0, &["lat:5|ms"], 0);
    r.flush(1_020_000);
    assert_eq!(r.flusher.telemetry.flush.timer_samples_clamped.get(), 10);
}

#[test]
fn line_timestamps_become_metric_timestamps() {
    let mut r = rig(false, 300);
    r.send(0, &["g:5|g|T1700000000", "c:1|c|T1700000000"], 0);
    let m = r.flush(1_010_000);
    assert!(m.iter().all(|m| m.timestamp == 1_700_000_000_000), "{m:?}");
    assert!(
        value(&r.flush(1_020_000), "g").is_none(),
        "a |T gauge is a point, not persisted"
    );
}

#[test]
fn timestamped_rate_samples_form_one_rate() {
    let mut r = rig(false, 300);
    r.send(0, &["b:100|r|T1700000000"], 0);
    r.send(1, &["b:400|r|T1700000003"], 0);
    let m = r.flush(1_010_000);
    assert_eq!(value(&m, "b"), Some(100.0));
    assert_eq!(
        m[0].timestamp, 1_010_000,
        "a rate is stamped with its interval"
    );
}

#[test]
fn unsorted_defaults_merge_without_duplicate_keys() {
    // hostname before env: not sorted, as a config can list them.
    let defaults = vec![
        ("hostname".to_owned(), "gw".to_owned()),
        ("env".to_owned(), "prod".to_owned()),
    ];
    let mut r = rig_with(false, 300, defaults);
    r.send(0, &["a:1|c|#env:staging,app:web", "b:1|c"], 0);
    r.flusher.flush(1_010_000);
    // MemorySink parses the JSON; a duplicate key would silently keep the last value, so
    // check the rendered order through the typed metrics and the values.
    let m = r.out.lock().unwrap().last().cloned().unwrap();
    let a = m.iter().find(|x| x.name == "a").unwrap();
    assert_eq!(
        a.dimensions.get("env").map(String::as_str),
        Some("staging"),
        "the line's value wins"
    );
    assert_eq!(a.dimensions.len(), 3);
    let b = m.iter().find(|x| x.name == "b").unwrap();
    assert_eq!(b.dimensions.get("env").map(String::as_str), Some("prod"));
    assert_eq!(b.dimensions.get("hostname").map(String::as_str), Some("gw"));
}

/// Name → value of one flush, sorted.
fn values(metrics: &[Metric]) -> Vec<(String, f64)> {
    let mut v: Vec<_> = metrics.iter().map(|m| (m.name.clone(), m.value)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn recycled_shards_emit_only_what_each_interval_touched() {
    for readers in [1, 2] {
        let mut r = rig_readers(readers, false, 300, Vec::new());
        let last = readers - 1;
        let at = |n: u64| 1_000_000 + n * 10_000;
        r.send(0, &["a:1|c", "t:5|ms", "u:x|s", "g:3|g"], 0);
        r.send(last, &["b:2|c"], 0);
        let first = values(&r.flush(at(1)));
        assert!(first.contains(&("a".into(), 1.0)) && first.contains(&("b".into(), 2.0)));
        // Nothing sent: only the persisted gauge, at every flush while shards are recycled.
        for n in 2..5 {
            assert_eq!(
                values(&r.flush(at(n))),
                [("g".into(), 3.0)],
                "{readers} readers"
            );
        }
        r.send(last, &["a:4|c", "t:1|ms", "t:3|ms"], 0);
        r.send(0, &["a:1|c", "b:0|c"], 0);
        let m = values(&r.flush(at(5)));
        for want in [
            ("a", 5.0),
            ("b", 0.0),
            ("t.count", 2.0),
            ("t.max", 3.0),
            ("g", 3.0),
        ] {
            assert!(m.contains(&(want.0.into(), want.1)), "{want:?} in {m:?}");
        }
        assert!(
            !m.iter().any(|(n, _)| n == "u"),
            "an untouched set is not emitted"
        );
        r.send(0, &["u:y|s", "u:z|s"], 0);
        assert!(values(&r.flush(at(6))).contains(&("u".into(), 2.0)));
    }
}

/// The history gets the `statsgate.*` figures even when they are not sent: the sink's
/// output is unchanged, the history's latest values hold them.
#[test]
fn self_metrics_feed_the_history_without_reaching_the_sink() {
    for to_sink in [false, true] {
        let r = rig(false, 300);
        let history = Arc::new(crate::history::History::default());
        let _ = r.flusher.telemetry.history.set(Arc::clone(&history));
        let flusher = r.flusher.with_history_self_metrics();
        let mut r = Rig {
            flusher: if to_sink {
                flusher.with_self_metrics().with_history_self_metrics()
            } else {
                flusher
            },
            ..r
        };
        r.send(0, &["hits:1|c"], 0);
        let now = now_ms();
        let sent = r.flush(now);
        let own = sent
            .iter()
            .filter(|m| m.name.starts_with("statsgate."))
            .count();
        assert_eq!(
            (sent.len() - own, own > 0),
            (1, to_sink),
            "to_sink={to_sink}"
        );
        let seen = history.latest("statsgate.", &[], 100);
        assert_eq!(
            seen.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            [
                "statsgate.datagrams",
                "statsgate.flush_ms",
                "statsgate.heartbeats",
                "statsgate.kernel_drops",
                "statsgate.lines_accepted",
                "statsgate.lines_rejected",
                "statsgate.metrics_dropped",
                "statsgate.metrics_sent",
                "statsgate.queue_bytes",
                "statsgate.series",
                "statsgate.token_renewals",
            ]
        );
        assert_eq!(seen[0].dimensions["hostname"], "gw");
        assert!(
            !history.minutes("statsgate.series", &[]).is_empty(),
            "selected by default"
        );
    }
}

#[test]
fn a_part_is_a_whole_number_of_posts() {
    use super::part_metrics;
    assert_eq!(part_metrics(5000), 5000);
    assert_eq!(part_metrics(3000), 6000);
    assert_eq!(part_metrics(10_000), 10_000);
    assert_eq!(part_metrics(7), 5005);
    assert_eq!(part_metrics(0), 5000);
}
