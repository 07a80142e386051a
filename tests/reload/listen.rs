//! A reload that moves `statsd.listen` and `http.listen`: the new addresses are bound, the
//! old closed, the open interval kept, and the addresses that did not change (the admin
//! port) keep serving throughout.

use super::common::start_own_ports;
use std::net::{TcpListener, UdpSocket};
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

fn yaml(udp: u16, http: u16, admin: u16) -> String {
    format!(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nstatsd:\n  listen: 127.0.0.1:{udp}\nhttp:\n  listen: 127.0.0.1:{http}\nadmin:\n  listen: 127.0.0.1:{admin}\n"
    )
}

#[test]
fn moved_listeners_are_rebound_and_the_open_interval_is_kept() {
    let (udp, http, admin) = (free_udp(), free_tcp(), free_tcp());
    let gw = start_own_ports(&yaml(udp, http, admin));
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"moved:1|c", ("127.0.0.1", udp)).unwrap();
    gw.wait_for("the first line", Duration::from_secs(10), |g| {
        g.lines_counted() == 1
    });

    let (udp2, http2) = (free_udp(), free_tcp());
    let (outcome, message) = gw.reload_with(&yaml(udp2, http2, admin));
    assert_eq!(outcome, "applied", "{message}");
    assert!(message.contains("statsd.listen (re-bound)"), "{message}");
    assert!(message.contains("http.listen (re-bound)"), "{message}");
    s.send_to(b"moved:2|c", ("127.0.0.1", udp2)).unwrap();
    gw.wait_for(
        "the line at the new address",
        Duration::from_secs(10),
        |g| g.lines_counted() == 2,
    );
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
        std::net::TcpStream::connect(("127.0.0.1", http)).is_err(),
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
}
