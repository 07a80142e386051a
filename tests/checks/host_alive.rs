//! `kind: host_alive` checks against real things on loopback: SSH-like listeners this test
//! starts (a banner, a wrong banner, silence), a closed port, and ICMP echo to 127.0.0.1 / ::1
//! through whichever socket this machine allows.

use crate::common;
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn status_of<'a>(metrics: &'a [Value], hostname: &str, test_type: &str) -> Option<&'a Value> {
    common::find(
        metrics,
        "host_alive_status",
        &[("hostname", hostname), ("test_type", test_type)],
    )
}

/// A listener that answers each connection with `banner` (or, if `None`, holds it silently).
fn listener(banner: Option<&'static [u8]>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            match banner {
                Some(b) => {
                    let _ = s.write_all(b);
                }
                None => held.push(s),
            }
        }
    });
    port
}

fn error_of(m: &Value) -> &str {
    m["value_meta"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {m}"))
}

#[test]
fn ssh_banner_is_up_with_monasca_agents_dimensions() {
    let port = listener(Some(b"SSH-2.0-test\r\n"));
    let gw = common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  instances:\n\
         \x20   - name: direct\n      kind: host_alive\n      mode: ssh\n      host: 127.0.0.1\n      port: {port}\n      period: 1s\n\
         \x20     dimensions:\n        service: db\n        test_type: overridden\n\
         \x20   - name: via\n      kind: host_alive\n      mode: ssh\n      host: db-1\n      target: 127.0.0.1\n      port: {port}\n      period: 1s\n"
    ));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        status_of(m, "127.0.0.1", "ssh").is_some() && status_of(m, "db-1", "ssh").is_some()
    });
    let direct = status_of(&all, "127.0.0.1", "ssh").unwrap();
    assert_eq!(direct["value"], 0.0, "{direct}");
    assert_eq!(direct["dimensions"]["observer_host"], "test-host");
    assert_eq!(direct["dimensions"]["service"], "db");
    assert!(
        direct["dimensions"].get("target_hostname").is_none(),
        "{direct}"
    );
    assert!(direct["value_meta"].is_null(), "{direct}");
    let via = status_of(&all, "db-1", "ssh").unwrap();
    assert_eq!(via["value"], 0.0, "{via}");
    assert_eq!(via["dimensions"]["target_hostname"], "127.0.0.1");
    assert_eq!(via["dimensions"]["observer_host"], "test-host");
    assert_eq!(
        via["dimensions"].as_object().unwrap().len(),
        4,
        "hostname, observer_host, target_hostname, test_type: {via}"
    );
    assert!(gw.counter("statsgate_check_runs_total", "check=\"via\",outcome=\"ok\"") >= 1);
}

#[test]
fn ssh_down_causes_are_named_as_monasca_agent_does() {
    let http = listener(Some(b"HTTP/1.1 400 Bad\r\n"));
    let closed = common::closed_port();
    let gw = common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  instances:\n\
         \x20   - name: wrong\n      kind: host_alive\n      mode: ssh\n      host: wrong\n      target: 127.0.0.1\n      port: {http}\n      period: 1s\n\
         \x20   - name: closed\n      kind: host_alive\n      mode: ssh\n      host: closed\n      target: 127.0.0.1\n      port: {closed}\n      period: 1s\n\
         \x20   - name: nxdomain\n      kind: host_alive\n      mode: ssh\n      host: no-such-host.invalid\n      period: 1s\n"
    ));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        ["wrong", "closed", "no-such-host.invalid"]
            .iter()
            .all(|h| status_of(m, h, "ssh").is_some())
    });
    let wrong = status_of(&all, "wrong", "ssh").unwrap();
    assert_eq!(wrong["value"], 1.0);
    assert_eq!(
        error_of(wrong),
        r#"Unexpected response "b'HTTP/1.1 400 Bad\r\n'" from host 127.0.0.1"#
    );
    let closed = status_of(&all, "closed", "ssh").unwrap();
    assert_eq!(closed["value"], 1.0);
    assert_eq!(error_of(closed), "Unable to open socket to host 127.0.0.1");
    let nx = status_of(&all, "no-such-host.invalid", "ssh").unwrap();
    assert_eq!(nx["value"], 1.0);
    assert_eq!(error_of(nx), "Unable to resolve host no-such-host.invalid");
    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"closed\",outcome=\"failed\""
        ) >= 1
    );
}

#[test]
fn a_silent_ssh_server_is_cut_at_the_timeout_and_reported_down() {
    let silent = listener(None);
    let started = Instant::now();
    let gw = common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  instances:\n\
         \x20   - name: silent\n      kind: host_alive\n      mode: ssh\n      host: 127.0.0.1\n      port: {silent}\n      period: 2s\n      timeout: 1s\n"
    ));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        status_of(m, "127.0.0.1", "ssh").is_some()
    });
    // Start, the first run (at once: one check), its 1s timeout, and the next 1s flush.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let m = status_of(&all, "127.0.0.1", "ssh").unwrap();
    assert_eq!(m["value"], 1.0);
    assert_eq!(
        error_of(m),
        "Unable to open socket to host 127.0.0.1 (timed out after 1s)"
    );
    assert_eq!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"silent\",outcome=\"timeout\""
        ),
        1
    );
}

/// Whether this process could open an ICMP socket of either kind (what the gateway, run
/// as the same user, will find).
fn icmp_methods(v6: bool) -> (bool, bool) {
    use socket2::{Domain, Protocol, Socket, Type};
    let (d, p) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    (
        Socket::new(d, Type::DGRAM, Some(p)).is_ok(),
        Socket::new(d, Type::RAW, Some(p)).is_ok(),
    )
}

#[test]
fn ping_reaches_loopback_with_whichever_icmp_socket_is_allowed() {
    let v6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    let mut yaml = "flush:\n  interval: 1s\nchecks:\n  instances:\n\
        \x20   - name: v4\n      kind: host_alive\n      host: 127.0.0.1\n      period: 1s\n      timeout: 3s\n"
        .to_owned();
    if v6 {
        yaml.push_str(
            "    - name: v6\n      kind: host_alive\n      host: '::1'\n      period: 1s\n      timeout: 3s\n",
        );
    }
    let gw = common::start(&yaml);
    let hosts: &[&str] = if v6 {
        &["127.0.0.1", "::1"]
    } else {
        &["127.0.0.1"]
    };
    let all = gw.flushed_until(Duration::from_secs(10), |m| {
        hosts.iter().all(|h| status_of(m, h, "ping").is_some())
    });
    for (host, is_v6) in hosts.iter().zip([false, true]) {
        let m = status_of(&all, host, "ping").unwrap();
        assert_eq!(m["dimensions"]["observer_host"], "test-host");
        match icmp_methods(is_v6) {
            (true, _) => {
                println!("{host}: unprivileged ICMP datagram socket");
                assert_eq!(m["value"], 0.0, "{m}");
                assert!(gw.stderr.lock().unwrap().contains("datagram socket"));
            }
            (false, true) => {
                println!("{host}: raw ICMP socket");
                assert_eq!(m["value"], 0.0, "{m}");
                assert!(gw.stderr.lock().unwrap().contains("raw ICMP socket"));
            }
            (false, false) => {
                println!("{host}: no ICMP socket allowed; the refusal must name the privilege");
                assert_eq!(m["value"], 1.0, "{m}");
                let e = error_of(m);
                assert!(
                    e.starts_with("Host not accessible, ping test failed (")
                        && e.contains("ping_group_range")
                        && e.contains("CAP_NET_RAW"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn host_alive_without_host_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "checks:\n  instances:\n    - name: h\n      kind: host_alive\n      host: ''\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checks.instances[0].host"), "{stderr}");

    std::fs::write(
        &path,
        "checks:\n  instances:\n    - name: h\n      kind: host_alive\n      mode: ssh\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("host"), "{stderr}");
}

/// Runs the gateway in a fresh network namespace (its own `ping_group_range`, its own
/// loopback) without CAP_NET_RAW, and returns the `host_alive_status` metrics of its first
/// flushes, keyed by `hostname`. `None` where `unshare`/`setpriv` or root are missing.
fn ping_without_raw(range: &str) -> Option<std::collections::BTreeMap<String, Value>> {
    use std::io::BufRead;
    let tools = ["unshare", "setpriv", "ip", "sysctl"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    // Creating a network namespace needs CAP_SYS_ADMIN, which a container may lack.
    let netns = || {
        Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !tools || !root || !netns() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "flush:\n  interval: 1s\nchecks:\n  instances:\n\
         \x20   - name: v4\n      kind: host_alive\n      host: 127.0.0.1\n      period: 1s\n      timeout: 2s\n\
         \x20   - name: v6\n      kind: host_alive\n      host: '::1'\n      period: 1s\n      timeout: 2s\n",
    )
    .unwrap();
    let script = format!(
        "ip link set lo up && sysctl -qw net.ipv4.ping_group_range='{range}' && \
         exec setpriv --inh-caps=-net_raw --bounding-set=-net_raw \"$0\" --config \"$1\""
    );
    let mut child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script, env!("CARGO_BIN_EXE_statsgate")])
        .arg(&config)
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_AGGREGATE__HOSTNAME", "test-host")
        .env("STATSGATE_PROBES__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let metrics: Vec<Value> = serde_json::from_str(&line).unwrap_or_default();
        for m in metrics {
            if m["name"] == "host_alive_status" {
                let host = m["dimensions"]["hostname"].as_str().unwrap().to_owned();
                seen.insert(host, m);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Some(seen)
}

#[test]
fn ping_without_cap_net_raw_uses_the_datagram_socket_or_names_the_privilege() {
    let Some(allowed) = ping_without_raw("0 2147483647") else {
        println!("skipped: needs root, unshare, setpriv, ip and sysctl");
        return;
    };
    println!("unprivileged ICMP datagram socket path");
    for host in ["127.0.0.1", "::1"] {
        let m = allowed
            .get(host)
            .unwrap_or_else(|| panic!("{host}: {allowed:?}"));
        assert_eq!(m["value"], 0.0, "{m}");
    }
    let refused = ping_without_raw("1 0").unwrap();
    let egid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Gid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap();
    println!("no ICMP socket path");
    for host in ["127.0.0.1", "::1"] {
        let m = refused
            .get(host)
            .unwrap_or_else(|| panic!("{host}: {refused:?}"));
        assert_eq!(m["value"], 1.0, "{m}");
        assert_eq!(
            error_of(m),
            format!(
                "Host not accessible, ping test failed (ICMP sockets need \
                 net.ipv4.ping_group_range to include gid {egid}, or CAP_NET_RAW)"
            )
        );
    }
}
