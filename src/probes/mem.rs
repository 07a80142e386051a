//! `mem.*` (probes.md §2.2) and, with `probes.extras`, committed and kernel memory (§6.1), from
//! `/proc/meminfo` through `procfs::Meminfo`.
//!
//! Owns: nothing between samples (all gauges). Must never: send the five "only if non-zero"
//! names when they are zero (monasca-agent does not, and alarms on absence would change).

use super::{Group, Out, ProbeError, Roots, round};
use procfs::FromRead;

const MIB: u64 = 1_048_576;

/// `int(bytes / 1048576)`, as the agent floors.
fn mib(bytes: u64) -> f64 {
    (bytes / MIB) as f64
}

pub struct Mem {
    roots: Roots,
    extras: bool,
}

impl Mem {
    pub fn new(roots: Roots) -> Self {
        Mem {
            roots,
            extras: false,
        }
    }
    pub fn with_extras(mut self, extras: bool) -> Self {
        self.extras = extras;
        self
    }
}

impl Group for Mem {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn sample(&mut self, _t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let path = self.roots.proc("meminfo");
        let text = super::read_capped(&path)?;
        let m =
            procfs::Meminfo::from_read(text.as_bytes()).map_err(|e| ProbeError::parse(&path, e))?;
        if m.mem_total == 0 {
            return Err(ProbeError::parse(&path, "MemTotal is 0"));
        }
        // Kernels before 3.14 lack MemAvailable; psutil then estimates, we take the classic
        // free + buffers + cached.
        let available = m
            .mem_available
            .unwrap_or(m.mem_free + m.buffers + m.cached)
            .min(m.mem_total);
        let sreclaimable = m.s_reclaimable.unwrap_or(0);
        let cached = m.cached + sreclaimable;
        // psutil 4.4–7.0 `used` (probes.md §2.2).
        let used = m
            .mem_total
            .checked_sub(m.mem_free + m.buffers + cached)
            .unwrap_or(m.mem_total - m.mem_free.min(m.mem_total));

        out.push("mem.total_mb", mib(m.mem_total));
        out.push("mem.free_mb", mib(m.mem_free));
        out.push("mem.usable_mb", mib(available));
        let used_pct = round(
            (m.mem_total - available) as f64 / m.mem_total as f64 * 100.0,
            1,
        );
        out.push("mem.usable_perc", 100.0 - used_pct);
        let swap_used = m.swap_total.saturating_sub(m.swap_free);
        out.push("mem.swap_total_mb", mib(m.swap_total));
        out.push("mem.swap_used_mb", mib(swap_used));
        out.push("mem.swap_free_mb", mib(m.swap_free));
        let swap_free_perc = if m.swap_total == 0 {
            100.0
        } else {
            100.0 - round(swap_used as f64 / m.swap_total as f64 * 100.0, 1)
        };
        out.push("mem.swap_free_perc", swap_free_perc);
        if m.buffers != 0 {
            out.push("mem.used_buffers", mib(m.buffers));
        }
        if cached != 0 {
            out.push("mem.used_cache", mib(cached));
        }
        if m.buffers != 0 && cached != 0 {
            out.push("mem.used_real_mb", mib(used));
        }
        if let Some(shmem) = m.shmem.filter(|v| *v != 0) {
            out.push("mem.used_shared", mib(shmem));
        }
        if m.slab != 0 {
            out.push("mem.used_slab_mb", mib(m.slab));
        }
        if self.extras {
            let committed = m.committed_as;
            out.push("mem.committed_mb", mib(committed));
            if let Some(limit) = m.commit_limit {
                out.push("mem.commit_limit_mb", mib(limit));
                if limit > 0 {
                    out.push(
                        "mem.committed_perc",
                        round(committed as f64 / limit as f64 * 100.0, 2),
                    );
                }
            }
            let kernel = m.slab
                + m.kernel_stack.unwrap_or(0)
                + m.page_tables.unwrap_or(0)
                + m.secondary_page_tables.unwrap_or(0);
            out.push("mem.kernel_mb", mib(kernel));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    #[test]
    fn values_match_the_spec() {
        let mut g = Mem::new(roots("a")).with_extras(true);
        let mut out = Out::default();
        g.sample(0.0, &mut out).unwrap();
        let got: Vec<_> = out.values.iter().map(|v| (v.0.as_str(), v.2)).collect();
        assert_eq!(
            got,
            [
                ("mem.total_mb", 8192.0),
                ("mem.free_mb", 1024.0),
                ("mem.usable_mb", 4096.0),
                ("mem.usable_perc", 50.0),
                ("mem.swap_total_mb", 2048.0),
                ("mem.swap_used_mb", 512.0),
                ("mem.swap_free_mb", 1536.0),
                ("mem.swap_free_perc", 75.0),
                ("mem.used_buffers", 100.0),
                ("mem.used_cache", 2248.0),
                ("mem.used_real_mb", 4820.0),
                ("mem.used_shared", 50.0),
                ("mem.used_slab_mb", 300.0),
                ("mem.committed_mb", 3072.0),
                ("mem.commit_limit_mb", 6144.0),
                ("mem.committed_perc", 50.0),
                ("mem.kernel_mb", 348.0),
            ]
        );
    }

    #[test]
    fn a_truncated_meminfo_is_a_parse_error_and_the_real_one_reads() {
        let mut g = Mem::new(roots("old"));
        let e = g.sample(0.0, &mut Out::default()).unwrap_err();
        assert_eq!(e.reason, "parse");
        let mut g = Mem::new(roots("real"));
        let mut out = Out::default();
        g.sample(0.0, &mut out).unwrap();
        assert!(out.value("mem.total_mb").unwrap() > 0.0);
        assert!(out.value("mem.swap_free_perc").is_some());
    }
}
