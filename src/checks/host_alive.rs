//! `kind: host_alive` (monasca-agent `host_alive`, `probes.md` §7.3): `host_alive_status`,
//! 0 alive / 1 not, by one ICMP echo (`ping`) or an SSH banner (`ssh`).
//!
//! Owns: resolving the address each run, the ICMP echo (an unprivileged datagram socket,
//! else a raw one; no `ping` binary), the banner read, and monasca-agent's messages.
//! Must never: read more than one 1024-byte banner, trust a reply that is not ours (raw
//! sockets see every ICMP packet: type, identifier, sequence and payload must match), or
//! keep a socket past the run (dropping the future closes it).

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::{AliveMode, HostAliveCheck};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// monasca-agent's `client.recv(1024)`.
const BANNER_MAX: usize = 1024;
/// ICMP packets from the target that are not our reply (a flood, other pings) tolerated in
/// one run before giving up, so a hostile peer costs a bounded amount of work.
const MAX_UNRELATED: usize = 10_000;

pub struct HostAliveProbe {
    host: String,
    target: String,
    mode: AliveMode,
    port: u16,
    observer: String,
    ident: u16,
    seq: u16,
    /// The ICMP method last used, so that a change (or the first choice) is logged once.
    method: Option<Method>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `SOCK_DGRAM` + `IPPROTO_ICMP`: allowed by `net.ipv4.ping_group_range`; the kernel
    /// sets the identifier and filters replies by it; no IP header is received.
    Dgram,
    /// `SOCK_RAW`: needs CAP_NET_RAW; every ICMP packet arrives (with the IPv4 header).
    Raw,
}

impl Method {
    fn describe(self) -> &'static str {
        match self {
            Method::Dgram => "an unprivileged ICMP datagram socket",
            Method::Raw => "a raw ICMP socket",
        }
    }
}

impl HostAliveProbe {
    pub fn new(c: &HostAliveCheck, _timeout: Duration, ctx: &Context) -> anyhow::Result<Self> {
        Ok(HostAliveProbe {
            host: c.host.clone(),
            target: c.target.clone(),
            mode: c.mode,
            port: c.port,
            observer: ctx.hostname.clone(),
            // Random, so that two checks of one gateway (which share raw sockets' view of
            // every reply) never take each other's replies.
            ident: fastrand::u16(..),
            seq: 0,
            method: None,
        })
    }

    /// The address contacted: `target` if set, else `host`.
    fn address(&self) -> &str {
        if self.target.is_empty() {
            &self.host
        } else {
            &self.target
        }
    }

    fn sample(&self, error: Option<&str>) -> Sample {
        let mut s = Sample::new("host_alive_status", if error.is_some() { 1.0 } else { 0.0 })
            .dim("hostname", &self.host)
            .dim("observer_host", &self.observer);
        if !self.target.is_empty() && self.target != self.host {
            s = s.dim("target_hostname", &self.target);
        }
        if let Some(e) = error {
            s = s.meta("error", e);
        }
        s.last_dim("test_type", self.mode.name())
    }

    async fn ping(&mut self) -> Result<(), String> {
        let h = self.address().to_owned();
        let fail = |why: String| format!("Host not accessible, ping test failed ({why})");
        let ip = match tokio::net::lookup_host((h.as_str(), 0)).await {
            Ok(mut a) => a.next().map(|a| a.ip()),
            Err(_) => None,
        }
        .ok_or_else(|| format!("Unable to resolve host {h}"))?;
        let (socket, method) = open_icmp(ip).map_err(fail)?;
        if self.method != Some(method) {
            tracing::info!(host = %self.host, "host_alive ping uses {}", method.describe());
            self.method = Some(method);
        }
        self.seq = self.seq.wrapping_add(1);
        let token = fastrand::u64(..).to_be_bytes();
        let request = echo_request(ip.is_ipv6(), self.ident, self.seq, &token);
        let expect = Expect {
            v6: ip.is_ipv6(),
            raw: method == Method::Raw,
            ident: self.ident,
            seq: self.seq,
            token,
        };
        // Connected: the kernel delivers only packets whose source is the target.
        socket
            .connect(&SockAddr::from(SocketAddr::new(ip, 0)))
            .and_then(|()| socket.set_nonblocking(true))
            .map_err(|e| fail(format!("connect to {ip}: {e}")))?;
        // tokio's UdpSocket is only a readiness wrapper around a datagram descriptor
        // (send(2)/recv(2)); it works for ICMP sockets and needs no `unsafe` (AsyncFd does).
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))
            .map_err(|e| fail(e.to_string()))?;
        socket
            .send(&request)
            .await
            .map_err(|e| fail(format!("send to {ip}: {e}")))?;
        let mut buf = [0u8; 2048];
        let mut unrelated = 0;
        loop {
            // An ICMP error for our echo (unreachable) surfaces as a socket error.
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| fail(format!("{ip}: {e}")))?;
            if expect.matches(&buf[..n]) {
                return Ok(());
            }
            unrelated += 1;
            if unrelated >= MAX_UNRELATED {
                return Err(fail(format!(
                    "{unrelated} ICMP packets from {ip}, none our echo reply"
                )));
            }
        }
    }

    async fn ssh(&self) -> Result<(), String> {
        let h = self.address();
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((h, self.port)).await {
            Ok(a) => a.collect(),
            Err(_) => Vec::new(),
        };
        if addrs.is_empty() {
            return Err(format!("Unable to resolve host {h}"));
        }
        let no_socket = || format!("Unable to open socket to host {h}");
        let mut stream = None;
        for a in addrs {
            if let Ok(s) = tokio::net::TcpStream::connect(a).await {
                stream = Some(s);
                break;
            }
        }
        let mut stream = stream.ok_or_else(no_socket)?;
        let mut buf = [0u8; BANNER_MAX];
        let n = stream.read(&mut buf).await.map_err(|_| no_socket())?;
        if buf[..n].starts_with(b"SSH") {
            Ok(())
        } else {
            Err(format!(
                "Unexpected response \"{}\" from host {h}",
                py_bytes_repr(&buf[..n])
            ))
        }
    }
}

impl Check for HostAliveProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(async move {
            let result = match self.mode {
                AliveMode::Ping => self.ping().await,
                AliveMode::Ssh => self.ssh().await,
            };
            match result {
                Ok(()) => Report::ok(vec![self.sample(None)]),
                Err(e) => Report::failed(vec![self.sample(Some(&e))]),
            }
        })
    }

    fn timed_out(&mut self, timeout: Duration) -> Vec<Sample> {
        let t = humantime::format_duration(timeout);
        let msg = match self.mode {
            AliveMode::Ping => {
                format!(
                    "Host not accessible, ping test failed (no echo reply: timed out after {t})"
                )
            }
            AliveMode::Ssh => format!(
                "Unable to open socket to host {} (timed out after {t})",
                self.address()
            ),
        };
        vec![self.sample(Some(&msg))]
    }
}

/// An ICMP socket for `ip`: the unprivileged datagram kind if `net.ipv4.ping_group_range`
/// allows this process's group, else a raw one (CAP_NET_RAW). The error names what is missing.
fn open_icmp(ip: IpAddr) -> Result<(Socket, Method), String> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let dgram = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => return Ok((s, Method::Dgram)),
        Err(e) => e,
    };
    let raw = match Socket::new(domain, Type::RAW, Some(proto)) {
        Ok(s) => return Ok((s, Method::Raw)),
        Err(e) => e,
    };
    let denied = |e: &std::io::Error| e.kind() == ErrorKind::PermissionDenied;
    if denied(&dgram) && denied(&raw) {
        Err(format!(
            "ICMP sockets need net.ipv4.ping_group_range to include gid {}, or CAP_NET_RAW",
            crate::sys::effective_gid()
        ))
    } else {
        Err(format!("cannot open an ICMP socket: {dgram}; raw: {raw}"))
    }
}

/// An ICMP (or ICMPv6) echo request: type, code 0, checksum, identifier, sequence, payload.
/// The IPv4 checksum is ours to compute (a raw socket sends what it is given); for ICMPv6
/// the kernel fills it in (it covers a pseudo-header only the kernel knows).
fn echo_request(v6: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.push(if v6 { 128 } else { 8 });
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    if !v6 {
        let c = checksum(&p).to_be_bytes();
        p[2] = c[0];
        p[3] = c[1];
    }
    p
}

/// The Internet checksum (RFC 1071): ones' complement of the ones'-complement sum of 16-bit
/// words, an odd byte padded with zero.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What our echo reply looks like.
struct Expect {
    v6: bool,
    raw: bool,
    ident: u16,
    seq: u16,
    token: [u8; 8],
}

impl Expect {
    fn matches(&self, packet: &[u8]) -> bool {
        // Raw IPv4 sockets receive the IP header; skip its IHL words.
        let icmp = if self.raw && !self.v6 {
            let Some(&first) = packet.first() else {
                return false;
            };
            if first >> 4 != 4 {
                return false;
            }
            match packet.get(usize::from(first & 0x0f) * 4..) {
                Some(rest) => rest,
                None => return false,
            }
        } else {
            packet
        };
        if icmp.len() < 8 + self.token.len() {
            return false;
        }
        let reply = if self.v6 { 129 } else { 0 };
        let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
        let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        // A datagram socket's identifier is the kernel's (it filters replies by it).
        icmp[0] == reply
            && icmp[1] == 0
            && (!self.raw || ident == self.ident)
            && seq == self.seq
            && icmp[8..8 + self.token.len()] == self.token
    }
}

/// Python 3's `repr(bytes)`, as monasca-agent's message shows the response: `b'…'`, quoted
/// with `"` only when the bytes hold `'` and no `"`; `\t \n \r \\`, the quote, and any byte
/// outside printable ASCII as `\xNN`.
fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(char::from(quote));
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            _ if c == quote => {
                s.push('\\');
                s.push(char::from(c));
            }
            0x20..0x7f => s.push(char::from(c)),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(char::from(quote));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_as_python_repr() {
        assert_eq!(
            py_bytes_repr(b"HTTP/1.1 400 Bad\r\n"),
            r"b'HTTP/1.1 400 Bad\r\n'"
        );
        assert_eq!(py_bytes_repr(b""), "b''");
        assert_eq!(py_bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(py_bytes_repr(b"'\""), r#"b'\'"'"#);
        assert_eq!(py_bytes_repr(b"\x00\x7f\xff\\\t"), r"b'\x00\x7f\xff\\\t'");
    }

    #[test]
    fn checksum_is_rfc1071() {
        // RFC 1071 §3's example words sum to ddf2; the checksum is its complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A packet with its checksum filled in sums to zero, odd lengths too.
        let p = echo_request(false, 0x1234, 7, b"abcde");
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        let v6 = echo_request(true, 1, 2, b"x");
        assert_eq!(&v6[..4], &[128, 0, 0, 0]);
    }

    #[test]
    fn only_our_reply_matches() {
        let token = *b"12345678";
        let e = Expect {
            v6: false,
            raw: true,
            ident: 9,
            seq: 3,
            token,
        };
        let mut reply = echo_request(false, 9, 3, &token);
        reply[0] = 0;
        let mut with_ip = vec![0x45; 1];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert!(e.matches(&with_ip));
        // Our own request (loopback shows it to raw sockets), another id, a truncated one.
        let mut request = with_ip.clone();
        request[20] = 8;
        assert!(!e.matches(&request));
        let mut other = with_ip.clone();
        other[25] = 10;
        assert!(!e.matches(&other));
        assert!(!e.matches(&with_ip[..30]));
        assert!(!e.matches(&[]));
        // Datagram sockets: no IP header, the kernel's identifier.
        let d = Expect {
            raw: false,
            ident: 1,
            ..e
        };
        assert!(d.matches(&reply));
        let mut wrong_token = reply.clone();
        wrong_token[9] ^= 1;
        assert!(!d.matches(&wrong_token));
    }
}
