//! Admin HTTP (`admin.listen`, loopback by default): `/healthz`, `/metrics`,
//! `/api/heartbeats` (the liveness table), `/api/limits` (series limits and top names),
//! `/api/metrics` (the history's latest values, [`latest`]), liz's
//! `GET /api/perf/<host>[/<label>]` ([`crate::http::liz`]) and the status page at `/`
//! ([`status`]) for operators.
//!
//! Owns: the operator-facing HTTP routes and the health verdict of `/healthz`. Must never:
//! take a lock the readers take, expose a secret, or read a request body (it serves GETs;
//! the connection handling is [`crate::http::serve`]'s).

mod chart;
pub mod client;
mod html;
mod latest;
mod samples;
mod sections;
mod status;

use crate::clock::now_ms;
use crate::config::AdminConfig;
use crate::heartbeat::{Filter, Heartbeats};
use crate::http::serve::{self, Limits};
use crate::telemetry::{self, Telemetry};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// What the admin port needs to know beyond the counters.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub limits: Limits,
    /// `flush.interval`: `/healthz` calls the flusher stuck after [`STUCK_INTERVALS`] of them.
    pub flush_interval: Duration,
}

impl Settings {
    pub fn from_config(c: &AdminConfig, max_connections: usize, flush_interval: Duration) -> Self {
        Settings {
            limits: Limits {
                max_connections,
                header_timeout: c.header_timeout.get(),
                idle_timeout: c.idle_timeout.get(),
            },
            flush_interval,
        }
    }
}

/// Binds the admin port and serves it on the current tokio runtime until the future that
/// `shutdown` is completes.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    heartbeats: Option<Arc<Heartbeats>>,
    settings: Settings,
    reload: Option<ReloadTrigger>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let stats = Arc::clone(&telemetry.http.admin);
    let app = router(telemetry, heartbeats, settings.flush_interval).merge(reload_route(reload));
    serve::serve("admin", addr, app, None, settings.limits, stats, shutdown).await
}

/// Where `POST /-/reload` asks the gateway to reload; the answer comes back on the
/// one-shot sender.
pub type ReloadTrigger = tokio::sync::mpsc::Sender<
    tokio::sync::oneshot::Sender<(crate::telemetry::reload::ReloadOutcome, String)>,
>;

/// `POST /-/reload` (what `statsgate reload` calls), from a loopback peer only: the admin
/// port may be published for `/healthz` and `/metrics`, but a reload is the operator's.
fn reload_route(trigger: Option<ReloadTrigger>) -> Router {
    let Some(trigger) = trigger else {
        return Router::new();
    };
    Router::new().route(
        "/-/reload",
        axum::routing::post(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| {
                let trigger = trigger.clone();
                async move { reload(trigger, peer).await }
            },
        ),
    )
}

async fn reload(
    trigger: ReloadTrigger,
    peer: SocketAddr,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let reply = |code, outcome: &str, message: &str| {
        (
            code,
            axum::Json(serde_json::json!({"outcome": outcome, "message": message})),
        )
    };
    if !peer.ip().is_loopback() {
        return reply(
            StatusCode::FORBIDDEN,
            "refused",
            "a reload is accepted from loopback only",
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if trigger.send(tx).await.is_err() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "the gateway is shutting down",
        );
    }
    match rx.await {
        Ok((outcome, message)) => {
            let code = if outcome.ok() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            reply(code, outcome.label(), &message)
        }
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "the gateway is shutting down",
        ),
    }
}

#[derive(Clone)]
pub struct AdminState {
    telemetry: Arc<Telemetry>,
    heartbeats: Option<Arc<Heartbeats>>,
    flush_interval: Duration,
}

pub fn router(
    telemetry: Arc<Telemetry>,
    heartbeats: Option<Arc<Heartbeats>>,
    flush_interval: Duration,
) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/heartbeats", get(heartbeats_api))
        .route("/api/limits", get(limits_api))
        .route("/api/metrics", get(latest::metrics_api))
        .merge(crate::http::liz::admin_routes(
            telemetry.history.get().cloned(),
        ))
        .with_state(AdminState {
            telemetry,
            heartbeats,
            flush_interval,
        })
}

/// The liveness table, filtered by `enabler`, `version` and `state` (alive, late, dead).
async fn heartbeats_api(
    State(s): State<AdminState>,
    Query(query): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let Some(beats) = &s.heartbeats else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "heartbeats are not enabled"})),
        );
    };
    let filter = match Filter::from_query(&query) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": e})),
            );
        }
    };
    let instances = beats.liveness.instances(now_ms(), &filter);
    let body = serde_json::json!({"count": instances.len(), "instances": instances});
    (StatusCode::OK, axum::Json(body))
}

/// The series limits, this interval's use, and the names with the most series (and
/// refusals) in the last flushed interval: where a cardinality flood comes from.
async fn limits_api(State(s): State<AdminState>) -> impl IntoResponse {
    let t = &s.telemetry;
    let top = t.top_names.lock().map(|g| g.clone()).unwrap_or_default();
    let budget = t.budget.get();
    let body = serde_json::json!({
        "max_series": budget.map(|b| b.max_total()),
        "max_series_per_name": budget.map(|b| b.max_per_name()),
        "series_this_interval": budget.map(|b| b.live()),
        "gauges_persisted": t.flush.gauges_persisted.get(),
        "refused_total": {
            "series_limit": t.rejected(crate::reason::Reject::SeriesLimit),
            "name_series_limit": t.rejected(crate::reason::Reject::NameSeriesLimit),
        },
        "this_interval_top_names": budget.map(|b| b.top()).unwrap_or_default(),
        "last_interval_top_names": top,
    });
    axum::Json(body)
}

/// The flusher is stuck when no flush ended for this many intervals.
pub const STUCK_INTERVALS: u64 = 3;
/// Monasca is out when this many POSTs in a row failed (5xx, timeout, connection error)...
pub const OUTAGE_FAILURES: u64 = 3;
/// ...and nothing was delivered for [`STUCK_INTERVALS`] intervals (at least this long).
pub const OUTAGE_MIN: Duration = Duration::from_secs(2);
/// A spool write failure this recent makes the gateway unhealthy.
pub const SPOOL_ERROR_WINDOW: Duration = Duration::from_secs(300);

/// What `/healthz` judges, read from the counters at one instant (all times epoch ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct HealthInputs {
    pub now_ms: u64,
    pub started_ms: u64,
    pub flush_interval: Duration,
    pub last_flush_ms: u64,
    pub consecutive_failures: u64,
    pub last_success_ms: u64,
    pub last_spool_error_ms: u64,
    pub spool_bytes: u64,
}

/// The reasons the pipeline cannot make progress; empty means healthy. Pure, so that each
/// rule is unit-tested without a clock.
pub fn health_problems(h: &HealthInputs) -> Vec<String> {
    let mut problems = Vec::new();
    let interval = h.flush_interval.as_millis() as u64;
    // Before the first flush, the process start is the reference.
    let flushed = h.last_flush_ms.max(h.started_ms);
    let stuck_after = STUCK_INTERVALS * interval + 1000;
    let since_flush = h.now_ms.saturating_sub(flushed);
    if since_flush > stuck_after {
        problems.push(format!(
            "flusher stuck: no flush for {:.1}s (flush.interval {:.1}s)",
            since_flush as f64 / 1e3,
            interval as f64 / 1e3
        ));
    }
    let delivered = h.last_success_ms.max(h.started_ms);
    let since_delivery = h.now_ms.saturating_sub(delivered);
    let outage_after = (STUCK_INTERVALS * interval).max(OUTAGE_MIN.as_millis() as u64);
    if h.consecutive_failures >= OUTAGE_FAILURES && since_delivery > outage_after {
        problems.push(format!(
            "monasca unreachable: {} POSTs failed in a row, nothing delivered for {:.0}s{}",
            h.consecutive_failures,
            since_delivery as f64 / 1e3,
            if h.spool_bytes > 0 {
                format!(" ({} bytes spooled)", h.spool_bytes)
            } else {
                String::new()
            }
        ));
    }
    if h.last_spool_error_ms > 0
        && h.now_ms.saturating_sub(h.last_spool_error_ms) < SPOOL_ERROR_WINDOW.as_millis() as u64
    {
        problems.push(format!(
            "spool error: a write to buffer.spool_dir failed {:.0}s ago",
            h.now_ms.saturating_sub(h.last_spool_error_ms) as f64 / 1e3
        ));
    }
    problems
}

/// What `/healthz` and the status page judge, read from the counters at `now` (epoch ms).
fn health_inputs(s: &AdminState, now: u64) -> HealthInputs {
    let t = &s.telemetry;
    let f = &t.forward;
    HealthInputs {
        now_ms: now,
        started_ms: now.saturating_sub((t.uptime_seconds() * 1e3) as u64),
        flush_interval: match t.flush_interval_ms.load(Relaxed) {
            0 => s.flush_interval,
            ms => Duration::from_millis(ms),
        },
        last_flush_ms: t.flush.last_flush_unix.get() * 1000,
        consecutive_failures: f.consecutive_failures.load(Relaxed),
        last_success_ms: f.last_success_ms.load(Relaxed),
        last_spool_error_ms: f.last_spool_error_ms.load(Relaxed),
        spool_bytes: f.spool_bytes.load(Relaxed),
    }
}

/// 200 `{"status": "ok", ...}`, or 503 `{"status": "failing", "reasons": [...], ...}` when
/// the pipeline cannot make progress (the container image's HEALTHCHECK reads the status).
async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    let t = &s.telemetry;
    let f = &t.forward;
    let inputs = health_inputs(&s, now_ms());
    let reasons = health_problems(&inputs);
    let (code, status) = if reasons.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    let body = serde_json::json!({
        "status": status,
        "reasons": reasons,
        "uptime_seconds": t.uptime_seconds(),
        "readers": t.readers.len(),
        "last_flush_unix": t.flush.last_flush_unix.get(),
        "forward": {
            "consecutive_failures": inputs.consecutive_failures,
            "last_success_unix": inputs.last_success_ms / 1000,
            "queue_bytes": f.queue_bytes.load(Relaxed),
            "spool_bytes": inputs.spool_bytes,
        },
        "last_reload": t.reloads.last(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        telemetry::render(&s.telemetry),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn healthy() -> HealthInputs {
        HealthInputs {
            now_ms: T0 + 60_000,
            started_ms: T0,
            flush_interval: Duration::from_secs(10),
            last_flush_ms: T0 + 55_000,
            ..HealthInputs::default()
        }
    }

    #[test]
    fn a_fresh_or_flowing_gateway_is_healthy() {
        assert!(health_problems(&healthy()).is_empty());
        let fresh = HealthInputs {
            now_ms: T0 + 5_000,
            last_flush_ms: 0,
            ..healthy()
        };
        assert!(
            health_problems(&fresh).is_empty(),
            "no flush yet, but not late"
        );
    }

    #[test]
    fn no_flush_for_three_intervals_is_a_stuck_flusher() {
        let late = HealthInputs {
            last_flush_ms: T0 + 60_000 - 31_001,
            ..healthy()
        };
        let p = health_problems(&late);
        assert!(p.len() == 1 && p[0].starts_with("flusher stuck"), "{p:?}");
        let never = HealthInputs {
            last_flush_ms: 0,
            ..healthy()
        };
        assert_eq!(health_problems(&never).len(), 1);
    }

    #[test]
    fn failures_in_a_row_without_delivery_are_an_outage() {
        let out = HealthInputs {
            consecutive_failures: 5,
            last_success_ms: T0 + 10_000,
            spool_bytes: 4096,
            ..healthy()
        };
        let p = health_problems(&out);
        assert!(
            p.len() == 1 && p[0].starts_with("monasca unreachable"),
            "{p:?}"
        );
        assert!(p[0].contains("4096 bytes spooled"), "{p:?}");
        let blip = HealthInputs {
            consecutive_failures: 5,
            last_success_ms: T0 + 50_000,
            ..healthy()
        };
        assert!(
            health_problems(&blip).is_empty(),
            "a recent delivery: a blip"
        );
        let few = HealthInputs {
            consecutive_failures: 2,
            ..healthy()
        };
        assert!(health_problems(&few).is_empty());
    }

    #[test]
    fn a_recent_spool_error_is_reported_then_forgotten() {
        let recent = HealthInputs {
            last_spool_error_ms: T0 + 59_000,
            ..healthy()
        };
        assert!(health_problems(&recent)[0].starts_with("spool error"));
        let old = HealthInputs {
            now_ms: T0 + 600_000,
            last_flush_ms: T0 + 599_000,
            last_spool_error_ms: T0 + 59_000,
            ..healthy()
        };
        assert!(health_problems(&old).is_empty());
    }
}
