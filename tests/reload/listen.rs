//! A reload that moves `statsd.listen`, `statsd.tcp_listen`, `http.listen` and the Unix
//! sockets: the new addresses are bound, the old closed (a stream connection open on the old
//! one lives on), the open interval kept, and the address that did not change (the admin
//! port) serves throughout.

use super::common::start_own_ports;
use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn yaml(udp: u16, tcp: u16, http: u16, admin: u16) -> String {
    format!(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nstatsd:\n  listen: 127.0.0.1:{udp}\n  tcp_listen: 127.0.0.1:{tcp}\nhttp:\n  listen: 127.0.0.1:{http}\nadmin:\n  listen: 127.0.0.1:{admin}\n"
    )
}

#[test]
fn moved_listeners_are_rebound_and_the_open_interval_is_kept() {
    let (udp, tcp, http, admin) = (free_udp(), free_tcp(), free_tcp(), free_tcp());
    let gw = start_own_ports(&yaml(udp, tcp, http, admin));
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"moved:1|c", ("127.0.0.1", udp)).unwrap();
    let mut old_conn = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    old_conn.write_all(b"streamed:1|c\n").unwrap();
    gw.wait_for("the first lines", Duration::from_secs(10), |g| {
        g.lines_counted() == 2
    });

    let (udp2, tcp2, http2) = (free_udp(), free_tcp(), free_tcp());
    let (outcome, message) = gw.reload_with(&yaml(udp2, tcp2, http2, admin));
    assert_eq!(outcome, "applied", "{message}");
    for key in ["statsd.listen", "statsd.tcp_listen", "http.listen"] {
        assert!(message.contains(&format!("{key} (re-bound)")), "{message}");
    }
    s.send_to(b"moved:2|c", ("127.0.0.1", udp2)).unwrap();
    // The connection opened before the reload lives on; the new address accepts.
    old_conn.write_all(b"streamed:2|c\n").unwrap();
    let mut new_conn = TcpStream::connect(("127.0.0.1", tcp2)).unwrap();
    new_conn.write_all(b"streamed:4|c\n").unwrap();
    gw.wait_for(
        "the lines at the new addresses",
        Duration::from_secs(10),
        |g| g.lines_counted() == 5,
    );
    assert!(
        TcpStream::connect(("127.0.0.1", tcp)).is_err(),
        "the old statsd TCP port stopped accepting"
    );
    drop((old_conn, new_conn));
    // The old UDP port is closed: nothing reads it any more.
    assert!(
        UdpSocket::bind(("127.0.0.1", udp)).is_ok(),
        "old statsd port released"
    );
    let (status, _) = super::common::request(
        format!("127.0.0.1:{http2}").parse().unwrap(),
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "http.listen answers at the new address");
    assert!(
        TcpStream::connect(("127.0.0.1", http)).is_err(),
        "old http port closed"
    );
    let (flushes, exit) = gw.stop();
    assert!(exit.success());
    let all: Vec<_> = flushes.into_iter().flatten().collect();
    assert_eq!(
        super::common::value(&all, "moved", &[]),
        3.0,
        "both lines in the one interval"
    );
    assert_eq!(super::common::value(&all, "streamed", &[]), 7.0);
}

#[test]
fn moved_unix_sockets_take_their_new_paths_and_keep_open_connections() {
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let yaml = |dgram: &str, stream: &str| {
        format!(
            "flush:\n  interval: 1h\n  idle_expiry: 1h\nstatsd:\n  unix_listen: {}\n  unix_stream_listen: {}\n",
            path(dgram).display(),
            path(stream).display()
        )
    };
    let gw = super::common::start(&yaml("a.sock", "a-stream.sock"));
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"ugram:1|c", path("a.sock")).unwrap();
    let mut old_conn = UnixStream::connect(path("a-stream.sock")).unwrap();
    old_conn.write_all(b"ustream:1|c\n").unwrap();
    gw.wait_for("the first lines", Duration::from_secs(10), |g| {
        g.lines_counted() == 2
    });

    let (outcome, message) = gw.reload_with(&yaml("b.sock", "b-stream.sock"));
    assert_eq!(outcome, "applied", "{message}");
    for key in ["statsd.unix_listen", "statsd.unix_stream_listen"] {
        assert!(message.contains(&format!("{key} (re-bound)")), "{message}");
    }
    assert!(
        !path("a.sock").exists() && !path("a-stream.sock").exists(),
        "old files removed"
    );
    client.send_to(b"ugram:2|c", path("b.sock")).unwrap();
    old_conn.write_all(b"ustream:2|c\n").unwrap();
    let mut new_conn = UnixStream::connect(path("b-stream.sock")).unwrap();
    new_conn.write_all(b"ustream:4|c\n").unwrap();
    gw.wait_for("the lines after the move", Duration::from_secs(10), |g| {
        g.lines_counted() == 5
    });
    drop((old_conn, new_conn));
    let (flushes, exit) = gw.stop();
    assert!(exit.success());
    assert!(!path("b.sock").exists(), "removed at shutdown");
    let all: Vec<_> = flushes.into_iter().flatten().collect();
    assert_eq!(super::common::value(&all, "ugram", &[]), 3.0);
    assert_eq!(super::common::value(&all, "ustream", &[]), 7.0);
}
