//! Heartbeats: "I am alive" beats from GE Heartbeat senders, turned into one `GE_Heartbeat`
//! Monasca measurement each and remembered in a liveness table (DESIGN §5).
//!
//! Two wire forms, both parsed into the same [`Beat`] by the same value rules:
//! - the GE Heartbeat JSON body, `{"ID", "Enabler_ID", "Enabler_Version", "Timestamp"}`, as an
//!   HTTP `POST /beat` or a UDP datagram starting with `{` ([`parse_json`]);
//! - a compact statsd-style line, `_hb|<enabler_id>|<enabler_version>|<id>[|T<epoch_ms>]`, for
//!   senders that only have `nc -u` ([`parse_compact`]).
//!
//! The [`Liveness`] table is bounded by `max_senders`, since sender IDs come from the network.
//!
//! Owns: heartbeat parsing, the measurement's name and timestamp rule, and sender liveness.
//! Must never: do I/O, read the clock (callers pass `now_ms`), or decide the HTTP response
//! beyond the status a [`BeatError`] implies.

mod ingest;
mod liveness;
mod parse;

pub use ingest::{HeartbeatStats, Heartbeats, REJECT_LABELS, Refusal, Via};
pub use liveness::{Filter, Instance, Liveness, LivenessSettings, State, TableFull, state_of};
pub use parse::{
    Beat, BeatError, ENABLER_ID, ENABLER_VERSION, ID, TIMESTAMP, is_compact, parse_compact,
    parse_json,
};

use std::time::Duration;

/// The Monasca metric for one beat: name "GE_Heartbeat", value 1, dimensions id/enabler_id/enabler_version.
pub const METRIC_NAME: &str = "GE_Heartbeat";

/// The sender's timestamp when within `max_skew` of `now_ms`, else `now_ms`.
///
/// A sender with a broken clock (zero, seconds instead of milliseconds, years off) would
/// otherwise write points Monasca files far from "now", where no dashboard looks; the receive
/// time is the better truth then. Within the skew, the sender's time wins, so beats queued
/// behind a slow network keep their real spacing.
pub fn beat_timestamp(beat: &Beat, now_ms: u64, max_skew: Duration) -> u64 {
    match beat.timestamp_ms {
        Some(ts) if u128::from(ts.abs_diff(now_ms)) <= max_skew.as_millis() => ts,
        _ => now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_293_064_000;

    fn at(ts: Option<u64>) -> Beat {
        Beat {
            id: "c".into(),
            enabler_id: "e".into(),
            enabler_version: "1".into(),
            timestamp_ms: ts,
        }
    }

    #[test]
    fn sane_sender_timestamps_are_kept() {
        let skew = Duration::from_secs(600);
        assert_eq!(beat_timestamp(&at(Some(NOW)), NOW, skew), NOW);
        assert_eq!(
            beat_timestamp(&at(Some(NOW - 600_000)), NOW, skew),
            NOW - 600_000
        );
        assert_eq!(
            beat_timestamp(&at(Some(NOW + 600_000)), NOW, skew),
            NOW + 600_000
        );
    }

    #[test]
    fn insane_or_missing_timestamps_become_now() {
        let skew = Duration::from_secs(600);
        for ts in [
            None,
            Some(0),
            Some(NOW - 600_001),
            Some(NOW + 600_001),
            Some(NOW / 1000), // seconds, not milliseconds
            Some(u64::MAX),
        ] {
            assert_eq!(beat_timestamp(&at(ts), NOW, skew), NOW, "{ts:?}");
        }
        assert_eq!(beat_timestamp(&at(Some(NOW + 1)), NOW, Duration::ZERO), NOW);
        assert_eq!(beat_timestamp(&at(Some(NOW)), NOW, Duration::ZERO), NOW);
        // An unbounded skew trusts any timestamp.
        assert_eq!(beat_timestamp(&at(Some(0)), NOW, Duration::MAX), 0);
    }

    #[test]
    fn a_parsed_beat_feeds_the_table() {
        let beat = parse_json(
            br#"{"ID":"c","Enabler_ID":"orion","Enabler_Version":"3.4.0","Timestamp":"1"}"#,
        )
        .expect("valid");
        let table = Liveness::new(LivenessSettings {
            expected_interval: Duration::from_secs(30),
            expire_after: Duration::from_secs(600),
            max_senders: 4,
        });
        table.record(&beat, None, NOW).expect("room");
        assert_eq!(
            table.alive_counts(NOW),
            [("orion".into(), "3.4.0".into(), 1)]
        );
        assert_eq!(beat_timestamp(&beat, NOW, Duration::from_secs(600)), NOW);
    }
}
