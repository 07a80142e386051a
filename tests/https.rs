//! HTTPS on the HTTP listener through the real binary: `POST /beat`, `GET /status` and
//! `POST /v2.0/metrics` over TLS (reqwest, and curl when installed) reach the flush as over
//! HTTP; a client that does not trust the CA, plain HTTP on the HTTPS port, and a client
//! without the certificate mutual TLS asks for are refused with nothing accepted; a stalled
//! handshake holds only its own connection and is cut and counted; a key that is not the
//! certificate's refuses start-up naming `http.tls_key`.

mod common;

use common::pki::Pki;
use common::{Gateway, start};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One flush, the final one at stop: what was accepted is all there, without waiting.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ge_body(id: &str) -> String {
    format!(
        r#"{{"ID": "{id}", "Enabler_ID": "orion", "Enabler_Version": "3.4.0", "Timestamp": "{}"}}"#,
        now_ms()
    )
}

/// The gateway serving HTTPS with the test PKI's localhost certificate; `client_ca` asks
/// for client certificates. `extra` is appended under `http:`.
fn https_gateway(pki: &Pki, client_ca: Option<&Path>, extra: &str) -> Gateway {
    let ca = client_ca.map_or(String::new(), |p| {
        format!("  tls_client_ca: {}\n", p.display())
    });
    start(&format!(
        "{ONE_FLUSH}http:\n  tls_cert: {}\n  tls_key: {}\n{ca}{extra}",
        pki.cert.display(),
        pki.key.display(),
    ))
}

fn url(gw: &Gateway, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", gw.http.port())
}

/// A reqwest client that trusts only `ca` (not the system roots), presenting `identity`
/// (certificate, key) when given.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// POST `body` (GET when `None`) over HTTPS: (status, body), or the client's error text.
fn call(client: &reqwest::Client, url: &str, body: Option<&str>) -> Result<(u16, String), String> {
    block(async {
        let req = match body {
            Some(b) => client.post(url).body(b.to_owned()),
            None => client.get(url),
        };
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| format!("{e:?}"))?))
    })
}

fn has_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// curl's exit code and, on success, (status, body): `args` come before the URL.
fn curl(args: &[&str], url: &str) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

fn beat_ids(flushes: Vec<Vec<Value>>) -> Vec<String> {
    let mut ids: Vec<String> = flushes
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == "GE_Heartbeat")
        .filter_map(|m| m["dimensions"]["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn handshake_failures(gw: &Gateway, reason: &str) -> u64 {
    gw.counter(
        "statsgate_http_tls_handshake_failures_total",
        &format!("reason=\"{reason}\""),
    )
}

#[test]
fn beats_status_and_client_metrics_over_https_reach_the_flush() {
    let pki = Pki::new();
    let gw = https_gateway(&pki, None, "");
    let c = client(&pki.ca, None);

    let (status, body) = call(&c, &url(&gw, "/beat"), Some(&ge_body("tls-reqwest"))).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("accepted"), "{body}");
    let (status, body) = call(&c, &url(&gw, "/status"), None).unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let metric = format!(
        r#"[{{"name": "app.over_tls", "dimensions": {{"svc": "a"}}, "timestamp": {}, "value": 3}}]"#,
        now_ms()
    );
    let (status, body) = call(&c, &url(&gw, "/v2.0/metrics"), Some(&metric)).unwrap();
    assert_eq!(status, 204, "{body}");
    // Every route is the same router: an unknown one is the same JSON 404.
    let (status, body) = call(&c, &url(&gw, "/nope"), None).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no such route"), "{body}");

    let mut expected = vec!["tls-reqwest".to_owned()];
    if has_curl() {
        let ca = pki.ca.to_str().unwrap();
        let body = ge_body("tls-curl");
        let (code, status, answer) = curl(
            &["--cacert", ca, "-X", "POST", "--data", &body],
            &url(&gw, "/beat"),
        );
        assert_eq!((code, status), (0, 200), "{answer}");
        // ALPN: curl offers h2 and http/1.1; the listener speaks only the latter.
        let out = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--cacert", ca, "-o", "/dev/null"])
            .args(["-w", "%{http_version}"])
            .arg(url(&gw, "/status"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
        // Without the CA, curl's system roots do not trust the certificate (exit 60).
        let (code, _, _) = curl(&["-X", "POST", "--data", &body], &url(&gw, "/beat"));
        assert_eq!(code, 60, "curl refuses an untrusted certificate");
        expected.push("tls-curl".to_owned());
    } else {
        eprintln!("curl not installed: its half of this test is skipped");
    }
    let refused = u64::from(has_curl());
    gw.wait_for("curl's refusal counted", Duration::from_secs(5), |g| {
        handshake_failures(g, "error") == refused
    });

    // The admin port stays plain HTTP (the harness reads it so).
    let (status, _) = gw.get("/healthz");
    assert_eq!(status, 200);
    let (flushes, exit) = gw.stop();
    assert!(exit.success());
    let all: Vec<Value> = flushes.clone().into_iter().flatten().collect();
    assert!(
        common::find(&all, "app.over_tls", &[("svc", "a")]).is_some(),
        "the client metric is flushed: {all:?}"
    );
    expected.sort();
    assert_eq!(beat_ids(flushes), expected);
}

#[test]
fn untrusting_clients_and_plain_http_are_refused_with_nothing_accepted() {
    let pki = Pki::new();
    let gw = https_gateway(&pki, None, "");
    let beat = ge_body("must-not-arrive");

    // A client that trusts another CA ends the handshake with an alert.
    let stranger = client(&pki.other_ca, None);
    let err = call(&stranger, &url(&gw, "/beat"), Some(&beat)).unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
    gw.wait_for(
        "the refused handshake counted",
        Duration::from_secs(5),
        |g| handshake_failures(g, "error") == 1,
    );

    // Plain HTTP to the HTTPS port: a JSON 400 that says why, then closed.
    let (status, body) = common::curl_post(gw.http, "/beat", &beat);
    assert_eq!(status, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(
        answer["error"].as_str().unwrap().contains("HTTPS only"),
        "{body}"
    );
    assert_eq!(handshake_failures(&gw, "plain_http"), 1);

    assert_eq!(
        gw.counter("statsgate_heartbeats_accepted_total", ""),
        0,
        "nothing was accepted"
    );
    // The listener still serves a client that trusts the CA.
    let (status, _) = call(
        &client(&pki.ca, None),
        &url(&gw, "/beat"),
        Some(&ge_body("trusted")),
    )
    .unwrap();
    assert_eq!(status, 200);
    let (flushes, _) = gw.stop();
    assert_eq!(beat_ids(flushes), ["trusted"]);
}

#[test]
fn mutual_tls_serves_only_clients_with_a_certificate_the_ca_signed() {
    let pki = Pki::new();
    let gw = https_gateway(&pki, Some(&pki.ca), "");
    let beat = ge_body("no-cert");

    let err = call(&client(&pki.ca, None), &url(&gw, "/beat"), Some(&beat)).unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
    // A client certificate that no CA of the gateway's signed.
    let dir = tempfile::tempdir().unwrap();
    let own = rcgen::generate_simple_self_signed(vec!["intruder".to_owned()]).unwrap();
    let (own_cert, own_key) = (dir.path().join("own.pem"), dir.path().join("own.key"));
    std::fs::write(&own_cert, own.cert.pem()).unwrap();
    std::fs::write(&own_key, own.signing_key.serialize_pem()).unwrap();
    let intruder = client(&pki.ca, Some((&own_cert, &own_key)));
    let err = call(&intruder, &url(&gw, "/beat"), Some(&ge_body("intruder"))).unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    gw.wait_for(
        "both refused at the handshake",
        Duration::from_secs(5),
        |g| handshake_failures(g, "error") == 2,
    );
    assert_eq!(gw.counter("statsgate_heartbeats_accepted_total", ""), 0);

    let signed = client(&pki.ca, Some((&pki.client_cert, &pki.client_key)));
    let (status, body) = call(&signed, &url(&gw, "/beat"), Some(&ge_body("mtls"))).unwrap();
    assert_eq!(status, 200, "{body}");
    let mut expected = vec!["mtls".to_owned()];
    if has_curl() {
        let (ca, cert, key) = (
            pki.ca.to_str().unwrap(),
            pki.client_cert.to_str().unwrap(),
            pki.client_key.to_str().unwrap(),
        );
        let body = ge_body("mtls-curl");
        let (code, status, _) = curl(
            &["--cacert", ca, "-X", "POST", "--data", &body],
            &url(&gw, "/beat"),
        );
        assert!(code != 0 && status != 200, "curl without a certificate");
        let (code, status, answer) = curl(
            &[
                "--cacert", ca, "--cert", cert, "--key", key, "-X", "POST", "--data", &body,
            ],
            &url(&gw, "/beat"),
        );
        assert_eq!((code, status), (0, 200), "{answer}");
        expected.push("mtls-curl".to_owned());
    }
    let (flushes, _) = gw.stop();
    expected.sort();
    assert_eq!(beat_ids(flushes), expected);
}

/// The first half of a real ClientHello (rustls's), as a stalling client sends it.
fn half_client_hello(pki: &Pki) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&pki.ca).unwrap();
    for c in pem_certs(&ca) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    hello.truncate(hello.len() / 2);
    hello
}

fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_stalled_handshake_holds_only_its_own_connection_and_is_cut() {
    let pki = Pki::new();
    let gw = https_gateway(&pki, None, "  header_timeout: 3s\n  max_connections: 8\n");
    let hello = half_client_hello(&pki);
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.http).unwrap();
        s.write_all(&hello).unwrap();
        stalled.push(s);
    }
    // And one that sends nothing at all.
    stalled.push(TcpStream::connect(gw.http).unwrap());
    let began = Instant::now();

    let (status, _) = call(
        &client(&pki.ca, None),
        &url(&gw, "/beat"),
        Some(&ge_body("beside-the-stalled")),
    )
    .unwrap();
    assert_eq!(status, 200);
    // Served while the stalled ones are still held open: their handshakes did not hold up
    // the accept loop (which would have kept this client waiting until they were cut).
    for s in &stalled {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let e = (&*s).read(&mut b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "still open");
        s.set_nonblocking(false).unwrap();
    }
    // Then each is closed by the gateway, shortly after http.header_timeout.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes to a stalled handshake"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "not cut: {e}"),
        }
    }
    assert!(began.elapsed() < Duration::from_secs(10));
    gw.wait_for("four handshake timeouts", Duration::from_secs(5), |g| {
        handshake_failures(g, "timeout") == 4
    });
    gw.wait_for("every slot back", Duration::from_secs(5), |g| {
        g.counter("statsgate_http_connections_open", "listener=\"http\"") == 0
    });
    assert_eq!(handshake_failures(&gw, "error"), 0);
    let (flushes, _) = gw.stop();
    assert_eq!(beat_ids(flushes), ["beside-the-stalled"]);
}

#[test]
fn a_key_of_another_certificate_refuses_start_up_naming_http_tls_key() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "http:\n  listen: 127.0.0.1:0\n  tls_cert: {}\n  tls_key: {}\n",
            pki.cert.display(),
            pki.wrong_key.display()
        ),
    )
    .unwrap();
    let key_pem = std::fs::read_to_string(&pki.wrong_key).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap();
    for command in ["check-config", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args([command, "--config"])
            .arg(&path)
            .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
            .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("http.tls_key"), "{command}: {stderr}");
        assert!(!stderr.contains(key_line), "key material in: {stderr}");
    }
}

#[test]
fn the_allow_list_and_the_connection_cap_come_before_the_handshake() {
    let pki = Pki::new();
    let c = client(&pki.ca, None);

    // Outside http.allow: closed at accept, no handshake begun.
    let gw = https_gateway(&pki, None, "  allow: [\"10.0.0.0/8\"]\n");
    assert!(call(&c, &url(&gw, "/beat"), Some(&ge_body("denied"))).is_err());
    gw.wait_for("the denial counted", Duration::from_secs(5), |g| {
        g.counter(
            "statsgate_http_connections_refused_total",
            "reason=\"denied\"",
        ) == 1
    });
    assert_eq!(
        gw.counter("statsgate_http_tls_handshake_failures_total", ""),
        0
    );
    drop(gw);

    // A stalled handshake holds the only slot: the next client is closed at accept (limit)
    // until the stalled one is cut at http.header_timeout.
    let gw = https_gateway(&pki, None, "  header_timeout: 1s\n  max_connections: 1\n");
    let mut stalled = TcpStream::connect(gw.http).unwrap();
    stalled.write_all(&half_client_hello(&pki)).unwrap();
    gw.wait_for(
        "the stalled peer holding the slot",
        Duration::from_secs(5),
        |g| g.counter("statsgate_http_connections_open", "listener=\"http\"") == 1,
    );
    assert!(call(&c, &url(&gw, "/beat"), Some(&ge_body("over-the-cap"))).is_err());
    assert_eq!(
        gw.counter(
            "statsgate_http_connections_refused_total",
            "reason=\"limit\""
        ),
        1
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(stalled.read(&mut b), Ok(0) | Err(_)));
    gw.wait_for("the slot back", Duration::from_secs(5), |g| {
        g.counter("statsgate_http_connections_open", "listener=\"http\"") == 0
    });
    let (status, _) = call(&c, &url(&gw, "/beat"), Some(&ge_body("after-the-cut"))).unwrap();
    assert_eq!(status, 200);
    assert_eq!(handshake_failures(&gw, "timeout"), 1);
    let (flushes, _) = gw.stop();
    assert_eq!(beat_ids(flushes), ["after-the-cut"]);
}
