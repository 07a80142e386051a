//! `load.avg_{1,5,15}_min` (probes.md §2.3): `/proc/loadavg` through `procfs::LoadAverage`,
//! divided by the online logical CPUs of `/proc/stat`.
//!
//! Owns: nothing between samples. Must never: send the raw load (monasca-agent's is per core).

use super::{Group, Out, ProbeError, Roots, round};
use procfs::FromRead;

pub struct Load {
    roots: Roots,
}

impl Load {
    pub fn new(roots: Roots) -> Self {
        Load { roots }
    }
}

impl Group for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn sample(&mut self, _t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let path = self.roots.proc("loadavg");
        let text = super::read_capped(&path)?;
        let l = procfs::LoadAverage::from_read(text.as_bytes())
            .map_err(|e| ProbeError::parse(&path, e))?;
        let cpus = super::cpu::cpu_count(&super::cpu::read_stat(&self.roots)?) as f64;
        // f32 → decimal text → f64 keeps `0.52` as 0.52 rather than 0.51999998.
        let exact = |v: f32| v.to_string().parse::<f64>().unwrap_or(v as f64);
        out.push("load.avg_1_min", round(exact(l.one) / cpus, 3));
        out.push("load.avg_5_min", round(exact(l.five) / cpus, 3));
        out.push("load.avg_15_min", round(exact(l.fifteen) / cpus, 3));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    #[test]
    fn per_core_load() {
        let mut out = Out::default();
        Load::new(roots("a")).sample(0.0, &mut out).unwrap();
        assert_eq!(
            out.values
                .iter()
                .map(|v| (v.0.as_str(), v.2))
                .collect::<Vec<_>>(),
            [
                ("load.avg_1_min", 0.5),
                ("load.avg_5_min", 0.25),
                ("load.avg_15_min", 0.125)
            ]
        );
        let mut out = Out::default();
        Load::new(roots("real")).sample(0.0, &mut out).unwrap();
        assert_eq!(out.values.len(), 3);
        assert!(
            Load::new(roots("old"))
                .sample(0.0, &mut Out::default())
                .is_err()
        );
    }
}
