//! HTTP ingest for local clients (`http.listen`): `POST /beat` exactly as the GE Heartbeat
//! script sends it, `GET /status`, and `POST /v2.0/metrics` so that clients without
//! credentials can post Monasca JSON through statsgate's own token.
//!
//! Owns: those routes, the body-size limit and the source allow-list (one layer over all
//! routes). Must never: drop a connection on a bad request (every error is a status with a
//! JSON body naming the problem), or forward a metric Monasca would refuse.

mod client_metrics;

pub use client_metrics::validate_metric;

use crate::allow::AllowList;
use crate::clock::now_ms;
use crate::heartbeat::{self, Heartbeats, Refusal, Via};
use crate::passthrough::Passthrough;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct HttpStats {
    pub metrics_accepted: AtomicU64,
    pub metrics_rejected: AtomicU64,
    pub denied: AtomicU64,
}

#[derive(Clone)]
pub struct HttpState {
    pub beats: Arc<Heartbeats>,
    pub passthrough: Arc<Passthrough>,
    pub allow: Arc<AllowList>,
    pub stats: Arc<HttpStats>,
}

pub fn router(state: HttpState, max_body: usize) -> Router {
    Router::new()
        .route("/beat", post(beat))
        .route("/status", get(status))
        .route("/v2.0/metrics", post(metrics))
        .layer(DefaultBodyLimit::max(max_body))
        // Outermost: a refused source is answered before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            allow_list,
        ))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    max_body: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(state, max_body).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP ingest server stopped");
        }
    });
    Ok((local, task))
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Response {
    (
        status,
        axum::Json(json!({"error": message.into(), "field": field})),
    )
        .into_response()
}

/// `http.allow`, for every route: 403 with a JSON error for any other source.
async fn allow_list(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.allow.permits(peer.ip()) {
        return next.run(request).await;
    }
    state.stats.denied.fetch_add(1, Relaxed);
    error(
        StatusCode::FORBIDDEN,
        format!("{} is not in http.allow", peer.ip()),
        None,
    )
}

/// The GE script posts without a JSON content type, so none is required.
async fn beat(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let beat = match heartbeat::parse_json(&body) {
        Ok(b) => b,
        Err(e) => {
            state.beats.stats.reject(e.label());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, e.to_string(), e.field());
        }
    };
    match state.beats.accept(beat, Some(peer), Via::Http, now_ms()) {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response(),
        Err(Refusal::EmptyId) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "field ID: must not be empty (or set heartbeat.derive_id)",
            Some("ID"),
        ),
        Err(Refusal::Full) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "buffer.max_pending is full; retry later",
            None,
        ),
    }
}

async fn status() -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"status": "ok", "service": "statsgate"})),
    )
        .into_response()
}

/// One metric or an array. All valid: 204, as Monasca answers. Some refused: 202 with the
/// refused ones listed. None valid: 422 with the list. Not JSON: 400.
async fn metrics(State(state): State<HttpState>, body: Bytes) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request body is not valid JSON: {e}"),
                None,
            );
        }
    };
    let items = match parsed {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match validate_metric(item) {
            Ok(m) => accepted.push(m),
            Err(reason) => {
                rejected.push(json!({"index": index, "name": item.get("name"), "reason": reason}))
            }
        }
    }
    if !accepted.is_empty() && state.passthrough.push_metrics(&accepted).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "buffer.max_pending is full; retry later",
            None,
        );
    }
    state
        .stats
        .metrics_accepted
        .fetch_add(accepted.len() as u64, Relaxed);
    state
        .stats
        .metrics_rejected
        .fetch_add(rejected.len() as u64, Relaxed);
    if rejected.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let status = if accepted.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    (
        status,
        axum::Json(json!({"accepted": accepted.len(), "rejected": rejected})),
    )
        .into_response()
}
