use super::*;

#[test]
fn counters_are_touched_by_any_line_and_merge_by_adding() {
    assert_eq!(std::mem::size_of::<Counter>(), 8);
    assert!(!Counter::default().touched());
    for v in [0.0, -0.0, 1.0, -1.0, 1e-300, f64::INFINITY, f64::NAN] {
        let mut c = Counter::default();
        c.add(v);
        assert!(c.touched(), "{v}");
        // Back to zero is still touched.
        c.add(-v);
        assert!(c.touched(), "{v}");
    }
    let mut zero = Counter::default();
    zero.add(-0.0);
    assert_eq!(zero.sum.to_bits(), 0.0f64.to_bits(), "a -0 counts as 0");
    let (mut a, mut b) = (Counter::default(), Counter::default());
    a.merge(&b);
    assert!(!a.touched(), "untouched into untouched");
    b.add(2.5);
    a.merge(&b);
    assert_eq!((a.touched(), a.sum), (true, 2.5));
    a.merge(&Counter::default());
    assert_eq!(a.sum, 2.5);
}

#[test]
fn gauge_updates_compose_in_order() {
    let mut g = GaugeUpdate::default();
    g.apply_delta(5.0);
    assert_eq!(g.resolve(Some(10.0)), 15.0);
    g.apply_set(3.0);
    g.apply_delta(-1.0);
    assert_eq!(g.resolve(Some(10.0)), 2.0);
    let mut a = GaugeUpdate::default();
    a.apply_set(1.0);
    let mut later = GaugeUpdate::default();
    later.apply_delta(2.0);
    a.merge(&later);
    assert_eq!(a.resolve(None), 3.0);
    a.merge(&GaugeUpdate::default());
    assert_eq!(a.resolve(None), 3.0, "an untouched update changes nothing");
    let mut set = GaugeUpdate::default();
    set.apply_set(7.0);
    a.merge(&set);
    assert_eq!(a.resolve(None), 7.0);
    // Merged into an untouched one, a delta marks it touched.
    let mut fresh = GaugeUpdate::default();
    fresh.merge(&later);
    assert!(fresh.touched() && fresh.set.is_none());
}

#[test]
fn timer_weights_and_percentiles() {
    let mut t = Timer::new(HistogramSpec::default());
    for v in 1..=100 {
        t.record(f64::from(v), 1.0);
    }
    assert_eq!((t.count, t.sum, t.min, t.max), (100.0, 5050.0, 1.0, 100.0));
    let p95 = t.quantile(0.95);
    assert!((p95 - 95.0).abs() <= 95.0 * 0.01, "p95 = {p95}");
    let p50 = t.quantile(0.5);
    assert!((p50 - 50.0).abs() <= 50.0 * 0.01, "p50 = {p50}");

    // One sample at rate 0.1 weighs ten.
    let mut w = Timer::new(HistogramSpec::default());
    w.record(10.0, 0.1);
    w.record(20.0, 1.0);
    assert_eq!((w.count, w.sum), (11.0, 120.0));
    assert!(
        (w.quantile(0.5) - 10.0).abs() < 0.1,
        "the heavy sample is the median"
    );
}

#[test]
fn few_samples_give_exact_percentiles() {
    let mut t = Timer::new(HistogramSpec::default());
    t.record(12.0, 1.0);
    t.record(30.0, 1.0);
    assert_eq!((t.quantile(0.5), t.quantile(0.95)), (12.0, 30.0));
    assert!(t.heap_bytes() < 1024);
}

/// Guards: the median of 12 and 30 was 12 (nearest rank); statsd reports 21.
#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    let timer = |samples: &[(f64, f64)]| {
        let mut t = Timer::new(HistogramSpec::default());
        samples.iter().for_each(|&(v, rate)| t.record(v, rate));
        t
    };
    assert_eq!(timer(&[(30.0, 1.0), (12.0, 1.0)]).median(), 21.0);
    assert_eq!(timer(&[(1.0, 1.0), (5.0, 1.0), (9.0, 1.0)]).median(), 5.0);
    assert_eq!(
        timer(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (10.0, 1.0)]).median(),
        2.5
    );
    assert_eq!(timer(&[(7.0, 1.0)]).median(), 7.0);
    // Weights: 10 at rate 0.5 weighs 2, as much as 20 and 30 together.
    assert_eq!(
        timer(&[(10.0, 0.5), (20.0, 1.0), (30.0, 1.0)]).median(),
        15.0
    );
    assert_eq!(timer(&[(10.0, 0.1), (20.0, 1.0)]).median(), 10.0);
    // Percentiles stay nearest rank.
    assert_eq!(timer(&[(12.0, 1.0), (30.0, 1.0)]).quantile(0.5), 12.0);
    // From the histogram (past the exact samples): the 0.5 quantile.
    let many: Vec<_> = (1..=100).map(|v| (f64::from(v), 1.0)).collect();
    let m = timer(&many).median();
    assert!((m - 50.0).abs() <= 0.5, "{m}");
}

/// Per-series bytes with adversarial samples at each precision, against the bound the
/// configuration sets (`HistogramSpec::max_bytes`). Guards: the histogram grew to the
/// largest sample (1e12 → ~23 KB at precision 2, ~17 MB at 5).
#[test]
fn histogram_sizes_are_what_the_spec_says() {
    for precision in 1..=5u8 {
        for max_value in [1.0, 1000.0, 3.6e6, 1e9] {
            let spec = HistogramSpec::new(precision, max_value);
            let mut t = Timer::new(spec);
            // Past the exact samples, then huge, tiny and zero values; the weight at
            // the sample-rate floor widens the counts to 64 bits (the worst case).
            for _ in 0..65 {
                t.record(1e12, 1.0);
            }
            for v in [f64::MAX, 1e300, 1e-300, 0.0, max_value] {
                t.record(v, 1e-6);
            }
            for _ in 0..10 {
                t.record(max_value, 1e-6);
            }
            let Samples::Hdr(h) = &t.samples else {
                panic!("past the exact samples")
            };
            assert!(matches!(**h, Hdr::Wide(_)), "widened");
            let bytes = t.heap_bytes() as u64;
            assert_eq!(
                bytes,
                spec.max_bytes(),
                "precision {precision} max {max_value}"
            );
            assert_eq!(t.clamped(), 65 + 2, "1e12 × 65, f64::MAX, 1e300");
            assert_eq!((t.min, t.max), (0.0, f64::MAX), "exact");
            // The heavy samples sit at the range's top: so does the 99th percentile.
            let p99 = t.quantile(0.99);
            assert!((p99 / max_value - 1.0).abs() < 0.1, "p99 {p99}");
            if max_value == 1e9 {
                eprintln!("precision {precision}: {bytes} B per series at most");
            }
        }
    }
    // The default configuration: 34 KiB; precision 5 over the same range: 24 MiB.
    assert_eq!(HistogramSpec::default().max_bytes(), 34 * 1024);
    assert_eq!(HistogramSpec::new(5, 1e9).max_bytes(), 24 * 1024 * 1024);
}

/// Guards: a weight of 1e300 (`|@1e-300`) overflowed the narrow count check (a panic in
/// debug) once a series used its histogram. The parser refuses such rates; the
/// histogram saturates anyway.
#[test]
fn enormous_weights_do_not_overflow_counts() {
    let mut t = Timer::new(HistogramSpec::default());
    for _ in 0..100 {
        t.record(5.0, 1e-300);
    }
    assert_eq!(t.max, 5.0);
    assert!((t.median() - 5.0).abs() < 0.1);
    assert!(t.count.is_finite());
}

#[test]
fn many_samples_switch_to_the_histogram_and_merge_either_way() {
    let mut big = Timer::new(HistogramSpec::default());
    for v in 1..=1000 {
        big.record(f64::from(v), 1.0);
    }
    assert!(matches!(big.samples, Samples::Hdr(_)));
    let mut small = Timer::new(HistogramSpec::default());
    small.record(5000.0, 1.0);
    small.merge(&big);
    assert_eq!((small.count, small.max), (1001.0, 5000.0));
    let p50 = small.quantile(0.5);
    assert!((p50 - 501.0).abs() <= 501.0 * 0.01, "p50 {p50}");
    // Two exact halves stay exact.
    let (mut a, mut b) = (
        Timer::new(HistogramSpec::default()),
        Timer::new(HistogramSpec::default()),
    );
    (1..=30).for_each(|v| a.record(f64::from(v), 1.0));
    (31..=60).for_each(|v| b.record(f64::from(v), 1.0));
    a.merge(&b);
    assert!(matches!(a.samples, Samples::Exact(_)));
    assert_eq!(a.quantile(0.95), 57.0);
    // A histogram absorbs exact samples given by reference.
    let mut h = big.clone();
    h.merge(&b);
    assert_eq!((h.count, h.max), (1030.0, 1000.0));
    assert!(matches!(h.samples, Samples::Hdr(_)));
}

#[test]
fn reset_states_are_untouched_and_keep_nothing() {
    let mut c = Counter::default();
    c.add(0.0);
    assert!(c.touched(), "a count of zero is still a count");
    c.reset();
    assert_eq!(c, Counter::default());
    let mut g = GaugeUpdate::default();
    g.apply_delta(0.0);
    assert!(g.touched());
    g.reset();
    assert!(!g.touched() && g.set.is_none());
    let mut t = Timer::new(HistogramSpec::default());
    (1..=1000).for_each(|v| t.record(f64::from(v), 1.0));
    assert!(t.touched());
    t.reset();
    assert!(!t.touched());
    assert_eq!(t.heap_bytes(), 0, "the histogram is freed");
    t.record(3.0, 1.0);
    assert_eq!(
        (t.count, t.min, t.max, t.quantile(0.5)),
        (1.0, 3.0, 3.0, 3.0)
    );
    let mut s = Set::default();
    s.insert(1, 10).unwrap();
    assert!(s.touched());
    s.reset();
    assert!(!s.touched());
}

#[test]
fn narrow_counts_widen_before_they_saturate() {
    const MAX: u64 = 1_000_000_000_000;
    let mut h = Hdr::new(2);
    // Each sample weighs TIMER_WEIGHT_SCALE counts: 5 million of them overflow u32.
    for _ in 0..5_000_000u32 / 1000 {
        h.record(7.0, 1000.0, MAX);
    }
    assert!(matches!(h, Hdr::Wide(_)), "widened");
    if let Hdr::Wide(w) = &h {
        assert_eq!(w.len(), 5_000_000 * 1000);
    }
    assert_eq!(h.value_at_quantile(0.5) / 1000, 7);
    // Adding two narrow halves that together would overflow widens too.
    let (mut a, mut b) = (Hdr::new(2), Hdr::new(2));
    for _ in 0..3_000 {
        a.record(1.0, 1000.0, MAX);
        b.record(1.0, 1000.0, MAX);
    }
    assert!(matches!(a, Hdr::Narrow(_)));
    a.add(&b);
    assert!(matches!(a, Hdr::Wide(_)));
    assert_eq!(a.value_at_quantile(0.99) / 1000, 1);
}

#[test]
fn fractional_weights_are_not_truncated() {
    let mut t = Timer::new(HistogramSpec::default());
    t.record(4.0, 0.3);
    assert!((t.count - 1.0 / 0.3).abs() < 1e-12);
    assert!((t.sum - 4.0 / 0.3).abs() < 1e-12);
}

#[test]
fn set_bound() {
    let mut s = Set::default();
    assert_eq!(s.insert(1, 2), Ok(()));
    assert_eq!(s.insert(2, 2), Ok(()));
    assert_eq!(s.insert(1, 2), Ok(()), "a known member is always fine");
    assert_eq!(s.insert(3, 2), Err(Reject::SetMemberLimit));
    assert_eq!(s.members.len(), 2);
}

#[test]
fn percent_samples_keep_the_two_newest_in_order() {
    let mut p = PercentSamples::new(1000, 10.0);
    assert_eq!(p.prev, None);
    p.record(1000, 12.0);
    assert_eq!((p.prev, p.last), (Some((1000, 10.0)), (1000, 12.0)));
    p.record(2000, 15.0);
    assert_eq!((p.prev, p.last), (Some((1000, 12.0)), (2000, 15.0)));
    // Older than both: ignored. Between them: the new second newest.
    p.record(500, 1.0);
    assert_eq!(p.prev, Some((1000, 12.0)));
    p.record(1500, 14.0);
    assert_eq!((p.prev, p.last), (Some((1500, 14.0)), (2000, 15.0)));
    // Another shard's newer pair replaces both; an older one changes nothing.
    let mut other = PercentSamples::new(3000, 20.0);
    other.record(4000, 30.0);
    let mut merged = p;
    merged.merge(&other);
    assert_eq!(
        (merged.prev, merged.last),
        (Some((3000, 20.0)), (4000, 30.0))
    );
    let mut older = other;
    older.merge(&PercentSamples::new(100, 99.0));
    assert_eq!(older, other);
    // One sample each: the newer is last, the older prev.
    let mut a = PercentSamples::new(2000, 2.0);
    a.merge(&PercentSamples::new(1000, 1.0));
    assert_eq!((a.prev, a.last), (Some((1000, 1.0)), (2000, 2.0)));
}

#[test]
fn percent_change_is_the_sdks_diff_metric() {
    assert_eq!(PercentSamples::percent(None, 42.0), 0.0, "first value");
    assert_eq!(PercentSamples::percent(Some(0.0), 5.0), 0.0, "prev 0");
    assert_eq!(PercentSamples::percent(Some(50.0), 75.0), 50.0);
    assert_eq!(PercentSamples::percent(Some(200.0), 50.0), -75.0);
    // As the SDK: a negative previous value flips the sign (no abs()).
    assert_eq!(PercentSamples::percent(Some(-10.0), -5.0), -50.0);
}

#[test]
fn rate_keeps_extremes_by_time() {
    let mut r = RateSamples::new(1000, 10.0);
    r.record(3000, 30.0);
    r.record(500, 5.0);
    r.merge(&RateSamples::new(4000, 40.0));
    assert_eq!((r.first, r.last), ((500, 5.0), (4000, 40.0)));
}
