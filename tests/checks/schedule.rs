//! The schedule: periods, the concurrency bound, timeouts, stop.
