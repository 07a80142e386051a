//! Hostile upstreams: a Keystone or Monasca that redirects, answers with a page instead of 204,
//! or sends a huge body; a system without CA roots; credentials written into a URL.

use crate::common::fake_openstack::{Fake, PASSWORD};
use crate::common::{start, start_env};
use crate::service::run_to_exit;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FAST: &str =
    "flush:\n  interval: 1s\nmonasca:\n  backoff_initial: 50ms\n  backoff_max: 500ms\n";

/// Every request a server got: method, path, headers and body as text.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// What the misbehaving server answers to every request.
#[derive(Clone, Copy)]
enum Answer {
    /// This status with `Location: <to><path>`.
    Redirect(u16, SocketAddr),
    /// 200 with an HTML page (a login page or a proxy's error).
    Html,
    /// 401 `{"title": "Forbidden", "description": <bytes of text>}`.
    ForbiddenWithLongBody(usize),
}

struct Server {
    addr: SocketAddr,
    log: Log,
    _runtime: tokio::runtime::Runtime,
}

fn serve(answer: Answer) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let app = Router::new()
        .fallback(respond)
        .with_state((log.clone(), answer));
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        addr,
        log,
        _runtime: runtime,
    }
}

async fn respond(
    State((log, answer)): State<(Log, Answer)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log.0.lock().unwrap().push(format!(
        "{method} {uri} {headers:?} {}",
        String::from_utf8_lossy(&body)
    ));
    match answer {
        Answer::Redirect(status, to) => Response::builder()
            .status(status)
            .header("location", format!("http://{to}{}", uri.path()))
            .body(Body::empty())
            .unwrap(),
        Answer::Html => (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html><body>Please log in</body></html>",
        )
            .into_response(),
        Answer::ForbiddenWithLongBody(n) => {
            // Falcon's member order: the title first.
            let body = format!(
                r#"{{"title": "Forbidden", "description": "{}"}}"#,
                "y".repeat(n)
            );
            (
                StatusCode::UNAUTHORIZED,
                [("content-type", "application/json")],
                body,
            )
                .into_response()
        }
    }
}

/// A Monasca that answers every POST with `status` and a body of `bytes` bytes, written as
/// fast as the client reads it (a raw socket: the body is never held in memory).
fn serve_huge(status: u16, bytes: usize) -> SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                });
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let mut conn = conn;
                let head = format!(
                    "HTTP/1.1 {status} Error\r\nContent-Type: text/html\r\nContent-Length: {bytes}\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if conn.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

fn send_lines(gw: &crate::common::Gateway, n: usize) {
    let s = gw.sender();
    for i in 0..n {
        s.send(format!("abuse.upstream:{i}|c").as_bytes()).unwrap();
    }
}

/// Guards: reqwest's default policy followed a 307 from Keystone and re-sent the password
/// to the new origin.
#[test]
fn a_keystone_redirect_never_resends_the_password() {
    let elsewhere = serve(Answer::Html);
    let keystone = serve(Answer::Redirect(307, elsewhere.addr));
    let fake = Fake::start();
    let yaml = format!(
        "{FAST}  url: {}\nkeystone:\n  auth_url: http://{}/v3\n  username: statsgate\n  password: {PASSWORD}\n  project_name: service\n  user_domain_name: Default\n  project_domain_name: Default\n",
        fake.monasca_url(),
        keystone.addr
    );
    let gw = start(&yaml);
    send_lines(&gw, 5);
    gw.wait_for("a few token attempts", Duration::from_secs(20), |_| {
        keystone.log.all().len() >= 2
    });
    assert!(
        elsewhere.log.all().is_empty(),
        "the redirect target got {:?}",
        elsewhere.log.all()
    );
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("307") && stderr.contains(&format!("{}/v3", elsewhere.addr)),
        "the log names the status and the Location: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(gw.counter("statsgate_forward_metrics_sent_total", ""), 0);
}

/// Guards: a 302 from Monasca turned the POST into a GET to the Location, carrying
/// `X-Auth-Token` to that host, and its 200 was counted as delivered.
#[test]
fn a_monasca_redirect_is_neither_followed_nor_counted_as_delivered() {
    let login = serve(Answer::Html);
    let monasca = serve(Answer::Redirect(302, login.addr));
    let fake = Fake::start();
    let yaml = format!(
        "{FAST}  url: http://{}/v2.0\n{}",
        monasca.addr,
        fake.password_yaml()
    );
    let gw = start(&yaml);
    send_lines(&gw, 5);
    gw.wait_for("redirects counted", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_posts_total", "outcome=\"3xx\"") >= 2
    });
    assert!(login.log.all().is_empty(), "{:?}", login.log.all());
    assert_eq!(gw.counter("statsgate_forward_metrics_sent_total", ""), 0);
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains(&format!("http://{}/v2.0/metrics", login.addr)),
        "the log names the Location: {stderr}"
    );
    assert!(
        !stderr.contains("gAAAAAB-token"),
        "no token in logs: {stderr}"
    );
}

/// Guards: any 2xx counted as stored; a proxy's 200 page is not monasca-api's 204.
#[test]
fn only_monascas_204_counts_as_delivered() {
    let proxy = serve(Answer::Html);
    let yaml = format!("{FAST}  url: http://{}/v2.0\n", proxy.addr);
    let gw = start(&yaml);
    send_lines(&gw, 5);
    gw.wait_for("a few POSTs", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_posts_total", "outcome=\"2xx\"") >= 2
    });
    assert_eq!(gw.counter("statsgate_forward_metrics_sent_total", ""), 0);
    assert!(gw.counter("statsgate_forward_retries_total", "") >= 1);
}

/// Guards: answers were read whole (`Response::bytes`): a Monasca answering 500 with
/// 256 MiB grew the gateway by as much, and the Forbidden log printed a whole body.
#[test]
fn huge_answers_are_read_only_up_to_a_cap() {
    let monasca = serve_huge(500, 256 << 20);
    let yaml = format!("{FAST}  url: http://{monasca}/v2.0\n");
    let gw = start(&yaml);
    let baseline = gw.rss_kib();
    send_lines(&gw, 5);
    gw.wait_for("several 500s", Duration::from_secs(30), |g| {
        g.counter("statsgate_forward_posts_total", "outcome=\"500\"") >= 3
    });
    let grown_mib = gw.rss_kib().saturating_sub(baseline) / 1024;
    assert!(grown_mib < 32, "RSS grew by {grown_mib} MiB");
    drop(gw);

    let forbidding = serve(Answer::ForbiddenWithLongBody(1 << 20));
    let fake = Fake::start();
    let yaml = format!(
        "{FAST}  url: http://{}/v2.0\n{}",
        forbidding.addr,
        fake.password_yaml()
    );
    let gw = start(&yaml);
    send_lines(&gw, 5);
    gw.wait_for("the batch refused", Duration::from_secs(20), |g| {
        g.counter(
            "statsgate_forward_batches_dropped_total",
            "reason=\"forbidden\"",
        ) >= 1
    });
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(stderr.contains("Forbidden"), "{stderr}");
    assert!(stderr.len() < 64 * 1024, "{} bytes of log", stderr.len());
}

/// Guards: building the HTTP client failed when the system had no CA store, even for
/// `http://` URLs (the shipped slim image had none): the gateway could not start.
#[test]
fn no_ca_store_is_fine_for_http_and_named_for_https() {
    let empty = tempfile::tempdir().unwrap();
    let no_roots = [
        ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ("SSL_CERT_DIR", empty.path().to_str().unwrap()),
    ];
    let fake = Fake::start();
    let yaml = format!(
        "{FAST}  url: {}\n{}",
        fake.monasca_url(),
        fake.password_yaml()
    );
    let gw = start_env(&yaml, &no_roots);
    send_lines(&gw, 3);
    gw.wait_for("delivered over http", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_metrics_sent_total", "") >= 1
    });
    drop(gw);

    let out = run_to_exit(
        "keystone:\n  auth_url: https://keystone.example:5000/v3\n  username: u\n  password: p\n  project_name: service\n",
        &["run"],
        &no_roots,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("https://keystone.example:5000/v3") && stderr.contains("CA certificates"),
        "{stderr}"
    );
}

/// Guards: `http://user:password@host` was printed by check-config, the start-up log and
/// connection errors.
#[test]
fn credentials_in_urls_are_never_printed() {
    let port = crate::common::closed_port();
    let yaml = format!(
        "{FAST}  url: http://statsgate:pw-in-url-9f3@127.0.0.1:{port}/v2.0\n  timeout: 1s\n"
    );
    let gw = start(&yaml);
    send_lines(&gw, 3);
    gw.wait_for("connection errors", Duration::from_secs(20), |g| {
        g.counter(
            "statsgate_forward_posts_total",
            "outcome=\"connection_error\"",
        ) >= 1
    });
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(stderr.contains("POST to Monasca failed"), "{stderr}");
    assert!(!stderr.contains("pw-in-url-9f3"), "{stderr}");
    drop(gw);

    let out = run_to_exit(&yaml, &["check-config"], &[]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("http://***@127.0.0.1"), "{printed}");
    assert!(!printed.contains("pw-in-url-9f3"), "{printed}");
}

/// Guards: the runtime image (`debian:bookworm-slim`) installed no CA bundle, so HTTPS to
/// Keystone or Monasca could not be verified from the shipped container. No container
/// engine runs here: the Dockerfile's final stage is read instead.
#[test]
fn the_runtime_image_installs_the_ca_bundle() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let runtime = dockerfile
        .rsplit("\nFROM ")
        .next()
        .expect("a runtime stage");
    assert!(
        runtime.starts_with("debian:") || runtime.starts_with("ubuntu:"),
        "{runtime}"
    );
    let installs = runtime
        .split("\nRUN ")
        .skip(1)
        .any(|run| run.contains("apt-get install") && run.contains("ca-certificates"));
    assert!(
        installs,
        "the runtime stage installs ca-certificates:\n{runtime}"
    );
}
