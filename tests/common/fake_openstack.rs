//! An in-process Keystone v3 + Monasca API that speaks the contract measured in MONASCA.md
//! (201 + X-Subject-Token, expires_at, both 401 bodies, exact content type, 204), with
//! switches to inject faults: Keystone unavailable, 5xx, slow answers, 413, revocation.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub const PASSWORD: &str = "correct-horse-battery-staple";
pub const APP_SECRET: &str = "app-credential-secret-value";

#[derive(Default)]
pub struct Faults {
    /// Keystone answers 503 while set.
    pub keystone_down: bool,
    /// Monasca answers 500 (text/html, as gunicorn does) while set.
    pub monasca_500: bool,
    /// Monasca waits this long before answering.
    pub monasca_delay: Duration,
    /// Monasca answers 413 to bodies larger than this (a proxy's limit); 0 = no limit.
    pub max_body: usize,
    /// While set, each Keystone request waits for a permit of this semaphore before it is
    /// answered (the test adds permits to let requests through, one each).
    pub keystone_hold: Option<Arc<tokio::sync::Semaphore>>,
    /// The same for metrics POSTs (after counting them in `post_arrivals`).
    pub monasca_hold: Option<Arc<tokio::sync::Semaphore>>,
}

pub struct FakeState {
    pub faults: Faults,
    pub token_lifetime: Duration,
    pub roles: Vec<String>,
    /// The password Keystone accepts (a rotation changes it).
    pub password: String,
    /// token → expiry
    tokens: HashMap<String, SystemTime>,
    pub tokens_issued: u64,
    pub auth_requests: Vec<Value>,
    /// Keystone requests received, counted before any hold.
    pub auth_arrivals: u64,
    pub metrics: Vec<Value>,
    pub posts: u64,
    /// Metrics POSTs received, counted before `monasca_delay`.
    pub post_arrivals: u64,
    /// The `X-Auth-Token` of every metrics POST, in order ("" for none).
    pub post_tokens: Vec<String>,
    pub content_types: Vec<String>,
    pub tenant_ids: Vec<Option<String>>,
    monasca_url: String,
    /// A Monasca-only fake also accepts the tokens this Keystone issued.
    token_source: Option<Arc<Mutex<FakeState>>>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub addr: SocketAddr,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl Fake {
    pub fn start() -> Fake {
        Fake::start_with(None)
    }

    /// A second Monasca (another address, its own records) that accepts the tokens
    /// `keystone` issues, as a Monasca behind the same Keystone does.
    pub fn start_monasca_for(keystone: &Fake) -> Fake {
        Fake::start_with(Some(Arc::clone(&keystone.state)))
    }

    fn start_with(token_source: Option<Arc<Mutex<FakeState>>>) -> Fake {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FakeState {
            faults: Faults::default(),
            token_lifetime: Duration::from_secs(3600),
            roles: vec!["monasca-agent".into()],
            password: PASSWORD.into(),
            tokens: HashMap::new(),
            tokens_issued: 0,
            auth_requests: Vec::new(),
            auth_arrivals: 0,
            metrics: Vec::new(),
            posts: 0,
            post_arrivals: 0,
            post_tokens: Vec::new(),
            content_types: Vec::new(),
            tenant_ids: Vec::new(),
            monasca_url: format!("http://{addr}/v2.0"),
            token_source,
        }));
        let app = Router::new()
            .route("/v3/auth/tokens", post(issue_token))
            .route("/v2.0/metrics", post(post_metrics))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            state,
            addr,
            _runtime: Arc::new(runtime),
        }
    }

    pub fn keystone_url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    pub fn monasca_url(&self) -> String {
        format!("http://{}/v2.0", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn metrics(&self) -> Vec<Value> {
        self.with(|s| s.metrics.clone())
    }

    /// Revokes every token at once (as `DELETE /v3/auth/tokens` does, cache aside).
    pub fn revoke_all(&self) {
        self.with(|s| s.tokens.clear());
    }

    /// Config for a password identity against this fake.
    pub fn password_yaml(&self) -> String {
        format!(
            "keystone:\n  auth_url: {}\n  username: statsgate\n  password: {PASSWORD}\n  project_name: service\n  user_domain_name: Default\n  project_domain_name: Default\n",
            self.keystone_url()
        )
    }
}

async fn issue_token(State(state): State<Arc<Mutex<FakeState>>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let hold = {
        let mut s = state.lock().unwrap();
        s.auth_arrivals += 1;
        s.faults.keystone_hold.clone()
    };
    if let Some(hold) = hold {
        // The permit is used up: one request through per permit added.
        hold.acquire().await.unwrap().forget();
    }
    let mut s = state.lock().unwrap();
    if s.faults.keystone_down {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    s.auth_requests.push(request.clone());
    let identity = &request["auth"]["identity"];
    let password_ok = identity["password"]["user"]["password"] == s.password.as_str();
    let app_ok = identity["application_credential"]["secret"] == APP_SECRET;
    if !password_ok && !app_ok {
        let body = json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    s.tokens_issued += 1;
    let token = format!("gAAAAAB-token-{}-{}", s.tokens_issued, fastrand_suffix());
    let now = SystemTime::now();
    let expires = now + s.token_lifetime;
    s.tokens.insert(token.clone(), expires);
    let roles: Vec<Value> = s
        .roles
        .iter()
        .map(|r| json!({"id": format!("id-{r}"), "name": r}))
        .collect();
    let body = json!({"token": {
        "methods": ["password"],
        "issued_at": humantime::format_rfc3339_micros(now).to_string(),
        "expires_at": humantime::format_rfc3339_micros(expires).to_string(),
        "roles": roles,
        "project": {"id": "p-service", "name": "service", "domain": {"id": "default", "name": "Default"}},
        "catalog": [{"type": "monitoring", "name": "monasca", "endpoints": [
            {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": s.monasca_url}
        ]}]
    }});
    let mut headers = HeaderMap::new();
    headers.insert("X-Subject-Token", token.parse().unwrap());
    (StatusCode::CREATED, headers, axum::Json(body)).into_response()
}

fn fastrand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

async fn post_metrics(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (delay, hold) = {
        let mut s = state.lock().unwrap();
        s.post_arrivals += 1;
        (s.faults.monasca_delay, s.faults.monasca_hold.clone())
    };
    if let Some(hold) = hold {
        hold.acquire().await.unwrap().forget();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    s.posts += 1;
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    s.post_tokens.push(token.to_owned());
    let unexpired = |tokens: &HashMap<String, SystemTime>| {
        tokens
            .get(token)
            .is_some_and(|exp| *exp > SystemTime::now())
    };
    let valid = unexpired(&s.tokens)
        || s.token_source
            .as_ref()
            .is_some_and(|k| unexpired(&k.lock().unwrap().tokens));
    if !valid {
        let body = json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}});
        let mut h = HeaderMap::new();
        h.insert(
            "WWW-Authenticate",
            "Keystone uri=\"http://127.0.0.1:5000\"".parse().unwrap(),
        );
        return (StatusCode::UNAUTHORIZED, h, axum::Json(body)).into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.content_types.push(content_type.clone());
    if content_type != "application/json" {
        let body = json!({"title": "Bad request", "description": "Bad content type. Must be application/json"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    if !s
        .roles
        .iter()
        .any(|r| r == "monasca-agent" || r == "monasca-user")
    {
        let body = json!({"title": "Forbidden", "description": "The request does not have access to this service"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    if s.faults.max_body > 0 && body.len() > s.faults.max_body {
        return (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large").into_response();
    }
    if s.faults.monasca_500 {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/html".parse().unwrap());
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            h,
            "<html><body><h1>Internal Server Error</h1></body></html>",
        )
            .into_response();
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let body =
                json!({"title": "Bad request", "description": "Request body is not valid JSON"});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let list = match parsed {
        Value::Array(a) => a,
        one => vec![one],
    };
    for m in &list {
        let ok = m["name"].is_string()
            && m["timestamp"].is_number()
            && m["value"].is_number()
            && m["dimensions"].is_object();
        if !ok {
            let body = json!({"title": "Unprocessable Entity", "description": format!("invalid metric: {m}")});
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
        }
    }
    s.tenant_ids
        .push(query.and_then(|q| q.strip_prefix("tenant_id=").map(str::to_owned)));
    s.metrics.extend(list);
    StatusCode::NO_CONTENT.into_response()
}
