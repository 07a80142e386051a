//! Heartbeats and local clients through the real binary: the GE script's exact request, UDP
//! beats in both forms, every error path, the liveness API, and `POST /v2.0/metrics`.

mod common;

use common::fake_openstack::Fake;
use common::{curl_post, start};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ge_body(id: &str, enabler: &str, version: &str, ts: u64) -> String {
    format!(
        r#"{{"ID": "{id}", "Enabler_ID": "{enabler}", "Enabler_Version": "{version}", "Timestamp": "{ts}"}}"#
    )
}

fn beats_of(metrics: &[Value]) -> Vec<&Value> {
    metrics
        .iter()
        .filter(|m| m["name"] == "GE_Heartbeat")
        .collect()
}

#[test]
fn the_ge_script_request_becomes_a_ge_heartbeat_measurement() {
    let gw = start(ONE_FLUSH);
    let ts = now_ms() - 1500;
    let (status, body) = curl_post(
        gw.http,
        "/beat",
        &ge_body("container-7f3a", "orion", "3.4.0", ts),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = common::request(
        gw.http,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let (flushes, exit) = gw.stop();
    assert!(exit.success());
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let beats = beats_of(&all);
    assert_eq!(beats.len(), 1);
    let b = beats[0];
    assert_eq!(b["value"], 1);
    assert_eq!(
        b["timestamp"].as_u64(),
        Some(ts),
        "the sender's timestamp is kept"
    );
    let dims: Vec<(&str, &str)> = b["dimensions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert_eq!(
        dims,
        [
            ("enabler_id", "orion"),
            ("enabler_version", "3.4.0"),
            ("id", "container-7f3a")
        ],
        "unchanged for dashboards"
    );
}

#[test]
fn every_error_path_answers_with_a_json_error_naming_the_field() {
    let gw = start("http:\n  max_body: 1KiB\n");
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("not json", 400, None),
        (
            r#"{"Enabler_ID": "e", "Enabler_Version": "1", "Timestamp": "1"}"#,
            422,
            Some("ID"),
        ),
        (
            r#"{"ID": "", "Enabler_ID": "e", "Enabler_Version": "1"}"#,
            422,
            Some("ID"),
        ),
        (
            r#"{"ID": "a", "Enabler_ID": 5, "Enabler_Version": "1"}"#,
            422,
            Some("Enabler_ID"),
        ),
        (
            r#"{"ID": "a", "Enabler_ID": "e", "Enabler_Version": "a=b"}"#,
            422,
            Some("Enabler_Version"),
        ),
        (
            r#"{"ID": "a", "Enabler_ID": "e", "Enabler_Version": "1", "Timestamp": "yesterday"}"#,
            422,
            Some("Timestamp"),
        ),
    ];
    for (body, want, field) in cases {
        let (status, answer) = curl_post(gw.http, "/beat", body);
        assert_eq!(status, *want, "{body} → {answer}");
        let err: Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("JSON error body: {answer}"));
        assert!(err["error"].is_string(), "{answer}");
        assert_eq!(err["field"].as_str(), *field, "{body} → {answer}");
    }
    let (status, _) = curl_post(gw.http, "/beat", &"x".repeat(2048));
    assert_eq!(status, 413, "over http.max_body");
    let (status, _) = common::request(
        gw.http,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    assert!(gw.counter("statsgate_heartbeats_rejected_total", "") >= 6);
}

#[test]
fn udp_beats_in_json_and_compact_form_with_derived_ids() {
    let gw = start(&format!("{ONE_FLUSH}heartbeat:\n  derive_id: true\n"));
    let sender = gw.sender();
    sender
        .send(ge_body("vm-1", "cygnus", "2.0", now_ms()).as_bytes())
        .unwrap();
    sender
        .send(b"_hb|cygnus|2.0|vm-2\n_hb|cygnus|2.0|vm-3|T1\nreq:1|c")
        .unwrap();
    sender
        .send(br#"{"ID": "", "Enabler_ID": "cygnus", "Enabler_Version": "2.0"}"#)
        .unwrap();
    sender.send(b"_hb|cygnus|2.0").unwrap();
    gw.wait_for("beats counted", Duration::from_secs(10), |g| {
        g.counter("statsgate_heartbeats_accepted_total", "via=\"udp\"") == 4
    });
    assert_eq!(
        gw.counter(
            "statsgate_heartbeats_rejected_total",
            "reason=\"missing_field\""
        ),
        1
    );
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let mut ids: Vec<&str> = beats_of(&all)
        .iter()
        .map(|b| b["dimensions"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["127.0.0.1", "vm-1", "vm-2", "vm-3"],
        "an empty ID takes the sender's address"
    );
    let vm3 = beats_of(&all)
        .into_iter()
        .find(|b| b["dimensions"]["id"] == "vm-3")
        .unwrap();
    assert!(
        vm3["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "an absurd sender time is replaced"
    );
    assert!(
        all.iter().any(|m| m["name"] == "req"),
        "statsd lines in the same datagram still count"
    );
}

#[test]
fn the_liveness_api_reports_an_instance_dead_within_one_interval_after_it_stops() {
    let gw =
        start("flush:\n  interval: 1s\nheartbeat:\n  expected_interval: 1s\n  expire_after: 30s\n");
    let sender = gw.sender();
    let started = Instant::now();
    // Two instances beat; "b" stops after the first beat.
    sender
        .send(b"_hb|orion|3.4|a\n_hb|orion|3.4|b\n_hb|iotagent|1.0|c")
        .unwrap();
    let instances = |query: &str| -> Vec<Value> {
        let (status, body) = gw.get(&format!("/api/heartbeats{query}"));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["instances"].as_array().unwrap().clone()
    };
    gw.wait_for("three senders", Duration::from_secs(5), |_| {
        instances("").len() == 3
    });
    assert_eq!(instances("?enabler=orion").len(), 2);
    assert_eq!(instances("?enabler=orion&version=3.4&state=alive").len(), 2);
    let (status, _) = gw.get("/api/heartbeats?state=sleepy");
    assert_eq!(status, 400);
    // "a" keeps beating; "b" stopped. Its next beat was due at 1 s: dead by 2 s (+ polling).
    while started.elapsed() < Duration::from_millis(2300) {
        sender.send(b"_hb|orion|3.4|a").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let state_of = |id: &str| -> String {
        instances("?enabler=orion")
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state_of("a"), "alive");
    assert_eq!(state_of("b"), "dead", "stopped > 2 intervals ago");
    assert_eq!(instances("?state=dead").len(), 2, "b and c");
    // The per-flush gauge says how many are alive per enabler and version; flushes from
    // before "b" died are still queued, so look at the ones after now.
    let checked_at = now_ms();
    let mut alive = None;
    for _ in 0..10 {
        sender.send(b"_hb|orion|3.4|a").unwrap();
        let Some(f) = gw.next_flush(Duration::from_secs(3)) else {
            break;
        };
        let gauge = f.iter().find(|m| {
            m["name"] == "heartbeat.alive"
                && m["dimensions"]["enabler_id"] == "orion"
                && m["timestamp"].as_u64() > Some(checked_at)
        });
        if let Some(m) = gauge {
            alive = m["value"].as_u64();
            break;
        }
    }
    assert_eq!(alive, Some(1), "a alive, b dead");
}

#[test]
fn local_clients_post_monasca_metrics_validated_one_by_one() {
    let gw = start(ONE_FLUSH);
    let post = |body: &str| {
        common::request(
            gw.http,
            &format!(
                "POST /v2.0/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let ts = now_ms();
    let (status, _) = post(&format!(
        r#"{{"name": "app.one", "dimensions": {{"svc": "a"}}, "timestamp": {ts}, "value": 1, "value_meta": {{"note": "hi"}}}}"#
    ));
    assert_eq!(status, 204);
    let (status, body) = post(&format!(
        r#"[{{"name": "app.two", "timestamp": {ts}, "value": 2}}, {{"name": "bad name", "timestamp": {ts}, "value": 3}}, {{"name": "app.three", "timestamp": {ts}}}]"#
    ));
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["accepted"], 1);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(
        (rejected[0]["index"].as_u64(), rejected[1]["index"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(rejected[1]["reason"].as_str().unwrap().contains("value"));
    let (status, _) = post(r#"[{"name": "x"}]"#);
    assert_eq!(status, 422);
    let (status, _) = post("{not json");
    assert_eq!(status, 400);
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let one = all
        .iter()
        .find(|m| m["name"] == "app.one")
        .expect("app.one forwarded");
    assert_eq!(one["value_meta"]["note"], "hi");
    assert_eq!(one["timestamp"].as_u64(), Some(ts));
    assert_eq!(
        one["dimensions"].as_object().unwrap().len(),
        1,
        "passed through as posted"
    );
    assert!(all.iter().any(|m| m["name"] == "app.two"));
    assert!(
        !all.iter()
            .any(|m| m["name"] == "app.three" || m["name"] == "bad name")
    );
}

#[test]
fn allow_lists_refuse_other_sources() {
    let gw = start(&format!(
        "{ONE_FLUSH}statsd:\n  allow: [10.0.0.0/8]\nhttp:\n  allow: [192.0.2.0/24]\n"
    ));
    gw.sender().send(b"blocked:1|c").unwrap();
    gw.wait_for("denied", Duration::from_secs(5), |g| {
        g.counter("statsgate_source_denied_total", "") == 1
    });
    // Refused at accept, before a byte is read: the connection is closed, with no answer.
    for path in ["/beat", "/status"] {
        use std::io::{ErrorKind, Read, Write};
        let mut s = std::net::TcpStream::connect(gw.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let mut answer = Vec::new();
        match s.read_to_end(&mut answer) {
            Ok(_) => assert!(answer.is_empty(), "{path}: {answer:?}"),
            Err(e) => assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{path}: still open"
            ),
        }
    }
    assert_eq!(
        gw.counter(
            "statsgate_http_connections_refused_total",
            "reason=\"denied\""
        ),
        2,
        "the allow-list covers every route"
    );
    assert_eq!(gw.counter("statsgate_lines_accepted_total", ""), 0);
}

/// 10,000 distinct senders beating every second for a minute, all delivered to Monasca,
/// memory flat.
#[test]
fn ten_thousand_senders_for_a_minute() {
    const SENDERS: usize = 10_000;
    const SECONDS: usize = 60;
    let fake = Fake::start();
    let gw = start(&format!(
        "flush:\n  interval: 1s\nheartbeat:\n  expected_interval: 2s\n  alive_gauges: false\nmonasca:\n  url: {}\n{}",
        fake.monasca_url(),
        fake.password_yaml()
    ));
    let sender = gw.sender();
    let started = Instant::now();
    let mut rss_at_20s = 0;
    for second in 0..SECONDS {
        let mut datagram = String::new();
        for s in 0..SENDERS {
            datagram.push_str(&format!("_hb|load|1.0|instance-{s}\n"));
            if (s + 1) % 100 == 0 {
                sender.send(datagram.as_bytes()).unwrap();
                datagram.clear();
            }
        }
        if second == 20 {
            rss_at_20s = gw.rss_kib();
        }
        let next = Duration::from_secs(second as u64 + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let want = (SENDERS * SECONDS) as u64;
    gw.wait_for("every beat accepted", Duration::from_secs(30), |g| {
        g.counter("statsgate_heartbeats_accepted_total", "") == want
    });
    assert_eq!(gw.counter("statsgate_kernel_receive_drops_total", ""), 0);
    let rss_end = gw.rss_kib();
    assert!(
        rss_end < rss_at_20s + 32 * 1024,
        "RSS grew from {rss_at_20s} KiB to {rss_end} KiB"
    );
    let (status, body) = gw.get("/api/heartbeats?state=alive");
    assert_eq!(status, 200);
    let alive: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alive["count"].as_u64(), Some(SENDERS as u64));
    let delivered = || {
        fake.with(|s| {
            s.metrics
                .iter()
                .filter(|m| m["name"] == "GE_Heartbeat")
                .count()
        }) as u64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(delivered(), want, "every beat delivered to Monasca");
    let (_, exit) = gw.stop();
    assert!(exit.success());
}
