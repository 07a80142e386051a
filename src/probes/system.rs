//! Rainbow's host extras (probes.md §6.1) that fit no monasca-agent group: interrupts, soft
//! interrupts and context switches (`/proc/stat`, per core from `/proc/interrupts`), sockets
//! (`/proc/net/sockstat{,6}`), IPv4/IPv6 packets and TCP/UDP counters (`/proc/net/snmp{,6}`).
//!
//! Owns: the previous counters. Must never: add a dimension to an existing monasca-agent name
//! (every name here is new), or send a rate on the first sample.

use super::{Group, Out, ProbeError, Roots, delta};
use std::collections::BTreeMap;

/// `/proc/net/snmp`: pairs of header/value lines → ("Tcp", "InSegs") → value. A missing or
/// short pair yields fewer keys, never a panic.
pub fn parse_snmp(text: &str) -> BTreeMap<(String, String), i64> {
    let mut map = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [head, vals] = pair else { continue };
        let (Some((p1, h)), Some((p2, v))) = (head.split_once(':'), vals.split_once(':')) else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (k, val) in h.split_ascii_whitespace().zip(v.split_ascii_whitespace()) {
            if let Ok(n) = val.parse() {
                map.insert((p1.to_owned(), k.to_owned()), n);
            }
        }
    }
    map
}

/// `/proc/net/snmp6` and similar `Name value` files.
pub fn parse_pairs(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// Σ `inuse` of the given protocols in a sockstat file.
fn inuse(text: &str, protocols: &[&str]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        if !protocols.contains(&proto) {
            continue;
        }
        let mut w = rest.split_ascii_whitespace();
        while let Some(k) = w.next() {
            if k == "inuse"
                && let Some(n) = w.next().and_then(|v| v.parse::<u64>().ok())
            {
                *total.get_or_insert(0.0) += n as f64;
            }
        }
    }
    total
}

/// Per-CPU totals of `/proc/interrupts` (the CPU columns of every row that has them all).
pub fn interrupts_per_cpu(text: &str) -> Vec<(u32, u64)> {
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let cpus: Vec<u32> = head
        .split_ascii_whitespace()
        .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
        .collect();
    let mut sums = vec![0u64; cpus.len()];
    for line in lines {
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let vals: Vec<u64> = rest
            .split_ascii_whitespace()
            .take(cpus.len())
            .map_while(|w| w.parse().ok())
            .collect();
        if vals.len() == cpus.len() {
            for (s, v) in sums.iter_mut().zip(vals) {
                *s = s.saturating_add(v);
            }
        }
    }
    cpus.into_iter().zip(sums).collect()
}

#[derive(Debug, Default, Clone)]
struct Counters {
    values: BTreeMap<&'static str, u64>,
    cores: Vec<(u32, u64)>,
}

pub struct System {
    roots: Roots,
    prev: Option<(f64, Counters)>,
}

impl System {
    pub fn new(roots: Roots) -> Self {
        System { roots, prev: None }
    }
}

impl Group for System {
    fn name(&self) -> &'static str {
        "system"
    }

    fn sample(&mut self, t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let stat = super::cpu::read_stat(&self.roots)?;
        let mut now = Counters::default();
        let mut put = |k: &'static str, v: Option<u64>| {
            if let Some(v) = v {
                now.values.insert(k, v);
            }
        };
        put("cpu.interrupts_sec", stat.intr);
        put("cpu.soft_interrupts_sec", stat.softirq);
        put("cpu.ctx_switches_sec", stat.ctxt);

        let read = |rel: &str, out: &mut Out| match super::read_capped(&self.roots.proc(rel)) {
            Ok(t) => Some(t),
            Err(e) => {
                out.errors.push(e);
                None
            }
        };
        if let Some(text) = read("net/snmp", out) {
            let snmp = parse_snmp(&text);
            let get = |p: &str, k: &str| {
                snmp.get(&(p.to_owned(), k.to_owned()))
                    .and_then(|v| u64::try_from(*v).ok())
            };
            for (name, p, k) in [
                ("net.ipv4.in_packets_sec", "Ip", "InReceives"),
                ("net.ipv4.out_packets_sec", "Ip", "OutRequests"),
                ("net.tcp.in_segments_sec", "Tcp", "InSegs"),
                ("net.tcp.out_segments_sec", "Tcp", "OutSegs"),
                ("net.tcp.retrans_segments_sec", "Tcp", "RetransSegs"),
                ("net.tcp.active_opens_sec", "Tcp", "ActiveOpens"),
                ("net.tcp.passive_opens_sec", "Tcp", "PassiveOpens"),
                ("udp4.in", "Udp", "InDatagrams"),
                ("udp4.out", "Udp", "OutDatagrams"),
            ] {
                if let Some(v) = get(p, k) {
                    now.values.insert(name, v);
                }
            }
            if let Some(v) = get("Tcp", "CurrEstab") {
                out.push("net.tcp.connections_count", v as f64);
            }
        }
        // IPv6 may be disabled: then the file is missing, which is not an error.
        if let Ok(text) = super::read_capped(&self.roots.proc("net/snmp6")) {
            let s6 = parse_pairs(&text);
            for (name, k) in [
                ("net.ipv6.in_packets_sec", "Ip6InReceives"),
                ("net.ipv6.out_packets_sec", "Ip6OutRequests"),
                ("udp6.in", "Udp6InDatagrams"),
                ("udp6.out", "Udp6OutDatagrams"),
            ] {
                if let Some(v) = s6.get(k).and_then(|v| u64::try_from(*v).ok()) {
                    now.values.insert(name, v);
                }
            }
        }
        let v4 = read("net/sockstat", out);
        let v6 = super::read_capped(&self.roots.proc("net/sockstat6")).ok();
        if let Some(n) = v4
            .as_deref()
            .and_then(|t| inuse(t, &["TCP", "UDP", "UDPLITE", "RAW"]))
        {
            out.push("net.ipv4.sockets_count", n);
        }
        if let Some(n) = v6
            .as_deref()
            .and_then(|t| inuse(t, &["TCP6", "UDP6", "UDPLITE6", "RAW6"]))
        {
            out.push("net.ipv6.sockets_count", n);
        }
        let udp = v4
            .as_deref()
            .and_then(|t| inuse(t, &["UDP"]))
            .unwrap_or(0.0)
            + v6.as_deref()
                .and_then(|t| inuse(t, &["UDP6"]))
                .unwrap_or(0.0);
        if v4.is_some() {
            out.push("net.udp.sockets_count", udp);
        }
        if let Ok(text) = super::read_capped(&self.roots.proc("interrupts")) {
            now.cores = interrupts_per_cpu(&text);
        }

        if let Some((t0, prev)) = &self.prev
            && t > *t0
        {
            let dt = t - t0;
            let d = |k: &str| Some(delta(*prev.values.get(k)?, *now.values.get(k)?) as f64 / dt);
            for (k, _) in now.values.iter().filter(|(k, _)| k.ends_with("_sec")) {
                if let Some(r) = d(k) {
                    out.push(*k, r);
                }
            }
            // UDP over both families, like the TCP MIB that already covers v4 and v6.
            for (name, a, b) in [
                ("net.udp.in_datagrams_sec", "udp4.in", "udp6.in"),
                ("net.udp.out_datagrams_sec", "udp4.out", "udp6.out"),
            ] {
                if let Some(r4) = d(a) {
                    out.push(name, r4 + d(b).unwrap_or(0.0));
                }
            }
            for (core, n) in &now.cores {
                if let Some((_, before)) = prev.cores.iter().find(|(c, _)| c == core) {
                    let c = core.to_string();
                    out.push_dims(
                        "cpu.core.interrupts_sec",
                        &[("core", c.as_str())],
                        delta(*before, *n) as f64 / dt,
                    );
                }
            }
        }
        self.prev = Some((t, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    #[test]
    fn counters_and_rates() {
        let mut g = System::new(roots("a"));
        let mut first = Out::default();
        g.sample(0.0, &mut first).unwrap();
        assert_eq!(
            first.names(),
            [
                "net.tcp.connections_count",
                "net.ipv4.sockets_count",
                "net.ipv6.sockets_count",
                "net.udp.sockets_count"
            ]
        );
        assert_eq!(first.value("net.ipv4.sockets_count"), Some(16.0));
        assert_eq!(first.value("net.ipv6.sockets_count"), Some(8.0));
        assert_eq!(first.value("net.udp.sockets_count"), Some(8.0));
        g.roots = roots("b");
        let mut out = Out::default();
        g.sample(10.0, &mut out).unwrap();
        for (name, v) in [
            ("net.tcp.connections_count", 9.0),
            ("cpu.interrupts_sec", 1000.0),
            ("cpu.soft_interrupts_sec", 500.0),
            ("cpu.ctx_switches_sec", 10000.0),
            ("net.ipv4.in_packets_sec", 100.0),
            ("net.ipv4.out_packets_sec", 50.0),
            ("net.ipv6.in_packets_sec", 20.0),
            ("net.ipv6.out_packets_sec", 10.0),
            ("net.tcp.in_segments_sec", 80.0),
            ("net.tcp.out_segments_sec", 60.0),
            ("net.tcp.retrans_segments_sec", 0.1),
            ("net.tcp.active_opens_sec", 1.0),
            ("net.tcp.passive_opens_sec", 2.0),
            ("net.udp.in_datagrams_sec", 15.0),
            ("net.udp.out_datagrams_sec", 10.0),
        ] {
            assert_eq!(out.value(name), Some(v), "{name}");
        }
        let cores: Vec<_> = out
            .values
            .iter()
            .filter(|v| v.0 == "cpu.core.interrupts_sec")
            .map(|v| (v.1[0].1.clone(), v.2))
            .collect();
        assert_eq!(cores, [("0".to_string(), 100.0), ("1".to_string(), 50.0)]);
        assert!(
            out.names().iter().all(|n| !n.starts_with("udp")),
            "internal keys stay internal"
        );
    }

    #[test]
    fn hostile_and_real_files() {
        assert!(parse_snmp("Ip: a b\nTcp: 1 2\nUdp:").is_empty());
        assert_eq!(interrupts_per_cpu(""), []);
        assert_eq!(interrupts_per_cpu("CPU0\n 1: x\n 2: 5\n"), [(0, 5)]);
        let mut out = Out::default();
        System::new(roots("real")).sample(0.0, &mut out).unwrap();
        assert!(out.value("net.ipv4.sockets_count").is_some());
    }
}
