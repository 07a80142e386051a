//! liz's API (`reference/seed-apis.md` §1), so that an unchanged liz-monitor can publish to
//! statsgate and liz's readers can query it: `POST /api/perf/<host>/<epoch>` (the HTTP
//! listener only: each key of liz-monitor's `{"cpu": …, "mem": …}` becomes a gauge with
//! `hostname` = `<host>`, forwarded like any metric) and `GET /api/perf/<host>[/<label>]`
//! (both listeners: the history's by-minute and by-hour summaries in liz's shape).
//!
//! Routing is liz's (tornado's, first match wins, on the raw path, groups URL-unquoted):
//! route 1 `/api/perf/<host: no '/'>/<epoch: digits>` takes POST only; route 2
//! `/api/perf/<host>[/<label: anything, '/' included>]` takes GET only; anything else is 404.
//! Departures: JSON answers (`Content-Type: application/json`, where liz left tornado's
//! `text/html`), a bad body is a 400 naming the problem (liz: a 500 page), and the whole API
//! sits behind `http.liz_endpoint` on the HTTP listener.
//!
//! Owns: that routing, the POST body's mapping to metrics and the posts' counters. Must
//! never: read a body before the switch and the route allow it (the POST goes through the
//! listener's body guard), forward a metric Monasca would refuse, or hold the store's lock
//! (the store's own methods answer).

use super::{HttpStats, body, error};
use crate::clock::now_ms;
use crate::history::History;
use crate::metric::Metric;
use crate::passthrough::Passthrough;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Where liz's routes live.
const PREFIX: &str = "/api/perf";

/// What publishing needs (the HTTP listener only).
#[derive(Clone)]
pub struct Publish {
    pub passthrough: Arc<Passthrough>,
    /// The gateway's default dimensions; `hostname` is replaced by the posted host.
    pub dimensions: Arc<Vec<(String, String)>>,
    /// `heartbeat.max_skew`: a posted epoch further than this from the gateway's clock is
    /// replaced by the receive time.
    pub max_skew_ms: u64,
    pub stats: Arc<HttpStats>,
}

/// The routes' state on one listener.
#[derive(Clone)]
struct Liz {
    history: Option<Arc<History>>,
    /// `Some` on the HTTP listener, which serves route 1 (and so answers GET there 405).
    publish: Option<Publish>,
    /// `false` when `http.liz_endpoint` keeps the API off this listener.
    served: bool,
}

/// What a path under [`PREFIX`] names, by liz's two routes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Route 1: `/api/perf/<host>/<epoch>`.
    Post { host: String, epoch: String },
    /// Route 2: `/api/perf/<host>[/<label>]`.
    Get { host: String, label: Option<String> },
}

/// Why a path names nothing.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    /// No route matches: 404, as liz.
    NoRoute,
    /// A group does not unquote to UTF-8: 400, as tornado's `decode_argument`.
    NotUtf8,
}

/// Matches `path` (raw, still percent-encoded, without the query) against liz's routes.
fn route(path: &str) -> Result<Target, Miss> {
    let rest = path
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(Miss::NoRoute)?;
    let (host, tail) = match rest.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    if host.is_empty() {
        return Err(Miss::NoRoute);
    }
    let host = unquote(host)?;
    match tail {
        None => Ok(Target::Get { host, label: None }),
        // `/api/perf/h/`: route 2's label needs one character at least.
        Some("") => Err(Miss::NoRoute),
        Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => Ok(Target::Post {
            host,
            epoch: t.to_owned(),
        }),
        Some(t) => Ok(Target::Get {
            host,
            label: Some(unquote(t)?),
        }),
    }
}

/// tornado's `url_unescape(plus=False)` then UTF-8: `%XX` decoded, `+` kept, a `%` without
/// two hex digits kept as is.
fn unquote(s: &str) -> Result<String, Miss> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Miss::NotUtf8)
}

fn miss(m: Miss) -> Response {
    match m {
        Miss::NoRoute => error(
            StatusCode::NOT_FOUND,
            "no such route: liz's are GET /api/perf/<host>[/<label>] and POST /api/perf/<host>/<epoch>",
            None,
        ),
        Miss::NotUtf8 => error(
            StatusCode::BAD_REQUEST,
            "the path does not decode to UTF-8",
            None,
        ),
    }
}

fn not_allowed(allow: &'static str) -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this route takes {allow} only"),
        None,
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "liz's API is off on this listener (http.liz_endpoint)",
        None,
    )
}

/// The routes on the admin port: the GETs, always (operators reach it; it publishes nothing).
pub fn admin_routes<S: Clone + Send + Sync + 'static>(history: Option<Arc<History>>) -> Router<S> {
    routes(
        Liz {
            history,
            publish: None,
            served: true,
        },
        None,
    )
}

/// The routes on the HTTP listener: the GETs and the POST, or 404s when `served` is false
/// (`http.liz_endpoint`). The POST reads its body through `guard`.
pub fn http_routes<S: Clone + Send + Sync + 'static>(
    history: Option<Arc<History>>,
    publish: Publish,
    served: bool,
    guard: body::Guard,
) -> Router<S> {
    let liz = Liz {
        history,
        publish: Some(publish),
        served,
    };
    routes(liz, Some(guard))
}

fn routes<S: Clone + Send + Sync + 'static>(liz: Liz, guard: Option<body::Guard>) -> Router<S> {
    let mut perf: MethodRouter<Liz> = get(perf_get);
    if let Some(guard) = guard {
        // The gate (switch, route) runs first, so a refused post costs no body.
        let gate = axum::middleware::from_fn_with_state(liz.clone(), post_gate);
        let guard = axum::middleware::from_fn_with_state(guard, body::guard);
        perf = perf.post(perf_post.layer(guard).layer(gate));
    }
    let perf = perf.fallback(other_method);
    Router::new()
        // `/api/perf` and `/api/perf/` match neither of liz's routes: 404, in JSON.
        .route(PREFIX, any(no_route))
        .route("/api/perf/", any(no_route))
        .route("/api/perf/{*rest}", perf)
        .with_state(liz)
}

async fn no_route(State(liz): State<Liz>) -> Response {
    if !liz.served {
        return off();
    }
    miss(Miss::NoRoute)
}

async fn other_method(State(liz): State<Liz>, uri: Uri) -> Response {
    if !liz.served {
        return off();
    }
    match route(uri.path()) {
        Ok(Target::Post { .. }) if liz.publish.is_some() => not_allowed("POST"),
        Ok(_) => not_allowed("GET"),
        Err(m) => miss(m),
    }
}

async fn perf_get(State(liz): State<Liz>, uri: Uri) -> Response {
    if !liz.served {
        return off();
    }
    let (host, label) = match route(uri.path()) {
        Ok(Target::Get { host, label }) => (host, label),
        // liz's quirk, kept where route 1 exists: the path is a POST resource there. On the
        // admin port (no POST) the digits are just a label.
        Ok(Target::Post { .. }) if liz.publish.is_some() => return not_allowed("POST"),
        Ok(Target::Post { host, epoch }) => (host, Some(epoch)),
        Err(m) => return miss(m),
    };
    let Some(history) = &liz.history else {
        return error(
            StatusCode::NOT_FOUND,
            "the history is off (history.enabled: false): /api/perf has nothing to answer",
            None,
        );
    };
    let body = history.liz(&host, label.as_deref(), now_ms() / 1000);
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Before the body: the switch, then the route (only route 1 takes a POST).
async fn post_gate(State(liz): State<Liz>, request: Request, next: Next) -> Response {
    let count_refused = || {
        if let Some(p) = &liz.publish {
            p.stats.liz_posts_refused.fetch_add(1, Relaxed);
        }
    };
    if !liz.served {
        count_refused();
        return off();
    }
    match route(request.uri().path()) {
        Ok(Target::Post { .. }) => next.run(request).await,
        Ok(Target::Get { .. }) => not_allowed("GET"),
        Err(m) => miss(m),
    }
}

async fn perf_post(State(liz): State<Liz>, uri: Uri, body: Bytes) -> Response {
    let Some(publish) = &liz.publish else {
        return not_allowed("GET");
    };
    let Ok(Target::Post { host, epoch }) = route(uri.path()) else {
        // The gate let only route 1 through.
        return not_allowed("GET");
    };
    let refused = |r: Response| {
        publish.stats.liz_posts_refused.fetch_add(1, Relaxed);
        r
    };
    let now = now_ms();
    let ts = timestamp_ms(&epoch, now, publish.max_skew_ms);
    let metrics = match gauges(&body, &host, &publish.dimensions, ts) {
        Ok(m) => m,
        Err(Refused { message, field }) => {
            return refused(error(StatusCode::BAD_REQUEST, message, field.as_deref()));
        }
    };
    if !metrics.is_empty() && publish.passthrough.push_metrics(&metrics).is_err() {
        return refused(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "buffer.max_pending is full; retry later",
            None,
        ));
    }
    publish.stats.liz_posts_accepted.fetch_add(1, Relaxed);
    // liz answered 200 with an empty body; liz-monitor only logs the status.
    StatusCode::OK.into_response()
}

/// liz-monitor's epoch (`int(datetime.utcnow().timestamp())`: a true epoch on a UTC host,
/// shifted by the UTC offset elsewhere) in ms when within `max_skew_ms` of `now_ms`, else
/// the receive time: a shifted clock must not file samples hours away.
fn timestamp_ms(epoch: &str, now_ms: u64, max_skew_ms: u64) -> u64 {
    epoch
        .parse::<u64>()
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .filter(|t| t.abs_diff(now_ms) <= max_skew_ms)
        .unwrap_or(now_ms)
}

/// Why a post is refused (400).
#[derive(Debug, PartialEq)]
struct Refused {
    message: String,
    field: Option<String>,
}

fn refused(message: String, field: Option<&str>) -> Refused {
    Refused {
        message,
        field: field.map(str::to_owned),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// liz-monitor's body (`{"cpu": 12.5, "mem": 40.1}`, whatever its content type) as one
/// gauge per key, all or none: each key a valid metric name, each value a finite number or
/// a string holding one (liz's summarizer took `float(v)`), `host` a valid dimension value.
fn gauges(
    body: &[u8],
    host: &str,
    defaults: &[(String, String)],
    timestamp: u64,
) -> Result<Vec<Metric>, Refused> {
    crate::validate::dimension_value(host).map_err(|e| {
        refused(
            format!(
                "host {host:?} (the hostname dimension) {}",
                e.describe(host)
            ),
            Some("host"),
        )
    })?;
    let parsed: Value = serde_json::from_slice(body).map_err(|e| {
        refused(
            format!(
                "the body is not JSON ({e}); liz-monitor sends {{\"cpu\": <number>, \"mem\": <number>}}"
            ),
            None,
        )
    })?;
    let Value::Object(object) = parsed else {
        return Err(refused(
            format!(
                "the body must be a JSON object of numbers ({{\"cpu\": 12.5}}), not {}",
                kind(&parsed)
            ),
            None,
        ));
    };
    let mut dimensions: BTreeMap<String, String> = defaults.iter().cloned().collect();
    dimensions.insert("hostname".to_owned(), host.to_owned());
    let mut out = Vec::with_capacity(object.len());
    for (key, value) in &object {
        crate::validate::name(key).map_err(|e| {
            refused(
                format!("key {key:?} (a metric name) {}", e.describe(key)),
                Some(key),
            )
        })?;
        let number = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            refused(
                format!(
                    "the value of {key:?} must be a finite number (or a string holding one), not {}",
                    match value {
                        Value::String(_) => "a string that is not one",
                        v => kind(v),
                    }
                ),
                Some(key),
            )
        })?;
        out.push(Metric {
            name: key.clone(),
            dimensions: dimensions.clone(),
            timestamp,
            value: number,
            value_meta: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(host: &str, label: Option<&str>) -> Result<Target, Miss> {
        Ok(Target::Get {
            host: host.into(),
            label: label.map(Into::into),
        })
    }

    #[test]
    fn routes_match_as_lizs_regexes_do() {
        assert_eq!(route("/api/perf/h"), get("h", None));
        assert_eq!(
            route("/api/perf/h/by-minute:cpu"),
            get("h", Some("by-minute:cpu"))
        );
        assert_eq!(route("/api/perf/h/a/b/"), get("h", Some("a/b/")));
        assert_eq!(route("/api/perf/h//x"), get("h", Some("/x")));
        assert_eq!(
            route("/api/perf/h/1465001847"),
            Ok(Target::Post {
                host: "h".into(),
                epoch: "1465001847".into()
            })
        );
        // Digits then more: route 1 needs the digits to end the path.
        assert_eq!(route("/api/perf/h/123/x"), get("h", Some("123/x")));
        assert_eq!(route("/api/perf/h/12a"), get("h", Some("12a")));
        assert_eq!(route("/api/perf/h/"), Err(Miss::NoRoute));
        assert_eq!(route("/api/perf/"), Err(Miss::NoRoute));
        assert_eq!(route("/api/perf"), Err(Miss::NoRoute));
        assert_eq!(route("/api/perf//x"), Err(Miss::NoRoute));
        assert_eq!(route("/api/perfx/h"), Err(Miss::NoRoute));
    }

    #[test]
    fn groups_are_unquoted_as_tornado_does() {
        assert_eq!(route("/api/perf/a%2Fb/c%20d+e"), get("a/b", Some("c d+e")));
        assert_eq!(route("/api/perf/h/100%"), get("h", Some("100%")));
        assert_eq!(route("/api/perf/h/%zz%4"), get("h", Some("%zz%4")));
        assert_eq!(route("/api/perf/h/%C3%A9"), get("h", Some("é")));
        assert_eq!(route("/api/perf/%FF"), Err(Miss::NotUtf8));
    }

    #[test]
    fn the_epoch_is_used_within_the_skew_else_the_receive_time() {
        let now = 1_800_000_000_000;
        assert_eq!(timestamp_ms("1800000010", now, 300_000), 1_800_000_010_000);
        assert_eq!(timestamp_ms("1799999700", now, 300_000), 1_799_999_700_000);
        // liz-monitor on a UTC+2 host: two hours ahead of the true epoch.
        assert_eq!(timestamp_ms("1800007200", now, 300_000), now);
        assert_eq!(timestamp_ms("0", now, 300_000), now);
        assert_eq!(timestamp_ms("99999999999999999999999", now, 300_000), now);
    }

    #[test]
    fn a_body_becomes_one_gauge_per_key_with_the_posted_host() {
        let defaults = vec![
            ("hostname".to_owned(), "gw".to_owned()),
            ("region".to_owned(), "edge".to_owned()),
        ];
        let m = gauges(br#"{"cpu": 12.5, "mem": "40"}"#, "web-1", &defaults, 7).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].value), ("cpu", 12.5));
        assert_eq!((m[1].name.as_str(), m[1].value), ("mem", 40.0));
        assert_eq!(m[0].dimensions["hostname"], "web-1");
        assert_eq!(m[0].dimensions["region"], "edge");
        assert_eq!(m[1].timestamp, 7);
        assert!(gauges(b"{}", "h", &defaults, 7).unwrap().is_empty());
    }

    #[test]
    fn a_bad_body_is_refused_whole_with_the_reason() {
        let err = |body: &[u8], host: &str| gauges(body, host, &[], 1).unwrap_err();
        assert!(err(b"cpu=1", "h").message.contains("not JSON"));
        assert!(err(b"", "h").message.contains("not JSON"));
        assert!(err(b"[1, 2]", "h").message.contains("not an array"));
        assert!(err(b"12", "h").message.contains("not a number"));
        let e = err(br#"{"cpu": 1, "mem": "high"}"#, "h");
        assert_eq!(e.field.as_deref(), Some("mem"));
        assert!(e.message.contains("not a string that is not one"), "{e:?}");
        assert!(err(br#"{"cpu": "NaN"}"#, "h").message.contains("finite"));
        assert!(err(br#"{"cpu": null}"#, "h").message.contains("not null"));
        assert!(err(br#"{"cpu": true}"#, "h").message.contains("boolean"));
        let e = err(br#"{"cpu load": 1}"#, "h");
        assert!(e.message.contains("metric name"), "{e:?}");
        let e = err(br#"{"cpu": 1}"#, "a{b");
        assert_eq!(e.field.as_deref(), Some("host"));
    }
}
