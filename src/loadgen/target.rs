//! What the generator reads about its target: the `/metrics` counters, the process's CPU
//! time and memory from `/proc`, the kernel's drops on its UDP port, and the flushed output.

use crate::telemetry::kernel;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The counters the report needs from a `/metrics` page (statsgate's names; `bare_recv`
/// serves the same ones).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scrape {
    /// Lines the target counted: accepted plus rejected.
    pub lines: u64,
    pub flushes: u64,
}

/// GET `/metrics` on `admin` and sum the counters of interest.
pub fn scrape(admin: SocketAddr) -> std::io::Result<Scrape> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: statsgate\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(parse_metrics(&body))
}

fn parse_metrics(text: &str) -> Scrape {
    let mut out = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or_default();
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        match name {
            "statsgate_lines_accepted_total" | "statsgate_lines_rejected_total" => {
                out.lines += v as u64
            }
            "statsgate_flushes_total" => out.flushes += v as u64,
            _ => {}
        }
    }
    out
}

/// A process's CPU time and memory, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, in seconds (all threads).
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the full line (utime, stime) are 11 and 12 after `comm`.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = crate::sys::clock_ticks_per_second() as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / ticks,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// Datagrams the kernel dropped on sockets bound to `port` (any process: works for any
/// statsd server on this machine).
pub fn udp_drops(port: u16) -> u64 {
    kernel::port_sockets(port)
        .iter()
        .map(|&(_, drops)| drops)
        .sum()
}

/// The process that holds a socket bound to UDP `port`.
pub fn find_pid(port: u16) -> Option<u32> {
    kernel::udp_port_holder(port)
}

/// Sums the flushed values of metrics named `prefix...` in a console-sink output (one JSON
/// array of Monasca metrics per line), by name.
pub fn flushed_totals(output: &str, prefix: &str) -> HashMap<String, f64> {
    let mut totals = HashMap::new();
    for line in output.lines() {
        let Ok(metrics) = serde_json::from_str::<Vec<serde_json::Value>>(line) else {
            continue;
        };
        for m in metrics {
            let (Some(name), Some(value)) = (m["name"].as_str(), m["value"].as_f64()) else {
                continue;
            };
            if name.starts_with(prefix) {
                *totals.entry(name.to_owned()).or_insert(0.0) += value;
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters_it_needs() {
        let text = "# HELP x\nstatsgate_lines_accepted_total{type=\"counter\"} 10\n\
            statsgate_lines_accepted_total{type=\"gauge\"} 5\n\
            statsgate_lines_rejected_total{reason=\"bad_value\"} 2\n\
            statsgate_flushes_total 3\nstatsgate_datagrams_received_total 9\n";
        assert_eq!(
            parse_metrics(text),
            Scrape {
                lines: 17,
                flushes: 3
            }
        );
    }

    #[test]
    fn reads_its_own_cpu_and_memory() {
        let s = proc_sample(std::process::id()).expect("own /proc");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.cpu_s >= 0.0);
    }

    #[test]
    fn finds_the_process_and_drops_of_a_port() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        assert_eq!(udp_drops(port), 0);
        // Our own pid is skipped on purpose (the generator is never its own target).
        assert_eq!(find_pid(port), None);
        assert!(!kernel::port_sockets(port).is_empty());
    }

    #[test]
    fn sums_flushed_values_by_name() {
        let out = "[{\"name\":\"b.c.0\",\"dimensions\":{},\"timestamp\":1,\"value\":3.0}]\n\
            not json\n\
            [{\"name\":\"b.c.0\",\"dimensions\":{},\"timestamp\":2,\"value\":4},\
             {\"name\":\"other\",\"dimensions\":{},\"timestamp\":2,\"value\":4}]\n";
        let t = flushed_totals(out, "b.");
        assert_eq!(t.len(), 1);
        assert_eq!(t["b.c.0"], 7.0);
    }
}
