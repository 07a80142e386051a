//! `kind: tcp` (monasca-agent `tcp_check`, `reference/probes.md` §7.4): resolve `address` on
//! every run (IPv4 and IPv6), connect to the addresses in order until one accepts, report
//! `network.tcp.status` and `network.tcp.response_time`.
//!
//! Owns: resolution, the connect attempts and their texts. Must never: send or read a byte
//! on the connection (it is closed at once), or block the runtime on DNS (tokio's
//! `lookup_host` resolves on the blocking pool).

use super::{BoxFuture, Check, Report, Sample};
use crate::config::TcpCheck;
use std::time::{Duration, Instant};

const STATUS: &str = "network.tcp.status";
const RESPONSE_TIME: &str = "network.tcp.response_time";

pub struct TcpProbe {
    host: String,
    port: u16,
    /// As configured: the `url` dimension.
    address: String,
    response_time: bool,
}

impl TcpProbe {
    pub fn new(c: &TcpCheck, _timeout: Duration) -> anyhow::Result<Self> {
        let address = c.address.trim();
        let (host, port) = crate::config::split_host_port(address)
            .ok_or_else(|| anyhow::anyhow!("address: {address:?} is not host:port"))?;
        Ok(TcpProbe {
            host: host.to_owned(),
            port,
            address: address.to_owned(),
            response_time: c.response_time,
        })
    }

    fn sample(&self, name: &str, value: f64) -> Sample {
        Sample::new(name, value).last_dim("url", &self.address)
    }

    fn down(&self, error: &str) -> Sample {
        self.sample(STATUS, 1.0).meta("error", error)
    }

    async fn check(&self) -> Report {
        let start = Instant::now();
        let failed = |reason: &str| {
            let ms = start.elapsed().as_millis();
            Report::failed(vec![
                self.down(&format!("error: {reason}. Connection failed after {ms} ms")),
            ])
        };
        let addrs: Vec<_> = match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(a) => a.collect(),
            Err(e) => return failed(&format!("cannot resolve {}: {e}", self.host)),
        };
        if addrs.is_empty() {
            return failed(&format!("{} resolves to no address", self.host));
        }
        let mut errors = Vec::new();
        for addr in &addrs {
            let began = Instant::now();
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let took = began.elapsed().as_secs_f64();
                    drop(stream);
                    let mut samples = vec![self.sample(STATUS, 0.0)];
                    if self.response_time {
                        samples.push(self.sample(RESPONSE_TIME, took));
                    }
                    return Report::ok(samples);
                }
                Err(e) => errors.push((addr, reason(&e))),
            }
        }
        let text = if let [(_, only)] = errors.as_slice() {
            only.clone()
        } else {
            errors
                .iter()
                .map(|(a, r)| format!("{a}: {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        failed(&text)
    }
}

/// An I/O error, readably.
fn reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_owned(),
        TimedOut => "timed out".to_owned(),
        HostUnreachable => "host unreachable".to_owned(),
        NetworkUnreachable => "network unreachable".to_owned(),
        _ => e.to_string(),
    }
}

impl Check for TcpProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(self.check())
    }

    fn timed_out(&mut self, timeout: Duration) -> Vec<Sample> {
        vec![self.down(&super::connection_timed_out(timeout))]
    }
}
