//! Turning aggregated series into Monasca metrics: derived names, default dimensions,
//! timestamps, and the last validation before a metric may leave.

use crate::aggregate::{SeriesKey, Timer};
use crate::batch::Rendered;
use crate::config::TimerAggregate;
use crate::reason::EmitDrop;
use crate::validate;

/// One timer output: its name suffix and how to compute it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerOutput {
    pub suffix: String,
    pub stat: TimerStat,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimerStat {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// statsd's median: the mean of the middle two exact samples of an even count.
    Median,
    /// Nearest rank.
    Quantile(f64),
}

impl TimerOutput {
    /// `.count` ... `.median`, then `.95percentile` per configured percentile.
    pub fn list(aggregates: &[TimerAggregate], percentiles: &[f64]) -> Vec<TimerOutput> {
        let mut out: Vec<TimerOutput> = aggregates
            .iter()
            .map(|a| {
                let (suffix, stat) = match a {
                    TimerAggregate::Count => ("count", TimerStat::Count),
                    TimerAggregate::Sum => ("sum", TimerStat::Sum),
                    TimerAggregate::Min => ("min", TimerStat::Min),
                    TimerAggregate::Max => ("max", TimerStat::Max),
                    TimerAggregate::Avg => ("avg", TimerStat::Avg),
                    TimerAggregate::Median => ("median", TimerStat::Median),
                };
                TimerOutput {
                    suffix: format!(".{suffix}"),
                    stat,
                }
            })
            .collect();
        out.extend(percentiles.iter().map(|&q| TimerOutput {
            suffix: format!(".{}percentile", percentile_label(q)),
            stat: TimerStat::Quantile(q),
        }));
        out
    }

    pub fn value(&self, t: &Timer) -> f64 {
        match self.stat {
            TimerStat::Count => t.count,
            TimerStat::Sum => t.sum,
            TimerStat::Min => t.min,
            TimerStat::Max => t.max,
            TimerStat::Avg => t.sum / t.count,
            TimerStat::Median => t.median(),
            TimerStat::Quantile(q) => t.quantile(q),
        }
    }
}

/// `0.95` → `95`, `0.999` → `99_9` (a `.` would read as a name separator).
pub fn percentile_label(q: f64) -> String {
    let pct = format!("{}", (q * 100.0 * 1e6).round() / 1e6);
    pct.replace('.', "_")
}

/// Metrics per part of a flush handed to the sink while the flush is still being rendered:
/// the flush is never held whole (100k series are ~25 MiB of JSON). The forwarder rounds it
/// up to a multiple of `monasca.max_batch_metrics`, so a POST never straddles two parts.
pub const PART_METRICS: usize = 5000;

/// Builds one flush's metrics as JSON, a part at a time; counts what fails the final
/// validation.
pub struct Emitter {
    /// Sorted by key.
    pub default_dimensions: std::sync::Arc<[(String, String)]>,
    pub timestamp_ms: u64,
    /// The part being rendered.
    pub metrics: Rendered,
    pub dropped: [u64; EmitDrop::COUNT],
    /// Metrics and bytes of the parts already taken by [`Emitter::full_part`].
    pub handed: (usize, usize),
    /// Metrics of parts the sink refused, and its first error.
    pub failed: (u64, Option<std::io::Error>),
    /// Room each new part is given (sized from the last flush).
    part_room: (usize, usize),
    /// Metrics per part.
    part_metrics: usize,
}

impl Emitter {
    #[cfg(test)]
    pub fn new(default_dimensions: std::sync::Arc<[(String, String)]>, timestamp_ms: u64) -> Self {
        Self::with_capacity(default_dimensions, timestamp_ms, Rendered::default())
    }

    /// Renders into `metrics` (empty, possibly pre-sized from the last flush).
    pub fn with_capacity(
        default_dimensions: std::sync::Arc<[(String, String)]>,
        timestamp_ms: u64,
        metrics: Rendered,
    ) -> Self {
        let part_room = (metrics.capacity_metrics(), metrics.capacity_bytes());
        Emitter {
            default_dimensions,
            timestamp_ms,
            metrics,
            dropped: [0; EmitDrop::COUNT],
            handed: (0, 0),
            failed: (0, None),
            part_room,
            part_metrics: PART_METRICS,
        }
    }

    /// Hands parts of `metrics` instead of [`PART_METRICS`].
    pub fn with_part(mut self, metrics: usize) -> Self {
        self.part_metrics = metrics.max(1);
        self
    }

    /// The part being rendered once it is full, replaced by an empty one.
    pub fn full_part(&mut self) -> Option<Rendered> {
        if self.metrics.len() < self.part_metrics {
            return None;
        }
        let next = Rendered::with_capacity(self.part_room.0, self.part_room.1);
        let part = std::mem::replace(&mut self.metrics, next);
        self.handed.0 += part.len();
        self.handed.1 += part.bytes();
        Some(part)
    }

    /// Metrics and bytes of the whole flush so far, handed parts included.
    pub fn total(&self) -> (usize, usize) {
        (
            self.handed.0 + self.metrics.len(),
            self.handed.1 + self.metrics.bytes(),
        )
    }

    /// Emits `key`'s name + `suffix` = `value`; the key's `|T` wins over the flush time.
    pub fn emit(&mut self, key: &SeriesKey<'_>, suffix: &str, value: f64) {
        if !value.is_finite() {
            self.dropped[EmitDrop::NonFiniteValue as usize] += 1;
            return;
        }
        // The base name passed at ingest (no forbidden characters); only the suffix can push
        // it over the length limit.
        let chars = key.name.len() + suffix.len();
        if chars > validate::MAX_CHARS
            && key.name.chars().count() + suffix.len() > validate::MAX_CHARS
        {
            self.dropped[EmitDrop::NameTooLong as usize] += 1;
            return;
        }
        let timestamp = key
            .timestamp
            .map_or(self.timestamp_ms, |t| t.saturating_mul(1000));
        let dims = merge_sorted(&self.default_dimensions, key.dims());
        self.metrics.push(key.name, suffix, dims, timestamp, value);
    }
}

impl Emitter {
    /// A gateway-level metric (e.g. `heartbeat.alive`): `dims` sorted by key, defaults added.
    pub fn emit_gauge(&mut self, name: &str, dims: &[(&str, &str)], value: f64) {
        let merged = merge_sorted(&self.default_dimensions, dims.iter().copied());
        self.metrics
            .push(name, "", merged, self.timestamp_ms, value);
    }
}

/// Merges the sorted defaults with a key's sorted dimensions; the key's value wins.
fn merge_sorted<'a>(
    defaults: &'a [(String, String)],
    key_dims: impl Iterator<Item = (&'a str, &'a str)>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let mut defaults = defaults
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .peekable();
    let mut key_dims = key_dims.peekable();
    std::iter::from_fn(move || match (defaults.peek(), key_dims.peek()) {
        (Some(d), Some(k)) if d.0 < k.0 => defaults.next(),
        (Some(d), Some(k)) if d.0 == k.0 => {
            defaults.next();
            key_dims.next()
        }
        (_, Some(_)) => key_dims.next(),
        (Some(_), None) => defaults.next(),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_names() {
        assert_eq!(percentile_label(0.95), "95");
        assert_eq!(percentile_label(0.5), "50");
        assert_eq!(percentile_label(0.999), "99_9");
        assert_eq!(percentile_label(0.9999), "99_99");
        let names: Vec<_> = TimerOutput::list(
            &[TimerAggregate::Count, TimerAggregate::Median],
            &[0.9, 0.99],
        )
        .into_iter()
        .map(|o| o.suffix)
        .collect();
        assert_eq!(
            names,
            [".count", ".median", ".90percentile", ".99percentile"]
        );
    }

    #[test]
    fn over_long_derived_names_are_dropped_and_counted() {
        let mut buf = Vec::new();
        let name = "n".repeat(250);
        buf.extend_from_slice(name.as_bytes());
        let key = SeriesKey::decode(&buf);
        let mut e = Emitter::new(std::sync::Arc::from(Vec::new()), 1000);
        e.emit(&key, "", 1.0);
        e.emit(&key, ".95percentile", 1.0);
        e.emit(&key, "", f64::NAN);
        assert_eq!(e.metrics.len(), 1);
        assert_eq!(e.dropped[EmitDrop::NameTooLong as usize], 1);
        assert_eq!(e.dropped[EmitDrop::NonFiniteValue as usize], 1);
    }

    #[test]
    fn defaults_merge_with_series_dimensions_in_key_order() {
        let defaults = vec![
            ("a".to_owned(), "1".to_owned()),
            ("m".to_owned(), "d".to_owned()),
        ];
        let mut e = Emitter::new(std::sync::Arc::from(defaults), 5);
        let key = b"n\x1Fb\x1E2\x1Fm\x1Ek\x1Fz\x1E3";
        e.emit(&SeriesKey::decode(key), "", 1.0);
        let text = String::from_utf8(e.metrics.to_array()).unwrap();
        assert!(
            text.contains(r#""dimensions":{"a":"1","b":"2","m":"k","z":"3"}"#),
            "{text}"
        );
    }
}
