//! `net.*` per interface (probes.md §2.5) and, with `probes.extras`,
//! `net.{in,out}_utilization_perc` where `/sys/class/net/<if>/speed` is known (§6.1).
//!
//! Owns: the `/proc/net/dev` parser (also used per container) and the previous counters.
//! Must never: report an excluded interface, or a rate on the first sample.
//!
//! `/proc/net/dev` is parsed here rather than with `procfs::InterfaceDeviceStatus`, which
//! refuses the whole file for one truncated line; here such a line is skipped and counted.

use super::{Group, Out, ProbeError, Roots, delta, round};
use crate::config::ProbesConfig;
use std::collections::BTreeMap;

/// rx bytes, packets, errs, drop; tx bytes, packets, errs, drop.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// Interfaces in file order, and the number of lines that did not parse.
pub fn parse_net_dev(text: &str) -> (Vec<(String, Counters)>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            bad += usize::from(!line.trim().is_empty());
            continue;
        };
        let v: Vec<u64> = rest
            .split_ascii_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        if v.len() < 12 {
            bad += 1;
            continue;
        }
        out.push((
            name.trim().to_owned(),
            Counters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errs: v[2],
                rx_drop: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errs: v[10],
                tx_drop: v[11],
            },
        ));
    }
    (out, bad)
}

pub struct Net {
    roots: Roots,
    excluded: Vec<String>,
    excluded_re: regex::Regex,
    use_bits: bool,
    bytes_only: bool,
    extras: bool,
    prev: Option<(f64, BTreeMap<String, Counters>)>,
}

impl Net {
    pub fn new(roots: Roots, c: &ProbesConfig) -> anyhow::Result<Self> {
        let excluded_re = crate::config::prefix_regex(&c.excluded_interface_re)
            .map_err(|e| anyhow::anyhow!("probes.excluded_interface_re: {e}"))?;
        Ok(Net {
            roots,
            excluded: c.excluded_interfaces.clone(),
            excluded_re,
            use_bits: c.use_bits,
            bytes_only: c.net_bytes_only,
            extras: c.extras,
            prev: None,
        })
    }

    /// psutil `isup` as IFF_RUNNING: the kernel sets it when operstate is up or unknown
    /// (`netif_oper_up`); loopback and many virtual devices report "unknown".
    fn running(&self, ifname: &str) -> Option<bool> {
        let p = self.roots.sys(&format!("class/net/{ifname}/operstate"));
        let s = super::read_capped(&p).ok()?;
        Some(matches!(s.trim(), "up" | "unknown"))
    }

    fn speed_mbit(&self, ifname: &str) -> Option<f64> {
        let p = self.roots.sys(&format!("class/net/{ifname}/speed"));
        super::read_number(&p).filter(|s| *s > 0).map(|s| s as f64)
    }
}

impl Group for Net {
    fn name(&self) -> &'static str {
        "net"
    }

    fn sample(&mut self, t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let path = self.roots.proc("net/dev");
        let (ifaces, bad) = parse_net_dev(&super::read_capped(&path)?);
        if bad > 0 {
            out.errors
                .push(ProbeError::parse(&path, format!("{bad} unreadable lines")));
        }
        let ifaces: BTreeMap<String, Counters> = ifaces
            .into_iter()
            .filter(|(n, _)| !self.excluded.contains(n) && !self.excluded_re.is_match(n))
            .collect();
        for (name, now) in &ifaces {
            let dims = [("device", name.as_str())];
            if let Some((t0, prev)) = &self.prev
                && let Some(before) = prev.get(name)
                && t > *t0
            {
                let dt = t - t0;
                let rate = |a: u64, b: u64| delta(a, b) as f64 / dt;
                let rx = rate(before.rx_bytes, now.rx_bytes);
                let tx = rate(before.tx_bytes, now.tx_bytes);
                if self.use_bits {
                    out.push_dims("net.in_bits_sec", &dims, rx * 8.0);
                    out.push_dims("net.out_bits_sec", &dims, tx * 8.0);
                } else {
                    out.push_dims("net.in_bytes_sec", &dims, rx);
                    out.push_dims("net.out_bytes_sec", &dims, tx);
                }
                if !self.bytes_only {
                    for (metric, a, b) in [
                        ("net.in_packets_sec", before.rx_packets, now.rx_packets),
                        ("net.out_packets_sec", before.tx_packets, now.tx_packets),
                        ("net.in_errors_sec", before.rx_errs, now.rx_errs),
                        ("net.out_errors_sec", before.tx_errs, now.tx_errs),
                        ("net.in_packets_dropped_sec", before.rx_drop, now.rx_drop),
                        ("net.out_packets_dropped_sec", before.tx_drop, now.tx_drop),
                    ] {
                        out.push_dims(metric, &dims, rate(a, b));
                    }
                }
                if self.extras
                    && let Some(speed) = self.speed_mbit(name)
                {
                    let util = |bytes_sec: f64| round(bytes_sec * 8.0 / (speed * 1e6) * 100.0, 3);
                    out.push_dims("net.in_utilization_perc", &dims, util(rx));
                    out.push_dims("net.out_utilization_perc", &dims, util(tx));
                }
            }
            if let Some(up) = self.running(name) {
                out.push_dims("net.int_status", &dims, if up { 0.0 } else { 1.0 });
            }
        }
        self.prev = Some((t, ifaces));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    fn of(out: &Out, dev: &str) -> Vec<(String, f64)> {
        out.values
            .iter()
            .filter(|v| v.1 == [("device", dev.to_string())])
            .map(|v| (v.0.clone(), v.2))
            .collect()
    }

    fn run(c: &ProbesConfig) -> (Out, Out) {
        let mut g = Net::new(roots("a"), c).unwrap();
        let mut first = Out::default();
        g.sample(0.0, &mut first).unwrap();
        g.roots = roots("b");
        let mut out = Out::default();
        g.sample(10.0, &mut out).unwrap();
        (first, out)
    }

    #[test]
    fn rates_status_and_exclusions() {
        let (first, out) = run(&ProbesConfig {
            extras: true,
            ..Default::default()
        });
        assert_eq!(
            first.names(),
            ["net.int_status", "net.int_status", "net.int_status"],
            "only the status on the first sample"
        );
        let n = |s: &str, v: f64| (s.to_string(), v);
        assert_eq!(
            of(&out, "eth0"),
            [
                n("net.in_bytes_sec", 125000.0),
                n("net.out_bytes_sec", 25000.0),
                n("net.in_packets_sec", 100.0),
                n("net.out_packets_sec", 50.0),
                n("net.in_errors_sec", 1.0),
                n("net.out_errors_sec", 0.0),
                n("net.in_packets_dropped_sec", 0.0),
                n("net.out_packets_dropped_sec", 0.5),
                n("net.in_utilization_perc", 0.1),
                n("net.out_utilization_perc", 0.02),
                n("net.int_status", 0.0),
            ]
        );
        assert_eq!(
            of(&out, "veth1a2b")[0],
            n("net.in_bytes_sec", 5.0),
            "a wrapped counter counts from zero"
        );
        assert_eq!(
            of(&out, "docker0").last(),
            Some(&n("net.int_status", 1.0)),
            "down is 1"
        );
        assert!(
            of(&out, "docker0")
                .iter()
                .all(|v| !v.0.contains("utilization")),
            "no speed, no utilization"
        );
        assert!(of(&out, "lo").is_empty() && of(&out, "tap0").is_empty());
    }

    #[test]
    fn bits_and_bytes_only() {
        let (_, out) = run(&ProbesConfig {
            use_bits: true,
            net_bytes_only: true,
            excluded_interfaces: vec!["veth1a2b".into()],
            excluded_interface_re: "doc".into(),
            ..Default::default()
        });
        let names: Vec<_> = of(&out, "eth0").into_iter().map(|v| v.0).collect();
        assert_eq!(
            names,
            ["net.in_bits_sec", "net.out_bits_sec", "net.int_status"]
        );
        assert_eq!(of(&out, "eth0")[0].1, 1_000_000.0);
        assert!(of(&out, "veth1a2b").is_empty() && of(&out, "docker0").is_empty());
        assert!(
            !of(&out, "lo").is_empty(),
            "lo is kept once the regex no longer names it"
        );
    }

    #[test]
    fn hostile_lines_are_skipped_and_counted() {
        let (v, bad) =
            parse_net_dev("h\nh\n eth0: 1 2 3\nfoo\n x: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
        assert_eq!((v.len(), bad), (1, 2));
        let real = std::fs::read_to_string(roots("real").proc("net/dev")).unwrap();
        let (v, bad) = parse_net_dev(&real);
        assert!(!v.is_empty() && bad == 0);
    }
}
