//! `statsgate bench` against the real gateway on loopback: a small, paced run whose offered
//! lines must all be accepted, and whose flushed counter and timer totals must match exactly.
//! No timing assertions: throughput lives in `scripts/side_by_side.sh`.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// The gateway with its console sink going to a file, as `--sink-output` reads it.
struct Gateway {
    child: Child,
    udp: SocketAddr,
    admin: SocketAddr,
    sink: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = dir.path().join("sink.jsonl");
    let out = std::fs::File::create(&sink).expect("sink file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .env("RUST_LOG", "info")
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_STATSD__READERS", "2")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "")
        .env("STATSGATE_AGGREGATE__HOSTNAME", "test-host")
        .env("STATSGATE_FLUSH__INTERVAL", "500ms")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn statsgate");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("statsgate listening") {
                let _ = tx.send(line.clone());
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("statsgate did not start");
    let field = |key: &str| -> SocketAddr {
        let rest = &line[line.find(key).expect(key) + key.len()..];
        rest.split(' ').next().unwrap().parse().expect("address")
    };
    Gateway {
        udp: field("udp="),
        admin: field("admin="),
        child,
        sink,
        _dir: dir,
    }
}

fn bench(g: &Gateway, extra: &[&str]) -> Value {
    let sink = g.sink.to_str().unwrap();
    let mut args = vec!["--sink-output", sink, "--verify", "--verify-timeout", "20s"];
    args.extend(extra);
    common::bench(g.udp, g.admin, &args)
}

#[test]
fn a_paced_mixed_run_is_accepted_whole_and_flushes_exact_totals() {
    let g = start();
    let r = bench(
        &g,
        &[
            "--lines",
            "20000",
            "--rate",
            "100000",
            "--series",
            "60",
            "--lines-per-datagram",
            "7",
            "--types",
            "c,ms,g,s,h",
            "--dialects",
            "plain,dogstatsd,monasca,influx,graphite",
            "--dimensions",
            "2",
        ],
    );
    // Whole datagrams: the count is rounded up to a multiple of 7 lines.
    assert_eq!(r["offered_lines"], 20006, "{r}");
    assert_eq!(r["accepted_lines"], r["offered_lines"], "{r}");
    assert_eq!(r["lost_lines"], 0, "{r}");
    assert_eq!(r["pid"], g.child.id(), "found by its UDP port");
    assert!(r["server_cpu_seconds"].as_f64().is_some(), "{r}");
    assert!(r["server_hwm_kib"].as_u64().unwrap() > 0, "{r}");
    let v = &r["verify"];
    assert_eq!(v["ok"], true, "{r}");
    assert_eq!(v["mismatched"], 0);
    // 60 series over 5 types: 12 each of c, ms and h are checked (gauges and sets are not).
    assert_eq!(v["series_checked"], 36, "{r}");
}

#[test]
fn one_line_datagrams_are_counted_and_verified() {
    let g = start();
    // Paced gently: a debug build on a busy CI machine with the kernel's default buffer.
    let r = bench(
        &g,
        &[
            "--lines",
            "2000",
            "--rate",
            "20000",
            "--series",
            "100",
            "--lines-per-datagram",
            "1",
        ],
    );
    assert_eq!(r["offered_datagrams"], 2000, "{r}");
    assert_eq!(r["accepted_lines"], 2000, "{r}");
    assert_eq!(r["verify"]["ok"], true, "{r}");
    assert_eq!(r["verify"]["series_checked"], 100);
}

/// More distinct lines than a shard's line memo holds: it gives up and a datagram's lines are
/// looked up together (`Aggregator::add_lines`); the flushed totals are still exact.
#[test]
fn past_the_line_memo_the_batched_lookups_flush_exact_totals() {
    let g = start();
    let r = bench(
        &g,
        &[
            "--lines",
            "200000",
            "--rate",
            "50000",
            "--series",
            "60000",
            "--types",
            "c,ms,c,h,g,s",
            "--dialects",
            "plain,dogstatsd,influx",
            "--dimensions",
            "2",
        ],
    );
    assert_eq!(r["accepted_lines"], r["offered_lines"], "{r}");
    assert_eq!(r["lost_lines"], 0, "{r}");
    let v = &r["verify"];
    assert_eq!(v["ok"], true, "{r}");
    assert_eq!(v["mismatched"], 0, "{r}");
    assert!(v["series_checked"].as_u64().unwrap() >= 30_000, "{r}");
}
