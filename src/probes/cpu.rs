//! `cpu.*` (probes.md §2.1) and, with `probes.extras`, `cpu.core.*` (§6.1), from `/proc/stat`.
//!
//! Owns: the `/proc/stat` parser (also used by `system` and `container`) and the previous
//! sample. Must never: send a percentage on the first sample (there is no window yet), or
//! shell out to `lscpu` for the frequency.
//!
//! `/proc/stat` is parsed here rather than with `procfs::KernelStats`: that type does not keep
//! the `intr`/`softirq` totals the `system` group needs, and it refuses a whole file for one odd
//! line, where a cpu line of an older kernel (4 or 7 fields) must simply read as zeros.

use super::{Group, Out, ProbeError, Roots, round};
use crate::config::ProbesConfig;

/// user nice system idle iowait irq softirq steal guest guest_nice, in USER_HZ ticks; fields an
/// older kernel does not print are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Times(pub [u64; 10]);

const USER: usize = 0;
const NICE: usize = 1;
const SYSTEM: usize = 2;
const IDLE: usize = 3;
const IOWAIT: usize = 4;
const IRQ: usize = 5;
const SOFTIRQ: usize = 6;
const STEAL: usize = 7;
const GUEST: usize = 8;
const GUEST_NICE: usize = 9;

impl Times {
    /// psutil's total: every field but guest and guest_nice (already inside user and nice).
    pub fn total(&self) -> u64 {
        self.0.iter().sum::<u64>() - self.0[GUEST] - self.0[GUEST_NICE]
    }
    /// docker.py's host time: user … softirq (no steal).
    pub fn host_ticks(&self) -> u64 {
        self.0[..=SOFTIRQ].iter().sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    pub total: Times,
    /// (N of `cpuN`, times), online CPUs only (the kernel prints no line for offline ones).
    pub cores: Vec<(u32, Times)>,
    pub intr: Option<u64>,
    pub ctxt: Option<u64>,
    pub softirq: Option<u64>,
}

pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let mut stat = Stat::default();
    let mut seen_total = false;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(key) = words.next() else { continue };
        let first = |w: &mut std::str::SplitAsciiWhitespace| w.next().and_then(|v| v.parse().ok());
        match key {
            "intr" => stat.intr = first(&mut words),
            "ctxt" => stat.ctxt = first(&mut words),
            "softirq" => stat.softirq = first(&mut words),
            k if k.starts_with("cpu") => {
                let mut t = Times::default();
                let mut n = 0;
                for (slot, w) in t.0.iter_mut().zip(words) {
                    *slot = w.parse().map_err(|_| format!("bad field {w:?} in {k}"))?;
                    n += 1;
                }
                if n < 4 {
                    return Err(format!("{k}: {n} fields, at least 4 expected"));
                }
                if k == "cpu" {
                    stat.total = t;
                    seen_total = true;
                } else if let Ok(i) = k[3..].parse() {
                    stat.cores.push((i, t));
                }
            }
            _ => {}
        }
    }
    if !seen_total {
        return Err("no aggregate cpu line".into());
    }
    Ok(stat)
}

pub fn read_stat(roots: &Roots) -> Result<Stat, ProbeError> {
    let path = roots.proc("stat");
    let text = super::read_capped(&path)?;
    parse_stat(&text).map_err(|e| ProbeError::parse(&path, e))
}

/// Online logical CPUs as `/proc/stat` lists them (psutil `cpu_count(logical=True)`), at least 1.
pub fn cpu_count(stat: &Stat) -> usize {
    stat.cores.len().max(1)
}

/// USER_HZ; the kernel's ABI value (100) when sysconf cannot say.
pub fn user_hz() -> f64 {
    crate::sys::clock_ticks_per_second() as f64
}

/// The psutil percentages of one window: (user, system, wait, idle, stolen, percent).
pub fn percents(prev: &Times, now: &Times) -> [f64; 6] {
    let d: Vec<f64> = prev
        .0
        .iter()
        .zip(now.0.iter())
        .map(|(a, b)| b.saturating_sub(*a) as f64)
        .collect();
    let all: f64 = d.iter().sum::<f64>() - d[GUEST] - d[GUEST_NICE];
    let pct = |i: usize| {
        if all <= 0.0 {
            0.0
        } else {
            round(d[i] / all * 100.0, 1).clamp(0.0, 100.0)
        }
    };
    let busy = if all <= 0.0 {
        0.0
    } else {
        round((all - d[IDLE] - d[IOWAIT]) / all * 100.0, 1).clamp(0.0, 100.0)
    };
    [
        pct(USER) + pct(NICE),
        pct(SYSTEM) + pct(IRQ) + pct(SOFTIRQ),
        pct(IOWAIT),
        pct(IDLE),
        pct(STEAL),
        busy,
    ]
}

pub struct Cpu {
    roots: Roots,
    idle_only: bool,
    rollups: bool,
    extras: bool,
    hz: f64,
    prev: Option<Stat>,
}

impl Cpu {
    pub fn new(roots: Roots, c: &ProbesConfig) -> Self {
        Cpu {
            roots,
            idle_only: c.cpu_idle_only,
            rollups: c.send_rollup_stats,
            extras: c.extras,
            hz: user_hz(),
            prev: None,
        }
    }

    /// For fixtures: a fixed USER_HZ.
    pub fn with_hz(mut self, hz: f64) -> Self {
        self.hz = hz;
        self
    }

    /// The current `cpu MHz` of the first CPU in `/proc/cpuinfo`: what `lscpu` printed as
    /// `CPU MHz:` before util-linux 2.37 dropped the line.
    fn frequency(&self) -> Option<f64> {
        let text = super::read_capped(&self.roots.proc("cpuinfo")).ok()?;
        text.lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
    }
}

impl Group for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn sample(&mut self, _t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let stat = read_stat(&self.roots)?;
        if let Some(prev) = &self.prev {
            let [user, system, wait, idle, stolen, percent] = percents(&prev.total, &stat.total);
            if self.idle_only {
                out.push("cpu.idle_perc", idle);
            } else {
                out.push("cpu.user_perc", user);
                out.push("cpu.system_perc", system);
                out.push("cpu.wait_perc", wait);
                out.push("cpu.idle_perc", idle);
                out.push("cpu.stolen_perc", stolen);
                out.push("cpu.percent", percent);
            }
            if self.extras {
                for (n, now) in &stat.cores {
                    let Some((_, before)) = prev.cores.iter().find(|(m, _)| m == n) else {
                        continue;
                    };
                    let [u, s, w, i, st, p] = percents(before, now);
                    let core = n.to_string();
                    let dims = [("core", core.as_str())];
                    for (name, v) in [
                        ("cpu.core.user_perc", u),
                        ("cpu.core.system_perc", s),
                        ("cpu.core.wait_perc", w),
                        ("cpu.core.idle_perc", i),
                        ("cpu.core.stolen_perc", st),
                        ("cpu.core.percent", p),
                    ] {
                        out.push_dims(name, &dims, v);
                    }
                }
            }
        }
        if !self.idle_only {
            let t = &stat.total.0;
            let secs = |ticks: u64| ticks as f64 / self.hz;
            out.push("cpu.idle_time", secs(t[IDLE]));
            out.push("cpu.wait_time", secs(t[IOWAIT]));
            out.push("cpu.user_time", secs(t[USER] + t[NICE]));
            out.push("cpu.system_time", secs(t[SYSTEM] + t[IRQ] + t[SOFTIRQ]));
            if let Some(mhz) = self.frequency() {
                out.push("cpu.frequency_mhz", mhz);
            }
        }
        if self.rollups {
            out.push("cpu.total_logical_cores", cpu_count(&stat) as f64);
        }
        self.prev = Some(stat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    fn two_samples(c: &ProbesConfig) -> Out {
        let mut g = Cpu::new(roots("a"), c).with_hz(100.0);
        let mut first = Out::default();
        g.sample(0.0, &mut first).unwrap();
        assert!(
            first.value("cpu.user_perc").is_none(),
            "no percentages on the first sample"
        );
        if !c.cpu_idle_only {
            assert_eq!(
                first.value("cpu.idle_time"),
                Some(80.0),
                "gauges are sent at once"
            );
        }
        g.roots = roots("b");
        let mut out = Out::default();
        g.sample(10.0, &mut out).unwrap();
        out
    }

    #[test]
    fn percentages_and_times_match_the_spec() {
        let out = two_samples(&ProbesConfig::default());
        assert_eq!(out.value("cpu.user_perc"), Some(25.0));
        assert_eq!(out.value("cpu.system_perc"), Some(15.0));
        assert_eq!(out.value("cpu.wait_perc"), Some(5.0));
        assert_eq!(out.value("cpu.idle_perc"), Some(50.0));
        assert_eq!(out.value("cpu.stolen_perc"), Some(5.0));
        assert_eq!(out.value("cpu.percent"), Some(45.0), "steal counts as busy");
        assert_eq!(out.value("cpu.idle_time"), Some(90.0));
        assert_eq!(out.value("cpu.wait_time"), Some(3.0));
        assert_eq!(out.value("cpu.user_time"), Some(16.0));
        assert_eq!(out.value("cpu.system_time"), Some(9.0));
        assert!(out.value("cpu.total_logical_cores").is_none());
        assert!(out.names().iter().all(|n| !n.starts_with("cpu.core.")));
    }

    #[test]
    fn options_idle_only_rollups_and_per_core() {
        let c = ProbesConfig {
            cpu_idle_only: true,
            send_rollup_stats: true,
            ..Default::default()
        };
        let out = two_samples(&c);
        assert_eq!(out.names(), ["cpu.idle_perc", "cpu.total_logical_cores"]);
        assert_eq!(out.value("cpu.total_logical_cores"), Some(2.0));

        let c = ProbesConfig {
            extras: true,
            ..Default::default()
        };
        let out = two_samples(&c);
        let core0: Vec<_> = out
            .values
            .iter()
            .filter(|v| v.1 == [("core", "0".to_string())])
            .map(|v| (v.0.as_str(), v.2))
            .collect();
        assert_eq!(
            core0,
            [
                ("cpu.core.user_perc", 35.0),
                ("cpu.core.system_perc", 15.0),
                ("cpu.core.wait_perc", 5.0),
                ("cpu.core.idle_perc", 40.0),
                ("cpu.core.stolen_perc", 5.0),
                ("cpu.core.percent", 55.0),
            ]
        );
    }

    #[test]
    fn older_kernels_and_hostile_files() {
        let s = parse_stat(&std::fs::read_to_string(roots("old").proc("stat")).unwrap()).unwrap();
        assert_eq!(s.total.0[..5], [1000, 100, 500, 8000, 0]);
        assert_eq!(s.cores.len(), 1);
        assert!(parse_stat("cpu 1 2\n").is_err());
        assert!(parse_stat("intr 5\n").is_err());
        assert!(parse_stat("cpu 1 2 3 x\n").is_err());
        let real =
            parse_stat(&std::fs::read_to_string(roots("real").proc("stat")).unwrap()).unwrap();
        assert!(!real.cores.is_empty() && real.ctxt.is_some());
        // a counter that went backwards (a hot-unplugged CPU's ticks) is a zero delta, not negative
        let p = percents(
            &Times([10, 0, 0, 10, 0, 0, 0, 0, 0, 0]),
            &Times([5, 0, 0, 20, 0, 0, 0, 0, 0, 0]),
        );
        assert_eq!(p[3], 100.0);
    }
}
