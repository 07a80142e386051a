//! statsd over TCP and TCP+TLS through the real binary: the same lines as over UDP give the
//! same metrics, `_hb|` beats, final lines without a newline, 1,000 connections at once, a
//! 100 MiB line, the connection limit, the idle timeout, the allow-list, stalled senders
//! beside UDP, TLS from rustls and `openssl s_client`, mutual TLS, a peer that stalls mid
//! handshake, and plain text on the TLS port.

mod common;
#[path = "tcp/tls.rs"]
mod tls;

use common::pki::Pki;
use common::{Gateway, start, start_with_nofile, value};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One flush at the end (SIGTERM): every line sent lands in the same interval.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";
const WAIT: Duration = Duration::from_secs(15);

fn lines_in(gw: &Gateway, transport: &str) -> u64 {
    gw.counter(
        "statsgate_transport_lines_accepted_total",
        &format!("transport=\"{transport}\""),
    )
}

fn conns(gw: &Gateway, transport: &str, outcome: &str) -> u64 {
    gw.counter(
        "statsgate_stream_connections_total",
        &format!("transport=\"{transport}\",outcome=\"{outcome}\""),
    )
}

fn open(gw: &Gateway, transport: &str) -> u64 {
    gw.counter(
        "statsgate_stream_connections_open",
        &format!("transport=\"{transport}\""),
    )
}

fn too_long(gw: &Gateway) -> u64 {
    gw.counter("statsgate_lines_rejected_total", "reason=\"line_too_long\"")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Whether the gateway closed `s` (EOF or reset) within its read timeout; what it sent
/// before (a TLS alert) is skipped.
fn closed_by_gateway(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

fn statsd_lines(prefix: &str) -> String {
    [
        "hits:1|c",
        "hits:2|c|@0.5",
        "temp:20|g",
        "temp:+3|g",
        "lat:10|ms",
        "lat:30|ms|#region:eu",
        "users:alice|s",
        "users:bob|s",
        "users:alice|s",
        "tagged:1|c|#region:eu,role:web",
        "no value here",
        // The last line has no newline: over UDP the datagram ends it, over TCP the close.
        "last:7|c",
    ]
    .iter()
    .map(|l| format!("{prefix}.{l}"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// `prefix.*` metrics by (name without the prefix, dimensions): value.
fn by_suffix(all: &[Value], prefix: &str) -> BTreeMap<(String, String), f64> {
    all.iter()
        .filter_map(|m| {
            let name = m["name"].as_str()?.strip_prefix(prefix)?;
            Some((
                (name.to_owned(), m["dimensions"].to_string()),
                m["value"].as_f64()?,
            ))
        })
        .collect()
}

#[test]
fn tcp_lines_flush_exactly_as_the_same_lines_over_udp() {
    let gw = start(&format!("{ONE_FLUSH}statsd:\n  tcp_listen: 127.0.0.1:0\n"));
    let addr = gw.stream_addr("tcp");
    gw.sender().send(statsd_lines("u").as_bytes()).unwrap();
    let text = statsd_lines("t");
    let mut s = connect(addr);
    // Split mid-line: framing joins reads, it does not follow them.
    let (a, b) = text.as_bytes().split_at(text.len() / 2 + 3);
    s.write_all(a).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b).unwrap();
    drop(s);
    gw.wait_for("both senders' lines", WAIT, |g| {
        lines_in(g, "udp") == 11 && lines_in(g, "tcp") == 11
    });
    assert_eq!(conns(&gw, "tcp", "accepted"), 1);
    gw.wait_for("the connection closed", WAIT, |g| open(g, "tcp") == 0);
    let (flushes, status) = gw.stop();
    assert!(status.success());
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let (udp, tcp) = (by_suffix(&all, "u."), by_suffix(&all, "t."));
    assert!(udp.len() >= 10, "{udp:?}");
    assert_eq!(tcp, udp);
    assert_eq!(value(&all, "t.hits", &[]), 5.0);
    assert_eq!(
        value(&all, "t.last", &[]),
        7.0,
        "the final line without newline"
    );
    assert_eq!(value(&all, "t.users", &[]), 2.0);
}

#[test]
fn heartbeat_lines_over_tcp_become_ge_heartbeats() {
    let gw = start(&format!("{ONE_FLUSH}statsd:\n  tcp_listen: 127.0.0.1:0\n"));
    let mut s = connect(gw.stream_addr("tcp"));
    s.write_all(b"_hb|orion|3.4.0|tcp-1\nreq:1|c\n_hb|orion|3.4.0|tcp-2")
        .unwrap();
    drop(s);
    gw.wait_for("two beats", WAIT, |g| {
        g.counter("statsgate_heartbeats_accepted_total", "") == 2
    });
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let mut ids: Vec<&str> = all
        .iter()
        .filter(|m| m["name"] == "GE_Heartbeat" && m["dimensions"]["enabler_id"] == "orion")
        .filter_map(|m| m["dimensions"]["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["tcp-1", "tcp-2"]);
    assert_eq!(value(&all, "req", &[]), 1.0);
}

#[test]
fn at_shutdown_an_open_connections_lines_and_unfinished_line_reach_the_final_flush() {
    let gw = start(&format!("{ONE_FLUSH}statsd:\n  tcp_listen: 127.0.0.1:0\n"));
    let mut s = connect(gw.stream_addr("tcp"));
    s.write_all(b"fin.a:1|c\nfin.b:2|c").unwrap();
    gw.wait_for("the first line", WAIT, |g| lines_in(g, "tcp") == 1);
    let (flushes, status) = gw.stop();
    assert!(status.success());
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    assert_eq!(value(&all, "fin.a", &[]), 1.0);
    assert_eq!(value(&all, "fin.b", &[]), 2.0);
    assert!(closed_by_gateway(&mut s));
}

/// Raises this process's soft open-files limit to its hard one; returns it.
fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
    l.rlim_cur
}

#[test]
fn a_thousand_concurrent_connections_are_all_counted() {
    const N: usize = 1000;
    let hard = raise_nofile();
    // This process holds N client sockets (and the other tests' files), the gateway N more.
    assert!(
        hard >= 3000,
        "the hard open-files limit ({hard}) is too low"
    );
    let gw = start_with_nofile(
        &format!("{ONE_FLUSH}statsd:\n  tcp_listen: 127.0.0.1:0\n  tcp_max_connections: 1100\n"),
        Some(hard.min(8192)),
    );
    let addr = gw.stream_addr("tcp");
    let before = gw.rss_kib();
    let mut socks: Vec<TcpStream> = (0..N).map(|_| connect(addr)).collect();
    gw.wait_for("all connections open", WAIT, |g| open(g, "tcp") == N as u64);
    let idle = gw.rss_kib();
    eprintln!(
        "RSS: {before} KiB before, {idle} KiB with {N} idle connections ({} KiB each)",
        (idle.saturating_sub(before)) / N as u64
    );
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(format!("conc.lines:1|c\nconc.lines:1|c\nconc.g{}:1|c\n", i % 10).as_bytes())
            .unwrap();
    }
    gw.wait_for("every line", WAIT, |g| lines_in(g, "tcp") == 3 * N as u64);
    assert_eq!(conns(&gw, "tcp", "accepted"), N as u64);
    assert_eq!(conns(&gw, "tcp", "limit"), 0);
    let busy = gw.rss_kib();
    eprintln!("RSS: {busy} KiB after every connection sent its lines");
    // One 16 KiB read buffer per connection, the rest transient: far from a MiB each.
    assert!(
        idle.saturating_sub(before) < 64 * 1024,
        "{N} idle connections took {} KiB",
        idle - before
    );
    drop(socks);
    gw.wait_for("all closed", WAIT, |g| open(g, "tcp") == 0);
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    assert_eq!(value(&all, "conc.lines", &[]), 2.0 * N as f64);
    for g in 0..10 {
        assert_eq!(value(&all, &format!("conc.g{g}"), &[]), (N / 10) as f64);
    }
}

#[test]
fn a_100_mib_line_is_skipped_in_bounded_memory_and_the_connection_lives_on() {
    let gw = start("statsd:\n  tcp_listen: 127.0.0.1:0\n");
    let mut s = connect(gw.stream_addr("tcp"));
    s.write_all(b"big.before:1|c\n").unwrap();
    gw.wait_for("the first line", WAIT, |g| lines_in(g, "tcp") == 1);
    let before = gw.rss_kib();
    let pid = gw.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        s.write_all(&chunk).unwrap();
    }
    s.write_all(b"\nbig.after:1|c\n").unwrap();
    gw.wait_for("the line after", Duration::from_secs(60), |g| {
        lines_in(g, "tcp") == 2
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.join().unwrap().max(gw.rss_kib());
    eprintln!("RSS: {before} KiB before the 100 MiB line, peak {peak} KiB while it came");
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    assert_eq!(too_long(&gw), 1);
    assert_eq!(open(&gw, "tcp"), 1, "the connection is still open");
    s.write_all(b"big.again:1|c\n").unwrap();
    gw.wait_for("a line on the same connection", WAIT, |g| {
        lines_in(g, "tcp") == 3
    });
    assert_eq!(conns(&gw, "tcp", "accepted"), 1);
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn beyond_tcp_max_connections_a_connection_is_closed_and_counted() {
    let gw = start("statsd:\n  tcp_listen: 127.0.0.1:0\n  tcp_max_connections: 2\n");
    let addr = gw.stream_addr("tcp");
    let a = connect(addr);
    let mut b = connect(addr);
    gw.wait_for("two open", WAIT, |g| open(g, "tcp") == 2);
    let mut c = connect(addr);
    assert!(closed_by_gateway(&mut c), "the third is closed at once");
    assert_eq!(conns(&gw, "tcp", "limit"), 1);
    let _ = c.write_all(b"refused:1|c\n");
    drop(a);
    gw.wait_for("a slot free", WAIT, |g| open(g, "tcp") == 1);
    let mut d = connect(addr);
    d.write_all(b"limit.d:1|c\n").unwrap();
    b.write_all(b"limit.b:1|c\n").unwrap();
    gw.wait_for("the lines of b and d", WAIT, |g| lines_in(g, "tcp") == 2);
    assert_eq!(conns(&gw, "tcp", "accepted"), 3);
    assert_eq!(conns(&gw, "tcp", "limit"), 1);
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout_and_bytes_keep_one_open() {
    let gw = start("statsd:\n  tcp_listen: 127.0.0.1:0\n  tcp_idle_timeout: 1s\n");
    let addr = gw.stream_addr("tcp");
    let mut quiet = connect(addr);
    quiet.write_all(b"idle.x:1|c\n").unwrap();
    let mut slow = connect(addr);
    let started = Instant::now();
    // 10 bytes 400 ms apart: 4 s in all, never 1 s without a byte.
    for b in b"idle.y:1|c" {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    slow.write_all(b"\n").unwrap();
    gw.wait_for("both lines", WAIT, |g| lines_in(g, "tcp") == 2);
    assert!(started.elapsed() > Duration::from_secs(3));
    assert!(closed_by_gateway(&mut quiet));
    assert_eq!(conns(&gw, "tcp", "idle"), 1, "only the silent one");
    assert_eq!(open(&gw, "tcp"), 1);
}

#[test]
fn a_peer_outside_statsd_allow_is_closed_before_a_line_is_read() {
    let gw = start("statsd:\n  tcp_listen: 127.0.0.1:0\n  allow: ['10.0.0.0/8']\n");
    let mut s = connect(gw.stream_addr("tcp"));
    let _ = s.write_all(b"denied:1|c\n");
    assert!(closed_by_gateway(&mut s));
    gw.wait_for("the denial", WAIT, |g| conns(g, "tcp", "denied") == 1);
    assert_eq!(conns(&gw, "tcp", "accepted"), 0);
    assert_eq!(lines_in(&gw, "tcp"), 0);
    assert_eq!(gw.lines_counted(), 0);
}

#[test]
fn stalled_tcp_senders_do_not_hold_up_udp() {
    let gw = start("flush:\n  interval: 1s\nstatsd:\n  tcp_listen: 127.0.0.1:0\n");
    let addr = gw.stream_addr("tcp");
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"stall.x:1").unwrap();
            s
        })
        .collect();
    gw.wait_for("the stalled senders", WAIT, |g| open(g, "tcp") == 50);
    gw.sender().send(b"udp.ok:1|c").unwrap();
    let m = gw.first_flushed("the UDP line", Duration::from_secs(5), |m| {
        m["name"] == "udp.ok"
    });
    assert_eq!(m["value"], 1.0);
    assert_eq!(lines_in(&gw, "tcp"), 0);
    assert_eq!(open(&gw, "tcp"), 50);
    drop(stalled);
}

fn tls_yaml(pki: &Pki, extra: &str) -> String {
    format!(
        "{ONE_FLUSH}statsd:\n  tls_listen: 127.0.0.1:0\n  tls_cert: {}\n  tls_key: {}\n{extra}",
        pki.cert.display(),
        pki.key.display()
    )
}

#[test]
fn tls_senders_rustls_and_openssl_s_client_are_served_beside_plain_tcp() {
    let pki = Pki::new();
    // Another loopback address: the two listeners must not be configured alike.
    let gw = start(&tls_yaml(&pki, "  tcp_listen: 127.0.0.2:0\n"));
    let (tcp, tls_addr) = (gw.stream_addr("tcp"), gw.stream_addr("tls"));
    let config = tls::client_config(&pki, false);
    tls::send_once(
        tls_addr,
        &config,
        b"tls.rustls:1|c\ntls.rustls:2|c\ntls.last:5|g",
    )
    .expect("rustls sender");
    gw.wait_for("the rustls lines", WAIT, |g| lines_in(g, "tls") == 3);
    let mut openssl = Command::new("openssl")
        .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
        .arg("-connect")
        .arg(tls_addr.to_string())
        .arg("-CAfile")
        .arg(&pki.ca)
        .args(["-verify_ip", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(b"tls.openssl:1|c\ntls.openssl:1|c\n")
        .unwrap();
    let exited = wait_child(&mut openssl, WAIT);
    let mut err = String::new();
    openssl.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(exited.is_some_and(|s| s.success()), "s_client: {err}");
    gw.wait_for("the s_client lines", WAIT, |g| lines_in(g, "tls") == 5);
    connect(tcp).write_all(b"plain.tcp:1|c\n").unwrap();
    gw.wait_for("the plain line", WAIT, |g| lines_in(g, "tcp") == 1);
    assert_eq!(conns(&gw, "tls", "accepted"), 2);
    assert_eq!(conns(&gw, "tls", "handshake"), 0);
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    assert_eq!(value(&all, "tls.rustls", &[]), 3.0);
    assert_eq!(value(&all, "tls.last", &[]), 5.0);
    assert_eq!(value(&all, "tls.openssl", &[]), 2.0);
    assert_eq!(value(&all, "plain.tcp", &[]), 1.0);
}

/// Waits for a child this test started; kills it (by its own handle) after `limit`.
fn wait_child(c: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with() {
    let pki = Pki::new();
    let gw = start(&tls_yaml(
        &pki,
        &format!("  tls_client_ca: {}\n", pki.ca.display()),
    ));
    let addr = gw.stream_addr("tls");
    // TLS 1.3: the client may think it is through before the gateway refuses it.
    let _ = tls::send_once(addr, &tls::client_config(&pki, false), b"mtls.anon:1|c\n");
    gw.wait_for("the refusal", WAIT, |g| conns(g, "tls", "handshake") == 1);
    tls::send_once(addr, &tls::client_config(&pki, true), b"mtls.client:1|c\n")
        .expect("client with a certificate");
    gw.wait_for("the certified line", WAIT, |g| lines_in(g, "tls") == 1);
    assert_eq!(conns(&gw, "tls", "handshake"), 1);
    let (flushes, _) = gw.stop();
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    assert_eq!(value(&all, "mtls.client", &[]), 1.0);
    assert!(common::find(&all, "mtls.anon", &[]).is_none());
}

#[test]
fn stalled_handshakes_are_cut_and_plain_text_on_the_tls_port_is_not_accepted() {
    let pki = Pki::new();
    // The handshake limit is the idle timeout when that is shorter than 10 s.
    let gw = start(&tls_yaml(&pki, "  tcp_idle_timeout: 3s\n"));
    let addr = gw.stream_addr("tls");
    let config = tls::client_config(&pki, false);
    let hello = tls::client_hello(&config);
    let mut half = connect(addr);
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    // A whole ClientHello, and then never reading the gateway's answer.
    let mut mute = connect(addr);
    mute.write_all(&hello).unwrap();
    gw.wait_for("both stalled peers accepted", WAIT, |g| open(g, "tls") == 2);
    tls::send_once(addr, &config, b"tls.served:1|c\n").expect("a TLS sender beside them");
    gw.wait_for("the served line", WAIT, |g| lines_in(g, "tls") == 1);
    assert_eq!(
        conns(&gw, "tls", "handshake"),
        0,
        "served while the stalled ones still hang"
    );
    gw.wait_for("the stalled handshakes cut", WAIT, |g| {
        conns(g, "tls", "handshake") == 2
    });
    assert!(closed_by_gateway(&mut half));
    assert_eq!(open(&gw, "tls"), 0);

    let mut plain = connect(addr);
    plain
        .write_all(b"plain.on.tls:1|c\nplain.on.tls:1|c\n")
        .unwrap();
    assert!(closed_by_gateway(&mut plain));
    gw.wait_for("the plain-text peer", WAIT, |g| {
        conns(g, "tls", "handshake") == 3
    });
    assert_eq!(lines_in(&gw, "tls"), 1);
    assert_eq!(gw.lines_counted(), 1);
    drop(mute);
}
