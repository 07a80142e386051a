//! Clock: wall-clock milliseconds since the epoch, the timestamp every stage stamps metrics with.
//!
//! Owns: the one reading of `SystemTime` for timestamps, so no stage depends on another just to
//! tell the time. Must never: hold state.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is set before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
