//! The schedule through the real binary: a hung plugin delays no other check, a stop while
//! a plugin hangs is prompt and leaves no process behind, and every run is counted.

use crate::common;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Live processes whose command line holds `marker`.
fn alive_with(marker: &str) -> Vec<i64> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_hung_plugin_does_not_delay_another_check_and_stop_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("sgmark{}", std::process::id());
    // The marker rides in each child's command line (`: <marker>` is a no-op) so that the
    // test can find them in /proc.
    let hung = script(
        dir.path(),
        "check_hung",
        &format!(
            "#!/bin/sh\nsh -c 'sleep 300; : {marker}' &\nsh -c 'sleep 301; : {marker}' &\nwait\n"
        ),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  instances:\n\
         \x20   - {{name: hung, kind: nagios, period: 30s, timeout: 30s, command: ['{hung}']}}\n\
         \x20   - {{name: port, kind: tcp, period: 1s, address: '127.0.0.1:{port}'}}\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive_with(&marker).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the plugin's children never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // While the plugin hangs (its timeout is 30 s), the tcp check keeps its 1 s period.
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(4) {
        if let Some(flush) = gw.next_flush(Duration::from_secs(2)) {
            seen += flush
                .iter()
                .filter(|m: &&Value| m["name"] == "network.tcp.status" && m["value"] == 0.0)
                .count();
        }
    }
    assert!(seen >= 3, "{seen} tcp results in 4 s beside a hung plugin");
    assert_eq!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"hung\",outcome=\"ok\""
        ),
        0,
        "the plugin is still running"
    );
    // SIGTERM: the gateway does not wait for the plugin, and takes its group with it.
    let stopping = Instant::now();
    let (_, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !alive_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left alive after stop: {:?}",
            alive_with(&marker)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(listener);
}

#[test]
fn runs_over_the_concurrency_bound_wait_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Each run takes 600 ms; with one slot, three checks due every second cannot all run:
    // some wait and some are skipped, and every run is counted under one outcome.
    let slow = script(dir.path(), "check_slow", "#!/bin/sh\nsleep 0.6\necho OK\n");
    let gw = common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  max_concurrent: 1\n  instances:\n\
         \x20   - {{name: a, kind: nagios, period: 1s, command: ['{slow}']}}\n\
         \x20   - {{name: b, kind: nagios, period: 1s, command: ['{slow}']}}\n\
         \x20   - {{name: c, kind: nagios, period: 1s, command: ['{slow}']}}\n"
    ));
    std::thread::sleep(Duration::from_secs(5));
    let runs = |check: &str, outcome: &str| {
        gw.counter(
            "statsgate_check_runs_total",
            &format!("check=\"{check}\",outcome=\"{outcome}\""),
        )
    };
    let ok: u64 = ["a", "b", "c"].iter().map(|c| runs(c, "ok")).sum();
    let skipped: u64 = ["a", "b", "c"].iter().map(|c| runs(c, "skipped")).sum();
    // One slot, 600 ms a run: at most ~9 runs in 5 s, and the ~15 due runs not run are skipped.
    assert!((5..=9).contains(&ok), "ok {ok}");
    assert!(skipped >= 4, "skipped {skipped}");
    for c in ["a", "b", "c"] {
        assert!(runs(c, "ok") >= 1, "{c} starved");
    }
    gw.stop();
}
