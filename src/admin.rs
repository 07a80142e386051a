//! Admin HTTP (`admin.listen`, loopback by default): `/healthz`, `/metrics`,
//! `/api/heartbeats` (the liveness table) and `/api/limits` (series limits and top names)
//! for operators.
//!
//! Owns: the operator-facing HTTP routes. Must never: take a lock the readers take, or
//! expose a secret.

use crate::clock::now_ms;
use crate::heartbeat::{Filter, Heartbeats};
use crate::telemetry::{self, Telemetry};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

/// Binds the admin port and serves it on the current tokio runtime until the future that
/// `shutdown` is completes.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    heartbeats: Option<Arc<Heartbeats>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(telemetry, heartbeats);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok((local, task))
}

#[derive(Clone)]
pub struct AdminState {
    telemetry: Arc<Telemetry>,
    heartbeats: Option<Arc<Heartbeats>>,
}

pub fn router(telemetry: Arc<Telemetry>, heartbeats: Option<Arc<Heartbeats>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/heartbeats", get(heartbeats_api))
        .route("/api/limits", get(limits_api))
        .with_state(AdminState {
            telemetry,
            heartbeats,
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
        "max_series": budget.map(|b| b.max_total),
        "max_series_per_name": budget.map(|b| b.max_per_name),
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

async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    let t = &s.telemetry;
    let body = serde_json::json!({
        "status": "ok",
        "uptime_seconds": t.uptime_seconds(),
        "readers": t.readers.len(),
        "last_flush_unix": t.flush.last_flush_unix.get(),
    });
    (
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
