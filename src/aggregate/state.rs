//! Per-series aggregation state for one interval, and how two shards' states merge.
//!
//! A shard outlives its interval (see [`Recycle`]): each state knows whether a line touched it
//! this interval, and resets to "untouched" in place so the series keeps its slot.

use crate::reason::Reject;
use hdrhistogram::Histogram;

/// Timer samples are recorded in thousandths of their unit (µs for `ms`), so sub-unit
/// values keep their precision in the integer HDR histogram.
pub const TIMER_VALUE_SCALE: f64 = 1000.0;
/// HDR counts are integers; a sample of weight `1/rate` is recorded `round(SCALE / rate)`
/// times so fractional weights shape the percentiles too (to 0.1%). Sample rates below
/// 1e-6 are refused at parse, so one sample is at most 1e9 counts.
const TIMER_WEIGHT_SCALE: f64 = 1000.0;

/// What sizes a timer's histogram, from the configuration (`aggregate.histogram_precision`
/// and `aggregate.histogram_max_value`) and nothing else: the histogram tracks
/// `0..=max_scaled` (thousandths of the samples' unit), so no sample can make it grow past
/// [`HistogramSpec::max_bytes`]. A larger sample is recorded at `max_scaled` (its rank in
/// the percentiles is clamped) and counted; count, sum, min and max stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramSpec {
    pub precision: u8,
    pub max_scaled: u64,
}

impl HistogramSpec {
    /// `max_value` in the samples' unit (validated to 1..=1e12 at config load).
    pub fn new(precision: u8, max_value: f64) -> Self {
        let max_scaled = (max_value * TIMER_VALUE_SCALE).round().clamp(1.0, 1e15) as u64;
        HistogramSpec {
            precision,
            max_scaled,
        }
    }

    /// The most heap one series' histogram holds: every count of the range, 64-bit (the
    /// widest a histogram gets). The hdrhistogram crate lays out (buckets + 1) × half a
    /// bucket's sub-buckets counts, a bucket per doubling of the range above the first;
    /// `histogram_sizes_are_what_the_spec_says` checks this against the crate.
    pub fn max_bytes(&self) -> u64 {
        let digits = u32::from(self.precision.clamp(1, 5));
        let sub_buckets = (2 * 10u64.pow(digits)).next_power_of_two();
        let mut buckets = 1u64;
        let mut untrackable = sub_buckets;
        while untrackable <= self.max_scaled {
            untrackable <<= 1;
            buckets += 1;
        }
        (buckets + 1) * (sub_buckets / 2) * std::mem::size_of::<u64>() as u64
    }
}

impl Default for HistogramSpec {
    /// The configuration's defaults: 2 digits, values up to 1e9.
    fn default() -> Self {
        HistogramSpec::new(2, 1e9)
    }
}

/// A series' state across intervals: a shard is reused after its flush, keeping every series
/// a line touched (and its position, which the line memo relies on) with the state reset.
pub trait Recycle {
    /// Did a line update this series since the last reset?
    fn touched(&self) -> bool;
    /// Back to untouched, keeping what allocation is worth keeping.
    fn reset(&mut self);
}

/// `c`: the weighted sum, 8 bytes (a series' state is most of a shard's memory).
///
/// Untouched is `sum == -0.0` (bitwise): every line adds `v + 0.0`, never `-0.0` (that turns
/// a `-0` into `+0`), and no sum of addends that are not `-0.0`, starting from `-0.0`, is
/// `-0.0` in IEEE arithmetic. So a `x:0|c` (or `x:-0|c`) still marks a count of zero to emit,
/// and merging is plain addition (`-0.0` is the identity).
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub sum: f64,
}

const UNTOUCHED: f64 = -0.0;

impl Default for Counter {
    fn default() -> Self {
        Counter { sum: UNTOUCHED }
    }
}

impl Counter {
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.sum += v + 0.0;
    }

    pub fn merge(&mut self, other: &Counter) {
        self.sum += other.sum;
    }
}

impl Recycle for Counter {
    #[inline]
    fn touched(&self) -> bool {
        self.sum.to_bits() != UNTOUCHED.to_bits()
    }

    fn reset(&mut self) {
        *self = Counter::default();
    }
}

/// `g` within one interval: an optional absolute value, then the deltas that followed it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugeUpdate {
    pub set: Option<f64>,
    pub delta: f64,
    /// Set by every line: `x:+0|g` still marks the gauge as updated.
    pub touched: bool,
}

impl GaugeUpdate {
    #[inline]
    pub fn apply_set(&mut self, v: f64) {
        self.set = Some(v);
        self.delta = 0.0;
        self.touched = true;
    }

    #[inline]
    pub fn apply_delta(&mut self, d: f64) {
        self.delta += d;
        self.touched = true;
    }

    /// Later updates win over earlier ones; deltas accumulate.
    pub fn merge(&mut self, later: &GaugeUpdate) {
        if !later.touched {
            return;
        }
        if later.set.is_some() {
            *self = *later;
        } else {
            self.delta += later.delta;
            self.touched = true;
        }
    }

    /// The gauge's value after this update, given its value before.
    pub fn resolve(&self, previous: Option<f64>) -> f64 {
        self.set.or(previous).unwrap_or(0.0) + self.delta
    }
}

impl Recycle for GaugeUpdate {
    fn touched(&self) -> bool {
        self.touched
    }

    fn reset(&mut self) {
        *self = GaugeUpdate::default();
    }
}

/// Samples a timer keeps exactly before it switches to an HDR histogram. Most series see
/// few samples per interval: they get exact percentiles and ~1 KiB instead of a histogram.
pub const EXACT_SAMPLES: usize = 64;

/// `ms`/`h`/`d`: exact weighted count, sum, min and max; percentiles exact up to
/// [`EXACT_SAMPLES`] samples, then from an HDR histogram.
#[derive(Debug, Clone)]
pub struct Timer {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    samples: Samples,
    spec: HistogramSpec,
    /// Samples recorded into the histogram at `spec.max_scaled` because they were larger.
    clamped: u64,
}

#[derive(Debug, Clone)]
enum Samples {
    /// (value, weight) pairs.
    Exact(Vec<(f64, f64)>),
    Hdr(Box<Hdr>),
}

/// An HDR histogram with 32-bit counts (half the memory: 10,000 busy timer series fit in
/// ~70 MiB), widened to 64-bit counts before any bucket could saturate.
#[derive(Debug, Clone)]
enum Hdr {
    Narrow(Histogram<u32>),
    Wide(Histogram<u64>),
}

impl Hdr {
    fn new(precision: u8) -> Self {
        Hdr::Narrow(new_histogram(precision))
    }

    /// Sized at once for samples up to `high` (scaled): grown one sample at a time, the
    /// counts would be resized step by step and could hold up to twice the room they use.
    /// The buckets are the same either way (they depend on the precision alone).
    fn sized_for(precision: u8, high: u64) -> Self {
        match Histogram::new_with_max(high.max(2), precision) {
            Ok(mut h) => {
                h.auto(true);
                Hdr::Narrow(h)
            }
            Err(_) => Hdr::new(precision),
        }
    }

    /// Records `value` (clamped to `0..=max_scaled`); answers whether it was clamped.
    fn record(&mut self, value: f64, weight: f64, max_scaled: u64) -> bool {
        let scaled = (value * TIMER_VALUE_SCALE).max(0.0).round();
        let clamped = scaled > max_scaled as f64;
        let scaled = if clamped { max_scaled } else { scaled as u64 };
        // At most 1e9 with the parser's sample-rate floor; bounded anyway, so no weight can
        // overflow a count (hdrhistogram saturates its 64-bit counts and total).
        let times = (TIMER_WEIGHT_SCALE * weight)
            .round()
            .clamp(1.0, f64::from(u32::MAX)) as u64;
        if let Hdr::Narrow(h) = self
            && u64::from(h.count_at(scaled)).saturating_add(times) > u64::from(u32::MAX)
        {
            self.widen();
        }
        // Auto-resizing histograms, grown at most to `max_scaled`: recording cannot fail.
        match self {
            Hdr::Narrow(h) => {
                let _ = h.record_n(scaled, times as u32);
            }
            Hdr::Wide(h) => {
                let _ = h.record_n(scaled, times);
            }
        }
        clamped
    }

    /// Copies the counts into a 64-bit histogram of the same precision.
    fn widen(&mut self) {
        if let Hdr::Narrow(h) = self {
            let mut wide: Histogram<u64> = new_histogram(h.sigfig());
            for v in h.iter_recorded() {
                let _ = wide.record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
            }
            *self = Hdr::Wide(wide);
        }
    }

    fn add(&mut self, other: &Hdr) {
        // Two narrow ones whose totals fit in 32 bits cannot saturate a bucket.
        if let (Hdr::Narrow(a), Hdr::Narrow(b)) = (&mut *self, other)
            && a.len() + b.len() <= u64::from(u32::MAX)
        {
            let _ = a.add(b);
            return;
        }
        self.widen();
        let mut other = other.clone();
        other.widen();
        // Auto-resizing histograms of clamped values: adding cannot fail.
        if let (Hdr::Wide(a), Hdr::Wide(b)) = (self, &other) {
            let _ = a.add(b);
        }
    }

    fn value_at_quantile(&self, q: f64) -> u64 {
        match self {
            Hdr::Narrow(h) => h.value_at_quantile(q),
            Hdr::Wide(h) => h.value_at_quantile(q),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Hdr::Narrow(h) => h.distinct_values() * std::mem::size_of::<u32>(),
            Hdr::Wide(h) => h.distinct_values() * std::mem::size_of::<u64>(),
        }
    }
}

impl Timer {
    pub fn new(spec: HistogramSpec) -> Self {
        Timer {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            samples: Samples::Exact(Vec::new()),
            spec,
            clamped: 0,
        }
    }

    /// Samples whose percentile rank was clamped to `aggregate.histogram_max_value`.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    pub fn record(&mut self, value: f64, sample_rate: f64) {
        let weight = 1.0 / sample_rate;
        self.count += weight;
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        match &mut self.samples {
            Samples::Exact(v) if v.len() < EXACT_SAMPLES => v.push((value, weight)),
            Samples::Exact(_) => {
                self.switch_to_hdr();
                self.record_hdr(value, weight);
            }
            Samples::Hdr(h) => {
                if h.record(value, weight, self.spec.max_scaled) {
                    self.clamped += 1;
                }
            }
        }
    }

    fn record_hdr(&mut self, value: f64, weight: f64) {
        if let Samples::Hdr(h) = &mut self.samples
            && h.record(value, weight, self.spec.max_scaled)
        {
            self.clamped += 1;
        }
    }

    /// Moves exact samples into a histogram (once a series outgrows them). Exact samples
    /// were not clamped; those moved past the range are counted now.
    fn switch_to_hdr(&mut self) {
        if let Samples::Exact(v) = &self.samples {
            let largest = v.iter().map(|s| s.0).fold(0.0, f64::max);
            let high = (largest * TIMER_VALUE_SCALE)
                .round()
                .min(self.spec.max_scaled as f64);
            let mut h = Box::new(Hdr::sized_for(self.spec.precision, high as u64));
            for &(value, weight) in v {
                if h.record(value, weight, self.spec.max_scaled) {
                    self.clamped += 1;
                }
            }
            self.samples = Samples::Hdr(h);
        }
    }

    pub fn merge(&mut self, other: &Timer) {
        self.clamped += other.clamped;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if let (Samples::Exact(a), Samples::Exact(b)) = (&mut self.samples, &other.samples)
            && a.len() + b.len() <= EXACT_SAMPLES
        {
            a.extend_from_slice(b);
            return;
        }
        self.switch_to_hdr();
        match &other.samples {
            Samples::Exact(b) => {
                for &(value, weight) in b {
                    self.record_hdr(value, weight);
                }
            }
            Samples::Hdr(b) => {
                if let Samples::Hdr(a) = &mut self.samples {
                    a.add(b);
                }
            }
        }
    }

    /// The `q` quantile in the samples' unit: the smallest sample whose cumulative weight
    /// reaches `q` of the total (nearest rank); from the histogram, clamped to min/max.
    pub fn quantile(&self, q: f64) -> f64 {
        match &self.samples {
            Samples::Exact(v) => {
                let mut sorted = v.clone();
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                let total: f64 = sorted.iter().map(|s| s.1).sum();
                let mut cumulative = 0.0;
                for &(value, weight) in &sorted {
                    cumulative += weight;
                    if cumulative >= q * total {
                        return value;
                    }
                }
                self.max
            }
            Samples::Hdr(h) => {
                (h.value_at_quantile(q) as f64 / TIMER_VALUE_SCALE).clamp(self.min, self.max)
            }
        }
    }

    /// The median as statsd servers report it (Etsy's `median`): while the samples are
    /// exact, the mean of the two middle samples when the weight splits evenly between them
    /// (an even count of unit weights), else the middle sample; from the histogram, its 0.5
    /// quantile.
    pub fn median(&self) -> f64 {
        let Samples::Exact(v) = &self.samples else {
            return self.quantile(0.5);
        };
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = sorted.iter().map(|s| s.1).sum();
        let half = total / 2.0;
        let mut cumulative = 0.0;
        for (i, &(value, weight)) in sorted.iter().enumerate() {
            cumulative += weight;
            if cumulative >= half {
                // Exactly half below and half above: between this sample and the next.
                let even = (cumulative - half).abs() <= total * 1e-12;
                return match sorted.get(i + 1) {
                    Some(&(next, _)) if even => (value + next) / 2.0,
                    _ => value,
                };
            }
        }
        self.max
    }

    /// Bytes held beyond the struct, for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        match &self.samples {
            Samples::Exact(v) => v.capacity() * std::mem::size_of::<(f64, f64)>(),
            Samples::Hdr(h) => h.heap_bytes(),
        }
    }
}

impl Recycle for Timer {
    /// Every sample weighs at least 1 (a sample rate is at most 1), so a touched timer counts.
    fn touched(&self) -> bool {
        self.count > 0.0
    }

    /// The exact-sample list keeps its room; a histogram is freed (a busy timer allocates it
    /// again, as before recycling), so idle intervals do not hold 10k histograms.
    fn reset(&mut self) {
        self.count = 0.0;
        self.sum = 0.0;
        self.clamped = 0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
        match &mut self.samples {
            Samples::Exact(v) => v.clear(),
            Samples::Hdr(_) => self.samples = Samples::Exact(Vec::new()),
        }
    }
}

fn new_histogram<T: hdrhistogram::Counter>(precision: u8) -> Histogram<T> {
    Histogram::new(precision).unwrap_or_else(|_| {
        // Precision is validated to 1..=5 at config load; 2 is the documented default.
        Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant digits is valid"))
    })
}

/// `s`: distinct members, as 64-bit hashes, bounded per interval.
#[derive(Debug, Clone, Default)]
pub struct Set {
    pub members: hashbrown::HashSet<u64>,
}

impl Set {
    pub fn insert(&mut self, member_hash: u64, max_members: usize) -> Result<(), Reject> {
        if self.members.len() >= max_members && !self.members.contains(&member_hash) {
            return Err(Reject::SetMemberLimit);
        }
        self.members.insert(member_hash);
        Ok(())
    }

    pub fn merge(&mut self, other: &Set) {
        self.members.extend(other.members.iter().copied());
    }
}

/// Member tables up to this many slots are kept across intervals; a bigger one is freed.
const SET_KEPT_CAPACITY: usize = 1024;

impl Recycle for Set {
    /// A line either adds a member or is refused at the member limit, which needs members.
    fn touched(&self) -> bool {
        !self.members.is_empty()
    }

    fn reset(&mut self) {
        if self.members.capacity() > SET_KEPT_CAPACITY {
            self.members = hashbrown::HashSet::new();
        } else {
            self.members.clear();
        }
    }
}

/// `r`: the first and last sample of the interval, with their times in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSamples {
    pub first: (u64, f64),
    pub last: (u64, f64),
}

/// Rates are never carried: a recycled shard clears them (see `Shard::recycle`).
impl Recycle for RateSamples {
    fn touched(&self) -> bool {
        true
    }

    fn reset(&mut self) {}
}

impl RateSamples {
    pub fn new(at_ms: u64, v: f64) -> Self {
        RateSamples {
            first: (at_ms, v),
            last: (at_ms, v),
        }
    }

    pub fn record(&mut self, at_ms: u64, v: f64) {
        if at_ms < self.first.0 {
            self.first = (at_ms, v);
        }
        if at_ms >= self.last.0 {
            self.last = (at_ms, v);
        }
    }

    pub fn merge(&mut self, other: &RateSamples) {
        self.record(other.first.0, other.first.1);
        self.record(other.last.0, other.last.1);
    }
}

/// `pc`: the interval's last two samples by time (ms), later ones replacing earlier ones;
/// `prev` is `None` until a second one arrives (the flusher then uses the previous interval's
/// last value). Equal times keep arrival order: packed values share one receive time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentSamples {
    pub last: (u64, f64),
    pub prev: Option<(u64, f64)>,
}

/// Never carried: a recycled shard clears them, as it does rates (see `Shard::recycle`).
impl Recycle for PercentSamples {
    fn touched(&self) -> bool {
        true
    }

    fn reset(&mut self) {}
}

impl PercentSamples {
    pub fn new(at_ms: u64, v: f64) -> Self {
        PercentSamples {
            last: (at_ms, v),
            prev: None,
        }
    }

    pub fn record(&mut self, at_ms: u64, v: f64) {
        if at_ms >= self.last.0 {
            self.prev = Some(self.last);
            self.last = (at_ms, v);
        } else if self.prev.is_none_or(|p| at_ms >= p.0) {
            // Older than the last (another shard's sample, or a `|T` one): second newest.
            self.prev = Some((at_ms, v));
        }
    }

    /// Folds a concurrent shard's samples in: the two newest of both remain.
    pub fn merge(&mut self, other: &PercentSamples) {
        if let Some((at, v)) = other.prev {
            self.record(at, v);
        }
        self.record(other.last.0, other.last.1);
    }

    /// Rainbow's DiffMetric: `(cur − prev) / prev × 100`, 0 when `prev` is 0 (the SDK's
    /// ZeroDivisionError branch) or there is no previous value (its first update).
    pub fn percent(prev: Option<f64>, cur: f64) -> f64 {
        match prev {
            Some(p) if p != 0.0 => (cur - p) / p * 100.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
