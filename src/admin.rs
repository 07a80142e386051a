//! Admin HTTP (`admin.listen`, loopback by default): `/healthz` and `/metrics` for operators.
//!
//! Owns: the operator-facing HTTP routes. Must never: take a lock the readers take, or
//! expose a secret.

use crate::telemetry::{self, Telemetry};
use axum::Router;
use axum::extract::State;
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(telemetry);
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

pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
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

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        telemetry::render(&t),
    )
}
