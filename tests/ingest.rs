//! The real binary over real UDP: a scripted set of datagrams covering every dialect and
//! type, and the exact metrics printed by the console sink.

mod common;

use common::{find, start, value};
use serde_json::Value;
use std::time::Duration;

/// One hour: nothing flushes on the clock, so the final flush on SIGTERM holds everything.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

fn script() -> Vec<Vec<u8>> {
    let mut d: Vec<Vec<u8>> = vec![
        // Plain statsd, CRLF, sample rate; the explicit default hostname is the same series.
        b"page.views:1|c\r\npage.views:2|c|@0.5\r\npage.views:1|c|#hostname:test-host\n".to_vec(),
        // DogStatsD: ':' inside a value, a bare tag.
        b"req:1|c|#service:api,url:http://x:80/a,canary".to_vec(),
        // Monasca dict literal (with '|' inside a quoted value), then a delta.
        b"cpu:3|g|#{'service': 'nova', \"zone\": \"a|b\"}\ncpu:+2|g|#{'zone': 'a|b', 'service': 'nova'}".to_vec(),
        // InfluxDB and Graphite tags in the name: one series.
        b"http.req,service=api,code=200:1|c\nhttp.req;code=200;service=api:2|c".to_vec(),
        // Histogram, distribution, set (a member with ':').
        b"size:100|h\nsize:300|h\ndist:5|d".to_vec(),
        b"users:alice|s\nusers:bob|s\nusers:alice|s\nusers:user:42|s".to_vec(),
        // Rate with sender timestamps; a timestamped gauge.
        b"bytes:100|r|T1700000000\nbytes:400|r|T1700000003\ntemp:21.5|g|T1700000000".to_vec(),
        // Service check; an event (dropped, counted).
        b"_sc|db.up|2|h:db-1|#zone:a|m:replica lag\n_e{5,4}:title|text".to_vec(),
        // Bad lines between good ones: the good ones still count.
        b"ok.a:1|c\nbad line\nx:abc|c\ny:1|zz\nz:1|c|@2\nok.b:1|c\n".to_vec(),
        // A heartbeat datagram: counted, not parsed as statsd.
        br#"{"ID": "c1", "Enabler_ID": "svc", "Enabler_Version": "1", "Timestamp": "1"}"#.to_vec(),
    ];
    // Timer: 1..=100 packed in one line, plus 50 at rate 0.1 (weight 10).
    let packed: Vec<String> = (1..=100).map(|v| v.to_string()).collect();
    d.push(
        format!(
            "lat:{}|ms|#svc:api\nlat:50|ms|@0.1|#svc:api",
            packed.join(":")
        )
        .into_bytes(),
    );
    d
}

fn expected_lines(datagrams: &[Vec<u8>]) -> u64 {
    datagrams
        .iter()
        .filter(|d| !statsgate::parse::is_heartbeat(d))
        .map(|d| statsgate::parse::lines(d).count() as u64)
        .sum()
}

#[test]
fn every_dialect_and_type_is_printed_exactly() {
    let gw = start(ONE_FLUSH);
    let sender = gw.sender();
    let datagrams = script();
    for d in &datagrams {
        sender.send(d).expect("send");
    }
    let want = expected_lines(&datagrams);
    gw.wait_for("all lines counted", Duration::from_secs(20), |g| {
        g.lines_counted() == want
    });
    assert_eq!(gw.counter("statsgate_heartbeats_received_total", ""), 1);
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "reason=\"event\""),
        1
    );
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "reason=\"missing_value\""),
        1
    );
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "reason=\"bad_value\""),
        1
    );
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "reason=\"unknown_type\""),
        1
    );
    assert_eq!(
        gw.counter(
            "statsgate_lines_rejected_total",
            "reason=\"bad_sample_rate\""
        ),
        1
    );

    let (flushes, status) = gw.stop();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(flushes.len(), 1, "one final flush: {flushes:?}");
    let m: &[Value] = &flushes[0];
    let host = [("hostname", "test-host")];

    assert_eq!(value(m, "page.views", &host), 6.0, "1 + 2/0.5 + 1");
    let req = find(
        m,
        "req",
        &[
            ("service", "api"),
            ("url", "http://x:80/a"),
            ("canary", "True"),
        ],
    )
    .expect("req");
    assert_eq!(req["dimensions"]["hostname"], "test-host");
    assert_eq!(
        value(m, "cpu", &[("service", "nova"), ("zone", "a|b")]),
        5.0
    );
    assert_eq!(
        value(m, "http.req", &[("service", "api"), ("code", "200")]),
        3.0
    );
    assert_eq!(m.iter().filter(|x| x["name"] == "http.req").count(), 1);

    assert_eq!(value(m, "size.count", &host), 2.0);
    assert_eq!(value(m, "size.avg", &host), 200.0);
    assert_eq!(value(m, "dist.max", &host), 5.0);
    assert_eq!(value(m, "users", &host), 3.0);
    assert_eq!(value(m, "bytes", &host), 100.0, "(400 - 100) / 3 s");
    let temp = find(m, "temp", &host).expect("temp");
    assert_eq!(
        (temp["value"].as_f64(), temp["timestamp"].as_u64()),
        (Some(21.5), Some(1_700_000_000_000))
    );
    assert_eq!(
        value(m, "db.up", &[("hostname", "db-1"), ("zone", "a")]),
        2.0
    );
    assert_eq!(value(m, "ok.a", &host) + value(m, "ok.b", &host), 2.0);

    let svc = [("svc", "api")];
    assert_eq!(value(m, "lat.count", &svc), 110.0);
    assert_eq!(value(m, "lat.sum", &svc), 5050.0 + 500.0);
    assert_eq!(
        (value(m, "lat.min", &svc), value(m, "lat.max", &svc)),
        (1.0, 100.0)
    );
    assert!((value(m, "lat.avg", &svc) - 5550.0 / 110.0).abs() < 1e-9);
    let median = value(m, "lat.median", &svc);
    assert!(
        (median - 50.0).abs() <= 0.5,
        "median {median}: the weighted 50 dominates"
    );
    let p95 = value(m, "lat.95percentile", &svc);
    assert!(
        (p95 - 95.0).abs() <= 0.95,
        "p95 {p95} within the histogram's 1%"
    );

    // Everything printed carries the interval's timestamp or its own, and passes validation.
    for metric in m {
        let name = metric["name"].as_str().unwrap();
        assert!(statsgate::validate::name(name).is_ok(), "{name}");
        assert!(metric["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }
    let names: std::collections::BTreeSet<&str> =
        m.iter().filter_map(|x| x["name"].as_str()).collect();
    assert!(
        !names.contains("title") && !names.contains("x") && !names.contains("y"),
        "{names:?}"
    );
}

#[test]
fn flushes_follow_the_wall_clock_and_gauges_persist() {
    let gw = start("flush:\n  interval: 1s\n");
    let sender = gw.sender();
    sender.send(b"g:5|g\nc:1|c").expect("send");
    // Find the first flush holding both, then watch the next ones.
    let mut first = None;
    for _ in 0..5 {
        let f = gw
            .next_flush(Duration::from_secs(3))
            .expect("a flush every second");
        if find(&f, "c", &[]).is_some() {
            first = Some(f);
            break;
        }
    }
    let first = first.expect("the counter was flushed");
    let ts = first[0]["timestamp"].as_u64().unwrap();
    assert_eq!(
        ts % 1000,
        0,
        "timestamps are interval ends, aligned to the second"
    );
    assert_eq!(value(&first, "g", &[]), 5.0);

    let second = gw.next_flush(Duration::from_secs(3)).expect("next flush");
    assert_eq!(
        value(&second, "g", &[]),
        5.0,
        "a gauge is re-sent without updates"
    );
    assert!(
        find(&second, "c", &[]).is_none(),
        "a counter with no samples is not re-sent"
    );
    assert_eq!(second[0]["timestamp"].as_u64().unwrap(), ts + 1000);

    sender.send(b"g:+2|g").expect("send");
    let mut seen = 0.0;
    for _ in 0..3 {
        let f = gw.next_flush(Duration::from_secs(3)).expect("flush");
        seen = value(&f, "g", &[]);
        if seen == 7.0 {
            break;
        }
    }
    assert_eq!(seen, 7.0, "the delta applies to the persisted value");
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn healthz_and_metrics_answer() {
    let gw = start("");
    let (status, body) = gw.get("/healthz");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok");
    let (status, body) = gw.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "statsgate_datagrams_received_total",
        "statsgate_kernel_receive_drops_total",
        "statsgate_lines_accepted_total{type=\"counter\"}",
        "statsgate_lines_rejected_total{reason=\"bad_value\"}",
        "statsgate_series ",
        "statsgate_flush_duration_seconds",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(gw.get("/nope").0, 404);
}

/// `pc` (percent change, Rainbow's DiffMetric) over real UDP: each flush that received a
/// value prints the change between the series' last two values, the previous one possibly
/// from an earlier interval; the first value ever gives 0, a previous 0 gives 0.
#[test]
fn percent_change_lines_print_the_change_between_the_last_two_values() {
    let gw = start("flush:\n  interval: 1s\n");
    let sender = gw.sender();
    // Each step: the lines sent, then the value the next flush holding `depth` must print.
    let steps: [(&[&str], f64); 5] = [
        (&["depth:50|pc|#q:a"], 0.0),
        (&["depth:75|pc|#q:a"], 50.0),
        (&["depth:10|pc|#q:a\ndepth:40|pc|#q:a"], 300.0),
        (&["depth:0:5|pc|#q:a"], 0.0),
        (&["depth:4|pc|@0.5|#q:a"], -20.0),
    ];
    for (lines, want) in steps {
        // Sent just after the previous flush was printed, so a step lands in one interval.
        for l in lines {
            sender.send(l.as_bytes()).expect("send");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        let got = loop {
            let flush = gw.next_flush(Duration::from_secs(3)).expect("a flush");
            if let Some(m) = find(&flush, "depth", &[("q", "a")]) {
                break m.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no depth after {lines:?}"
            );
        };
        assert_eq!(got["value"].as_f64(), Some(want), "after {lines:?}: {got}");
        assert_eq!(got["dimensions"]["hostname"], "test-host");
        assert!(got.get("value_meta").is_none());
    }
    // No value in an interval: nothing printed for the series (an empty flush prints nothing).
    if let Some(quiet) = gw.next_flush(Duration::from_millis(2500)) {
        assert!(find(&quiet, "depth", &[]).is_none(), "{quiet:?}");
    }
    assert_eq!(
        gw.counter("statsgate_lines_accepted_total", "type=\"percent_change\""),
        6
    );
    let (_, status) = gw.stop();
    assert!(status.success());
}
