//! The gateway as a process among others: the environment Kubernetes gives it, signals, a
//! second instance on its port, shutdown with data in flight, and the bench tool's inputs.

use crate::common::{start, start_env};
use std::net::UdpSocket;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs the binary to its exit with `yaml` as its config and `env` added.
pub(crate) fn run_to_exit(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

fn sum(flushes: &[Vec<serde_json::Value>], name: &str) -> f64 {
    flushes
        .iter()
        .flatten()
        .filter(|m| m["name"] == name)
        .filter_map(|m| m["value"].as_f64())
        .sum()
}

/// Guards: any `STATSGATE_` variable without `__` was fatal, and the kubelet injects
/// `STATSGATE_PORT`, `STATSGATE_SERVICE_HOST`, … for a Service named `statsgate`.
#[test]
fn kubernetes_service_variables_do_not_stop_the_gateway() {
    let k8s = [
        ("STATSGATE_PORT", "udp://10.96.0.12:8125"),
        ("STATSGATE_PORT_8125_UDP", "udp://10.96.0.12:8125"),
        ("STATSGATE_PORT_8125_UDP_ADDR", "10.96.0.12"),
        ("STATSGATE_SERVICE_HOST", "10.96.0.12"),
        ("STATSGATE_SERVICE_PORT", "8125"),
    ];
    let gw = start_env("", &k8s);
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("STATSGATE_PORT, STATSGATE_PORT_8125_UDP")
            && stderr.contains("STATSGATE_SERVICE_HOST"),
        "one warning lists them: {stderr}"
    );
    assert!(
        !stderr.contains("10.96.0.12"),
        "values are not printed: {stderr}"
    );
    drop(gw);

    let out = run_to_exit("", &["check-config"], &[("STATSGATE_STATSD__BOGUS", "1")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STATSGATE_STATSD__BOGUS"));
}

/// Guards: SIGHUP kept its default action: exit 129, the open interval lost.
#[test]
fn sighup_keeps_the_gateway_running() {
    let gw = start("flush:\n  interval: 1h\n  idle_expiry: 1h\n");
    let s = gw.sender();
    s.send(b"abuse.hup:3|c").unwrap();
    gw.wait_for("the line", Duration::from_secs(10), |g| {
        g.lines_counted() >= 1
    });
    signal(gw.pid(), "HUP");
    s.send(b"abuse.hup:4|c").unwrap();
    gw.wait_for("the line after SIGHUP", Duration::from_secs(10), |g| {
        g.lines_counted() >= 2
    });
    // SIGHUP is a reload; the file did not change, so the interval runs on untouched.
    gw.wait_for("the reload log line", Duration::from_secs(10), |g| {
        g.stderr
            .lock()
            .unwrap()
            .contains("reload: configuration unchanged")
    });
    let (flushes, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(sum(&flushes, "abuse.hup"), 7.0);
}

/// Guards: at SIGTERM the readers stopped at once and what the kernel had queued for them
/// was discarded uncounted. One reader of a debug build falls behind a burst, so the queue
/// is full when the signal comes; every datagram the kernel did not drop itself must be in
/// the final flush.
#[test]
fn datagrams_queued_at_sigterm_are_drained_into_the_final_flush() {
    let gw = start_env(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nshutdown:\n  grace: 20s\n",
        &[("STATSGATE_STATSD__READERS", "1")],
    );
    let s = gw.sender();
    let line = "abuse.drain.with.a.longer.name.to.cost.more:1|c|#k:v,k2:v2\n".repeat(40);
    let (mut sent, started) = (0u64, Instant::now());
    while started.elapsed() < Duration::from_millis(300) {
        if s.send(line.as_bytes()).is_ok() {
            sent += 40;
        }
    }
    let kernel_drops_before = statsgate::loadgen::target::udp_drops(gw.udp.port());
    signal(gw.pid(), "TERM");
    let counted_at_signal = gw.lines_counted();
    let (flushes, status) = gw.stop();
    assert!(status.success(), "{status:?}");
    // Drops happen as datagrams arrive, so the count before the signal is final.
    let dropped = kernel_drops_before * 40;
    let flushed = sum(&flushes, "abuse.drain.with.a.longer.name.to.cost.more") as u64;
    assert!(
        counted_at_signal < sent.saturating_sub(dropped),
        "the burst was still queued at SIGTERM ({counted_at_signal} of {sent} counted)"
    );
    assert_eq!(
        flushed + dropped,
        sent,
        "flushed {flushed}, kernel dropped {dropped}"
    );
}

/// Guards: with metrics unsent when `shutdown.grace` ran out, the gateway logged the loss,
/// then "stopped cleanly", and exited 0.
#[test]
fn unsent_metrics_at_the_end_of_the_grace_exit_1() {
    let port = crate::common::closed_port();
    let gw = start(&format!(
        "flush:\n  interval: 1s\nmonasca:\n  url: http://127.0.0.1:{port}/v2.0\nshutdown:\n  grace: 1s\n"
    ));
    gw.sender().send(b"abuse.grace:1|c").unwrap();
    gw.wait_for("a failed POST", Duration::from_secs(20), |g| {
        g.counter(
            "statsgate_forward_posts_total",
            "outcome=\"connection_error\"",
        ) >= 1
    });
    let stderr = gw.stderr.clone();
    let (_, status) = gw.stop();
    let log = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(!log.contains("stopped cleanly"), "{log}");
    assert!(log.contains("unsent"), "{log}");
}

/// Guards: a second gateway on a port the first holds started silently (SO_REUSEPORT) and
/// took a share of the datagrams.
#[test]
fn a_second_gateway_on_a_held_port_refuses_to_start() {
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let first = start_env("", &[("STATSGATE_STATSD__LISTEN", &addr)]);
    let out = run_to_exit("", &["run"], &[("STATSGATE_STATSD__LISTEN", &addr)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("statsd.listen") && stderr.contains(&format!("process {}", first.pid())),
        "names the key and the holder: {stderr}"
    );
    // The first gateway still gets every datagram.
    let s = first.sender();
    for _ in 0..50 {
        s.send(b"abuse.held:1|c").unwrap();
    }
    first.wait_for("all 50 lines", Duration::from_secs(10), |g| {
        g.lines_counted() == 50
    });
}

/// Guards: `statsgate bench` ignored `--config` and `STATSGATE_*`, and its errors named no
/// address ("Connection refused").
#[test]
fn bench_reads_the_gateways_configuration_and_names_addresses() {
    let gw = start("");
    let yaml = format!(
        "statsd:\n  listen: {}\nadmin:\n  listen: {}\n",
        gw.udp, gw.admin
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statsgate.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("--config")
        .arg(&path)
        .args(["bench", "--lines", "2000", "--settle", "200ms", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["target"], gw.udp.to_string());
    assert_eq!(report["accepted_lines"], 2000, "{report}");

    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], crate::common::closed_port()));
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["bench", "--lines", "10", "--target", &gw.udp.to_string()])
        .env("STATSGATE_ADMIN__LISTEN", admin.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&admin.to_string()), "{stderr}");
}

/// Guards: `keystone.interface: private` passed check-config while no Keystone was set.
#[test]
fn a_bad_catalog_interface_is_refused_even_without_keystone() {
    let out = run_to_exit("keystone:\n  interface: private\n", &["check-config"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("keystone.interface"), "{stderr}");
}

/// Guards: on a dual-stack `[::]` socket IPv4 senders arrive as `::ffff:a.b.c.d` and never
/// matched an IPv4 network of `statsd.allow` or `http.allow`: every IPv4 sender was refused.
#[test]
fn ipv4_senders_on_a_dual_stack_socket_match_ipv4_allow_lists() {
    if std::net::UdpSocket::bind("[::]:0").is_err() {
        eprintln!("SKIPPED: this machine has no IPv6 wildcard socket");
        return;
    }
    let gw = start_env(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nstatsd:\n  allow: [127.0.0.0/8]\nhttp:\n  allow: [127.0.0.0/8]\n",
        &[
            ("STATSGATE_STATSD__LISTEN", "[::]:0"),
            ("STATSGATE_HTTP__LISTEN", "[::]:0"),
        ],
    );
    let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = std::net::SocketAddr::from(([127, 0, 0, 1], gw.udp.port()));
    for _ in 0..5 {
        v4.send_to(b"abuse.dual:1|c", udp).unwrap();
    }
    gw.wait_for(
        "five lines from an IPv4 sender",
        Duration::from_secs(10),
        |g| g.lines_counted() == 5,
    );
    assert_eq!(gw.counter("statsgate_source_denied_total", ""), 0);
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], gw.http.port()));
    let beat = r#"{"ID":"c1","Enabler_ID":"orion","Enabler_Version":"1","Timestamp":"0"}"#;
    let (status, body) = crate::common::curl_post(http, "/beat", beat);
    assert_eq!(status, 200, "{body}");
}
