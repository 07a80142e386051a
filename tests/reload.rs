//! Configuration reload through the real binary: SIGHUP and `statsgate reload` re-read the
//! file and the environment. Under `statsgate bench` load a reload that changes the flush
//! interval, the percentiles, limits and the Keystone credentials loses no line and no
//! gauge (every line is counted once, in Monasca, across it); an invalid file or a key that
//! cannot change live keeps the running configuration and names the key; limits and the
//! allow-list apply at once; a moved listener and new TLS certificates are taken live.

mod common;
#[path = "reload/listen.rs"]
mod listen;
#[path = "reload/tls.rs"]
mod tls;

use common::fake_openstack::{Fake, PASSWORD};
use common::start;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// One flush, the final one at stop.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

/// The password Keystone accepts after the rotation the test makes.
const NEW_PASSWORD: &str = "rotated-battery-staple-2";

/// The Keystone identity (user `statsgate` with `password`) and Monasca URL of `fake`.
fn upstream(fake: &Fake, password: &str) -> String {
    format!(
        "keystone:\n  auth_url: {}\n  username: statsgate\n  password: {password}\n  user_domain_name: Default\n  project_name: service\n  project_domain_name: Default\nmonasca:\n  url: {}\n",
        fake.keystone_url(),
        fake.monasca_url()
    )
}

fn name(m: &Value) -> &str {
    m["name"].as_str().unwrap_or_default()
}

fn timestamp(m: &Value) -> u64 {
    m["timestamp"].as_u64().unwrap_or_default()
}

/// The distinct flush timestamps of the metrics `keep` selects, in order.
fn flush_times(metrics: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<u64> {
    let set: BTreeSet<u64> = metrics.iter().filter(|m| keep(m)).map(timestamp).collect();
    set.into_iter().collect()
}

#[test]
fn a_reload_under_bench_load_loses_no_line_and_no_gauge() {
    let fake = Fake::start();
    let gw = start(&format!(
        "flush:\n  interval: 1s\naggregate:\n  percentiles: [0.95]\n  max_series_per_name: 100000\nstatsd:\n  max_line: 8KiB\n{}",
        upstream(&fake, PASSWORD)
    ));
    // A gauge set once, before the reload: it must still be sent after it.
    gw.sender().send(b"reload.kept:42|g").unwrap();
    gw.wait_for("the gauge counted", WAIT, |g| g.lines_counted() == 1);

    let reloaded = std::thread::scope(|s| {
        let (udp, admin) = (gw.udp, gw.admin);
        let load = s.spawn(move || {
            common::bench(
                udp,
                admin,
                &[
                    "--lines",
                    "192000",
                    "--rate",
                    "24000",
                    "--series",
                    "40",
                    "--types",
                    "c,ms",
                    "--lines-per-datagram",
                    "10",
                    "--prefix",
                    "load",
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        // The password is rotated in Keystone; the gateway's token from the old one stays
        // valid until it has one from the new.
        fake.with(|s| s.password = NEW_PASSWORD.to_owned());
        let after = format!(
            "flush:\n  interval: 2s\naggregate:\n  percentiles: [0.5, 0.99]\n  max_series_per_name: 50000\nstatsd:\n  max_line: 4KiB\n{}",
            upstream(&fake, NEW_PASSWORD)
        );
        let reloaded = gw.reload_with(&after);
        let report = load.join().expect("bench thread");
        (reloaded, report)
    });
    let ((outcome, message), report) = reloaded;
    assert_eq!(outcome, "applied", "{message}");
    for key in [
        "flush.interval (next flush boundary)",
        "aggregate.percentiles (next interval)",
        "aggregate.max_series_per_name (live)",
        "statsd.max_line (live)",
        "keystone.password (new token first)",
    ] {
        assert!(message.contains(key), "{key} missing from {message:?}");
    }
    assert!(!message.contains(NEW_PASSWORD), "a secret in {message:?}");
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(!stderr.contains(PASSWORD) && !stderr.contains(NEW_PASSWORD));

    let offered = report["offered_lines"].as_u64().unwrap();
    assert_eq!(report["lost_lines"], 0, "{report}");
    assert_eq!(report["accepted_lines"].as_u64(), Some(offered), "{report}");
    let (_, exit) = gw.stop();
    assert!(exit.success());

    let metrics = fake.metrics();
    // Every line once: a counter line adds 1 to its series, a timer line 1 to its `.count`.
    let total: f64 = metrics
        .iter()
        .filter(|m| {
            let n = name(m);
            n.starts_with("load.c.") || (n.starts_with("load.ms.") && n.ends_with(".count"))
        })
        .map(|m| m["value"].as_f64().unwrap_or_default())
        .sum();
    assert_eq!(total, offered as f64, "every bench line is in Monasca once");

    // The percentiles changed from one interval to the next, never within one.
    let old = flush_times(&metrics, |m| name(m).ends_with(".95percentile"));
    let new = flush_times(&metrics, |m| name(m).ends_with(".99percentile"));
    let median = flush_times(&metrics, |m| name(m).ends_with(".50percentile"));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "both sets of percentiles sent"
    );
    assert_eq!(new, median, "0.5 and 0.99 came in together");
    assert!(old.last() < new.first(), "old {old:?} then new {new:?}");

    // 1 s intervals before, 2 s after (the last flush, at SIGTERM, is partial).
    let times = flush_times(&metrics, |m| name(m).starts_with("load."));
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // The interval open at the reload ends at its 1 s boundary; the next one ends at the
    // next multiple of 2 s (intervals are aligned to wall-clock multiples), then 2 s each.
    let switch = times.iter().position(|t| Some(t) == new.first()).unwrap();
    assert!(
        gaps[..switch - 1].iter().all(|&g| g == 1000),
        "1 s flushes before the reload: {gaps:?}"
    );
    assert!([1000, 2000].contains(&gaps[switch - 1]), "{gaps:?}");
    assert_eq!(new.first().map(|t| t % 2000), Some(0), "aligned to 2 s");
    let after = &gaps[switch..gaps.len() - 1];
    assert!(
        !after.is_empty() && after.iter().all(|&g| g == 2000),
        "2 s after {switch}: {gaps:?} {times:?} {new:?}"
    );

    // The gauge set before the reload is still sent, with its value, after it.
    let kept = flush_times(&metrics, |m| name(m) == "reload.kept" && m["value"] == 42.0);
    assert!(
        kept.last() >= new.last(),
        "gauge kept to the end: {kept:?} vs {new:?}"
    );

    // A token from the new password was fetched and every later POST carried it.
    let (passwords, tokens) = fake.with(|s| {
        let passwords: Vec<Value> = s
            .auth_requests
            .iter()
            .map(|r| r["auth"]["identity"]["password"]["user"]["password"].clone())
            .collect();
        (passwords, s.post_tokens.clone())
    });
    assert_eq!(
        passwords,
        [PASSWORD, NEW_PASSWORD],
        "one token from each password"
    );
    let first_new = tokens.iter().position(|t| Some(t) != tokens.first());
    let first_new = first_new.expect("a POST with the new token");
    assert!(
        tokens[first_new..].iter().all(|t| *t == tokens[first_new]),
        "no POST went back to the old token"
    );
}

#[test]
fn a_bad_reload_keeps_the_running_configuration_and_says_which_key() {
    let gw = start("flush:\n  interval: 500ms\n");
    let (outcome, message) = gw.reload_with("flush:\n  interval: banana\n");
    assert_eq!(outcome, "failed");
    assert!(message.contains("flush.interval"), "{message}");
    let (outcome, message) = gw.reload_with("buffer:\n  spool_dir: /tmp/elsewhere\n");
    assert_eq!(outcome, "refused");
    assert!(
        message.contains("buffer.spool_dir: the spool directory"),
        "{message}"
    );
    assert!(!std::path::Path::new("/tmp/elsewhere").exists());
    let (outcome, message) = gw.reload_with("flush:\n  interval: 500ms\n");
    assert_eq!(
        (outcome.as_str(), message.as_str()),
        ("unchanged", "configuration unchanged")
    );
    for (label, n) in [
        ("failed", 1),
        ("refused", 1),
        ("unchanged", 1),
        ("applied", 0),
    ] {
        assert_eq!(
            gw.counter("statsgate_reloads_total", &format!("outcome=\"{label}\"")),
            n,
            "{label}"
        );
    }
    // Still flushing every 500 ms, on the configuration it started with.
    gw.sender().send(b"still.running:1|c").unwrap();
    let m = gw.first_flushed("the counter", WAIT, |m| name(m) == "still.running");
    assert_eq!(m["value"], 1.0);
}

#[test]
fn limits_and_the_allow_list_apply_at_once() {
    let gw = start(ONE_FLUSH);
    let s = gw.sender();
    let long = format!("long.line.{}:1|c", "x".repeat(100));
    s.send(long.as_bytes()).unwrap();
    gw.wait_for("the long line accepted", WAIT, |g| g.lines_counted() == 1);

    let (outcome, message) = gw.reload_with(&format!("{ONE_FLUSH}statsd:\n  max_line: 64\n"));
    assert_eq!(outcome, "applied", "{message}");
    s.send(long.as_bytes()).unwrap();
    gw.wait_for("the long line refused", WAIT, |g| {
        g.counter("statsgate_lines_rejected_total", "reason=\"line_too_long\"") == 1
    });
    // The same bytes a reader's memo had accepted before are judged by the new limit.
    s.send(b"short:1|c").unwrap();
    gw.wait_for("the short line", WAIT, |g| g.lines_counted() == 3);

    let (outcome, message) = gw.reload_with(&format!(
        "{ONE_FLUSH}statsd:\n  max_line: 64\n  allow: [10.0.0.0/8]\n"
    ));
    assert_eq!(outcome, "applied", "{message}");
    s.send(b"denied:1|c").unwrap();
    gw.wait_for("the datagram denied", WAIT, |g| {
        g.counter("statsgate_source_denied_total", "") == 1
    });
    let (flushes, exit) = gw.stop();
    assert!(exit.success());
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let long_name = long.split(':').next().unwrap();
    assert_eq!(
        common::value(&all, long_name, &[]),
        1.0,
        "accepted once, before the reload"
    );
    assert!(common::find(&all, "denied", &[]).is_none());
}

#[test]
fn statsgate_reload_asks_the_running_gateway_and_prints_the_outcome() {
    let gw = start(ONE_FLUSH);
    let run = |yaml: &str| {
        std::fs::write(&gw.config, yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .arg("--config")
            .arg(&gw.config)
            .arg("reload")
            .env("STATSGATE_ADMIN__LISTEN", gw.admin.to_string())
            .output()
            .expect("run statsgate reload");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text) = run(&format!("{ONE_FLUSH}aggregate:\n  percentiles: [0.5]\n"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("applied aggregate.percentiles (next interval)"),
        "{text}"
    );
    let (code, text) = run(&format!("{ONE_FLUSH}log:\n  format: json\n"));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("log.format: the log format is set up once"),
        "{text}"
    );
    assert!(text.contains("previous configuration"), "{text}");
    let (_, health) = gw.get("/healthz");
    assert!(health.contains("\"outcome\":\"refused\""), "{health}");
}

#[test]
fn a_changed_checks_section_restarts_the_checks_and_keeps_the_interval() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let gw = start("flush:\n  interval: 500ms\n");
    gw.sender().send(b"kept.gauge:5|g").unwrap();
    gw.first_flushed("the gauge", WAIT, |m| name(m) == "kept.gauge");
    let yaml = format!(
        "flush:\n  interval: 500ms\nchecks:\n  instances:\n    - name: db\n      kind: tcp\n      period: 1s\n      address: \"{open}\"\n"
    );
    let (outcome, message) = gw.reload_with(&yaml);
    assert_eq!(outcome, "applied", "{message}");
    assert!(
        message.contains("checks.instances (stage restarted)"),
        "{message}"
    );
    let up = gw.first_flushed("the new check's status", WAIT, |m| {
        name(m) == "network.tcp.status" && m["dimensions"]["url"] == open.as_str()
    });
    assert_eq!(up["value"], 0.0);
    // The gauge set before the reload is still sent beside the check's metrics.
    let g = gw.first_flushed("the gauge after the reload", WAIT, |m| {
        name(m) == "kept.gauge"
    });
    assert_eq!(g["value"], 5.0);
    assert!(gw.counter("statsgate_check_runs_total", "check=\"db\",outcome=\"ok\"") >= 1);
}

#[test]
fn log_level_changes_live() {
    // Reload messages silenced at first; `RUST_LOG` unset, so `log.level` decides.
    let quiet = format!("{ONE_FLUSH}log:\n  level: \"info,statsgate::gateway::reload=error\"\n");
    let gw = common::start_env(&quiet, &[("RUST_LOG", "")]);
    let (outcome, _) = gw.reload_with(&quiet);
    assert_eq!(outcome, "unchanged");
    let (outcome, message) = gw.reload_with(&format!("{ONE_FLUSH}log:\n  level: info\n"));
    assert_eq!(
        (outcome.as_str(), message.as_str()),
        ("applied", "applied log.level (live)")
    );
    gw.wait_for("the reload's own log line", WAIT, |g| {
        g.stderr
            .lock()
            .unwrap()
            .contains("reload: applied log.level")
    });
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(
        !stderr.contains("reload: configuration unchanged"),
        "the first reload was logged under the old filter: {stderr}"
    );
}
