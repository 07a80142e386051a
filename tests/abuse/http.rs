//! Hostile HTTP clients against both TCP listeners (`http.listen`, `admin.listen`): slow
//! heads, stalled bodies, floods past the open-files limit, denied sources, unauthenticated
//! posts, and a `/healthz` that must tell the truth. Each test names what it guards; every
//! one failed on the gateway before issue 11's HTTP hardening.

use crate::common::{Gateway, curl_post, request, start, start_with_nofile};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Lets this test process hold a thousand client sockets and more, whatever `ulimit -n`
/// the test runner was started with (raising the soft limit up to the hard one only).
fn raise_own_nofile(needed: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < needed as libc::rlim_t {
            l.rlim_cur = l.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
    }
    assert!(
        l.rlim_cur >= needed as libc::rlim_t,
        "this test needs {needed} open files; the hard limit is {}",
        l.rlim_max
    );
}

/// One `GET /healthz` on its own connection: (status, body, time taken), or why it failed
/// within `limit`.
fn healthz(admin: SocketAddr, limit: Duration) -> Result<(u16, String, Duration), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&admin, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).ok();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read after {:?}: {e}", started.elapsed()))?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body, started.elapsed()))
}

/// Asserts `/healthz` answers 200 within a second; returns how long it took.
fn healthz_within_a_second(gw: &Gateway) -> Duration {
    let (status, body, took) = healthz(gw.admin, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("/healthz did not answer within 1s: {e}"));
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    took
}

/// Whether the peer closed `s` (EOF or reset) within `wait`; anything it sent is returned.
fn closed_within(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.set_nonblocking(false).ok();
    s.set_read_timeout(Some(wait)).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// `count` connections to `addr`, each having sent the start of a request head.
fn slow_clients(addr: SocketAddr, count: usize, head: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {i}: {e}"));
            // A refused connection may already be closed: its writes fail, which is the point.
            let _ = s.write_all(head);
            s.set_nonblocking(true).ok();
            s
        })
        .collect()
}

/// One more header line on each of `clients` (never completing the head).
fn dribble(clients: &mut [TcpStream]) {
    for s in clients {
        let _ = s.write(b"X-Slow: 1\r\n");
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {body:?}"))
}

/// Guards: the connection cap (`http.max_connections`, derived from RLIMIT_NOFILE) keeps
/// descriptors for the admin port and the gateway. Before: at `ulimit -n 256`, 300 slow
/// clients took every descriptor and `/healthz` timed out. Here the child runs at 512 open
/// files against 1,000 clients dribbling headers.
#[test]
fn a_thousand_slow_clients_leave_the_admin_port_answering() {
    raise_own_nofile(2048);
    let gw = start_with_nofile("", Some(512));
    // Automatic cap: 512 − (64 + 2 readers) reserved − admin.max_connections 32.
    let cap = 512 - 66 - 32;
    let mut clients = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        clients.extend(slow_clients(
            gw.http,
            100,
            b"POST /beat HTTP/1.1\r\nHost: x\r\n",
        ));
        slowest = slowest.max(healthz_within_a_second(&gw));
    }
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        dribble(&mut clients);
        slowest = slowest.max(healthz_within_a_second(&gw));
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = gw.counter(
        "statsgate_http_connections_refused_total",
        "listener=\"http\",reason=\"limit\"",
    );
    let open = gw.counter("statsgate_http_connections_open", "listener=\"http\"");
    eprintln!(
        "1000 slow clients at nofile 512: slowest /healthz {slowest:?}, {open} open, {refused} refused"
    );
    assert!(open <= cap, "{open} open connections, cap {cap}");
    assert!(
        refused >= 1000 - cap,
        "{refused} refused, want ≥ {}",
        1000 - cap
    );
    drop(clients);
}

/// Guards: `http.allow` is checked at accept. Before: a denied client's connection stayed
/// open for as long as it dribbled its head (the 403 came only after a complete head).
#[test]
fn a_thousand_denied_clients_are_closed_at_accept() {
    raise_own_nofile(2048);
    let gw = start("http:\n  allow: [192.0.2.0/24]\n");
    let mut clients = slow_clients(gw.http, 1000, b"POST /beat HTTP/1.1\r\nHost: x\r\n");
    healthz_within_a_second(&gw);
    gw.wait_for("1000 denied connections", Duration::from_secs(10), |g| {
        g.counter(
            "statsgate_http_connections_refused_total",
            "listener=\"http\",reason=\"denied\"",
        ) == 1000
    });
    dribble(&mut clients);
    healthz_within_a_second(&gw);
    for (i, s) in clients.iter_mut().enumerate() {
        let got = closed_within(s, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("denied connection {i} is still open"));
        assert!(got.is_empty(), "a denied client is sent nothing: {got:?}");
    }
    assert_eq!(gw.counter("statsgate_http_denied_total", ""), 1000);
    assert_eq!(
        gw.counter("statsgate_http_connections_total", "listener=\"http\""),
        0
    );
}

/// Guards: `http.max_connections` refuses (and counts) connections beyond it, and a slot
/// comes back when a connection ends. Before: no cap (and the key did not exist).
#[test]
fn connections_over_the_cap_are_refused_and_counted() {
    let gw = start("http:\n  max_connections: 10\n");
    let idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(gw.http).expect("connect"))
        .collect();
    gw.wait_for("10 open", Duration::from_secs(5), |g| {
        g.counter("statsgate_http_connections_open", "listener=\"http\"") == 10
    });
    for _ in 0..5 {
        let mut s = TcpStream::connect(gw.http).expect("connect");
        assert!(
            closed_within(&mut s, Duration::from_secs(2)).is_some(),
            "the 11th connection is closed at accept"
        );
    }
    assert_eq!(
        gw.counter(
            "statsgate_http_connections_refused_total",
            "listener=\"http\",reason=\"limit\""
        ),
        5
    );
    drop(idle);
    gw.wait_for("slots back", Duration::from_secs(5), |g| {
        g.counter("statsgate_http_connections_open", "listener=\"http\"") == 0
    });
    let (status, _) = request(
        gw.http,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
}

/// Sends `prefix`, then one byte of `drip` every 100 ms until the peer closes or answers:
/// (time until then, what it sent back), or `None` if it was still open after `max`.
fn drip_until_closed(addr: SocketAddr, prefix: &[u8], max: Duration) -> Option<(Duration, String)> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    s.write_all(prefix).expect("write");
    while started.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b" ").is_err() {
            return Some((started.elapsed(), String::new()));
        }
        if let Some(got) = closed_within(&mut s, Duration::from_millis(1)) {
            return Some((started.elapsed(), got));
        }
        s.set_read_timeout(None).ok();
    }
    None
}

/// Guards: `header_timeout` (both listeners), `body_timeout` (408 JSON) and `idle_timeout`
/// each cut their stall, and each is counted under its phase. Before: none existed; the
/// dribblers stayed connected indefinitely.
#[test]
fn slow_heads_bodies_and_silence_time_out_by_phase() {
    let gw = start(
        "http:\n  header_timeout: 1s\n  body_timeout: 1s\n  idle_timeout: 700ms\n\
         admin:\n  header_timeout: 1s\n",
    );
    let max = Duration::from_secs(5);
    let (http, admin) = (gw.http, gw.admin);
    let head = std::thread::spawn(move || {
        drip_until_closed(http, b"GET /status HTTP/1.1\r\nX-Slow: ", max)
    });
    let admin_head = std::thread::spawn(move || {
        drip_until_closed(admin, b"GET /healthz HTTP/1.1\r\nX-Slow: ", max)
    });
    let body = std::thread::spawn(move || {
        drip_until_closed(
            http,
            b"POST /beat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            max,
        )
    });
    let mut silent = TcpStream::connect(gw.http).expect("connect");
    let started = Instant::now();
    assert!(
        closed_within(&mut silent, max).is_some(),
        "a silent connection is closed"
    );
    let silent_for = started.elapsed();

    for (what, outcome) in [
        ("http head", head.join().unwrap()),
        ("admin head", admin_head.join().unwrap()),
    ] {
        let (after, _) = outcome.unwrap_or_else(|| panic!("{what}: still open after {max:?}"));
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(3),
            "{what} closed after {after:?}, header_timeout 1s"
        );
    }
    let (after, answer) = body.join().unwrap().expect("the slow body is answered");
    assert!(after < Duration::from_secs(3), "body cut after {after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let err = json(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    assert!(
        err["error"]
            .as_str()
            .unwrap_or("")
            .contains("http.body_timeout"),
        "{err}"
    );
    assert!(
        silent_for >= Duration::from_millis(600) && silent_for < Duration::from_secs(3),
        "silent connection closed after {silent_for:?}, idle_timeout 700ms"
    );
    let phase = |listener: &str, phase: &str| {
        gw.counter(
            "statsgate_http_timeouts_total",
            &format!("listener=\"{listener}\",phase=\"{phase}\""),
        )
    };
    assert_eq!(phase("http", "header"), 1);
    assert_eq!(phase("admin", "header"), 1);
    assert_eq!(phase("http", "body"), 1);
    assert_eq!(phase("http", "idle"), 1);
}

/// Guards: `http.body_budget` bounds the memory of bodies in flight. Before: 200 stalled
/// 1 MiB bodies took RSS from 8 MB to 218 MB. Bound asserted here, with the defaults:
/// ΔRSS ≤ body_budget (16 MiB) + connections × 64 KiB (hyper's 16 KiB buffer, task, socket
/// state) + 16 MiB (allocator slack), i.e. 16 + 12.5 + 16 MiB for 200 connections, where
/// the bodies sent (half of each) are 100 MiB.
#[test]
fn stalled_bodies_keep_memory_bounded() {
    let gw = start("");
    let (status, _) = curl_post(gw.http, "/beat", "{}");
    assert_eq!(status, 422, "warm-up");
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.rss_kib();
    let half = vec![b' '; 512 * 1024];
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(gw.http).expect("connect");
        s.write_all(b"POST /beat HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{")
            .expect("head");
        s.set_nonblocking(true).ok();
        // As much of half a body as the sockets take; the rest never comes.
        let mut sent = 0;
        while sent < half.len() {
            match s.write(&half[sent..]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = gw.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("200 stalled 1 MiB bodies: RSS {before} KiB → {after} KiB (+{grown} KiB)");
    let bound = 16 * 1024 + 200 * 64 + 16 * 1024;
    assert!(grown <= bound, "RSS grew {grown} KiB; bound {bound} KiB");
    // 16 bodies of 1 MiB hold the default 16 MiB budget; the other 184 are refused.
    gw.wait_for("184 refused for the budget", Duration::from_secs(10), |g| {
        g.counter(
            "statsgate_http_requests_refused_total",
            "listener=\"http\",reason=\"busy\"",
        ) == 184
    });
    healthz_within_a_second(&gw);
    // The refused ones were told so, in JSON.
    let mut answered = 0;
    for s in &mut clients {
        if let Some(got) = closed_within(s, Duration::from_millis(200))
            && got.starts_with("HTTP/1.1 503")
        {
            answered += 1;
        }
    }
    assert!(answered > 0, "no 503 answer was read");
}

/// Guards: 413 is JSON and counted for every route (on `/beat` also as a heartbeat
/// refusal), `[]` on `/beat` is named for what it is, `GET /status` is what README says,
/// and the heartbeat filter's 400 lists the aliases it accepts. Before: a plain-text 413,
/// uncounted; "body is not JSON" for `[]`; an extra `service` field; no aliases listed.
#[test]
fn refusals_say_what_they_mean_in_json_and_are_counted() {
    let gw = start("http:\n  max_body: 1KiB\n");
    let big = "x".repeat(2048);
    for path in ["/beat", "/v2.0/metrics"] {
        let (status, body) = curl_post(gw.http, path, &big);
        assert_eq!(status, 413, "{path}: {body}");
        assert!(
            json(&body)["error"]
                .as_str()
                .unwrap()
                .contains("http.max_body")
        );
    }
    let chunked = format!(
        "POST /beat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n{big}\r\n0\r\n\r\n"
    );
    let (status, body) = request(gw.http, &chunked);
    assert_eq!(status, 413, "chunked over max_body: {body}");
    json(&body);
    assert_eq!(
        gw.counter(
            "statsgate_http_requests_refused_total",
            "reason=\"too_large\""
        ),
        3
    );
    assert_eq!(
        gw.counter(
            "statsgate_heartbeats_rejected_total",
            "reason=\"too_large\""
        ),
        2
    );

    let (status, body) = curl_post(gw.http, "/beat", "[]");
    assert_eq!(status, 400);
    let msg = json(&body)["error"].as_str().unwrap().to_owned();
    assert!(msg.contains("JSON but not an object"), "{msg}");
    assert_eq!(
        gw.counter(
            "statsgate_heartbeats_rejected_total",
            "reason=\"not_object\""
        ),
        1
    );

    let (status, body) = request(
        gw.http,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"status": "ok"}))
    );

    let (status, body) = gw.get("/api/heartbeats?stat=dead");
    assert_eq!(status, 400);
    let msg = json(&body)["error"].as_str().unwrap().to_owned();
    for name in [
        "enabler",
        "enabler_id",
        "version",
        "enabler_version",
        "state",
    ] {
        assert!(msg.contains(name), "{name} missing from {msg}");
    }
}

const ONE_METRIC: &str = r#"{"name": "app.requests", "timestamp": 1795288860000, "value": 1}"#;

fn post_metric(gw: &Gateway, auth: &str) -> (u16, String) {
    request(
        gw.http,
        &format!(
            "POST /v2.0/metrics HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{ONE_METRIC}",
            ONE_METRIC.len()
        ),
    )
}

/// Guards: `POST /v2.0/metrics` has its own switch (`http.metrics_endpoint`) and an
/// optional shared token (`http.metrics_token`), compared without being logged. Before:
/// the endpoint was always on wherever `/beat` was, and open to anyone.
#[test]
fn client_metrics_endpoint_has_its_own_switch_and_token() {
    let off = start("http:\n  metrics_endpoint: off\n");
    let (status, body) = post_metric(&off, "");
    assert_eq!(status, 404, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("http.metrics_endpoint")
    );
    let beat = r#"{"ID": "a", "Enabler_ID": "e", "Enabler_Version": "1"}"#;
    assert_eq!(curl_post(off.http, "/beat", beat).0, 200, "/beat stays");
    drop(off);

    let token = "s3cret-shared-token";
    let gw = start(&format!("http:\n  metrics_token: {token}\n"));
    let (status, body) = post_metric(&gw, "");
    assert_eq!(status, 401, "{body}");
    json(&body);
    let (status, body) = post_metric(&gw, "Authorization: Bearer not-it\r\n");
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("not-it"), "the offered token is not echoed");
    assert_eq!(
        post_metric(&gw, &format!("Authorization: Bearer {token}\r\n")).0,
        204
    );
    assert_eq!(
        post_metric(&gw, &format!("X-Auth-Token: {token}\r\n")).0,
        204
    );
    assert_eq!(
        gw.counter(
            "statsgate_http_requests_refused_total",
            "reason=\"unauthorized\""
        ),
        1
    );
    assert_eq!(
        gw.counter(
            "statsgate_http_requests_refused_total",
            "reason=\"forbidden\""
        ),
        1
    );
    assert_eq!(gw.counter("statsgate_http_metrics_accepted_total", ""), 2);
    let (_, metrics) = gw.get("/metrics");
    let (_, health) = gw.get("/healthz");
    let logs = gw.stderr.lock().unwrap().clone();
    for (what, text) in [
        ("/metrics", &metrics),
        ("/healthz", &health),
        ("stderr", &logs),
    ] {
        assert!(!text.contains(token), "the token appears in {what}");
    }
}

/// Guards: `/healthz` reports an outage (POSTs failing in a row, nothing delivered) with
/// 503 and a reason, so the image's HEALTHCHECK sees it. Before: always 200 "ok".
#[test]
fn healthz_fails_during_a_monasca_outage() {
    let port = crate::common::closed_port();
    let gw = start(&format!(
        "flush:\n  interval: 200ms\nmonasca:\n  url: http://127.0.0.1:{port}/v2.0\n  \
         backoff_initial: 50ms\n  backoff_max: 200ms\n  timeout: 1s\n"
    ));
    gw.sender().send(b"outage.probe:1|c").expect("send");
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, body, _) = healthz(gw.admin, Duration::from_secs(2)).expect("healthz");
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "never 503: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let health = json(&body);
    assert_eq!(health["status"], "failing", "{health}");
    let reasons = health["reasons"].as_array().expect("reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap_or("").starts_with("monasca unreachable")),
        "{health}"
    );
    assert!(health["forward"]["consecutive_failures"].as_u64().unwrap() >= 3);
}

/// Issue 11's "done when": 1,000 slow HTTP clients and a timer-memory attack at the
/// configured limits at once, with 1 s flushes. Peak RSS stays within README's formula for
/// this configuration and `/healthz` answers 200 within a second throughout.
#[test]
fn slow_clients_and_a_timer_attack_together_stay_within_the_formula() {
    const SERIES: u64 = 1000;
    const NOFILE: u64 = 1024;
    raise_own_nofile(2048);
    let gw = start_with_nofile(
        &format!("flush:\n  interval: 1s\naggregate:\n  max_series: {SERIES}\n"),
        Some(NOFILE),
    );
    let tx = gw.sender();
    let mut clients = Vec::new();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(6) {
        if clients.len() < 1000 {
            clients.extend(slow_clients(
                gw.http,
                100,
                b"POST /beat HTTP/1.1\r\nHost: x\r\n",
            ));
        }
        // Every series gets the adversarial 65 × 1e12 line again in every interval.
        for i in 0..SERIES {
            let _ = tx.send(crate::timers::huge_line(&format!("attack.both{i}")).as_bytes());
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        dribble(&mut clients);
        slowest = slowest.max(healthz_within_a_second(&gw));
        round += 1;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    // README's formula: 8 MiB + max_series × (230 B + 1 KiB + 3 H) (two readers: the merged
    // copy; a flush holds the flushed shard) + 250 B per metric emitted (7 per timer series)
    // + http.body_budget + (http cap + admin cap) × 64 KiB.
    let h = 8 * crate::timers::hdr_counts(2, 1_000_000_000_000);
    let http_cap = NOFILE - 66 - 32;
    let formula_kib = 8 * 1024
        + SERIES * (230 + 1024 + 3 * h + 7 * 250) / 1024
        + 16 * 1024
        + (http_cap + 32) * 64;
    eprintln!(
        "{round} rounds, {} clients: peak RSS {hwm_kib} KiB, formula {formula_kib} KiB, slowest /healthz {slowest:?}",
        clients.len()
    );
    assert!(
        hwm_kib <= formula_kib,
        "peak RSS {hwm_kib} KiB > formula {formula_kib} KiB"
    );
    assert!(gw.counter("statsgate_timer_samples_clamped_total", "") > 0);
}
