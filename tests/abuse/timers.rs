//! Timer and rate state set by the sender: sample values that would stretch a histogram,
//! sample rates whose weight overflows a count, rate series that pile up across intervals,
//! and the median of an even number of exact samples.

use crate::common;
use std::time::Duration;

/// The adversarial timer line: 65 samples (one past the exact-sample list, so the series
/// switches to its histogram), every one far above any configured range.
pub(crate) fn huge_line(name: &str) -> String {
    let mut line = name.to_owned();
    for _ in 0..65 {
        line.push_str(":1e12");
    }
    line.push_str("|ms");
    line
}

/// Bytes of 32- or 64-bit counts an HDR histogram tracking 0..=`max_scaled` holds at
/// `precision` digits: (buckets + 1) × sub_buckets / 2 counts (the hdrhistogram crate's
/// layout, with the lowest discernible value 1).
pub(crate) fn hdr_counts(precision: u32, max_scaled: u64) -> u64 {
    let sub_buckets = (2 * 10u64.pow(precision)).next_power_of_two();
    let mut buckets = 1;
    let mut untrackable = sub_buckets;
    while untrackable <= max_scaled {
        untrackable <<= 1;
        buckets += 1;
    }
    (buckets + 1) * sub_buckets / 2
}

/// Guards: the HDR histogram grew to the largest sample (65 × `1e12` made a precision-4
/// series hold ~2.4 MiB), so memory was the sender's to choose. Now the histogram tracks
/// 0..=`aggregate.histogram_max_value` and nothing more; the samples above it are counted,
/// and their count, sum and max stay exact.
///
/// The README's formula for this state: RSS ≈ 8 MiB + series × (230 B + 1 KiB exact
/// samples + H), where H = 8 B × hdr_counts(precision, histogram_max_value × 1000) (64-bit
/// counts, the widest a histogram gets). Before any flush there is one copy of each series.
#[test]
fn timer_memory_is_bounded_by_the_configuration() {
    const SERIES: usize = 200;
    let gw = common::start(
        "flush:\n  interval: 1h\n  idle_expiry: 2h\naggregate:\n  max_series: 200\n  histogram_precision: 4\n  \
         histogram_max_value: 1\n",
    );
    let before = gw.rss_kib();
    let tx = gw.sender();
    for i in 0..SERIES {
        tx.send(huge_line(&format!("attack.t{i}")).as_bytes())
            .unwrap();
        if i % 50 == 49 {
            // Paced so the default socket buffer never overflows.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    gw.wait_for("every line counted", Duration::from_secs(20), |g| {
        g.lines_counted() >= SERIES as u64
    });
    let grown_kib = gw.rss_kib().saturating_sub(before);
    let h = 8 * hdr_counts(4, 1000);
    let formula_kib = 8 * 1024 + SERIES as u64 * (230 + 1024 + h) / 1024;
    eprintln!("RSS grew {grown_kib} KiB; formula {formula_kib} KiB");
    assert!(
        grown_kib <= formula_kib,
        "RSS grew {grown_kib} KiB for {SERIES} timer series; the formula allows {formula_kib} KiB"
    );
    assert_eq!(
        gw.counter("statsgate_lines_accepted_total", "type=\"timer\""),
        SERIES as u64
    );
    let clamped = gw.counter("statsgate_timer_samples_clamped_total", "");
    let (flushes, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    let metrics: Vec<_> = flushes.into_iter().flatten().collect();
    let t0 = [("hostname", "test-host")];
    // count, sum and max are exact though the histogram clamps the samples.
    assert_eq!(common::value(&metrics, "attack.t0.count", &t0), 65.0);
    assert_eq!(common::value(&metrics, "attack.t0.sum", &t0), 65e12);
    assert_eq!(common::value(&metrics, "attack.t0.max", &t0), 1e12);
    // A percentile is clamped to the exact min and max: here every sample is 1e12.
    assert_eq!(common::value(&metrics, "attack.t0.median", &t0), 1e12);
    // Counted at the flush (the final one here); the counter was read before it.
    assert_eq!(clamped, 0, "nothing is counted before a flush");
}

/// Guards: the clamped samples are counted once each, at the flush that renders them.
#[test]
fn clamped_samples_are_counted_at_flush() {
    let gw = common::start("flush:\n  interval: 200ms\naggregate:\n  histogram_max_value: 1000\n");
    let tx = gw.sender();
    // 65 huge samples; 70 tiny and zero ones, which are in range.
    tx.send(huge_line("c.huge").as_bytes()).unwrap();
    let mut tiny = "c.tiny".to_owned();
    for i in 0..70 {
        tiny.push_str(if i % 2 == 0 { ":1e-300" } else { ":0" });
    }
    tiny.push_str("|h");
    tx.send(tiny.as_bytes()).unwrap();
    gw.wait_for(
        "the clamped samples counted",
        Duration::from_secs(10),
        |g| g.counter("statsgate_timer_samples_clamped_total", "") >= 65,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gw.counter("statsgate_timer_samples_clamped_total", ""), 65);
    let (_, status) = gw.stop();
    assert!(status.success(), "{status:?}");
}

/// Guards: rate bases (the last sample of each `r` series, kept for the next interval) were
/// kept for every series ever seen until idle expiry: 8 intervals of 1,000 fresh series under
/// `max_series: 1000` kept 8,000. Now at most `max_series` are kept and the rest are counted
/// as `metrics_dropped_total{reason="rate_base_limit"}`.
#[test]
fn rate_bases_are_bounded_by_max_series() {
    const MAX: u64 = 100;
    const ROUNDS: u64 = 4;
    let gw = common::start(
        "flush:\n  interval: 300ms\n  idle_expiry: 1h\naggregate:\n  max_series: 100\n",
    );
    let flushes = |g: &common::Gateway| g.counter("statsgate_flushes_total", "");
    // Empty flushes print nothing: wait on the flush counter instead.
    let next_flush = |g: &common::Gateway| {
        let n = flushes(g);
        g.wait_for("a flush", Duration::from_secs(5), |g| flushes(g) > n);
    };
    let tx = gw.sender();
    // Aligned to a flush, so a round of fresh series most likely fits one interval.
    next_flush(&gw);
    for round in 0..ROUNDS {
        for i in 0..MAX {
            tx.send(format!("rx.r{round}_{i}:{i}|r").as_bytes())
                .unwrap();
        }
        next_flush(&gw);
    }
    gw.wait_for("every line counted", Duration::from_secs(10), |g| {
        g.lines_counted() >= ROUNDS * MAX
    });
    next_flush(&gw);
    // A round cut by a flush may meet the live-series limit; those series never got a base.
    let refused = gw.counter("statsgate_lines_rejected_total", "reason=\"series_limit\"");
    let accepted = gw.counter("statsgate_lines_accepted_total", "type=\"rate\"");
    assert_eq!(accepted + refused, ROUNDS * MAX);
    let dropped = gw.counter(
        "statsgate_metrics_dropped_total",
        "reason=\"rate_base_limit\"",
    );
    assert_eq!(
        dropped,
        accepted - MAX,
        "every base past max_series is refused"
    );
    let (_, status) = gw.stop();
    assert!(status.success(), "{status:?}");
}

/// Guards: `|@1e-300` weighs 1e300 per sample; once a series is in its histogram the count
/// overflowed (a panic in a debug build, a wrapped count in release). Rates below 1e-6 are
/// refused now (`sample_rate_too_small`); 1e-6 itself is accepted and weighs 1e6.
#[test]
fn tiny_sample_rates_are_refused_not_wrapped() {
    let gw = common::start("flush:\n  interval: 1h\n  idle_expiry: 2h\n");
    let tx = gw.sender();
    for _ in 0..100 {
        tx.send(b"tiny.t:5|ms|@1e-300").unwrap();
    }
    let mut packed = "tiny.p".to_owned();
    for _ in 0..65 {
        packed.push_str(":5");
    }
    packed.push_str("|ms|@1e-300");
    tx.send(packed.as_bytes()).unwrap();
    tx.send(b"tiny.c:1|c|@1e-300").unwrap();
    for _ in 0..70 {
        tx.send(b"floor.t:7|ms|@0.000001").unwrap();
    }
    gw.wait_for("every line counted", Duration::from_secs(10), |g| {
        g.lines_counted() >= 172
    });
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "sample_rate_too_small"),
        102
    );
    let (flushes, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    let metrics: Vec<_> = flushes.into_iter().flatten().collect();
    assert!(
        metrics
            .iter()
            .all(|m| !m["name"].as_str().unwrap_or("").starts_with("tiny.")),
        "no metric of a refused line is emitted"
    );
    let dims = [("hostname", "test-host")];
    assert_eq!(common::value(&metrics, "floor.t.count", &dims), 70e6);
    assert_eq!(common::value(&metrics, "floor.t.median", &dims), 7.0);
}

/// Guards: the median of 12 and 30 was 12 (the lower sample); statsd servers (Etsy's
/// `median`) report the mean of the two middle samples of an even count, 21.
#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    let gw = common::start("flush:\n  interval: 1h\n  idle_expiry: 2h\n");
    let tx = gw.sender();
    tx.send(b"lat:12|ms\nlat:30|ms\nodd:1|ms\nodd:5|ms\nodd:9|ms")
        .unwrap();
    gw.wait_for("every line counted", Duration::from_secs(10), |g| {
        g.lines_counted() >= 5
    });
    let (flushes, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    let metrics: Vec<_> = flushes.into_iter().flatten().collect();
    let dims = [("hostname", "test-host")];
    assert_eq!(common::value(&metrics, "lat.median", &dims), 21.0);
    assert_eq!(common::value(&metrics, "lat.95percentile", &dims), 30.0);
    assert_eq!(common::value(&metrics, "odd.median", &dims), 5.0);
}
