//! DogStatsD service checks, `_sc|name|status|d:ts|h:host|#tags|m:message`, as a gauge
//! `name` = status (0–3).
//!
//! Owns: the service check's fields and which of them are optional. Must never: refuse a
//! check for a malformed optional field the DogStatsD agent would only warn about (a `d:`
//! that is not a timestamp, an empty `h:`), nor read the message (free text, last by the
//! protocol, and without a Monasca equivalent) as fields.

use super::{Dims, Kind, Limits, Line, TagBlock, parse_timestamp, validate_values};
use crate::reason::Reject;
use crate::validate;

/// `s` is the line after `_sc|`.
pub(super) fn parse<'a>(s: &'a str, limits: &Limits) -> Result<Line<'a>, Reject> {
    let mut fields = s.split('|');
    let name = fields.next().unwrap_or("");
    validate::name(name).map_err(|_| Reject::BadName)?;
    let status = fields.next().unwrap_or("");
    if !matches!(status, "0" | "1" | "2" | "3") {
        return Err(Reject::BadServiceCheck);
    }
    let mut dims = Dims::default();
    let mut timestamp = None;
    for field in fields {
        if let Some(t) = field.strip_prefix("d:") {
            // The agent logs a bad `d:` and keeps the check (and any earlier `d:`): so do we.
            if let Some(t) = parse_timestamp(t) {
                timestamp = Some(t);
            }
        } else if let Some(h) = field.strip_prefix("h:") {
            // An empty `h:` means no host given: the default `hostname` applies, as the
            // agent's default host does.
            dims.host = (!h.is_empty()).then_some(h);
        } else if let Some(t) = field.strip_prefix('#') {
            dims.tags = TagBlock::DogStatsd(t);
        } else if field.starts_with("m:") {
            // The protocol puts the message last and clients do not escape `|` in it, so
            // whatever follows is message text, never fields.
            break;
        }
    }
    dims.validate(limits.max_dimensions)?;
    let values = validate_values(status, Kind::Gauge)?;
    Ok(Line {
        name,
        kind: Kind::Gauge,
        values,
        sample_rate: 1.0,
        dims,
        timestamp,
    })
}
