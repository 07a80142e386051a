//! HTTP ingest for local clients (`http.listen`): `POST /beat` exactly as the GE Heartbeat
//! script sends it (over HTTPS when `http.tls_cert` is set: [`tls`]), `GET /status`, `POST /v2.0/metrics` so that clients without
//! credentials can post Monasca JSON through statsgate's own token (a switch of its own,
//! `http.metrics_endpoint`, optionally behind `http.metrics_token`), and Rainbow's SDK
//! records at `POST <checks.rainbow_path>` ([`rainbow`]).
//!
//! Owns: those routes, the body-size limit and the shared body budget (a guard on each
//! route that takes a body), and the serving code both TCP listeners share ([`serve`]:
//! allow-list at accept, connection caps, timeouts). Must never: drop a connection on a
//! bad request (every error is a status with a JSON body naming the problem), buffer a
//! body the budget has not granted, log the metrics token, or forward a metric Monasca
//! would refuse.

mod body;
mod client_metrics;
pub mod liz;
mod rainbow;
pub mod serve;
pub mod tls;

pub use client_metrics::validate_metric;

use crate::allow::AllowList;
use crate::clock::now_ms;
use crate::config::{HttpConfig, MetricsEndpoint};
use crate::heartbeat::{self, Heartbeats, Refusal, Via};
use crate::passthrough::Passthrough;
use crate::secret::Secret;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use serve::{Limits, ListenerStats};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct HttpStats {
    pub metrics_accepted: AtomicU64,
    pub metrics_rejected: AtomicU64,
    /// `POST /v2.0/metrics` refused: switched off (404), no token (401), wrong token (403).
    pub metrics_refused_off: AtomicU64,
    pub metrics_refused_unauthorized: AtomicU64,
    pub metrics_refused_forbidden: AtomicU64,
    /// liz-monitor's `POST /api/perf/<host>/<epoch>`: accepted (200), refused (the API off,
    /// a bad body or host, `buffer.max_pending` full).
    pub liz_posts_accepted: AtomicU64,
    pub liz_posts_refused: AtomicU64,
    /// The two listeners' connection and timeout counters.
    pub http: Arc<ListenerStats>,
    pub admin: Arc<ListenerStats>,
}

#[derive(Clone)]
pub struct HttpState {
    pub beats: Arc<Heartbeats>,
    pub passthrough: Arc<Passthrough>,
    /// `http.allow`, replaced by a reload.
    pub allow: Arc<crate::live::Live<AllowList>>,
    pub stats: Arc<HttpStats>,
    /// Rainbow's user-defined metrics counters (`checks.rainbow_path`).
    pub rainbow: Arc<crate::checks::rainbow::RainbowStats>,
    /// The local history (`history.enabled`), for liz's `/api/perf` routes.
    pub history: Option<Arc<crate::history::History>>,
}

/// The HTTP listener's settings, from `http.*` and the connection cap in force.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body: usize,
    pub body_budget: usize,
    pub body_timeout: Duration,
    /// `POST /v2.0/metrics` is served at all.
    pub metrics_endpoint: bool,
    pub metrics_token: Secret,
    /// Where Rainbow's SDK posts its records (`checks.rainbow_path`), when served.
    pub rainbow_path: Option<String>,
    /// The gateway's default dimensions (`hostname` included), given to Rainbow's records.
    pub rainbow_dimensions: Vec<(String, String)>,
    /// liz's API is served (`http.liz_endpoint`).
    pub liz_endpoint: bool,
    /// The default dimensions of liz's gauges (`hostname` replaced by the posted host).
    pub liz_dimensions: Vec<(String, String)>,
    /// `heartbeat.max_skew`, for liz's posted epochs.
    pub liz_max_skew: Duration,
    pub limits: Limits,
    /// When set (`http.tls_cert`), the listener serves HTTPS only, each connection with the
    /// config current at its accept.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl Settings {
    pub fn from_config(c: &HttpConfig, addr: SocketAddr, max_connections: usize) -> Settings {
        Settings {
            max_body: c.max_body.bytes() as usize,
            body_budget: c.body_budget.bytes() as usize,
            body_timeout: c.body_timeout.get(),
            metrics_endpoint: metrics_endpoint_on(c.metrics_endpoint, addr),
            metrics_token: c.metrics_token.clone(),
            rainbow_path: None,
            rainbow_dimensions: Vec::new(),
            liz_endpoint: metrics_endpoint_on(c.liz_endpoint, addr),
            liz_dimensions: Vec::new(),
            liz_max_skew: Duration::from_secs(300),
            limits: Limits {
                max_connections,
                header_timeout: c.header_timeout.get(),
                idle_timeout: c.idle_timeout.get(),
            },
            tls: None,
        }
    }
}

/// `auto` serves the endpoint only on a loopback address: on any other, it would let
/// whoever reaches the port post anything under the gateway's token.
pub fn metrics_endpoint_on(mode: MetricsEndpoint, listen: SocketAddr) -> bool {
    match mode {
        MetricsEndpoint::On => true,
        MetricsEndpoint::Off => false,
        MetricsEndpoint::Auto => listen.ip().is_loopback(),
    }
}

/// What the handlers share beyond [`HttpState`].
#[derive(Clone)]
struct Shared {
    state: HttpState,
    body: body::Guard,
    metrics_endpoint: bool,
    metrics_token: Arc<Secret>,
    rainbow_dimensions: Arc<Vec<(String, String)>>,
}

pub fn router(state: HttpState, settings: &Settings) -> Router {
    let shared = Shared {
        body: body::Guard::new(
            settings.max_body,
            settings.body_budget,
            settings.body_timeout,
            Arc::clone(&state.stats.http),
            Arc::clone(&state.beats),
        ),
        state,
        metrics_endpoint: settings.metrics_endpoint,
        metrics_token: Arc::new(settings.metrics_token.clone()),
        rainbow_dimensions: Arc::new(settings.rainbow_dimensions.clone()),
    };
    // Each route that takes a body reads it through the guard (size, budget, timeout); the
    // metrics switch and token are checked before it, so a refused client costs no body.
    let guard = axum::middleware::from_fn_with_state(shared.body.clone(), body::guard);
    let gate = axum::middleware::from_fn_with_state(shared.clone(), metrics_gate);
    let liz = liz::Publish {
        passthrough: Arc::clone(&shared.state.passthrough),
        dimensions: Arc::new(settings.liz_dimensions.clone()),
        max_skew_ms: settings.liz_max_skew.as_millis() as u64,
        stats: Arc::clone(&shared.state.stats),
    };
    let mut router = Router::new()
        .route("/beat", post(beat).layer(guard.clone()))
        .route("/status", get(status))
        .route(
            "/v2.0/metrics",
            post(metrics).layer(guard.clone()).layer(gate),
        )
        .merge(liz::http_routes(
            shared.state.history.clone(),
            liz,
            settings.liz_endpoint,
            shared.body.clone(),
        ));
    if let Some(path) = &settings.rainbow_path {
        router = router.route(path, post(rainbow_store).layer(guard));
    }
    router
        .fallback(not_found)
        // The guard has already bounded the body; this only keeps the extractor's own
        // (plain-text) limit from ever being the one that answers.
        .layer(DefaultBodyLimit::max(settings.max_body))
        .with_state(shared)
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if settings.metrics_endpoint && !addr.ip().is_loopback() && settings.metrics_token.is_empty() {
        tracing::warn!(
            listen = %addr,
            "http.metrics_endpoint is on for a non-loopback address without http.metrics_token: \
             anyone who reaches it can post metrics under the gateway's token"
        );
    }
    if settings.tls.is_some() {
        tracing::info!(listen = %addr, "http.listen serves HTTPS only (http.tls_cert)");
    }
    if settings.liz_endpoint && !addr.ip().is_loopback() {
        tracing::warn!(
            listen = %addr,
            "http.liz_endpoint is on for a non-loopback address: anyone who reaches it can \
             post liz gauges under the gateway's token and read the history"
        );
    }
    let listener = serve::Listener {
        name: "http",
        allow: Some(Arc::clone(&state.allow)),
        tls: settings.tls.clone(),
    };
    let stats = Arc::clone(&state.stats.http);
    let app = router(state, &settings);
    serve::serve_listener(listener, addr, app, settings.limits, stats, shutdown).await
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Response {
    (
        status,
        axum::Json(json!({"error": message.into(), "field": field})),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route", None)
}

/// The GE script posts without a JSON content type, so none is required.
async fn beat(
    State(Shared { state, .. }): State<Shared>,
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

/// Rainbow's SDK posts JSON without needing a content type check: none is required.
async fn rainbow_store(State(shared): State<Shared>, body: Bytes) -> Response {
    let state = &shared.state;
    rainbow::store(
        &body,
        &shared.rainbow_dimensions,
        &state.passthrough,
        &state.rainbow,
    )
}

/// Exactly what README promises (and the GE proxy's senders only look at the status).
async fn status() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// The endpoint's switch and token: `None` when the request may go on.
fn metrics_refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let stats = &shared.state.stats;
    if !shared.metrics_endpoint {
        stats.metrics_refused_off.fetch_add(1, Relaxed);
        return Some(error(
            StatusCode::NOT_FOUND,
            "POST /v2.0/metrics is off on this listener (http.metrics_endpoint)",
            None,
        ));
    }
    let token = &shared.metrics_token;
    if token.is_empty() {
        return None;
    }
    let Some(offered) = offered_token(headers) else {
        stats.metrics_refused_unauthorized.fetch_add(1, Relaxed);
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "a token is required: Authorization: Bearer <http.metrics_token>",
            None,
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(r);
    };
    if token.matches(offered) {
        return None;
    }
    // The offered token is never echoed or logged: it may be someone's real credential.
    stats.metrics_refused_forbidden.fetch_add(1, Relaxed);
    Some(error(
        StatusCode::FORBIDDEN,
        "the token does not match http.metrics_token",
        None,
    ))
}

/// `Authorization: Bearer <t>`, else `X-Auth-Token: <t>` (what Monasca clients send).
fn offered_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        let scheme = b"bearer ";
        return (v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme))
            .then(|| v[scheme.len()..].trim_ascii());
    }
    headers
        .get("x-auth-token")
        .map(|v| v.as_bytes().trim_ascii())
}

/// One metric or an array. All valid: 204, as Monasca answers. Some refused: 202 with the
/// refused ones listed. None valid: 422 with the list. Not JSON: 400.
async fn metrics_gate(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match metrics_refusal(&shared, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

async fn metrics(State(shared): State<Shared>, body: Bytes) -> Response {
    let state = &shared.state;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_serves_client_metrics_only_on_loopback() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        use MetricsEndpoint::*;
        assert!(metrics_endpoint_on(Auto, at("127.0.0.1:8080")));
        assert!(metrics_endpoint_on(Auto, at("[::1]:8080")));
        assert!(!metrics_endpoint_on(Auto, at("0.0.0.0:8080")));
        assert!(!metrics_endpoint_on(Auto, at("[::]:8080")));
        assert!(!metrics_endpoint_on(Auto, at("10.1.2.3:8080")));
        assert!(metrics_endpoint_on(On, at("0.0.0.0:8080")));
        assert!(!metrics_endpoint_on(Off, at("127.0.0.1:8080")));
    }

    #[test]
    fn the_token_comes_from_bearer_or_x_auth_token() {
        let h = |k: &'static str, v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(k, header::HeaderValue::from_static(v));
            m
        };
        assert_eq!(
            offered_token(&h("authorization", "Bearer abc")),
            Some(&b"abc"[..])
        );
        assert_eq!(
            offered_token(&h("authorization", "bearer  abc ")),
            Some(&b"abc"[..])
        );
        assert_eq!(offered_token(&h("authorization", "Basic abc")), None);
        assert_eq!(offered_token(&h("authorization", "Bearer ")), None);
        assert_eq!(offered_token(&h("x-auth-token", "abc")), Some(&b"abc"[..]));
        assert_eq!(offered_token(&HeaderMap::new()), None);
    }
}
