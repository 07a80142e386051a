//! The real binary over its Unix sockets (`statsd.unix_listen`, `statsd.unix_stream_listen`):
//! a plain stream client, the datagram limit, a lossless burst and the stream connection
//! limit here; the Python `datadog` client against UDP in [`datadog`]; the socket-file rules
//! (stale replaced, anything else refused, mode, removal at SIGTERM, a newer instance's file
//! left alone) in [`files`].

mod common;
#[path = "unix/datadog.rs"]
mod datadog;
#[path = "unix/files.rs"]
mod files;

use common::{Gateway, find, start, value};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

/// A config with the two sockets in `dir` (plus `extra` statsd keys) and one flush at exit.
fn sockets_config(dir: &Path, extra: &str) -> (String, PathBuf, PathBuf) {
    let dgram = dir.join("dsd.socket");
    let stream = dir.join("dsd-stream.socket");
    let yaml = format!(
        "statsd:\n  unix_listen: {}\n  unix_stream_listen: {}\n{extra}{ONE_FLUSH}",
        dgram.display(),
        stream.display()
    );
    (yaml, dgram, stream)
}

fn accepted(gw: &Gateway, transport: &str) -> u64 {
    gw.counter(
        "statsgate_transport_lines_accepted_total",
        &format!("transport=\"{transport}\""),
    )
}

fn wait_accepted(gw: &Gateway, transport: &str, n: u64) {
    gw.wait_for(
        &format!("{n} lines accepted over {transport}"),
        Duration::from_secs(10),
        |g| accepted(g, transport) >= n,
    );
}

/// SIGTERM; the metrics of every flush printed until exit (the final one included).
fn stop(gw: Gateway) -> Vec<Value> {
    let (flushes, status) = gw.stop();
    assert!(status.success(), "exit status {status}");
    flushes.into_iter().flatten().collect()
}

/// Runs the binary with `yaml` expecting it to refuse to start: its exit code and stderr.
fn refused(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("--config")
        .arg(&path)
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_PROBES__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("statsgate started, but should have refused:\n{yaml}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

// --- plain clients ----------------------------------------------------------------------

#[test]
fn a_stream_client_and_the_datagram_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) =
        sockets_config(dir.path(), "  max_datagram: 1KiB\n  max_line: 256B\n");
    let gw = start(&yaml);

    // Lines split across writes, an over-long one (skipped, counted), a last one without
    // a newline before the close.
    let mut s = UnixStream::connect(&stream).unwrap();
    s.write_all(b"st.a:1|c\nst.b:").unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"4|g\n").unwrap();
    s.write_all(&[b'x'; 600]).unwrap();
    s.write_all(b":1|c\nst.a:2|c\nst.last:7|c").unwrap();
    drop(s);

    let tx = UnixDatagram::unbound().unwrap();
    let mut big = b"dg.big:1|c\n".to_vec();
    big.resize(1025, b'y');
    tx.send_to(&big, &dgram).unwrap();
    let mut exact = b"dg.exact:1|c\n".to_vec();
    exact.resize(1024, b'\n');
    tx.send_to(&exact, &dgram).unwrap();
    tx.send_to(b"dg.a:5|c|#k:v\ndg.t:3|ms", &dgram).unwrap();

    wait_accepted(&gw, "unix_stream", 4);
    wait_accepted(&gw, "unix", 3);
    assert_eq!(gw.counter("statsgate_datagrams_too_large_total", ""), 1);
    assert_eq!(
        gw.counter("statsgate_lines_rejected_total", "reason=\"line_too_long\""),
        1
    );
    assert_eq!(
        gw.counter(
            "statsgate_stream_connections_total",
            "transport=\"unix_stream\",outcome=\"accepted\""
        ),
        1
    );
    let metrics = stop(gw);
    assert_eq!(value(&metrics, "st.a", &[]), 3.0);
    assert_eq!(value(&metrics, "st.b", &[]), 4.0);
    assert_eq!(value(&metrics, "st.last", &[]), 7.0);
    assert_eq!(value(&metrics, "dg.exact", &[]), 1.0);
    assert_eq!(value(&metrics, "dg.a", &[("k", "v")]), 5.0);
    assert_eq!(value(&metrics, "dg.t.count", &[]), 1.0);
    assert!(find(&metrics, "dg.big", &[]).is_none());
}

#[test]
fn a_burst_over_the_datagram_socket_loses_nothing() {
    // Unlike UDP, a full Unix datagram queue makes a blocking sender wait: none is dropped.
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, _) = sockets_config(dir.path(), "");
    let gw = start(&yaml);
    let tx = UnixDatagram::unbound().unwrap();
    tx.connect(&dgram).unwrap();
    const N: u64 = 20_000;
    for i in 0..N {
        tx.send(format!("burst:1|c|#k:{}", i % 4).as_bytes())
            .unwrap();
    }
    wait_accepted(&gw, "unix", N);
    let metrics = stop(gw);
    let total: f64 = (0..4)
        .map(|k| value(&metrics, "burst", &[("k", &k.to_string())]))
        .sum();
    assert_eq!(total, N as f64);
}

// --- stream connections -------------------------------------------------------------------

fn stream_connections(gw: &Gateway, outcome: &str) -> u64 {
    gw.counter(
        "statsgate_stream_connections_total",
        &format!("transport=\"unix_stream\",outcome=\"{outcome}\""),
    )
}

#[test]
fn the_stream_connection_limit_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _, stream) = sockets_config(dir.path(), "  tcp_max_connections: 2\n");
    let gw = start(&yaml);
    let mut held: Vec<UnixStream> = (0..2)
        .map(|i| {
            let mut s = UnixStream::connect(&stream).unwrap();
            s.write_all(format!("held.{i}:1|c\n").as_bytes()).unwrap();
            s
        })
        .collect();
    wait_accepted(&gw, "unix_stream", 2);
    assert_eq!(
        gw.counter(
            "statsgate_stream_connections_open",
            "transport=\"unix_stream\""
        ),
        2
    );
    // The third is closed at accept, before a byte is read.
    let mut third = UnixStream::connect(&stream).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"over.limit:1|c\n");
    let mut buf = Vec::new();
    assert_eq!(third.read_to_end(&mut buf).unwrap_or(0), 0);
    gw.wait_for("the refusal counted", Duration::from_secs(5), |g| {
        stream_connections(g, "limit") == 1
    });
    // One closes: a new one is served.
    drop(held.pop());
    gw.wait_for("the close seen", Duration::from_secs(5), |g| {
        g.counter(
            "statsgate_stream_connections_open",
            "transport=\"unix_stream\"",
        ) == 1
    });
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"after:1|c\n")
        .unwrap();
    wait_accepted(&gw, "unix_stream", 3);
    assert_eq!(stream_connections(&gw, "accepted"), 3);
    let metrics = stop(gw);
    assert!(find(&metrics, "over.limit", &[]).is_none());
    assert_eq!(value(&metrics, "after", &[]), 1.0);
}

#[test]
fn a_silent_stream_connection_is_closed_and_its_last_line_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _, stream) = sockets_config(dir.path(), "  tcp_idle_timeout: 1s\n");
    let gw = start(&yaml);
    let mut s = UnixStream::connect(&stream).unwrap();
    s.write_all(b"idle.last:4|c").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.read_to_end(&mut buf).unwrap(), 0, "not closed");
    gw.wait_for("the idle close counted", Duration::from_secs(5), |g| {
        stream_connections(g, "idle") == 1
    });
    wait_accepted(&gw, "unix_stream", 1);
    let metrics = stop(gw);
    assert_eq!(value(&metrics, "idle.last", &[]), 4.0);
}
