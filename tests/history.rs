//! The local history through the real binary: what it keeps survives a restart through
//! `<buffer.spool_dir>/history.checkpoint.json`, the console sink prints exactly what it
//! printed before (no `statsgate.*` of its own), and a damaged checkpoint never stops a start.

mod common;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn yaml(spool: &Path) -> String {
    format!(
        "flush:\n  interval: 1s\nbuffer:\n  spool_dir: {}\n",
        spool.display()
    )
}

/// The checkpoint's series, by key.
fn saved(spool: &Path) -> Vec<Value> {
    let text = std::fs::read(spool.join("history.checkpoint.json")).expect("checkpoint written");
    let file: Value = serde_json::from_slice(&text).expect("checkpoint is JSON");
    assert_eq!(file["version"], 1);
    file["series"].as_array().expect("series").clone()
}

fn series<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    let key = format!("{{\"name\":\"{name}\",\"dimensions\":{{\"hostname\":\"test-host\"}}");
    all.iter().find(|s| s["key"] == key.as_str())
}

/// (samples, sum) over a series' by-minute buckets.
fn minute_totals(s: &Value) -> (u64, f64) {
    s["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0.0), |(n, sum), b| {
            (n + b[1].as_u64().unwrap(), sum + b[2].as_f64().unwrap())
        })
}

/// Flushes until one holds `name`, within `timeout`.
fn flush_with(gw: &common::Gateway, name: &str, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let flush = gw
            .next_flush(left)
            .unwrap_or_else(|| panic!("no flush with {name}"));
        if common::find(&flush, name, &[]).is_some() {
            return flush;
        }
    }
}

#[test]
fn the_history_survives_a_restart_through_the_spool_dir() {
    let spool = tempfile::tempdir().unwrap();
    let gw = common::start(&yaml(spool.path()));
    let sock = gw.sender();
    sock.send_to(b"cpu.user_perc:42|g\napp.not_kept:1|g", gw.udp)
        .unwrap();
    let flush = flush_with(&gw, "cpu.user_perc", Duration::from_secs(10));
    assert_eq!(common::value(&flush, "cpu.user_perc", &[]), 42.0);
    let (printed, status) = gw.stop();
    assert!(status.success());
    // The console printed only what was sent to it: the gateway's figures went to the
    // history alone.
    let own: Vec<&Value> = printed
        .iter()
        .chain(std::iter::once(&flush))
        .flatten()
        .filter(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("statsgate."))
        })
        .collect();
    assert!(own.is_empty(), "{own:?}");

    let mode = {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(spool.path().join("history.checkpoint.json")).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600);
    let first = saved(spool.path());
    let cpu = series(&first, "cpu.user_perc").expect("cpu.user_perc kept");
    let (samples, sum) = minute_totals(cpu);
    // The gauge is re-sent every flush until idle, each one a sample of 42.
    assert!(samples >= 1, "{cpu}");
    assert_eq!(sum, 42.0 * samples as f64);
    assert!(series(&first, "app.not_kept").is_none(), "not selected");
    assert!(
        series(&first, "statsgate.series").is_some(),
        "the gateway's own figures are kept although the console never printed them"
    );

    // A second gateway on the same directory restores it, keeps adding, and saves it again.
    let gw = common::start(&yaml(spool.path()));
    gw.wait_for("the restore logged", Duration::from_secs(5), |g| {
        g.stderr.lock().unwrap().contains("restored the history")
    });
    let log = gw.stderr.lock().unwrap().clone();
    assert!(!log.contains("history checkpoint ignored"), "{log}");
    gw.sender().send_to(b"cpu.user_perc:8|g", gw.udp).unwrap();
    flush_with(&gw, "cpu.user_perc", Duration::from_secs(10));
    let (_, status) = gw.stop();
    assert!(status.success());
    let second = saved(spool.path());
    let cpu = series(&second, "cpu.user_perc").unwrap();
    let (samples2, sum2) = minute_totals(cpu);
    assert!(
        samples2 > samples,
        "restored samples kept: {samples} then {samples2}"
    );
    assert!(sum2 >= sum + 8.0, "{sum} then {sum2}");
    // Only the first run saw 42 and only the second 8: both in the buckets means restored.
    let buckets = cpu["minutes"].as_array().unwrap();
    let max = buckets
        .iter()
        .map(|b| b[4].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let min = buckets
        .iter()
        .map(|b| b[3].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert_eq!((min, max), (8.0, 42.0), "{cpu}");
}

#[test]
fn a_damaged_history_checkpoint_is_logged_and_replaced() {
    let spool = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(spool.path()).unwrap();
    let path = spool.path().join("history.checkpoint.json");
    std::fs::write(&path, b"{\"version\":1,\"series\":[{\"key\":").unwrap();
    let gw = common::start(&yaml(spool.path()));
    gw.wait_for("the refusal logged", Duration::from_secs(5), |g| {
        g.stderr
            .lock()
            .unwrap()
            .contains("history checkpoint ignored")
    });
    gw.sender()
        .send_to(b"mem.usable_perc:50|g", gw.udp)
        .unwrap();
    flush_with(&gw, "mem.usable_perc", Duration::from_secs(10));
    let (_, status) = gw.stop();
    assert!(status.success(), "a damaged checkpoint is not fatal");
    assert!(series(&saved(spool.path()), "mem.usable_perc").is_some());
}
