//! The gateway's own counters as `statsgate.*` Monasca metrics at each flush (DESIGN §7):
//! counts for the interval (differences of the cumulative counters) and current gauges.

use super::render::Emitter;
use crate::reason::Reject;
use crate::telemetry::Telemetry;
use std::sync::atomic::Ordering::Relaxed;

/// Cumulative counters at the previous flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    datagrams: u64,
    accepted: u64,
    rejected: u64,
    kernel_drops: u64,
    heartbeats: u64,
    sent: u64,
    dropped: u64,
    renewals: u64,
}

impl Totals {
    fn read(t: &Telemetry) -> Totals {
        let forward_dropped: u64 = t
            .forward
            .metrics_dropped
            .iter()
            .map(|c| c.load(Relaxed))
            .sum();
        let emit_dropped: u64 = t.flush.dropped.iter().map(|c| c.get()).sum();
        Totals {
            datagrams: t.datagrams(),
            accepted: t.accepted_total(),
            rejected: Reject::ALL.iter().map(|r| t.rejected(*r)).sum(),
            kernel_drops: t.kernel_drops(),
            heartbeats: t.sum(|r| &r.heartbeats),
            sent: t.forward.metrics_sent.load(Relaxed),
            dropped: forward_dropped + emit_dropped,
            renewals: t.auth.get().map_or(0, |a| a.renewals.load(Relaxed)),
        }
    }
}

/// Emits the interval's counts since `last` and the current gauges; returns the new totals.
pub fn emit(e: &mut Emitter, t: &Telemetry, last: Totals, series: u64) -> Totals {
    let now = Totals::read(t);
    let counts = [
        (
            "statsgate.datagrams",
            now.datagrams.saturating_sub(last.datagrams),
        ),
        (
            "statsgate.lines_accepted",
            now.accepted.saturating_sub(last.accepted),
        ),
        (
            "statsgate.lines_rejected",
            now.rejected.saturating_sub(last.rejected),
        ),
        (
            "statsgate.kernel_drops",
            now.kernel_drops.saturating_sub(last.kernel_drops),
        ),
        (
            "statsgate.heartbeats",
            now.heartbeats.saturating_sub(last.heartbeats),
        ),
        ("statsgate.metrics_sent", now.sent.saturating_sub(last.sent)),
        (
            "statsgate.metrics_dropped",
            now.dropped.saturating_sub(last.dropped),
        ),
        (
            "statsgate.token_renewals",
            now.renewals.saturating_sub(last.renewals),
        ),
    ];
    for (name, value) in counts {
        e.emit_gauge(name, &[], value as f64);
    }
    e.emit_gauge("statsgate.series", &[], series as f64);
    e.emit_gauge(
        "statsgate.queue_bytes",
        &[],
        t.forward.queue_bytes.load(Relaxed) as f64,
    );
    e.emit_gauge(
        "statsgate.flush_ms",
        &[],
        t.flush.last_flush_micros.get() as f64 / 1000.0,
    );
    now
}
