//! liz's API through the real binary: liz-monitor (reproduced request for request by
//! `tests/liz/liz_monitor.py`) publishing for two minutes, `GET /api/perf/...` answering
//! liz's shape with the averages of what it sent, liz's status codes and our departures
//! from them, the switches, and `GET /api/metrics` after statsd gauges.

mod common;

use common::Gateway;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MONITOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/liz/liz_monitor.py");

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn send(addr: SocketAddr, raw: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(raw.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A POST as tornado 4.3's simple_httpclient writes liz-monitor's (see liz_monitor.py).
fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    send(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nConnection: close\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept-Encoding: gzip\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn now_sec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `name`'s (timestamp ms → value) with `hostname` = `host`, from flushes.
fn record(into: &mut BTreeMap<u64, f64>, flush: &[Value], name: &str, host: &str) {
    for m in flush {
        if m["name"] == name && m["dimensions"]["hostname"] == host {
            let ts = m["timestamp"].as_u64().expect("timestamp");
            let v = m["value"].as_f64().expect("value");
            assert!(into.insert(ts, v).is_none(), "two {name} at {ts}");
        }
    }
}

/// One bucket as the sent values give it: samples, mean, min, max.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    n: u64,
    avg: f64,
    min: f64,
    max: f64,
}

/// liz's buckets: `(start, start + size]`, from the epoch each sample was recorded at.
fn expected_buckets(samples: &BTreeMap<u64, f64>, size: u64) -> BTreeMap<u64, Bucket> {
    let mut buckets: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (&ms, &v) in samples {
        let sec = ms / 1000;
        buckets.entry((sec - 1) / size * size).or_default().push(v);
    }
    buckets
        .into_iter()
        .map(|(start, vs)| {
            let b = Bucket {
                n: vs.len() as u64,
                avg: vs.iter().sum::<f64>() / vs.len() as f64,
                min: vs.iter().copied().fold(f64::INFINITY, f64::min),
                max: vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            };
            (start, b)
        })
        .collect()
}

/// A summary in liz's exact shape, its points equal to `expected` (liz rounds averages to
/// two decimals). Each point holds liz's five keys with liz's types, plus `min` and `max`
/// (issue 14's summaries keep them; a liz reader ignores keys it does not know).
fn assert_summary(summary: &Value, size: u64, expected: &BTreeMap<u64, Bucket>, what: &str) {
    let keys: BTreeSet<&str> = summary
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {summary}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "start",
            "end",
            "averages",
            "timeslice-size-sec",
            "average-count"
        ]),
        "{what}"
    );
    assert_eq!(summary["timeslice-size-sec"].as_u64(), Some(size), "{what}");
    let end = summary["end"].as_u64().expect("end is an integer");
    let start = summary["start"].as_u64().expect("start is an integer");
    let oldest = if size == 60 { 3600 } else { 86400 };
    assert_eq!(start, (end - oldest) / size * size, "{what}: liz's window");
    assert!(end.abs_diff(now_sec()) <= 5, "{what}: end is now: {end}");
    let points = summary["averages"].as_array().expect("averages");
    assert_eq!(
        summary["average-count"].as_u64(),
        Some(points.len() as u64),
        "{what}"
    );
    let mut got = BTreeMap::new();
    for p in points {
        let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "start-sec",
                "end-sec",
                "interval-size-sec",
                "num-samples",
                "avg",
                "min",
                "max"
            ]),
            "{what}: {p}"
        );
        let s = p["start-sec"].as_u64().expect("start-sec");
        let e = p["end-sec"].as_u64().expect("end-sec");
        assert_eq!(s % size, 0, "{what}: aligned: {p}");
        assert_eq!(p["interval-size-sec"].as_u64(), Some(e - s), "{what}: {p}");
        assert_eq!(e - s, size, "{what}: {p}");
        assert!(
            p["avg"].is_f64(),
            "{what}: avg stays a float, as liz's: {p}"
        );
        let n = p["num-samples"].as_u64().expect("num-samples");
        let min = p["min"].as_f64().expect("min");
        let max = p["max"].as_f64().expect("max");
        got.insert(s, (n, p["avg"].as_f64().unwrap(), min, max));
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the buckets"
    );
    for (s, (n, avg, min, max)) in &got {
        let e = expected[s];
        assert_eq!(*n, e.n, "{what}: num-samples of the bucket at {s}");
        assert!(
            (avg - e.avg).abs() <= 0.005 + 1e-9,
            "{what}: avg of the bucket at {s}: {avg}, sent values give {}",
            e.avg
        );
        assert_eq!((*min, *max), (e.min, e.max), "{what}: min, max at {s}");
    }
}

/// Issue 14's "Done when": an unchanged liz-monitor publishes for two minutes, and
/// `/api/perf/<host>/by-minute:cpu` answers in liz's shape with the right averages.
#[test]
fn liz_monitor_publishes_for_two_minutes_and_the_summaries_average_what_it_sent() {
    let gw = common::start("flush:\n  interval: 1s\n");
    let dir = tempfile::tempdir().unwrap();
    let sent_log = dir.path().join("sent.jsonl");
    let mut monitor = Command::new("python3")
        .arg(MONITOR)
        .args(["--this-host", "test-host", "--publish"])
        .arg(format!("http://{}/api/perf", gw.http))
        .args([
            "--interval",
            "1",
            "--values-from-seed",
            "14",
            "--stop-after",
            "120",
        ])
        .arg("--sent-log")
        .arg(&sent_log)
        // liz-monitor's epoch is naive utcnow's: the true epoch on a UTC host.
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let (mut cpu, mut mem) = (BTreeMap::new(), BTreeMap::new());
    let deadline = Instant::now() + Duration::from_secs(170);
    let status = loop {
        if let Some(flush) = gw.next_flush(Duration::from_millis(500)) {
            record(&mut cpu, &flush, "cpu", "test-host");
            record(&mut mem, &flush, "mem", "test-host");
        }
        if let Some(status) = monitor.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = monitor.kill();
            panic!("liz_monitor.py did not stop after two minutes");
        }
    };
    let mut stderr = String::new();
    monitor
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "liz_monitor.py: {status}: {stderr}");
    // The last post's flush.
    for _ in 0..3 {
        if let Some(flush) = gw.next_flush(Duration::from_secs(2)) {
            record(&mut cpu, &flush, "cpu", "test-host");
            record(&mut mem, &flush, "mem", "test-host");
        }
    }

    let sent: Vec<Value> = std::fs::read_to_string(&sent_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(sent.len() >= 90, "about one post a second: {}", sent.len());
    let logs: Vec<String> = BufReader::new(monitor.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert_eq!(logs.len(), sent.len(), "{logs:?}");
    for (line, s) in logs.iter().zip(&sent) {
        assert_eq!(s["status"], 200, "{s}");
        assert_eq!(
            *line,
            format!(
                "INFO:  Publish was successful to {}",
                s["url"].as_str().unwrap()
            )
        );
    }
    // Each post became one cpu and one mem gauge at the epoch liz-monitor put in its URL.
    let by_ts = |key: &str| -> BTreeMap<u64, f64> {
        sent.iter()
            .map(|s| (s["ts"].as_u64().unwrap() * 1000, s[key].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(cpu, by_ts("cpu"), "the cpu gauges the gateway recorded");
    assert_eq!(mem, by_ts("mem"), "the mem gauges the gateway recorded");
    assert_eq!(
        gw.counter("statsgate_liz_posts_total", "outcome=\"accepted\""),
        sent.len() as u64
    );

    let answer = get(gw.http, "/api/perf/test-host/by-minute:cpu");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = answer.json();
    let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["summary:by-minute:cpu"], "{body}");
    let minutes = expected_buckets(&cpu, 60);
    assert!(minutes.len() >= 2, "two minutes span two buckets at least");
    assert_summary(
        &body["summary:by-minute:cpu"],
        60,
        &minutes,
        "by-minute:cpu",
    );

    // The label matches case-insensitively, as liz documents (its code did not).
    let upper = get(gw.http, "/api/perf/test-host/by-minute:CPU").json();
    assert_eq!(
        upper["summary:by-minute:cpu"]["averages"],
        body["summary:by-minute:cpu"]["averages"]
    );
    // The admin port answers the same.
    let admin = get(gw.admin, "/api/perf/test-host/by-minute:cpu").json();
    assert_eq!(
        admin["summary:by-minute:cpu"]["averages"],
        body["summary:by-minute:cpu"]["averages"]
    );

    let all = get(gw.http, "/api/perf/test-host").json();
    let keys: BTreeSet<&str> = all
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // The gateway's own figures (`statsgate.*`, kept by default) carry this host's name too.
    let (own, posted): (BTreeSet<&str>, BTreeSet<&str>) = keys
        .into_iter()
        .partition(|k| k.split_once(":statsgate.").is_some());
    assert_eq!(
        posted,
        BTreeSet::from([
            "summary:by-hour:cpu",
            "summary:by-hour:mem",
            "summary:by-minute:cpu",
            "summary:by-minute:mem",
        ])
    );
    assert!(
        own.contains("summary:by-minute:statsgate.lines_accepted"),
        "{own:?}"
    );
    assert_summary(
        &all["summary:by-minute:mem"],
        60,
        &expected_buckets(&mem, 60),
        "mem",
    );
    assert_summary(
        &all["summary:by-hour:cpu"],
        3600,
        &expected_buckets(&cpu, 3600),
        "cpu/h",
    );
    assert_summary(
        &all["summary:by-hour:mem"],
        3600,
        &expected_buckets(&mem, 3600),
        "mem/h",
    );
}

/// liz's status codes where we keep them, and a JSON 400 with the reason where liz had 500.
#[test]
fn lizs_answers_and_the_bad_posts_it_refused_with_a_500() {
    let gw = common::start("flush:\n  interval: 1s\n");
    let now = now_sec();
    let ok = post(
        gw.http,
        &format!("/api/perf/web-1/{now}"),
        r#"{"cpu": 12.5, "mem": "40.5"}"#,
    );
    assert_eq!((ok.status, ok.body.as_str()), (200, ""), "liz's empty 200");

    let bad = |path: String, body: &str, reason: &str, field: Option<&str>| {
        let a = post(gw.http, &path, body);
        assert_eq!(a.status, 400, "{path} {body}: {}", a.body);
        let j = a.json();
        let error = j["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{body}: {error}");
        assert_eq!(j["field"].as_str(), field, "{body}: {j}");
    };
    let at = format!("/api/perf/web-1/{now}");
    bad(at.clone(), "cpu=12.5", "not JSON", None);
    bad(at.clone(), "", "not JSON", None);
    bad(at.clone(), "[12.5, 40]", "not an array", None);
    bad(
        at.clone(),
        r#"{"cpu": "high"}"#,
        "finite number",
        Some("cpu"),
    );
    bad(at.clone(), r#"{"cpu": null}"#, "not null", Some("cpu"));
    bad(
        at.clone(),
        r#"{"cpu load": 1}"#,
        "metric name",
        Some("cpu load"),
    );
    bad(
        format!("/api/perf/a%7Bb/{now}"),
        r#"{"cpu": 1}"#,
        "hostname",
        Some("host"),
    );

    // The gauges, with the posted host and its epoch.
    let mut cpu = BTreeMap::new();
    let mut mem = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cpu.is_empty() && Instant::now() < deadline {
        if let Some(f) = gw.next_flush(Duration::from_secs(2)) {
            record(&mut cpu, &f, "cpu", "web-1");
            record(&mut mem, &f, "mem", "web-1");
            assert!(
                !f.iter().any(|m| m["dimensions"]["hostname"] == "a{b"),
                "a refused post forwards nothing"
            );
        }
    }
    assert_eq!(cpu, BTreeMap::from([(now * 1000, 12.5)]));
    assert_eq!(
        mem,
        BTreeMap::from([(now * 1000, 40.5)]),
        "a numeric string"
    );

    // Methods and routes as liz's tornado answered them.
    assert_eq!(post(gw.http, "/api/perf/web-1", "{}").status, 405);
    assert_eq!(
        post(gw.http, "/api/perf/web-1/by-minute:cpu", "{}").status,
        405
    );
    let quirk = get(gw.http, &format!("/api/perf/web-1/{now}"));
    assert_eq!(quirk.status, 405, "GET on the POST route, as liz");
    assert_eq!(quirk.header("allow").as_deref(), Some("POST"));
    // The admin port has no POST route: there the digits are a label.
    assert_eq!(get(gw.admin, &format!("/api/perf/web-1/{now}")).status, 200);
    for addr in [gw.http, gw.admin] {
        let unknown = get(addr, "/api/perf/nobody");
        assert_eq!(
            (unknown.status, unknown.json()),
            (200, serde_json::json!({}))
        );
        assert_eq!(
            unknown.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            get(addr, "/api/perf/nobody/by-minute:cpu").json(),
            serde_json::json!({})
        );
        for path in ["/api/perf/web-1/", "/api/perf", "/api/perf/"] {
            let a = get(addr, path);
            assert_eq!(a.status, 404, "{path}");
            assert!(a.json()["error"].is_string(), "{path}: {}", a.body);
        }
    }
    assert_eq!(
        gw.counter("statsgate_liz_posts_total", "outcome=\"accepted\""),
        1
    );
    assert_eq!(
        gw.counter("statsgate_liz_posts_total", "outcome=\"refused\""),
        7
    );
}

/// liz-monitor on a UTC+7 host posts epochs seven hours behind: the gateway files such a
/// post at its receive time.
#[test]
fn a_skewed_liz_epoch_is_replaced_by_the_receive_time() {
    let gw = common::start("flush:\n  interval: 1s\n");
    let dir = tempfile::tempdir().unwrap();
    let sent_log = dir.path().join("sent.jsonl");
    let before = now_sec();
    let out = Command::new("python3")
        .arg(MONITOR)
        .args(["--this-host", "far-host", "--publish"])
        .arg(format!("http://{}/api/perf/", gw.http))
        .args([
            "--values-from-seed",
            "1",
            "--sample-seconds",
            "0",
            "--stop-after",
            "1",
        ])
        .arg("--sent-log")
        .arg(&sent_log)
        .env("TZ", "UTC-7")
        .output()
        .expect("python3");
    let after = now_sec();
    assert!(out.status.success(), "{out:?}");
    let sent: Value =
        serde_json::from_str(std::fs::read_to_string(&sent_log).unwrap().trim()).unwrap();
    let ts = sent["ts"].as_u64().unwrap();
    assert!(
        before.abs_diff(ts + 7 * 3600) <= 3,
        "the naive-utcnow shift: {ts}"
    );
    let mut cpu = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cpu.is_empty() && Instant::now() < deadline {
        if let Some(f) = gw.next_flush(Duration::from_secs(2)) {
            record(&mut cpu, &f, "cpu", "far-host");
        }
    }
    let (&at, &v) = cpu.iter().next().expect("the post's cpu gauge");
    assert_eq!(v, sent["cpu"].as_f64().unwrap());
    assert!(
        (before * 1000..=(after + 1) * 1000).contains(&at),
        "received at {at}, between {before} and {after}"
    );
}

#[test]
fn the_liz_endpoint_switch_and_the_history_switch() {
    let gw = common::start("flush:\n  interval: 1s\nhttp:\n  liz_endpoint: off\n");
    let now = now_sec();
    let a = post(gw.http, &format!("/api/perf/web-1/{now}"), r#"{"cpu": 1}"#);
    assert_eq!(a.status, 404);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("http.liz_endpoint")
    );
    let a = get(gw.http, "/api/perf/web-1");
    assert_eq!(a.status, 404);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("http.liz_endpoint")
    );
    assert_eq!(
        get(gw.admin, "/api/perf/web-1").status,
        200,
        "the admin port reads"
    );
    assert_eq!(
        gw.counter("statsgate_liz_posts_total", "outcome=\"refused\""),
        1
    );
    drop(gw);

    let gw = common::start("flush:\n  interval: 1s\nhistory:\n  enabled: false\n");
    for addr in [gw.http, gw.admin] {
        let a = get(addr, "/api/perf/web-1/cpu");
        assert_eq!(a.status, 404);
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .contains("history.enabled")
        );
    }
    let a = get(gw.admin, "/api/metrics");
    assert_eq!(a.status, 404);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("history.enabled")
    );
    // Publishing does not need the history.
    let a = post(gw.http, &format!("/api/perf/web-1/{now}"), r#"{"cpu": 1}"#);
    assert_eq!(a.status, 200, "{}", a.body);
}

fn latest(gw: &Gateway, query: &str) -> Value {
    let a = get(gw.admin, &format!("/api/metrics{query}"));
    assert_eq!(a.status, 200, "{query}: {}", a.body);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/json")
    );
    a.json()
}

#[test]
fn api_metrics_filters_by_prefix_and_dimension_and_bounds_its_answer() {
    let gw = common::start("flush:\n  interval: 1s\nhistory:\n  include: [\"t.*\", \"u.*\"]\n");
    gw.sender()
        .send(b"t.a:1|g|#device:sda\nt.a:2|g|#device:sdb\nt.b:3.5|g\nu.c:4|g")
        .unwrap();
    let mut flushed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while flushed.is_empty() && Instant::now() < deadline {
        if let Some(f) = gw.next_flush(Duration::from_secs(2)) {
            flushed = f.into_iter().filter(|m| m["name"] == "t.a").collect();
        }
    }
    assert_eq!(flushed.len(), 2, "the gauges were flushed");
    let flushed_at = flushed[0]["timestamp"].as_u64().unwrap();

    let all = latest(&gw, "?prefix=t.");
    assert_eq!(all["count"], 3, "{all}");
    assert_eq!(all["truncated"], false);
    let metrics = all["metrics"].as_array().unwrap();
    let names: Vec<&str> = metrics
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["t.a", "t.a", "t.b"],
        "sorted by name, then dimensions"
    );
    assert_eq!(metrics[0]["dimensions"]["device"], "sda");
    assert_eq!(metrics[0]["dimensions"]["hostname"], "test-host");
    assert_eq!(metrics[0]["value"], 1.0);
    assert_eq!(metrics[1]["value"], 2.0);
    assert_eq!(metrics[2]["value"], 3.5);
    assert_eq!(
        metrics[0]["timestamp"].as_u64(),
        Some(flushed_at),
        "ms, as flushed"
    );
    for m in metrics {
        let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["name", "dimensions", "timestamp", "value"])
        );
    }

    let sda = latest(&gw, "?prefix=t.&dim=device:sda&dim=hostname:test-host");
    assert_eq!(sda["count"], 1, "{sda}");
    assert_eq!(sda["metrics"][0]["value"], 1.0);
    assert_eq!(latest(&gw, "?dim=device:sdc")["count"], 0);
    // No filter: every kept series, the gateway's own `statsgate.*` figures included.
    let every = latest(&gw, "");
    let names: Vec<&str> = every["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let sent: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !n.starts_with("statsgate."))
        .collect();
    assert_eq!(sent, ["t.a", "t.a", "t.b", "u.c"], "{every}");
    assert_eq!(every["count"], names.len());

    let two = latest(&gw, "?prefix=t.&limit=2");
    assert_eq!(
        (two["count"].clone(), two["truncated"].clone()),
        (2.into(), true.into())
    );
    let three = latest(&gw, "?prefix=t.&limit=3");
    assert_eq!(three["truncated"], false);

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=10001", "limit"),
        ("?limit=many", "limit"),
        ("?dim=device", "dim"),
        ("?name=t.a", "query"),
    ] {
        let a = get(gw.admin, &format!("/api/metrics{query}"));
        assert_eq!(a.status, 400, "{query}");
        assert_eq!(a.json()["field"], field, "{query}: {}", a.body);
    }
}
