//! Service manager integration: systemd's notify protocol (`Type=notify`) and its watchdog.
//!
//! Owns: telling the service manager when the gateway is ready (every listener bound), is
//! reloading, is stopping, what it is doing (`STATUS=`), and that the pipeline still moves
//! (`WATCHDOG=1`, pinged from the flush loop so a stuck flusher gets the gateway restarted).
//! Must never: block or fail the caller (without `NOTIFY_SOCKET` every call is a no-op), or
//! ping the watchdog from a thread that keeps running when the pipeline is stuck.

// TODO(issue 16): implement with a notify-protocol crate; these are the calls the stages make.

/// Every listener is bound and the pipeline runs (`READY=1`), with a `STATUS=` line.
pub fn ready(_status: &str) {}

/// A reload has begun (`RELOADING=1` with `MONOTONIC_USEC=`); [`ready`] ends it.
pub fn reloading() {}

/// Shutdown has begun (`STOPPING=1`).
pub fn stopping() {}

/// A free-text `STATUS=` line.
pub fn status(_text: &str) {}

/// The pipeline made progress (`WATCHDOG=1`); called by the flush loop after each flush.
pub fn watchdog_ping() {}
