//! Semantic checks over a parsed [`Config`]: ranges, consistency and Monasca's dimension rules,
//! each failure naming its dotted key.
//!
//! Owns: the rules that refuse a bad value at start-up. Must never: read files or the
//! environment (that is `load`), or touch the pipeline.

use super::Config;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// A failed check: (dotted key, message); the section checkers of this module share it.
pub(super) type Invalid = (String, String);

pub(super) fn bad(key: impl Into<String>, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key.into(), message.into()))
}

/// Range and consistency checks; the first failure is returned as (key, message).
pub(super) fn validate(c: &Config) -> Result<(), Invalid> {
    use super::{ByteSize, Duration};

    let s = &c.statsd;
    socket_addr("statsd.listen", &s.listen)?;
    if s.readers > 256 {
        bad(
            "statsd.readers",
            format!("must be at most 256 (got {})", s.readers),
        )?;
    }
    at_most("statsd.recv_buffer", s.recv_buffer, ByteSize::mib(1024))?;
    between(
        "statsd.max_datagram",
        s.max_datagram,
        ByteSize::b(512),
        ByteSize::kib(64),
    )?;
    between(
        "statsd.max_line",
        s.max_line,
        ByteSize::b(64),
        ByteSize::kib(64),
    )?;
    if s.max_line > s.max_datagram {
        bad(
            "statsd.max_line",
            format!(
                "must not exceed statsd.max_datagram ({}) (got {})",
                s.max_datagram, s.max_line
            ),
        )?;
    }
    if !(1..=64).contains(&s.max_dimensions) {
        bad(
            "statsd.max_dimensions",
            format!("must be between 1 and 64 (got {})", s.max_dimensions),
        )?;
    }

    let f = &c.flush;
    between(
        "flush.interval",
        f.interval,
        Duration::millis(100),
        Duration::secs(3600),
    )?;
    if f.idle_expiry < f.interval {
        bad(
            "flush.idle_expiry",
            format!(
                "must be at least flush.interval ({}) (got {})",
                f.interval, f.idle_expiry
            ),
        )?;
    }

    let a = &c.aggregate;
    let mut seen_aggregates = BTreeSet::new();
    for agg in &a.timer_aggregates {
        if !seen_aggregates.insert(agg) {
            let name = serde_json::to_value(agg)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{agg:?}"));
            bad(
                "aggregate.timer_aggregates",
                format!("{name} is listed twice"),
            )?;
        }
    }
    for (i, &p) in a.percentiles.iter().enumerate() {
        if !(p.is_finite() && p > 0.0 && p < 1.0) {
            bad(
                "aggregate.percentiles",
                format!("each must be strictly between 0 and 1 (got {p})"),
            )?;
        }
        if a.percentiles[..i].contains(&p) {
            bad("aggregate.percentiles", format!("{p} is listed twice"))?;
        }
    }
    if a.timer_aggregates.is_empty() && a.percentiles.is_empty() {
        bad(
            "aggregate.timer_aggregates",
            "and aggregate.percentiles are both empty: timers would emit nothing",
        )?;
    }
    if !(1..=5).contains(&a.histogram_precision) {
        bad(
            "aggregate.histogram_precision",
            format!("must be between 1 and 5 (got {})", a.histogram_precision),
        )?;
    }
    if !(a.histogram_max_value >= 1.0 && a.histogram_max_value <= 1e12) {
        bad(
            "aggregate.histogram_max_value",
            format!("must be between 1 and 1e12 (got {})", a.histogram_max_value),
        )?;
    }
    timer_memory(a)?;
    if a.max_set_members == 0 {
        bad("aggregate.max_set_members", "must be at least 1 (got 0)")?;
    }
    if a.max_series == 0 {
        bad("aggregate.max_series", "must be at least 1 (got 0)")?;
    }
    if a.max_series_per_name == 0 {
        bad(
            "aggregate.max_series_per_name",
            "must be at least 1 (got 0)",
        )?;
    }
    // Empty means "this machine's hostname", resolved later.
    if !a.hostname.is_empty() {
        dimension("aggregate.hostname", &a.hostname, false)?;
    }
    for (k, v) in &a.default_dimensions {
        let key = format!("aggregate.default_dimensions.{k}");
        dimension(&key, k, true)?;
        dimension(&key, v, false)?;
    }

    if !c.admin.listen.is_empty() {
        socket_addr("admin.listen", &c.admin.listen)?;
    }
    log_level("log.level", &c.log.level)?;
    super::openstack::validate(c)?;
    super::ingest::validate(c)?;
    super::transports::validate(c)?;
    super::probes::validate(c)?;
    super::checks::validate(c)?;
    super::history::validate(c)?;
    between(
        "shutdown.grace",
        c.shutdown.grace,
        Duration::millis(100),
        Duration::secs(600),
    )?;
    Ok(())
}

fn socket_addr(key: &str, value: &str) -> Result<(), Invalid> {
    match value.parse::<SocketAddr>() {
        Ok(_) => Ok(()),
        Err(_) => bad(
            key,
            format!(
                "must be an IP address and port, like 127.0.0.1:8125 or [::]:8125 (got {value:?})"
            ),
        ),
    }
}

fn at_most<T: PartialOrd + std::fmt::Display>(key: &str, value: T, max: T) -> Result<(), Invalid> {
    if value > max {
        return bad(key, format!("must be at most {max} (got {value})"));
    }
    Ok(())
}

fn between<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Invalid> {
    if value < min {
        return bad(key, format!("must be at least {min} (got {value})"));
    }
    at_most(key, value, max)
}

/// Monasca's dimension rules (`crate::validate`, the same check ingest applies), so that a
/// configured dimension can never get a metric refused.
fn dimension(key: &str, text: &str, is_key: bool) -> Result<(), Invalid> {
    let (what, checked) = if is_key {
        ("dimension key", crate::validate::dimension_key(text))
    } else {
        ("dimension value", crate::validate::dimension_value(text))
    };
    match checked {
        Ok(()) => Ok(()),
        Err(e) => bad(key, format!("{what} {text:?} {}", e.describe(text))),
    }
}

/// A tracing filter. A bare word must be a level: `EnvFilter` would take a typo such as
/// `debgu` as a target name and silently log nothing.
fn log_level(key: &str, level: &str) -> Result<(), Invalid> {
    if level.trim().is_empty() {
        return bad(
            key,
            "must not be empty; use error, warn, info, debug or trace",
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        return bad(key, format!("not a valid filter {level:?}: {e}"));
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return bad(
                key,
                format!(
                    "{directive:?} is not a level (off, error, warn, info, debug, trace); \
                     filter a module as target=level"
                ),
            );
        }
    }
    Ok(())
}

/// Refuses a histogram precision and range whose worst case under `aggregate.max_series`
/// (every series a timer past its exact samples, each histogram at its most) exceeds what
/// the default configuration allows (1,000,000 series × 34 KiB ≈ 33 GiB): a higher
/// precision or a wider range must come with fewer series, so no setting is an
/// unaffordable surprise (precision 5 over the default range is 24 MiB per series).
fn timer_memory(a: &super::AggregateConfig) -> Result<(), Invalid> {
    use crate::aggregate::HistogramSpec;
    let defaults = super::AggregateConfig::default();
    let spec = |precision, max_value| HistogramSpec::new(precision, max_value).max_bytes();
    let allowed = defaults.max_series as u64
        * spec(defaults.histogram_precision, defaults.histogram_max_value);
    let per_series = spec(a.histogram_precision, a.histogram_max_value);
    let worst = (a.max_series as u64).saturating_mul(per_series);
    if worst > allowed {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        bad(
            "aggregate.histogram_precision",
            format!(
                "{} digits over 0..={} cost up to {} KiB per timer series: with \
                 aggregate.max_series {} timers could take {:.0} GiB, more than the \
                 defaults' {:.0} GiB; lower aggregate.max_series to {} or less, the \
                 precision, or aggregate.histogram_max_value",
                a.histogram_precision,
                a.histogram_max_value,
                per_series / 1024,
                a.max_series,
                gib(worst),
                gib(allowed),
                allowed / per_series,
            ),
        )?;
    }
    Ok(())
}
