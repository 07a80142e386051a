//! Service manager integration: systemd's notify protocol (`Type=notify`) and its watchdog.
//!
//! Owns: telling the service manager when the gateway is ready (every listener bound), is
//! reloading, is stopping, what it is doing (`STATUS=`), and that the pipeline still moves
//! (`WATCHDOG=1`, pinged from the flush loop so a stuck flusher gets the gateway restarted).
//! Must never: block or fail the caller (without `NOTIFY_SOCKET` every call is a no-op), or
//! ping the watchdog from a thread that keeps running when the pipeline is stuck.
//!
//! The protocol is the `sd-notify` crate's: one datagram per call to the socket that
//! `NOTIFY_SOCKET` names. Abstract-namespace sockets (`@name`) are not supported by it;
//! systemd itself always passes a path (`/run/systemd/notify`).

use sd_notify::NotifyState;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Every listener is bound and the pipeline runs (`READY=1`), with a `STATUS=` line. Also
/// ends a reload that [`reloading`] began.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

/// A reload has begun (`RELOADING=1` with `MONOTONIC_USEC=`, which systemd 253 and later
/// require beside it); [`ready`] ends it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // Only unreadable without CLOCK_MONOTONIC; RELOADING=1 alone still tells older systemd.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    states.push(NotifyState::Status("reloading the configuration"));
    send(&states);
}

/// Shutdown has begun (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// A free-text `STATUS=` line.
pub fn status(text: &str) {
    send(&[NotifyState::Status(&one_line(text))]);
}

/// `text` with line breaks as spaces: a newline would end the `STATUS=` assignment and start
/// another (an error message may hold one).
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    }
}

/// The pipeline made progress (`WATCHDOG=1`); called by the flush loop after each flush and
/// at each of its wake-ups, never from a thread of its own.
pub fn watchdog_ping() {
    if watchdog_ping_every().is_some() {
        send(&[NotifyState::Watchdog]);
    }
}

/// How often the flush loop must ping: half the watchdog timeout the service manager set
/// (`WATCHDOG_USEC`, for this process when `WATCHDOG_PID` names one), as sd_watchdog_enabled(3)
/// advises. `None` without a watchdog or without `NOTIFY_SOCKET` to ping on.
pub fn watchdog_ping_every() -> Option<Duration> {
    static EVERY: OnceLock<Option<Duration>> = OnceLock::new();
    *EVERY.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let timeout = sd_notify::watchdog_enabled().filter(|t| !t.is_zero())?;
        // Never a busy loop, whatever WATCHDOG_USEC says.
        Some((timeout / 2).max(Duration::from_millis(1)))
    })
}

/// Sends `states` in one datagram; a failure is logged once as a warning, then at debug:
/// a gateway that cannot reach its service manager still serves.
fn send(states: &[NotifyState<'_>]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states) {
        if WARNED.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %e, "cannot notify the service manager");
        } else {
            tracing::warn!(
                error = %e,
                socket = ?std::env::var_os("NOTIFY_SOCKET"),
                "cannot notify the service manager (NOTIFY_SOCKET); it may time out start-up or the watchdog"
            );
        }
    }
}
