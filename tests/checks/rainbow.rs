//! Rainbow user-defined metrics: the JSONL directory and the SDK HTTP call, through the real
//! binary; and the RainbowMonitoringSDK 0.0.7 client itself (PyPI) as a child process.

use crate::common::{self, Gateway, find};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A record exactly as the SDK's `SimpleMetric.to_dict()` writes it (`json.dumps`: Python's
/// separators, `sys.float_info.max` bounds).
fn sdk_line(name: &str, val: f64, units: &str, desc: &str, ts: u64) -> String {
    format!(
        "{{\"name\": \"{name}\", \"units\": \"{units}\", \"desc\": \"{desc}\", \"timestamp\": {ts}, \"val\": {val:?}, \"higherIsBetter\": true, \"minVal\": -1.7976931348623157e+308, \"maxVal\": 1.7976931348623157e+308, \"group\": \"\"}}\n"
    )
}

fn files_gateway(dir: &Path, extra: &str) -> Gateway {
    common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  files_dir: {}\n  files_period: 500ms\n{extra}",
        dir.display()
    ))
}

/// Appends one line as the SDK does: open 'a', write, close.
fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

/// Every metric named `name` printed until `done` holds over them (or `timeout`), then for
/// `linger` more, so a late duplicate would be seen too.
fn collect(
    gw: &Gateway,
    names: &[&str],
    timeout: Duration,
    linger: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut until = None;
    loop {
        let now = Instant::now();
        let end = until.unwrap_or(deadline);
        if now >= end {
            break;
        }
        if let Some(flush) = gw.next_flush(end - now) {
            got.extend(
                flush
                    .into_iter()
                    .filter(|m| names.iter().any(|n| m["name"] == *n)),
            );
        }
        if until.is_none() && done(&got) {
            until = Some(Instant::now() + linger);
        }
    }
    got
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn files_are_read_whole_once_and_removed_and_bad_lines_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ts = now_s() - 5;
    // Left claimed by a previous run (a crash): resumed at start.
    std::fs::write(
        d.join(".rainbow.metrics.jsonl.1.claimed"),
        sdk_line("rb.resumed", 7.0, "", "", ts),
    )
    .unwrap();
    let gw = files_gateway(d, "  files_max_bytes: 2KiB\n");
    let mut text = sdk_line("rb.queue", 42.0, "items", "queue depth", ts);
    text += "this is not json\n";
    text += "{\"name\": \"bad name\", \"val\": 1}\n";
    text += &sdk_line("rb.latency", 12.5, "ms", "", ts);
    // NetData-fed records carry the value as a string; the last line has no newline.
    text += "{\"name\": \"rb.netdata\", \"units\": \"%\", \"desc\": \"\", \"val\": \"97\", \"group\": \"NETDATA\"}";
    std::fs::write(d.join("rainbow.metrics.jsonl"), &text).unwrap();
    // Ignored: not *.jsonl, a symlink, a directory.
    std::fs::write(d.join("notes.txt"), sdk_line("rb.txt", 1.0, "", "", ts)).unwrap();
    let target = outside.path().join("target.jsonl");
    std::fs::write(&target, sdk_line("rb.symlink", 1.0, "", "", ts)).unwrap();
    std::os::unix::fs::symlink(&target, d.join("link.jsonl")).unwrap();
    std::fs::create_dir(d.join("sub.jsonl")).unwrap();
    // Over files_max_bytes: set aside, counted, never read.
    let big: String = (0..40)
        .map(|i| sdk_line("rb.big", f64::from(i), "", "", ts))
        .collect();
    assert!(big.len() > 2048);
    std::fs::write(d.join("big.jsonl"), &big).unwrap();

    let all = [
        "rb.resumed",
        "rb.queue",
        "rb.latency",
        "rb.netdata",
        "rb.txt",
        "rb.symlink",
        "rb.big",
    ];
    let got = collect(
        &gw,
        &all,
        Duration::from_secs(10),
        Duration::from_secs(2),
        |m| m.len() >= 4,
    );
    let names: Vec<&str> = got.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names.len(),
        4,
        "each good record once, nothing ignored: {names:?}"
    );
    for n in ["rb.resumed", "rb.queue", "rb.latency", "rb.netdata"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let queue = find(&got, "rb.queue", &[]).unwrap();
    assert_eq!(queue["value"], 42);
    assert_eq!(queue["timestamp"], ts * 1000, "the record's own timestamp");
    assert_eq!(
        queue["dimensions"],
        json!({"hostname": "test-host"}),
        "the default dimensions"
    );
    assert_eq!(
        queue["value_meta"],
        json!({"units": "items", "desc": "queue depth"})
    );
    let latency = find(&got, "rb.latency", &[]).unwrap();
    assert_eq!(latency["value"], 12.5);
    assert_eq!(latency["value_meta"], json!({"units": "ms"}));
    assert_eq!(find(&got, "rb.netdata", &[]).unwrap()["value"], 97);

    gw.wait_for("the counters", Duration::from_secs(3), |g| {
        g.counter("statsgate_user_metric_files_total", "outcome=\"read\"") == 2
    });
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"file\",outcome=\"accepted\""
        ),
        4
    );
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"file\",outcome=\"invalid\""
        ),
        2
    );
    assert_eq!(
        gw.counter("statsgate_user_metric_files_total", "outcome=\"failed\""),
        1
    );
    let left = names_in(d);
    assert!(
        !left.iter().any(|n| n.contains("rainbow.metrics")),
        "read files are removed: {left:?}"
    );
    assert!(left.contains(&"notes.txt".to_owned()), "{left:?}");
    assert!(left.contains(&"link.jsonl".to_owned()), "{left:?}");
    assert!(left.contains(&"sub.jsonl".to_owned()), "{left:?}");
    let failed: Vec<_> = left.iter().filter(|n| n.ends_with(".failed")).collect();
    assert_eq!(failed.len(), 1, "{left:?}");
    assert!(failed[0].starts_with(".big.jsonl."), "{left:?}");
    assert_eq!(
        std::fs::read_to_string(d.join(failed[0])).unwrap(),
        big,
        "kept whole"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        sdk_line("rb.symlink", 1.0, "", "", ts)
    );
    let stderr = gw.stderr.lock().unwrap().clone();
    assert_eq!(
        stderr.matches("larger than checks.files_max_bytes").count(),
        1,
        "logged once: {stderr}"
    );
    drop(stderr);
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn a_file_appended_to_while_it_is_scanned_arrives_whole_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = files_gateway(dir.path(), "");
    let path = dir.path().join("rainbow.metrics.jsonl");
    // A line every 300 ms for 3 s while the directory is scanned every 500 ms: appends land
    // before, during and after each claim.
    let n = 10;
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                append(&path, &sdk_line("rb.slow", f64::from(i), "", "", now_s()));
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let got = collect(
        &gw,
        &["rb.slow"],
        Duration::from_secs(12),
        Duration::from_secs(2),
        |m| m.len() >= n as usize,
    );
    writer.join().unwrap();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for m in &got {
        *seen.entry(m["value"].as_i64().unwrap()).or_default() += 1;
    }
    let want: BTreeMap<i64, usize> = (0..i64::from(n)).map(|i| (i, 1)).collect();
    assert_eq!(seen, want, "every line exactly once");
    assert!(
        gw.counter("statsgate_user_metric_files_total", "outcome=\"read\"") >= 2,
        "appends went on across claims"
    );
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"file\",outcome=\"invalid\""
        ),
        0,
        "no half-read line"
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
    gw.stop();
}

/// `requests.post(url, json=record)` as RainbowUtils.store sends it.
fn sdk_post(gw: &Gateway, body: &str) -> (u16, Value) {
    let (status, text) = common::request(
        gw.http,
        &format!(
            "POST /rainbow HTTP/1.1\r\nHost: {}\r\nUser-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
            gw.http,
            body.len()
        ),
    );
    let parsed = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, parsed)
}

#[test]
fn the_http_endpoint_answers_what_the_sdk_expects() {
    let gw = common::start("flush:\n  interval: 1s\n");
    let ts = now_s();
    let one = sdk_line("rb.http", 3.25, "req/s", "requests per second", ts);
    let (status, body) = sdk_post(&gw, one.trim_end());
    assert_eq!((status, body), (200, json!({"success": true})));
    // An array with one bad record: the good one is kept, the bad one named.
    let mixed = format!(
        "[{}, {{\"name\": \"rb.nope\"}}, {{\"name\": \"a b\", \"val\": 1}}]",
        sdk_line("rb.http2", 1.0, "", "", ts).trim_end()
    );
    let (status, body) = sdk_post(&gw, &mixed);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["name"], "rb.nope");
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("val")
    );
    assert_eq!(body["rejected"][1]["index"], 2);
    let (status, body) = sdk_post(&gw, "not json");
    assert_eq!((status, body["success"].clone()), (400, json!(false)));

    let got = collect(
        &gw,
        &["rb.http", "rb.http2", "rb.nope"],
        Duration::from_secs(5),
        Duration::from_millis(1500),
        |m| m.len() >= 2,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    let m = find(&got, "rb.http", &[]).unwrap();
    assert_eq!(m["value"], 3.25);
    assert_eq!(m["timestamp"], ts * 1000);
    assert_eq!(m["dimensions"], json!({"hostname": "test-host"}));
    assert_eq!(
        m["value_meta"],
        json!({"units": "req/s", "desc": "requests per second"})
    );
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"http\",outcome=\"accepted\""
        ),
        2
    );
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"http\",outcome=\"invalid\""
        ),
        3
    );
    gw.stop();
}

#[test]
fn a_full_buffer_answers_503_and_keeps_the_file_for_later() {
    let dir = tempfile::tempdir().unwrap();
    // No flush for a minute: the smallest pending buffer (64 KiB) fills and stays full.
    let gw = common::start(&format!(
        "flush:\n  interval: 60s\nbuffer:\n  max_pending: 64KiB\nchecks:\n  files_dir: {}\n  files_period: 500ms\n",
        dir.path().display()
    ));
    let batch = |n: usize| {
        let records: Vec<String> = (0..n)
            .map(|i| {
                sdk_line("rb.full", i as f64, "", "", now_s())
                    .trim_end()
                    .to_owned()
            })
            .collect();
        format!("[{}]", records.join(", "))
    };
    let mut answers = Vec::new();
    for _ in 0..100 {
        let (status, body) = sdk_post(&gw, &batch(20));
        answers.push(status);
        if status == 503 {
            assert_eq!(body["success"], false, "{body}");
            break;
        }
    }
    assert_eq!(answers.last(), Some(&503), "{answers:?}");
    assert!(answers[..answers.len() - 1].iter().all(|&s| s == 200));
    let accepted = 20 * (answers.len() as u64 - 1);
    // Room for fewer than 20 more; a file of 100 waits.
    let lines: String = (0..100)
        .map(|i| sdk_line("rb.full.file", f64::from(i), "", "", now_s()))
        .collect();
    std::fs::write(dir.path().join("app.jsonl"), lines).unwrap();
    gw.wait_for("a refused file", Duration::from_secs(6), |g| {
        g.counter("statsgate_user_metric_files_total", "outcome=\"failed\"") >= 2
    });
    let left = names_in(dir.path());
    assert!(
        left.len() == 1 && left[0].starts_with(".app.jsonl.") && left[0].ends_with(".claimed"),
        "kept for the next scan: {left:?}"
    );
    assert_eq!(
        gw.counter("statsgate_user_metric_files_total", "outcome=\"read\""),
        0
    );
    assert_eq!(
        gw.counter(
            "statsgate_user_metrics_total",
            "source=\"http\",outcome=\"accepted\""
        ),
        accepted
    );
    // At shutdown the final flush sends what was accepted; the file waits for a restart.
    let (flushes, status) = gw.stop();
    assert!(status.success());
    let sent = flushes
        .iter()
        .flatten()
        .filter(|m| m["name"] == "rb.full")
        .count() as u64;
    assert_eq!(sent, accepted);
    assert_eq!(names_in(dir.path()).len(), 1);
}

/// A venv with RainbowMonitoringSDK 0.0.7 from PyPI (`.ci/run` creates it): `None` when
/// Python or PyPI is unavailable.
fn sdk_python() -> Option<PathBuf> {
    common::venv_python(
        "rainbow-venv",
        "from RainbowMonitoringSDK.utils.annotations import RainbowUtils",
        "RainbowMonitoringSDK==0.0.7",
    )
}

const SDK_SCRIPT: &str = r#"
from RainbowMonitoringSDK.utils.annotations import RainbowUtils
RainbowUtils.store(17.5, "rb.sdk.http", "ms", "served over HTTP")
RainbowUtils.store(3, "rb.sdk.file", "items", "written to a file", in_files=True)
RainbowUtils.store(4, "rb.sdk.file", "items", "written to a file", in_files=True)
print("stored")
"#;

#[test]
fn the_rainbow_sdk_itself_reaches_the_flush() {
    let Some(py) = sdk_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the RainbowMonitoringSDK venv (see .ci/run)"
        );
        eprintln!(
            "SKIPPED the_rainbow_sdk_itself_reaches_the_flush: no python3 venv with RainbowMonitoringSDK==0.0.7 (target/rainbow-venv)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gw = files_gateway(dir.path(), "");
    let out = Command::new(py)
        .args(["-c", SDK_SCRIPT])
        .env("RAINBOW_AGENT_HOST", "127.0.0.1")
        .env("RAINBOW_AGENT_PORT", gw.http.port().to_string())
        .env("RAINBOW_AGENT_PATH", "rainbow")
        // String concatenation in the SDK: the trailing slash is needed.
        .env("RAINBOW_METRIC_PATH", format!("{}/", dir.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("did not stored") && !stderr.contains("ERROR"),
        "the SDK logged a failure: {stderr}"
    );
    let got = collect(
        &gw,
        &["rb.sdk.http", "rb.sdk.file"],
        Duration::from_secs(10),
        Duration::from_secs(1),
        |m| m.len() >= 3,
    );
    let http = find(&got, "rb.sdk.http", &[]).unwrap();
    assert_eq!(http["value"], 17.5);
    assert_eq!(
        http["value_meta"],
        json!({"units": "ms", "desc": "served over HTTP"})
    );
    let mut file: Vec<i64> = got
        .iter()
        .filter(|m| m["name"] == "rb.sdk.file")
        .map(|m| m["value"].as_i64().unwrap())
        .collect();
    file.sort();
    assert_eq!(file, [3, 4]);
    assert_eq!(got.len(), 3, "{got:?}");
    gw.stop();
}
