//! The request-body guard of the HTTP listener: every body is bounded in size
//! (`http.max_body`), in time (`http.body_timeout`) and, all connections together, in memory
//! (`http.body_budget`).
//!
//! Owns: reading a body into memory and the 413 / 408 / 503 answers (JSON, counted). Must
//! never: buffer a byte before its share of the budget is held, wait for budget (a full
//! budget is a 503 at once, so a flood of stalled bodies cannot queue up behind it), or
//! answer in plain text.

use super::serve::ListenerStats;
use crate::heartbeat::Heartbeats;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Guard {
    max_body: usize,
    timeout: Duration,
    /// One permit per byte of body in flight.
    budget: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    /// `/beat`'s refusals are also the heartbeats' (`too_large`).
    beats: Arc<Heartbeats>,
}

impl Guard {
    pub fn new(
        max_body: usize,
        budget: usize,
        timeout: Duration,
        stats: Arc<ListenerStats>,
        beats: Arc<Heartbeats>,
    ) -> Guard {
        Guard {
            max_body,
            timeout,
            budget: Arc::new(Semaphore::new(budget.min(Semaphore::MAX_PERMITS))),
            stats,
            beats,
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": message, "field": null})),
    )
        .into_response()
}

/// Why a body could not be read.
enum Unread {
    TooLarge,
    Broken,
}

/// Reads `body` whole, refusing it as soon as it passes `max` bytes.
async fn read(mut body: Body, max: usize, expected: usize) -> Result<Bytes, Unread> {
    let mut buf = Vec::with_capacity(expected.min(max));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Unread::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(Unread::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

pub async fn guard(State(g): State<Guard>, request: Request, next: Next) -> Response {
    let too_large = |g: &Guard, path: &str| {
        g.stats.refused_too_large.fetch_add(1, Relaxed);
        if path == "/beat" {
            g.beats.stats.reject("too_large");
        }
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than http.max_body ({} bytes)",
                g.max_body
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body as u64) {
        return too_large(&g, request.uri().path());
    }
    // Without a length (chunked), the body may be as large as the limit allows.
    let need = declared.map_or(g.max_body, |n| n as usize);
    let Ok(held) = Arc::clone(&g.budget).try_acquire_many_owned(need as u32) else {
        g.stats.refused_busy.fetch_add(1, Relaxed);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight (http.body_budget); retry later".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(g.timeout, read(body, g.max_body, need)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Unread::TooLarge)) => return too_large(&g, &path),
        Ok(Err(Unread::Broken)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read".into(),
            );
        }
        Err(_) => {
            g.stats.timeouts_body.fetch_add(1, Relaxed);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within http.body_timeout ({})",
                    humantime::format_duration(g.timeout)
                ),
            );
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // Held until the handler is done with the body.
    drop(held);
    response
}
