//! Timer state (`ms`, `h`, `d`): exact samples first, then an HDR histogram sized by the
//! configuration alone.
//!
//! Owns: the weighted count, sum, min, max and percentiles of a timer series, and how two
//! shards' timers merge. Must never: let a sample grow a histogram beyond
//! [`HistogramSpec::max_bytes`].

use super::Recycle;
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
    pub(super) samples: Samples,
    spec: HistogramSpec,
    /// Samples recorded into the histogram at `spec.max_scaled` because they were larger.
    clamped: u64,
}

#[derive(Debug, Clone)]
pub(super) enum Samples {
    /// (value, weight) pairs.
    Exact(Vec<(f64, f64)>),
    Hdr(Box<Hdr>),
}

/// An HDR histogram with 32-bit counts (half the memory: 10,000 busy timer series fit in
/// ~70 MiB), widened to 64-bit counts before any bucket could saturate.
#[derive(Debug, Clone)]
pub(super) enum Hdr {
    Narrow(Histogram<u32>),
    Wide(Histogram<u64>),
}

impl Hdr {
    pub(super) fn new(precision: u8) -> Self {
        Hdr::Narrow(new_histogram(precision))
    }

    /// Sized at once for samples up to `high` (scaled): grown one sample at a time, the
    /// counts would be resized step by step and could hold up to twice the room they use.
    /// The buckets are the same either way (they depend on the precision alone).
    pub(super) fn sized_for(precision: u8, high: u64) -> Self {
        match Histogram::new_with_max(high.max(2), precision) {
            Ok(mut h) => {
                h.auto(true);
                Hdr::Narrow(h)
            }
            Err(_) => Hdr::new(precision),
        }
    }

    /// Records `value` (clamped to `0..=max_scaled`); answers whether it was clamped.
    pub(super) fn record(&mut self, value: f64, weight: f64, max_scaled: u64) -> bool {
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
    pub(super) fn widen(&mut self) {
        if let Hdr::Narrow(h) = self {
            let mut wide: Histogram<u64> = new_histogram(h.sigfig());
            for v in h.iter_recorded() {
                let _ = wide.record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
            }
            *self = Hdr::Wide(wide);
        }
    }

    pub(super) fn add(&mut self, other: &Hdr) {
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

    pub(super) fn value_at_quantile(&self, q: f64) -> u64 {
        match self {
            Hdr::Narrow(h) => h.value_at_quantile(q),
            Hdr::Wide(h) => h.value_at_quantile(q),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
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
