//! `/metrics`: the counters as OpenMetrics text (which Prometheus scrapes), encoded by
//! prometheus-client from a collector that reads the live counters at scrape time.

use super::Telemetry;
use crate::parse::Kind;
use crate::reason::{BatchDrop, EmitDrop, Reject};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every counter; names are prefixed `statsgate_`, counters end in `_total`.
pub fn render(telemetry: &Arc<Telemetry>) -> String {
    let mut registry = Registry::with_prefix("statsgate");
    registry.register_collector(Box::new(View(Arc::clone(telemetry))));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct View(Arc<Telemetry>);

type Result = std::result::Result<(), std::fmt::Error>;

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn labelled_counter<'a>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> Result {
    let mut family = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result {
        let t = &self.0;
        let sum = |f: &dyn Fn(&super::ReaderStats) -> u64| {
            t.readers
                .iter()
                .chain(t.transports.iter().map(|s| &s.lines))
                .map(f)
                .sum::<u64>()
        };
        counter(
            &mut enc,
            "datagrams_received",
            "Datagrams received on the statsd UDP port and Unix datagram socket",
            t.datagrams(),
        )?;
        counter(
            &mut enc,
            "bytes_received",
            "Payload bytes received over every statsd transport",
            sum(&|r| r.bytes.get()),
        )?;
        counter(
            &mut enc,
            "datagrams_too_large",
            "Datagrams over statsd.max_datagram, dropped whole",
            sum(&|r| r.datagrams_too_large.get()),
        )?;
        counter(
            &mut enc,
            "heartbeats_received",
            "Heartbeat datagrams received",
            sum(&|r| r.heartbeats.get()),
        )?;
        counter(
            &mut enc,
            "receive_errors",
            "Errors from the receive call",
            sum(&|r| r.recv_errors.get()),
        )?;
        counter(
            &mut enc,
            "kernel_receive_drops",
            "Datagrams the kernel dropped because a statsd socket's buffer was full",
            t.kernel_drops(),
        )?;
        labelled_counter(
            &mut enc,
            "lines_accepted",
            "Statsd lines accepted into aggregation, by metric type",
            "type",
            Kind::ALL.iter().map(|k| (k.label(), t.accepted(*k))),
        )?;
        labelled_counter(
            &mut enc,
            "lines_rejected",
            "Statsd lines (or samples) dropped at ingest, by reason",
            "reason",
            Reject::ALL.iter().map(|r| (r.label(), t.rejected(*r))),
        )?;
        let f = &t.flush;
        counter(&mut enc, "flushes", "Completed flushes", f.flushes.get())?;
        counter(
            &mut enc,
            "metrics_emitted",
            "Metrics handed to the sink",
            f.metrics_emitted.get(),
        )?;
        labelled_counter(
            &mut enc,
            "metrics_dropped",
            "Aggregated metrics dropped at flush, by reason",
            "reason",
            EmitDrop::ALL
                .iter()
                .map(|r| (r.label(), f.dropped[*r as usize].get())),
        )?;
        gauge(
            &mut enc,
            "series",
            "Series in the last flushed interval",
            f.series.get() as f64,
        )?;
        gauge(
            &mut enc,
            "gauges_persisted",
            "Gauges carried across intervals",
            f.gauges_persisted.get() as f64,
        )?;
        counter(
            &mut enc,
            "series_expired",
            "Idle gauges and rate bases freed",
            f.series_expired.get(),
        )?;
        counter(
            &mut enc,
            "timer_samples_clamped",
            "Timer samples above aggregate.histogram_max_value, ranked at it in the percentiles",
            f.timer_samples_clamped.get(),
        )?;
        counter(
            &mut enc,
            "checkpoint_failures",
            "Flushes after which the gauge checkpoint could not be saved",
            f.checkpoint_failures.get(),
        )?;
        gauge(
            &mut enc,
            "flush_duration_seconds",
            "Duration of the last flush",
            f.last_flush_micros.get() as f64 / 1e6,
        )?;
        gauge(
            &mut enc,
            "last_flush_timestamp_seconds",
            "Unix time of the last flush",
            f.last_flush_unix.get() as f64,
        )?;
        encode_forward(&mut enc, t)?;
        encode_ingest(&mut enc, t)?;
        encode_transports(&mut enc, t)?;
        labelled_counter(
            &mut enc,
            "reloads",
            "Configuration reloads (SIGHUP, statsgate reload) by outcome: applied, unchanged, failed (invalid, the old configuration runs on), refused (a key that cannot change while running)",
            "outcome",
            super::reload::ReloadOutcome::ALL
                .iter()
                .map(|o| (o.label(), t.reloads.count(*o))),
        )?;
        encode_probes(&mut enc, t)?;
        encode_checks(&mut enc, t)?;
        encode_history(&mut enc, t)?;
        gauge(
            &mut enc,
            "readers",
            "Reader threads",
            t.readers.len() as f64,
        )?;
        gauge(
            &mut enc,
            "uptime_seconds",
            "Seconds since start",
            t.uptime_seconds(),
        )?;
        Ok(())
    }
}

/// A counter family over several labels: `rows` are (label values, count), in `labels` order.
fn multi_counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    labels: [&str; 2],
    rows: &[([&str; 2], u64)],
) -> Result {
    let mut family = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (values, n) in rows {
        let set = [(labels[0], values[0]), (labels[1], values[1])];
        ConstCounter::new(*n).encode(family.encode_family(&set)?)?;
    }
    Ok(())
}

/// Lines by transport, and the stream listeners' connections.
fn encode_transports(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use super::{ConnOutcome, Transport};
    use prometheus_client::metrics::MetricType;
    use std::sync::atomic::Ordering::Relaxed;
    let accepted = |tr: Transport| -> u64 {
        Kind::ALL
            .iter()
            .map(|k| t.sum_of(tr, |r| &r.accepted[*k as usize]))
            .sum()
    };
    labelled_counter(
        enc,
        "transport_lines_accepted",
        "Statsd lines accepted into aggregation, by transport (udp, tcp, tls, unix, unix_stream)",
        "transport",
        Transport::ALL.iter().map(|tr| (tr.label(), accepted(*tr))),
    )?;
    let mut rows = Vec::new();
    for tr in Transport::ALL.iter().filter(|tr| tr.is_stream()) {
        if let Some(s) = t.transport(*tr) {
            for o in ConnOutcome::ALL {
                rows.push(([tr.label(), o.label()], s.connections(o)));
            }
        }
    }
    multi_counter(
        enc,
        "stream_connections",
        "Statsd stream connections (tcp, tls, unix_stream) by outcome: accepted, limit (statsd.tcp_max_connections open), denied (statsd.allow), idle (statsd.tcp_idle_timeout), handshake (TLS failed or too slow), error",
        ["transport", "outcome"],
        &rows,
    )?;
    let mut open = enc.encode_descriptor(
        "stream_connections_open",
        "Statsd stream connections open now, by transport",
        None,
        MetricType::Gauge,
    )?;
    for tr in Transport::ALL.iter().filter(|tr| tr.is_stream()) {
        if let Some(s) = t.transport(*tr) {
            ConstGauge::new(s.open.load(Relaxed) as f64)
                .encode(open.encode_family(&[("transport", tr.label())])?)?;
        }
    }
    Ok(())
}

/// The HTTP and admin listeners: connections, refusals, timeouts, refused requests.
fn encode_listeners(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use std::sync::atomic::Ordering::Relaxed;
    let listeners = [("http", &t.http.http), ("admin", &t.http.admin)];
    labelled_counter(
        enc,
        "http_connections",
        "Connections accepted and served, by listener (http, admin)",
        "listener",
        listeners
            .iter()
            .map(|(l, s)| (*l, s.connections_accepted.load(Relaxed))),
    )?;
    {
        let mut open = enc.encode_descriptor(
            "http_connections_open",
            "Connections open now, by listener",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (l, s) in &listeners {
            ConstGauge::new(s.connections_open.load(Relaxed) as f64)
                .encode(open.encode_family(&[("listener", *l)])?)?;
        }
    }
    let mut rows = Vec::new();
    for (l, s) in &listeners {
        rows.push(([*l, "limit"], s.refused_limit.load(Relaxed)));
        rows.push(([*l, "denied"], s.refused_denied.load(Relaxed)));
    }
    multi_counter(
        enc,
        "http_connections_refused",
        "Connections closed at accept: over the listener's max_connections (limit) or outside http.allow (denied)",
        ["listener", "reason"],
        &rows,
    )?;
    labelled_counter(
        enc,
        "http_accept_errors",
        "Failed accepts (e.g. the open-files limit reached), by listener",
        "listener",
        listeners
            .iter()
            .map(|(l, s)| (*l, s.accept_errors.load(Relaxed))),
    )?;
    let mut rows = Vec::new();
    for (l, s) in &listeners {
        rows.push(([*l, "header"], s.timeouts_header.load(Relaxed)));
        rows.push(([*l, "body"], s.timeouts_body.load(Relaxed)));
        rows.push(([*l, "idle"], s.timeouts_idle.load(Relaxed)));
    }
    multi_counter(
        enc,
        "http_timeouts",
        "Connections or requests cut by header_timeout, body_timeout (408) or idle_timeout",
        ["listener", "phase"],
        &rows,
    )?;
    // Only the HTTP listener serves HTTPS (the admin port is plain HTTP).
    let h = &t.http.http;
    let rows = [
        (["http", "error"], h.tls_handshake_errors.load(Relaxed)),
        (["http", "timeout"], h.tls_handshake_timeouts.load(Relaxed)),
        (["http", "plain_http"], h.tls_plain_http.load(Relaxed)),
    ];
    multi_counter(
        enc,
        "http_tls_handshake_failures",
        "HTTPS connections closed before a request: the TLS handshake failed (error), did not finish within http.header_timeout (timeout), or the client spoke plain HTTP (plain_http, answered 400)",
        ["listener", "reason"],
        &rows,
    )?;
    let s = &t.http;
    let rows = [
        (
            ["http", "too_large"],
            s.http.refused_too_large.load(Relaxed),
        ),
        (["http", "busy"], s.http.refused_busy.load(Relaxed)),
        (["http", "metrics_off"], s.metrics_refused_off.load(Relaxed)),
        (
            ["http", "unauthorized"],
            s.metrics_refused_unauthorized.load(Relaxed),
        ),
        (
            ["http", "forbidden"],
            s.metrics_refused_forbidden.load(Relaxed),
        ),
    ];
    multi_counter(
        enc,
        "http_requests_refused",
        "Requests refused before their handler: over http.max_body (413), http.body_budget spent (503), POST /v2.0/metrics off (404), without or with a wrong token (401, 403)",
        ["listener", "reason"],
        &rows,
    )
}

fn encode_ingest(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use std::sync::atomic::Ordering::Relaxed;
    let denied: u64 = t.readers.iter().map(|r| r.source_denied.get()).sum();
    counter(
        enc,
        "source_denied",
        "Datagrams from a source outside statsd.allow",
        denied,
    )?;
    counter(
        enc,
        "http_denied",
        "HTTP connections from a source outside http.allow, closed at accept",
        t.http.http.refused_denied.load(Relaxed),
    )?;
    encode_listeners(enc, t)?;
    counter(
        enc,
        "http_metrics_accepted",
        "Metrics POSTed to /v2.0/metrics and queued",
        t.http.metrics_accepted.load(Relaxed),
    )?;
    counter(
        enc,
        "http_metrics_rejected",
        "Metrics POSTed to /v2.0/metrics and refused",
        t.http.metrics_rejected.load(Relaxed),
    )?;
    labelled_counter(
        enc,
        "liz_posts",
        "liz-monitor posts to POST /api/perf/<host>/<epoch>: accepted (200), refused (http.liz_endpoint off, a bad body or host, buffer.max_pending full)",
        "outcome",
        [
            ("accepted", t.http.liz_posts_accepted.load(Relaxed)),
            ("refused", t.http.liz_posts_refused.load(Relaxed)),
        ]
        .into_iter(),
    )?;
    let Some(hb) = t.heartbeats.get() else {
        return Ok(());
    };
    let s = &hb.stats;
    labelled_counter(
        enc,
        "heartbeats_accepted",
        "Heartbeats accepted, by transport",
        "via",
        // Each statsd transport by its own label (the acceptor counts them together).
        super::Transport::ALL
            .iter()
            .map(|tr| (tr.label(), t.sum_of(*tr, |r| &r.heartbeats_accepted)))
            .chain([("http", s.accepted_http.load(Relaxed))]),
    )?;
    labelled_counter(
        enc,
        "heartbeats_rejected",
        "Heartbeats refused, by reason",
        "reason",
        crate::heartbeat::REJECT_LABELS
            .iter()
            .zip(&s.rejected)
            .map(|(l, n)| (*l, n.load(Relaxed))),
    )?;
    counter(
        enc,
        "heartbeats_untracked",
        "Beats forwarded but not tracked: liveness table full",
        s.untracked.load(Relaxed),
    )?;
    gauge(
        enc,
        "heartbeat_senders",
        "Senders in the liveness table",
        hb.liveness.len() as f64,
    )?;
    Ok(())
}

fn encode_forward(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use std::sync::atomic::Ordering::Relaxed;
    let f = &t.forward;
    counter(
        enc,
        "forward_batches_sent",
        "Batches Monasca stored (204)",
        f.batches_sent.load(Relaxed),
    )?;
    counter(
        enc,
        "forward_metrics_sent",
        "Metrics Monasca stored",
        f.metrics_sent.load(Relaxed),
    )?;
    counter(
        enc,
        "forward_retries",
        "POST attempts retried after a 5xx, timeout or connection error",
        f.retries.load(Relaxed),
    )?;
    counter(
        enc,
        "forward_reauthentications",
        "401s answered by re-authenticating",
        f.reauthentications.load(Relaxed),
    )?;
    counter(
        enc,
        "forward_splits",
        "Batches split after a 413",
        f.splits.load(Relaxed),
    )?;
    labelled_counter(
        enc,
        "forward_batches_dropped",
        "Batches given up on the way to Monasca, by reason",
        "reason",
        BatchDrop::ALL
            .iter()
            .map(|r| (r.label(), f.batches_dropped[*r as usize].load(Relaxed))),
    )?;
    labelled_counter(
        enc,
        "forward_metrics_dropped",
        "Metrics given up on the way to Monasca, by reason",
        "reason",
        BatchDrop::ALL
            .iter()
            .map(|r| (r.label(), f.metrics_dropped[*r as usize].load(Relaxed))),
    )?;
    gauge(
        enc,
        "forward_queue_batches",
        "Batches waiting to be sent",
        f.queue_batches.load(Relaxed) as f64,
    )?;
    gauge(
        enc,
        "forward_queue_bytes",
        "Bytes waiting to be sent or in flight",
        f.queue_bytes.load(Relaxed) as f64,
    )?;
    for (name, help, value) in [
        (
            "forward_spooled_batches",
            "Batches written to the disk spool",
            f.spooled_batches.load(Relaxed),
        ),
        (
            "forward_spooled_metrics",
            "Metrics written to the disk spool",
            f.spooled_metrics.load(Relaxed),
        ),
        (
            "forward_replayed_batches",
            "Spooled batches replayed to Monasca",
            f.replayed_batches.load(Relaxed),
        ),
        (
            "forward_replayed_metrics",
            "Spooled metrics replayed to Monasca",
            f.replayed_metrics.load(Relaxed),
        ),
        (
            "spool_corrupt_records",
            "Damaged spool records skipped at start (torn writes)",
            f.spool_corrupt_records.load(Relaxed),
        ),
        (
            "spool_corrupt_bytes",
            "Bytes of damaged spool records skipped at start",
            f.spool_corrupt_bytes.load(Relaxed),
        ),
        (
            "spool_syncs",
            "Times the disk spool's unsynced writes were forced to stable storage (fsync)",
            f.spool_syncs.load(Relaxed),
        ),
        (
            "forward_possible_duplicates",
            "Metrics sent again because they were in flight at a crash or at the end of the grace period",
            f.possible_duplicates.load(Relaxed),
        ),
    ] {
        counter(enc, name, help, value)?;
    }
    for (name, help, value) in [
        (
            "spool_bytes",
            "Bytes of the disk spool's segment files",
            f.spool_bytes.load(Relaxed),
        ),
        (
            "spool_batches",
            "Batches waiting in the disk spool",
            f.spool_batches.load(Relaxed),
        ),
        (
            "spool_metrics",
            "Metrics waiting in the disk spool",
            f.spool_metrics.load(Relaxed),
        ),
    ] {
        gauge(enc, name, help, value as f64)?;
    }
    let posts = f.posts();
    labelled_counter(
        enc,
        "forward_posts",
        "POSTs to Monasca by outcome",
        "outcome",
        posts.iter().map(|(k, n, _)| (*k, *n)),
    )?;
    let mut seconds = enc.encode_descriptor(
        "forward_post_seconds",
        "Time spent in POSTs to Monasca by outcome",
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (outcome, _, secs) in &posts {
        let labels = [("outcome", *outcome)];
        ConstCounter::new(*secs).encode(seconds.encode_family(&labels)?)?;
    }
    let (renewals, failures) = t
        .auth
        .get()
        .map(|a| (a.renewals.load(Relaxed), a.failures.load(Relaxed)))
        .unwrap_or_default();
    counter(enc, "token_renewals", "Keystone tokens obtained", renewals)?;
    counter(
        enc,
        "token_failures",
        "Failed Keystone authentications",
        failures,
    )?;
    Ok(())
}

/// The probes' counters, when the probes stage runs (`probes.enabled`).
fn encode_probes(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use crate::probes::{GROUPS, REASONS};
    use prometheus_client::metrics::MetricType;
    use std::sync::atomic::Ordering::Relaxed;
    let Some(p) = t.probes.get() else {
        return Ok(());
    };
    let mut family = enc.encode_descriptor(
        "probe_errors",
        "Probe reads that failed, timed out, or whose metrics were invalid or dropped",
        None,
        MetricType::Counter,
    )?;
    for (g, group) in GROUPS.iter().enumerate() {
        for (r, reason) in REASONS.iter().enumerate() {
            let labels = [("group", *group), ("reason", *reason)];
            ConstCounter::new(p.errors[g][r].load(Relaxed))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    let stats: &crate::probes::ProbeStats = &p;
    labelled_counter(
        enc,
        "probe_metrics",
        "Probe metrics handed to the passthrough, by group",
        "group",
        GROUPS
            .iter()
            .zip(stats.metrics.iter())
            .map(|(g, n)| (*g, n.load(Relaxed))),
    )?;
    labelled_counter(
        enc,
        "probe_samples",
        "Probe samples completed, by group",
        "group",
        GROUPS
            .iter()
            .zip(stats.samples.iter())
            .map(|(g, n)| (*g, n.load(Relaxed))),
    )?;
    let mut family = enc.encode_descriptor(
        "probe_duration_seconds",
        "Duration of the group's last sample",
        None,
        MetricType::Gauge,
    )?;
    for (group, us) in GROUPS.iter().zip(stats.duration_us.iter()) {
        let labels = [("group", *group)];
        ConstGauge::new(us.load(Relaxed) as f64 / 1e6).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The local history's sizes and refusals, when it is kept (`history.enabled`).
fn encode_history(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    let Some(h) = t.history.get() else {
        return Ok(());
    };
    let s = h.stats();
    gauge(
        enc,
        "history_series",
        "Series with by-minute and by-hour summaries (history.max_series)",
        s.series as f64,
    )?;
    gauge(
        enc,
        "history_latest_series",
        "Series with a latest value for /api/metrics (history.max_latest)",
        s.latest_series as f64,
    )?;
    labelled_counter(
        enc,
        "history_refused",
        "Samples of new series not kept because the store was full: store=series (history.max_series), store=latest (history.max_latest)",
        "store",
        [("series", s.refused), ("latest", s.latest_refused)].into_iter(),
    )
}

/// The checks' counters and the Rainbow intake's, once the checks stage has started.
fn encode_checks(enc: &mut DescriptorEncoder<'_>, t: &Telemetry) -> Result {
    use crate::checks::OUTCOMES;
    use prometheus_client::metrics::MetricType;
    use std::sync::atomic::Ordering::Relaxed;
    let Some(c) = t.checks.get() else {
        return Ok(());
    };
    let mut family = enc.encode_descriptor(
        "check_runs",
        "Check runs by outcome: ok, failed (the thing checked is down), timeout (cut at the check's timeout), skipped (the previous run or every concurrency slot was still busy)",
        None,
        MetricType::Counter,
    )?;
    for (name, counters) in &c.checks {
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let labels = [("check", name.as_str()), ("outcome", *outcome)];
            ConstCounter::new(counters.runs[i].load(Relaxed))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = enc.encode_descriptor(
        "check_duration_seconds",
        "Duration of the check's last run",
        None,
        MetricType::Gauge,
    )?;
    for (name, counters) in &c.checks {
        let labels = [("check", name.as_str())];
        ConstGauge::new(counters.duration_us.load(Relaxed) as f64 / 1e6)
            .encode(family.encode_family(&labels)?)?;
    }
    labelled_counter(
        enc,
        "check_metrics",
        "Check metrics handed to the passthrough",
        "check",
        c.checks
            .iter()
            .map(|(name, n)| (name.as_str(), n.metrics.load(Relaxed))),
    )?;
    let mut family = enc.encode_descriptor(
        "check_metrics_dropped",
        "Check metrics dropped: invalid for Monasca, or buffer.max_pending full",
        None,
        MetricType::Counter,
    )?;
    for (name, counters) in &c.checks {
        for (reason, n) in [("invalid", &counters.invalid), ("full", &counters.full)] {
            let labels = [("check", name.as_str()), ("reason", reason)];
            ConstCounter::new(n.load(Relaxed)).encode(family.encode_family(&labels)?)?;
        }
    }
    let r = &c.rainbow;
    let mut family = enc.encode_descriptor(
        "user_metrics",
        "Rainbow user-defined metric records, by source (file, http) and outcome (accepted, invalid)",
        None,
        MetricType::Counter,
    )?;
    for (source, outcome, n) in [
        ("file", "accepted", &r.file_records),
        ("file", "invalid", &r.file_invalid),
        ("http", "accepted", &r.http_records),
        ("http", "invalid", &r.http_invalid),
    ] {
        let labels = [("source", source), ("outcome", outcome)];
        ConstCounter::new(n.load(Relaxed)).encode(family.encode_family(&labels)?)?;
    }
    labelled_counter(
        enc,
        "user_metric_files",
        "Files of checks.files_dir read whole and removed (read), or left in place (failed: too large, unreadable, buffer full)",
        "outcome",
        [("read", &r.files_read), ("failed", &r.files_failed)]
            .into_iter()
            .map(|(o, n)| (o, n.load(Relaxed))),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_probe_counters_once_probes_run() {
        let t = Arc::new(Telemetry::new(1));
        assert!(!render(&t).contains("probe_"));
        let stats = Arc::new(crate::probes::ProbeStats::default());
        stats.count_error("disk", "timeout");
        stats.duration_us[0].store(1500, std::sync::atomic::Ordering::Relaxed);
        t.probes.set(Some(stats));
        let text = render(&t);
        assert!(
            text.contains("statsgate_probe_errors_total{group=\"disk\",reason=\"timeout\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("statsgate_probe_duration_seconds{group=\"cpu\"} 0.0015\n"),
            "{text}"
        );
        assert!(text.contains("statsgate_probe_metrics_total{group=\"net\"} 0\n"));
    }

    #[test]
    fn renders_the_history_figures_once_it_is_kept() {
        let t = Arc::new(Telemetry::new(1));
        assert!(!render(&t).contains("history_"));
        let h = crate::history::History::new(&crate::config::HistoryConfig {
            max_series: 1,
            max_latest: 2,
            ..Default::default()
        });
        let mut r = crate::batch::Rendered::default();
        let now = crate::clock::now_ms();
        for name in ["cpu", "mem", "other"] {
            r.push(name, "", std::iter::empty(), now, 1.0);
        }
        h.observe_at(&r, now);
        let _ = t.history.set(Arc::new(h));
        let text = render(&t);
        for line in [
            "statsgate_history_series 1.0\n",
            "statsgate_history_latest_series 2.0\n",
            "statsgate_history_refused_total{store=\"series\"} 1\n",
            "statsgate_history_refused_total{store=\"latest\"} 1\n",
            "# TYPE statsgate_history_series gauge\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn renders_labelled_counters() {
        let t = Arc::new(Telemetry::new(2));
        t.readers[0].accept(Kind::Counter);
        t.readers[1].accept(Kind::Counter);
        t.readers[1].reject(Reject::BadValue);
        t.readers[0].datagrams.add(3);
        let text = render(&t);
        assert!(
            text.contains("statsgate_lines_accepted_total{type=\"counter\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("statsgate_lines_rejected_total{reason=\"bad_value\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("statsgate_datagrams_received_total 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
