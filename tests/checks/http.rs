//! `kind: http` checks against real things on loopback: HTTP and HTTPS servers this file
//! starts (plain threads over std sockets, rustls for TLS with a CA made by the `openssl`
//! CLI), a test Keystone, and the real binary reading what reaches its sinks.

use crate::common::{self, Gateway, fake_openstack::Fake};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAST: &str = "flush:\n  interval: 1s\n";

#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    at: Instant,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `filler` bytes of `x` after `body`, then `tail`: a huge body written in chunks.
    filler: usize,
    tail: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn new(status: u16) -> Self {
        Reply {
            status,
            ..Default::default()
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn body(mut self, b: &[u8]) -> Self {
        self.body = b.to_vec();
        self
    }
}

type Handler = dyn Fn(&Req, usize) -> Reply + Send + Sync;

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
    scheme: &'static str,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Server {
    serve_with(None, Arc::new(handler))
}

/// A server answering each request with `handler(request, index)`, one thread per
/// connection, `Connection: close`.
fn serve_with(tls: Option<Arc<rustls::ServerConfig>>, handler: Arc<Handler>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let scheme = if tls.is_some() { "https" } else { "http" };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (tls, handler, record) = (tls.clone(), Arc::clone(&handler), Arc::clone(&record));
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                match tls {
                    None => answer(stream, &*handler, &record),
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        answer(rustls::StreamOwned::new(conn, stream), &*handler, &record);
                    }
                }
            });
        }
    });
    Server { addr, seen, scheme }
}

fn answer<S: Read + Write>(stream: S, handler: &Handler, record: &Mutex<Vec<Req>>) {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    // A client refusing our certificate fails here, in the handshake.
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split(' ').nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let req = Req {
        path,
        headers,
        at: Instant::now(),
    };
    let index = {
        let mut seen = record.lock().unwrap();
        seen.push(req.clone());
        seen.len() - 1
    };
    let reply = handler(&req, index);
    std::thread::sleep(reply.delay);
    let s = reader.get_mut();
    let length = reply.body.len() + reply.filler + reply.tail.len();
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {length}\r\nConnection: close\r\n",
        reply.status
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).is_err() || s.write_all(&reply.body).is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = reply.filler;
    while left > 0 {
        let n = left.min(chunk.len());
        // The client hanging up after its cap ends this.
        if s.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n;
    }
    let _ = s.write_all(&reply.tail);
    let _ = s.flush();
}

fn check_yaml(name: &str, url: &str, extra: &str) -> String {
    format!("    - name: {name}\n      kind: http\n      period: 1s\n      url: \"{url}\"\n{extra}")
}

fn gateway(checks: &[String]) -> Gateway {
    common::start(&format!("{FAST}checks:\n  instances:\n{}", checks.concat()))
}

/// The first metric `name` with `dims` whose value is `value`, from the flushes within
/// `within`.
fn wait_metric(
    gw: &Gateway,
    name: &str,
    dims: &[(&str, &str)],
    value: f64,
    within: Duration,
) -> Value {
    gw.first_flushed(&format!("{name} {dims:?} = {value}"), within, |m| {
        m["name"] == name
            && m["value"].as_f64() == Some(value)
            && dims.iter().all(|(k, v)| m["dimensions"][*k] == *v)
    })
}

fn error(m: &Value) -> String {
    m["value_meta"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn up_and_down_by_status_with_a_response_time_for_both() {
    let server = serve(|req, _| match req.path.as_str() {
        "/ok" => Reply::new(200).body(b"fine"),
        _ => Reply::new(500).body(b"broken"),
    });
    let (ok, bad) = (server.url("/ok"), server.url("/fail"));
    let gw = gateway(&[check_yaml("ok", &ok, ""), check_yaml("bad", &bad, "")]);
    let up = wait_metric(
        &gw,
        "http_status",
        &[("url", &ok)],
        0.0,
        Duration::from_secs(8),
    );
    assert_eq!(up["dimensions"]["hostname"], "test-host");
    assert!(up["value_meta"].is_null(), "{up}");
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &bad)],
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(error(&down), "error code: 500");
    let all = gw.flushed_within(Duration::from_millis(2500));
    for url in [&ok, &bad] {
        let t = common::find(&all, "http_response_time", &[("url", url)])
            .unwrap_or_else(|| panic!("no response time for {url} in {all:?}"));
        let secs = t["value"].as_f64().unwrap();
        assert!(secs > 0.0 && secs < 2.0, "{secs}");
    }
    let ua = server.requests()[0]
        .header("user-agent")
        .unwrap_or("")
        .to_owned();
    assert!(ua.starts_with("statsgate/"), "{ua}");
}

#[test]
fn a_slow_server_is_cut_at_the_timeout_and_reported_down() {
    let server = serve(|_, _| Reply {
        delay: Duration::from_secs(5),
        ..Reply::new(200)
    });
    let url = server.url("/slow");
    let gw = gateway(&[check_yaml("slow", &url, "      timeout: 1s\n")]);
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &url)],
        1.0,
        Duration::from_secs(8),
    );
    let seen = Instant::now();
    let started = server.requests()[0].at;
    assert!(
        seen.duration_since(started) < Duration::from_millis(2600),
        "reported {:?} after the request arrived",
        seen.duration_since(started)
    );
    assert_eq!(
        error(&down),
        "error: timed out after 1000 ms. Connection failed after 1000 ms"
    );
    gw.wait_for("the timeout counted", Duration::from_secs(3), |g| {
        g.counter(
            "statsgate_check_runs_total",
            "check=\"slow\",outcome=\"timeout\"",
        ) >= 1
    });
    let all = gw.flushed_within(Duration::from_millis(1500));
    assert!(
        common::find(&all, "http_response_time", &[("url", &url)]).is_none(),
        "no response arrived, so no response time"
    );
}

#[test]
fn a_body_without_the_pattern_is_down_with_the_pattern_message() {
    let server = serve(|req, _| match req.path.as_str() {
        "/yes" => Reply::new(200).body(b"<html>\nversion=2.1\n</html>"),
        _ => Reply::new(200).body(b"<html>\nversion=3.0\n</html>"),
    });
    let (yes, no) = (server.url("/yes"), server.url("/no"));
    let pattern = "      body_pattern: \"html>.*version=2\"\n";
    let gw = gateway(&[
        check_yaml("yes", &yes, pattern),
        check_yaml("no", &no, pattern),
    ]);
    wait_metric(
        &gw,
        "http_status",
        &[("url", &yes)],
        0.0,
        Duration::from_secs(8),
    );
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &no)],
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        error(&down),
        "Pattern match failed! \"html>.*version=2\" not in \"<html>\nversion=3.0\n</html>\""
    );
}

#[test]
fn a_huge_body_is_read_only_up_to_max_body() {
    // 50 MB between a marker at the start and one at the end.
    let server = serve(|_, _| Reply {
        body: b"START".to_vec(),
        filler: 50 << 20,
        tail: b"END".to_vec(),
        ..Reply::new(200)
    });
    let (head, tail) = (server.url("/head"), server.url("/tail"));
    let gw = gateway(&[
        check_yaml("head", &head, "      body_pattern: \"^START\"\n"),
        check_yaml("tail", &tail, "      body_pattern: \"END$\"\n"),
    ]);
    wait_metric(
        &gw,
        "http_status",
        &[("url", &head)],
        0.0,
        Duration::from_secs(8),
    );
    let before = gw.rss_kib();
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &tail)],
        1.0,
        Duration::from_secs(5),
    );
    let text = error(&down);
    assert!(
        text.starts_with("Pattern match failed! \"END$\" not in \"STARTxxx"),
        "{text:.80}"
    );
    let json = serde_json::to_string(&down["value_meta"]).unwrap();
    assert!(json.chars().count() <= 2048, "{}", json.len());
    // A few more runs of both; 50 MB each would show.
    gw.flushed_within(Duration::from_secs(3));
    let after = gw.rss_kib();
    assert!(
        before > 0 && after < before + 16 * 1024,
        "RSS {before} KiB → {after} KiB"
    );
    assert!(server.requests().len() >= 6);
}

#[test]
fn a_query_string_url_is_checked_and_its_dimension_loses_the_query_and_userinfo() {
    let server = serve(|req, _| {
        if req.path.starts_with("/q?a=b&c=d") || req.header("authorization").is_some() {
            Reply::new(200)
        } else {
            Reply::new(401).header("WWW-Authenticate", "Basic realm=\"test\"")
        }
    });
    let query = server.url("/q?a=b&c=d");
    let with_user = format!("http://monitor:s3cr3t-pw@{}/u", server.addr);
    let gw = gateway(&[
        check_yaml("query", &query, ""),
        check_yaml("user", &with_user, ""),
    ]);
    wait_metric(
        &gw,
        "http_status",
        &[("url", &server.url("/q"))],
        0.0,
        Duration::from_secs(8),
    );
    wait_metric(
        &gw,
        "http_status",
        &[("url", &server.url("/u"))],
        0.0,
        Duration::from_secs(5),
    );
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.path == "/q?a=b&c=d"),
        "{requests:?}"
    );
    // Userinfo is the Basic credential, sent only after the challenge.
    let user: Vec<_> = requests.iter().filter(|r| r.path == "/u").collect();
    assert!(user[0].header("authorization").is_none());
    assert_eq!(
        user[1].header("authorization"),
        Some("Basic bW9uaXRvcjpzM2NyM3QtcHc=")
    );
    let (flushes, _) = gw.stop();
    let printed = serde_json::to_string(&flushes).unwrap();
    assert!(
        !printed.contains("s3cr3t"),
        "the password never becomes a dimension"
    );
}

#[test]
fn redirects_are_followed_but_never_carry_credentials_to_another_origin() {
    let other = serve(|_, _| Reply::new(200).body(b"landed"));
    let target = other.url("/landing");
    let origin = serve(move |req, _| {
        if req.path == "/same" {
            Reply::new(302).header("Location", "/final")
        } else if req.path == "/final" {
            if req.header("authorization").is_some() {
                Reply::new(200)
            } else {
                Reply::new(401).header("WWW-Authenticate", "Basic realm=\"r\"")
            }
        } else {
            Reply::new(302).header("Location", &target)
        }
    });
    let (plain, creds, same) = (
        origin.url("/plain"),
        origin.url("/creds"),
        origin.url("/same"),
    );
    let basic = "      username: monitor\n      password: hunter2-pw\n";
    let gw = gateway(&[
        check_yaml("plain", &plain, ""),
        check_yaml("creds", &creds, basic),
        check_yaml("same", &same, basic),
    ]);
    wait_metric(
        &gw,
        "http_status",
        &[("url", &plain)],
        0.0,
        Duration::from_secs(8),
    );
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &creds)],
        1.0,
        Duration::from_secs(5),
    );
    let text = error(&down);
    assert!(
        text.starts_with(&format!(
            "error: redirect to another origin (http://{}) not followed",
            other.addr
        )),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    wait_metric(
        &gw,
        "http_status",
        &[("url", &same)],
        0.0,
        Duration::from_secs(5),
    );
    // The other origin saw only the credential-free check, and never a credential.
    let landed = other.requests();
    assert!(!landed.is_empty());
    assert!(
        landed.iter().all(|r| r.header("authorization").is_none()),
        "{landed:?}"
    );
    assert!(!gw.stderr.lock().unwrap().contains("hunter2"));
}

/// CA and server certificate (for 127.0.0.1) made with the `openssl` CLI.
fn test_pki(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=statsgate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("srv.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    Arc::new(config)
}

#[test]
fn tls_is_verified_against_the_system_roots_and_ca_file_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let tls = test_pki(dir.path());
    let server = serve_with(
        Some(tls),
        Arc::new(|_: &Req, _| Reply::new(200).body(b"secure")),
    );
    let ca = dir.path().join("ca.pem");
    let (trusted, untrusted, unverified) =
        (server.url("/ca"), server.url("/system"), server.url("/off"));
    let gw = gateway(&[
        check_yaml(
            "ca",
            &trusted,
            &format!("      ca_file: {}\n", ca.display()),
        ),
        check_yaml("system", &untrusted, ""),
        check_yaml("off", &unverified, "      verify_tls: false\n"),
    ]);
    wait_metric(
        &gw,
        "http_status",
        &[("url", &trusted)],
        0.0,
        Duration::from_secs(8),
    );
    wait_metric(
        &gw,
        "http_status",
        &[("url", &unverified)],
        0.0,
        Duration::from_secs(5),
    );
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &untrusted)],
        1.0,
        Duration::from_secs(5),
    );
    let text = error(&down);
    assert!(
        text.starts_with("error: TLS certificate not accepted: its issuer is not a trusted CA"),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains(". Connection failed after "), "{text}");
}

#[test]
fn a_ca_file_that_does_not_parse_stops_start_up_naming_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{FAST}checks:\n  instances:\n{}",
            check_yaml(
                "web",
                "https://127.0.0.1:1/",
                &format!("      ca_file: {}\n", bad.display())
            )
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["--config", cfg.to_str().unwrap()])
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_PROBES__ENABLED", "false")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checks.instances[0] (\"web\")"), "{stderr}");
    assert!(stderr.contains("ca_file"), "{stderr}");
}

#[test]
fn keystone_sends_the_gateways_token_retries_once_on_401_and_never_redirects_it() {
    let fake = Fake::start();
    let elsewhere = serve(|_, _| Reply::new(200));
    let target = elsewhere.url("/stolen");
    // The first /retry request is refused (as for a revoked token), later ones accepted.
    let retries = std::sync::atomic::AtomicUsize::new(0);
    let api = serve(move |req, _| match req.path.as_str() {
        "/retry" if retries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
            Reply::new(401)
        }
        "/retry" => Reply::new(200),
        "/redirect" => Reply::new(302).header("Location", &target),
        _ => Reply::new(401),
    });
    let (retry, redirect, refused) = (api.url("/retry"), api.url("/redirect"), api.url("/always"));
    let keystone = "      keystone: true\n";
    let yaml = format!(
        "{FAST}{}checks:\n  instances:\n{}{}{}",
        fake.password_yaml(),
        check_yaml("retry", &retry, keystone),
        check_yaml("redirect", &redirect, keystone),
        check_yaml("refused", &refused, keystone),
    );
    let gw = common::start(&yaml);
    let stored = |url: &str, value: f64| {
        fake.metrics().into_iter().find(|m| {
            m["name"] == "http_status" && m["dimensions"]["url"] == url && m["value"] == value
        })
    };
    gw.wait_for(
        "the checks' metrics in Monasca",
        Duration::from_secs(12),
        |_| {
            stored(&retry, 0.0).is_some()
                && stored(&redirect, 1.0).is_some()
                && stored(&refused, 1.0).is_some()
        },
    );
    let tries: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/retry")
        .collect();
    let token = |r: &Req| r.header("x-auth-token").unwrap_or("").to_owned();
    assert!(token(&tries[0]).starts_with("gAAAAAB-token-"), "{tries:?}");
    assert!(token(&tries[1]).starts_with("gAAAAAB-token-"));
    assert_ne!(
        token(&tries[0]),
        token(&tries[1]),
        "a fresh token for the retry"
    );
    assert_eq!(
        error(&stored(&refused, 1.0).unwrap()),
        "unable to get a valid token to connect with"
    );
    let text = error(&stored(&redirect, 1.0).unwrap());
    assert!(
        text.contains(&format!(
            "redirect to another origin (http://{})",
            elsewhere.addr
        )),
        "{text}"
    );
    assert!(elsewhere.requests().is_empty(), "the token's origin only");
    // Tokens never reach a log.
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(!stderr.contains("gAAAAAB-token-"), "{stderr}");
}

fn check_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_http_checks_are_refused_at_start_up_naming_the_key() {
    let head = "checks:\n  instances:\n    - name: web\n      kind: http\n";
    let (code, stderr) = check_config(head);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("checks.instances[0].url"), "{stderr}");
    let (code, stderr) = check_config(&format!("{head}      url: \"localhost:80/x\"\n"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("checks.instances[0].url"), "{stderr}");
    let (code, stderr) = check_config(&format!(
        "{head}      url: http://127.0.0.1:1/\n      keystone: true\n"
    ));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("checks.instances[0].keystone"), "{stderr}");
    assert!(stderr.contains("keystone.auth_url"), "{stderr}");
    let (code, stderr) = check_config(&format!("{head}      url: http://127.0.0.1:1/\n"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_refused_connection_is_down_without_a_response_time() {
    let url = format!("http://127.0.0.1:{}/", common::closed_port());
    let gw = gateway(&[check_yaml("closed", &url, "")]);
    let down = wait_metric(
        &gw,
        "http_status",
        &[("url", &url)],
        1.0,
        Duration::from_secs(8),
    );
    let text = error(&down);
    assert!(text.starts_with("error: connection refused ("), "{text}");
    assert!(text.contains(". Connection failed after "), "{text}");
    let all = gw.flushed_within(Duration::from_millis(2500));
    assert!(common::find(&all, "http_response_time", &[("url", &url)]).is_none());
    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"closed\",outcome=\"failed\""
        ) >= 1
    );
}
