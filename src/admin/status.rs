//! The status page (`GET /` on the admin port): what the gateway is doing, for a person on
//! an edge node or during an outage. One self-contained HTML document (inline CSS and SVG,
//! a small inline script that refreshes `<main>` in place; readable without it).
//!
//! Owns: the page's layout, its header and fixed-size sections (ingest, forward, token,
//! series with [`MAX_TOP_NAMES`] rows; the variable ones are [`super::sections`]'). Every figure is a sample of [`crate::telemetry::render`] (read
//! back by [`super::samples`]) or comes from the structures the admin APIs read; each
//! carries a `data-metric`/`data-labels` hook naming its `/metrics` sample. Must never:
//! define a figure of its own, show a token or secret, write an outside value unescaped,
//! or wait on a lock another stage holds for long (Keystone's is only tried).

use super::html::{self, esc, esc_cut, figure, human_bytes};
use super::samples::Samples;
use super::sections::{self, more};
use super::{AdminState, OUTAGE_FAILURES};
use crate::clock::now_ms;
use crate::telemetry;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

/// Rows of the top names (the budget keeps 20 per interval).
pub const MAX_TOP_NAMES: usize = 20;

pub async fn page(State(s): State<AdminState>) -> impl IntoResponse {
    let nonce = html::nonce();
    let body = render(&s, &nonce, now_ms());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, html::csp(&nonce)),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        body,
    )
}

/// The whole document at `now` (epoch ms).
pub fn render(s: &AdminState, nonce: &str, now: u64) -> String {
    let samples = Samples::parse(&telemetry::render(&s.telemetry));
    let mut main = String::with_capacity(32 * 1024);
    ingest(&mut main, s, &samples);
    forward(&mut main, s, &samples, now);
    token(&mut main, s, &samples, now);
    series(&mut main, s, &samples);
    sections::charts(&mut main, s, now);
    sections::heartbeats(&mut main, s, &samples, now);
    sections::families(&mut main, &samples, "checks", "statsgate_check_");
    sections::families(&mut main, &samples, "probes", "statsgate_probe_");
    html::document(nonce, &header(s, &samples, now), &main)
}

fn header(s: &AdminState, samples: &Samples, now: u64) -> String {
    let problems = super::health_problems(&super::health_inputs(s, now));
    let mut out = String::new();
    let host = gethostname::gethostname();
    let _ = write!(
        out,
        "<h1>statsgate status</h1><span>host <b>{}</b></span><span>version {}</span>",
        esc_cut(&host.to_string_lossy()),
        esc(env!("CARGO_PKG_VERSION"))
    );
    if problems.is_empty() {
        out.push_str("<span id=\"health\" class=\"state ok\">healthy</span>");
    } else {
        out.push_str("<span id=\"health\" class=\"state bad\">failing</span>");
        for p in &problems {
            let _ = write!(out, "<span class=\"bad\">{}</span>", esc(p));
        }
    }
    let _ = write!(
        out,
        "<span>up {}</span>",
        duration(samples.number("statsgate_uptime_seconds", ""))
    );
    let _ = write!(
        out,
        "<span class=\"muted\">as of {} (refreshed every {} s with JavaScript)</span>",
        clock(now),
        html::REFRESH_SECONDS
    );
    out
}

/// Seconds for a person: "42 s", "3 min 5 s", "2 h 10 min", "4 d 3 h".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// `HH:MM:SS` UTC of an epoch-ms instant.
fn clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// A table row: a caption and the figure `name{labels}`, with `extra` text after it.
pub(super) fn row(out: &mut String, samples: &Samples, caption: &str, name: &str, labels: &str) {
    let _ = write!(out, "<tr><th>{}</th>", esc(caption));
    figure(out, "td", samples, name, labels);
    out.push_str("</tr>");
}

/// A row of a byte figure, with its size for a person beside it.
fn bytes_row(out: &mut String, samples: &Samples, caption: &str, name: &str) {
    let _ = write!(out, "<tr><th>{}</th>", esc(caption));
    figure(out, "td", samples, name, "");
    let _ = write!(
        out,
        "<td class=\"muted\">{}</td></tr>",
        human_bytes(samples.number(name, ""))
    );
}

/// The rows of a labelled family whose value is not 0, captioned by `label`; "none" if all are.
pub(super) fn nonzero_rows(
    out: &mut String,
    samples: &Samples,
    name: &str,
    label: &str,
    what: &str,
) {
    let mut any = false;
    for s in samples.family(name) {
        if s.value.parse::<f64>().is_ok_and(|v| v != 0.0) {
            any = true;
            let caption = format!("{what}: {}", s.label(label).unwrap_or(""));
            row(out, samples, &caption, name, &s.labels_raw);
        }
    }
    if !any {
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"muted\">none</td></tr>",
            esc(what)
        );
    }
}

fn ingest(out: &mut String, s: &AdminState, samples: &Samples) {
    out.push_str("<section id=\"ingest\"><h2>Ingest</h2><table class=\"kv\">");
    // Lines per second over the last flush interval, from the flusher's own
    // statsgate.lines_accepted (the accepted-lines difference it sent); the average since
    // start when the history holds none (self-metrics are sent only when forwarding).
    let interval = s.flush_interval.as_secs_f64().max(1e-3);
    let last = s.telemetry.history.get().and_then(|h| {
        h.latest("statsgate.lines_accepted", &[], 1)
            .into_iter()
            .find(|l| l.name == "statsgate.lines_accepted")
    });
    let accepted: f64 = samples
        .family("statsgate_lines_accepted_total")
        .filter_map(|s| s.value.parse::<f64>().ok())
        .sum();
    let (rate, how) = match last {
        Some(l) => (l.value / interval, "last flush interval"),
        None => (
            accepted / s.telemetry.uptime_seconds().max(1e-3),
            "average since start",
        ),
    };
    let _ = write!(
        out,
        "<tr><th>lines/s</th><td class=\"n\" id=\"rate\">{rate:.1}</td><td class=\"muted\">{how}</td></tr>"
    );
    row(
        out,
        samples,
        "datagrams",
        "statsgate_datagrams_received_total",
        "",
    );
    bytes_row(out, samples, "bytes", "statsgate_bytes_received_total");
    for a in samples.family("statsgate_lines_accepted_total") {
        let caption = format!("accepted: {}", a.label("type").unwrap_or(""));
        row(
            out,
            samples,
            &caption,
            "statsgate_lines_accepted_total",
            &a.labels_raw,
        );
    }
    nonzero_rows(
        out,
        samples,
        "statsgate_lines_rejected_total",
        "reason",
        "rejected",
    );
    row(
        out,
        samples,
        "kernel drops",
        "statsgate_kernel_receive_drops_total",
        "",
    );
    row(
        out,
        samples,
        "too large",
        "statsgate_datagrams_too_large_total",
        "",
    );
    row(
        out,
        samples,
        "source denied",
        "statsgate_source_denied_total",
        "",
    );
    row(
        out,
        samples,
        "receive errors",
        "statsgate_receive_errors_total",
        "",
    );
    row(
        out,
        samples,
        "HTTP metrics accepted",
        "statsgate_http_metrics_accepted_total",
        "",
    );
    row(
        out,
        samples,
        "HTTP metrics rejected",
        "statsgate_http_metrics_rejected_total",
        "",
    );
    out.push_str("</table></section>");
}

/// sending / outage / spooling, by `/healthz`'s rule for an outage.
fn forward_state(
    s: &AdminState,
    samples: &Samples,
    now: u64,
) -> (&'static str, &'static str, &'static str) {
    let inputs = super::health_inputs(s, now);
    let outage = super::health_problems(&inputs)
        .iter()
        .any(|p| p.starts_with("monasca unreachable"));
    if outage {
        (
            "outage",
            "bad",
            "Monasca unreachable, metrics are queued or spooled",
        )
    } else if samples.number("statsgate_spool_batches", "") > 0.0 {
        ("spooling", "warn", "replaying the disk spool")
    } else if inputs.consecutive_failures >= OUTAGE_FAILURES {
        ("retrying", "warn", "recent POSTs failed")
    } else if samples.number("statsgate_forward_batches_sent_total", "") > 0.0 {
        ("sending", "ok", "")
    } else {
        ("idle", "muted", "nothing sent to Monasca yet")
    }
}

fn forward(out: &mut String, s: &AdminState, samples: &Samples, now: u64) {
    let (state, class, why) = forward_state(s, samples, now);
    let f = &s.telemetry.forward;
    let last_ok = f.last_success_ms.load(Relaxed);
    let _ = write!(
        out,
        "<section id=\"forward\"><h2>Forward to Monasca</h2>\
         <p>state <span class=\"state {class}\" id=\"forward-state\">{state}</span> {why} · \
         {} POSTs failed in a row · last delivery {}</p><table class=\"kv\">",
        f.consecutive_failures.load(Relaxed),
        if last_ok == 0 {
            "never".to_owned()
        } else {
            format!("{:.0} s ago", now.saturating_sub(last_ok) as f64 / 1e3)
        }
    );
    row(
        out,
        samples,
        "batches sent",
        "statsgate_forward_batches_sent_total",
        "",
    );
    row(
        out,
        samples,
        "metrics sent",
        "statsgate_forward_metrics_sent_total",
        "",
    );
    row(
        out,
        samples,
        "queue batches",
        "statsgate_forward_queue_batches",
        "",
    );
    bytes_row(out, samples, "queue bytes", "statsgate_forward_queue_bytes");
    bytes_row(out, samples, "spool bytes", "statsgate_spool_bytes");
    row(
        out,
        samples,
        "spool batches (replay lag)",
        "statsgate_spool_batches",
        "",
    );
    row(out, samples, "spool metrics", "statsgate_spool_metrics", "");
    row(
        out,
        samples,
        "replayed metrics",
        "statsgate_forward_replayed_metrics_total",
        "",
    );
    row(
        out,
        samples,
        "retries",
        "statsgate_forward_retries_total",
        "",
    );
    nonzero_rows(
        out,
        samples,
        "statsgate_forward_metrics_dropped_total",
        "reason",
        "metrics dropped",
    );
    nonzero_rows(
        out,
        samples,
        "statsgate_forward_posts_total",
        "outcome",
        "POSTs",
    );
    out.push_str("</table></section>");
}

fn token(out: &mut String, s: &AdminState, samples: &Samples, now: u64) {
    out.push_str("<section id=\"token\"><h2>Keystone token</h2>");
    match s.telemetry.auth.get() {
        None => out.push_str("<p class=\"muted\">no Keystone configured</p>"),
        Some(auth) => {
            let expiry = match auth.expires_at() {
                None => "no token held (or a renewal is in flight)".to_owned(),
                Some(at) => {
                    let at_ms = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    if at_ms > now {
                        format!("expires in {:.0} min", (at_ms - now) as f64 / 60e3)
                    } else {
                        "expired".to_owned()
                    }
                }
            };
            let _ = write!(out, "<p id=\"token-expiry\">{}</p>", esc(&expiry));
        }
    }
    out.push_str("<table class=\"kv\">");
    row(
        out,
        samples,
        "renewals",
        "statsgate_token_renewals_total",
        "",
    );
    row(
        out,
        samples,
        "failures",
        "statsgate_token_failures_total",
        "",
    );
    row(
        out,
        samples,
        "re-authentications after 401",
        "statsgate_forward_reauthentications_total",
        "",
    );
    out.push_str("</table></section>");
}

fn series(out: &mut String, s: &AdminState, samples: &Samples) {
    let t = &s.telemetry;
    out.push_str("<section id=\"series\"><h2>Flush and series budget</h2><table class=\"kv\">");
    row(out, samples, "flushes", "statsgate_flushes_total", "");
    row(
        out,
        samples,
        "series (last interval)",
        "statsgate_series",
        "",
    );
    row(
        out,
        samples,
        "gauges persisted",
        "statsgate_gauges_persisted",
        "",
    );
    row(
        out,
        samples,
        "refused: series limit",
        "statsgate_lines_rejected_total",
        "reason=\"series_limit\"",
    );
    row(
        out,
        samples,
        "refused: per-name limit",
        "statsgate_lines_rejected_total",
        "reason=\"name_series_limit\"",
    );
    row(
        out,
        samples,
        "metrics emitted",
        "statsgate_metrics_emitted_total",
        "",
    );
    if let Some(b) = t.budget.get() {
        let _ = write!(
            out,
            "<tr><th>budget</th><td class=\"n\">{}</td><td class=\"muted\">series.max_series ({} per name); {} live this interval</td></tr>",
            b.max_total(),
            b.max_per_name(),
            b.live()
        );
    }
    out.push_str("</table><h2>Top names (last interval)</h2>");
    let top = t.top_names.lock().map(|g| g.clone()).unwrap_or_default();
    if top.is_empty() {
        out.push_str("<p class=\"muted\">none yet</p>");
    } else {
        out.push_str(
            "<table id=\"top-names\"><tr><th>name</th><th>series</th><th>refused</th></tr>",
        );
        for n in top.iter().take(MAX_TOP_NAMES) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc_cut(&n.name),
                n.series,
                n.refused
            );
        }
        out.push_str("</table>");
        more(out, top.len(), MAX_TOP_NAMES);
    }
    out.push_str("</section>");
}
