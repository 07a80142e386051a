//! The real binary over its Unix sockets (`statsd.unix_listen`, `statsd.unix_stream_listen`):
//! the Python `datadog` client over both (its `unix://` datagram and `unixstream://`
//! length-prefixed modes) against the same calls over UDP, a plain stream client, the
//! datagram limit, the socket-file rules (stale replaced, anything else refused, mode,
//! removal at SIGTERM, a newer instance's file left alone) and the stream connection limit.

mod common;

use common::{Gateway, find, start, value};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Nothing flushes on the clock: the final flush on SIGTERM holds everything sent.
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

// --- the datadog client ---------------------------------------------------------------

/// The same calls, whatever the transport: `DD_DOGSTATSD_URL` (the client's documented
/// setting) picks it, a constant tag says which it was.
const DD_SCRIPT: &str = r#"
import sys
from datadog.dogstatsd import DogStatsd
via, buffered = sys.argv[1], sys.argv[2] == "buffered"
c = DogStatsd(constant_tags=["via:" + via], disable_telemetry=True,
              disable_buffering=not buffered, origin_detection_enabled=False)
c.increment("dd.page.views", tags=["page:home", "canary"])
c.increment("dd.page.views", 2, tags=["page:home", "canary"])
c.decrement("dd.page.errors", tags=["page:home"])
c.gauge("dd.queue.depth", 17.5, tags=["queue:a"])
c.histogram("dd.request.size", 100)
c.histogram("dd.request.size", 300)
c.timing("dd.request.latency", 12.5)
c.distribution("dd.batch.items", 3)
c.set("dd.users", "alice")
c.set("dd.users", "bob")
c.service_check("dd.db.up", DogStatsd.CRITICAL, tags=["zone:a"], hostname="db-1", message="replica lag")
c.event("deploy", "v2 rolled out", tags=["zone:a"])
c.flush()
c.close_socket()
print("sent")
"#;

/// Lines of the script that statsgate accepts (the event is dropped and counted).
const DD_ACCEPTED: u64 = 11;

fn datadog_python() -> Option<PathBuf> {
    common::venv_python("datadog-venv", "import datadog", "datadog==0.56.0")
}

fn run_dd(py: &Path, url: &str, via: &str, buffered: bool) {
    let out = Command::new(py)
        .args([
            "-c",
            DD_SCRIPT,
            via,
            if buffered { "buffered" } else { "unbuffered" },
        ])
        .env("DD_DOGSTATSD_URL", url)
        .output()
        .expect("run python");
    assert!(
        out.status.success() && out.stdout.starts_with(b"sent"),
        "datadog client over {url}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (name, dimensions without `via`) → value, for the metrics tagged `via:<via>`.
fn by_series(metrics: &[Value], via: &str) -> BTreeMap<String, f64> {
    metrics
        .iter()
        .filter(|m| m["dimensions"]["via"] == via)
        .map(|m| {
            let mut dims = m["dimensions"].as_object().cloned().unwrap_or_default();
            dims.remove("via");
            let key = format!("{} {}", m["name"].as_str().unwrap(), Value::Object(dims));
            (key, m["value"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn the_datadog_client_over_both_sockets_gives_what_udp_gives() {
    let Some(py) = datadog_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the datadog client venv (see .ci/run)"
        );
        eprintln!(
            "SKIPPED the_datadog_client_over_both_sockets_gives_what_udp_gives: no python3 venv with datadog==0.56.0 (target/datadog-venv)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    let gw = start(&yaml);
    // `unix://` tries a datagram socket first: the convention containers mount.
    run_dd(&py, &format!("unix://{}", dgram.display()), "unix", false);
    // The stream socket in DogStatsD's own framing (a length before each packet), with
    // the client's buffering putting several lines in a packet.
    run_dd(
        &py,
        &format!("unixstream://{}", stream.display()),
        "unix_stream",
        true,
    );
    run_dd(&py, &format!("udp://{}", gw.udp), "udp", false);
    for transport in ["unix", "unix_stream", "udp"] {
        wait_accepted(&gw, transport, DD_ACCEPTED);
    }
    gw.wait_for("the three events", Duration::from_secs(5), |g| {
        g.counter("statsgate_lines_rejected_total", "reason=\"event\"") == 3
    });
    assert_eq!(accepted(&gw, "unix"), DD_ACCEPTED);
    assert_eq!(accepted(&gw, "unix_stream"), DD_ACCEPTED);
    let metrics = stop(gw);

    let udp = by_series(&metrics, "udp");
    let views = [("page", "home"), ("canary", "True"), ("via", "udp")];
    assert_eq!(value(&metrics, "dd.page.views", &views), 3.0);
    assert_eq!(value(&metrics, "dd.page.errors", &[("via", "udp")]), -1.0);
    assert_eq!(value(&metrics, "dd.queue.depth", &[("queue", "a")]), 17.5);
    assert_eq!(value(&metrics, "dd.request.size.avg", &[]), 200.0);
    assert_eq!(value(&metrics, "dd.request.latency.max", &[]), 12.5);
    assert_eq!(value(&metrics, "dd.batch.items.count", &[]), 1.0);
    assert_eq!(value(&metrics, "dd.users", &[]), 2.0);
    let up = find(&metrics, "dd.db.up", &[("via", "udp")]).expect("service check");
    assert_eq!(up["value"], 2.0);
    assert_eq!(up["dimensions"]["hostname"], "db-1");
    assert_eq!(up["dimensions"]["zone"], "a");
    for via in ["unix", "unix_stream"] {
        assert_eq!(
            by_series(&metrics, via),
            udp,
            "over {via} the flush differs from UDP's"
        );
    }
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

// --- socket files -----------------------------------------------------------------------

#[test]
fn files_get_the_mode_and_sigterm_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "  unix_mode: \"0640\"\n");
    let gw = start(&yaml);
    for p in [&dgram, &stream] {
        assert!(is_socket(p), "{} is not a socket", p.display());
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "mode of {}", p.display());
    }
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"fin.d:1|c", &dgram)
        .unwrap();
    // Held open across the SIGTERM: its last line (no newline) is read at stop.
    let mut held = UnixStream::connect(&stream).unwrap();
    held.write_all(b"fin.s:2|c\nfin.open:3|c").unwrap();
    wait_accepted(&gw, "unix_stream", 1);
    wait_accepted(&gw, "unix", 1);
    let metrics = stop(gw);
    assert!(!dgram.exists() && !stream.exists(), "socket files left");
    assert_eq!(value(&metrics, "fin.d", &[]), 1.0);
    assert_eq!(value(&metrics, "fin.s", &[]), 2.0);
    assert_eq!(value(&metrics, "fin.open", &[]), 3.0);
    // The gateway closed its end.
    let mut rest = Vec::new();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(held.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn stale_socket_files_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    // What a crash leaves: bound, never unlinked, nobody listening.
    drop(UnixDatagram::bind(&dgram).unwrap());
    drop(UnixListener::bind(&stream).unwrap());
    assert!(is_socket(&dgram) && is_socket(&stream));
    let gw = start(&yaml);
    let log = gw.stderr.lock().unwrap().clone();
    assert_eq!(
        log.matches("replaced a stale socket file").count(),
        2,
        "{log}"
    );
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"stale.d:1|c", &dgram)
        .unwrap();
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"stale.s:1|c\n")
        .unwrap();
    wait_accepted(&gw, "unix", 1);
    wait_accepted(&gw, "unix_stream", 1);
    stop(gw);
}

#[test]
fn other_files_at_the_path_refuse_start_up_and_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");

    std::fs::write(&dgram, "precious").unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_listen: "), "{err}");
    assert!(err.contains(&dgram.display().to_string()), "{err}");
    assert!(err.contains("a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&dgram).unwrap(), "precious");
    assert!(!stream.exists());
    std::fs::remove_file(&dgram).unwrap();

    // A directory, and a link to a dead socket (never followed, never removed).
    std::fs::create_dir(&stream).unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_stream_listen: "), "{err}");
    assert!(err.contains("a directory"), "{err}");
    assert!(stream.is_dir());
    // The datagram socket it bound before failing is gone again.
    assert!(!dgram.exists(), "the datagram socket file was left behind");
    std::fs::remove_dir(&stream).unwrap();

    let dead = dir.path().join("dead.socket");
    drop(UnixListener::bind(&dead).unwrap());
    std::os::unix::fs::symlink(&dead, &stream).unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_stream_listen: "), "{err}");
    assert!(err.contains("a symbolic link"), "{err}");
    assert!(is_socket(&dead) && std::fs::symlink_metadata(&stream).is_ok());
}

#[test]
fn a_live_socket_at_the_path_refuses_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    // Another gateway holds both paths.
    let first = start(&yaml);
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_listen: another process is listening on"),
        "{err}"
    );
    assert!(err.contains(&dgram.display().to_string()), "{err}");
    // Only the stream path taken: the second's own datagram socket file is removed again.
    let own = dir.path().join("own.socket");
    let second = format!(
        "statsd:\n  unix_listen: {}\n  unix_stream_listen: {}\n",
        own.display(),
        stream.display()
    );
    let (code, err) = refused(&second);
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_stream_listen: another process is listening on"),
        "{err}"
    );
    assert!(!own.exists());
    // The first gateway kept its sockets and still reads them.
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"live.d:1|c", &dgram)
        .unwrap();
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"live.s:1|c\n")
        .unwrap();
    wait_accepted(&first, "unix", 1);
    wait_accepted(&first, "unix_stream", 1);

    // Not a gateway: any listener counts.
    let other = dir.path().join("other.socket");
    let _listener = UnixListener::bind(&other).unwrap();
    let (code, err) = refused(&format!(
        "statsd:\n  unix_stream_listen: {}\n",
        other.display()
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_stream_listen: another process"),
        "{err}"
    );
    assert!(UnixStream::connect(&other).is_ok());
    stop(first);
}

#[test]
fn a_socket_file_a_newer_instance_bound_is_left_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    let gw = start(&yaml);
    // An operator (or a newer instance) moved the old file away and bound a new one.
    std::fs::remove_file(&dgram).unwrap();
    let newer = UnixDatagram::bind(&dgram).unwrap();
    stop(gw);
    assert!(is_socket(&dgram), "the newer socket file was removed");
    assert!(!stream.exists());
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x:1|c", &dgram)
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(newer.recv(&mut buf).unwrap(), 5);
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
