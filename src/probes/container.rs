//! `container.*`: one set per cgroup v2 group that holds processes (a container or a systemd
//! service), under docker.py's names (probes.md §5, §6.2).
//!
//! Owns: the walk of the cgroup tree (bounded depth and `probes.max_containers`), the previous
//! CPU and network counters per group. Must never: follow the tree without bounds, keep state for
//! a group that vanished (it is forgotten at the next sample), or treat a vanished group as an
//! error (containers stop all the time).
//!
//! Departures: `image` is not sent (cgroup v2 does not know it; docker.py asked the Docker API),
//! `name` is the container id (12 hex digits) for `docker-`, `libpod-`, `cri-containerd-` and
//! `crio-` scopes and the unit name otherwise; network counters cover every non-`lo` interface
//! of the group's first process (docker.py stopped at the first).

use super::{Group, Out, ProbeError, Roots, delta, round};
use crate::config::ProbesConfig;
use procfs::FromRead;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAX_DEPTH: usize = 8;
const MAX_DIRS: usize = 20_000;

/// The groups under `root` with at least one process, sorted, the root itself excluded.
pub fn find_groups(root: &Path) -> (Vec<PathBuf>, bool) {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut visited = 0;
    let mut truncated = false;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            truncated = true;
            break;
        }
        if depth > 0
            && let Ok(procs) = super::read_capped(&dir.join("cgroup.procs"))
            && procs.split_ascii_whitespace().next().is_some()
        {
            found.push(dir.clone());
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    found.sort();
    (found, truncated)
}

/// `docker-0123456789abcdef….scope` → `0123456789ab`; `nginx.service` stays.
pub fn container_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = base.strip_suffix(".scope").unwrap_or(&base);
    for prefix in ["docker-", "libpod-", "cri-containerd-", "crio-"] {
        if let Some(id) = stem.strip_prefix(prefix)
            && id.len() >= 12
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return id[..12].to_owned();
        }
    }
    base
}

fn keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            Some((w.next()?, w.next()?.parse().ok()?))
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct Prev {
    usage_usec: u64,
    user_usec: u64,
    system_usec: u64,
    net: HashMap<String, super::net::Counters>,
}

pub struct Containers {
    roots: Roots,
    max: usize,
    hz: f64,
    prev: Option<(f64, u64, HashMap<PathBuf, Prev>)>,
}

impl Containers {
    pub fn new(roots: Roots, c: &ProbesConfig) -> Self {
        Containers {
            roots,
            max: c.max_containers,
            hz: super::cpu::user_hz(),
            prev: None,
        }
    }
    pub fn with_hz(mut self, hz: f64) -> Self {
        self.hz = hz;
        self
    }
}

impl Group for Containers {
    fn name(&self) -> &'static str {
        "container"
    }

    fn sample(&mut self, t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let stat = super::cpu::read_stat(&self.roots)?;
        let ncpu = super::cpu::cpu_count(&stat) as f64;
        let host_ticks = stat.total.host_ticks();
        let meminfo = self.roots.proc("meminfo");
        let mem_total = super::read_capped(&meminfo)
            .ok()
            .and_then(|t| procfs::Meminfo::from_read(t.as_bytes()).ok())
            .map(|m| m.mem_total)
            .unwrap_or(u64::MAX);
        // cgroup v1 trees (and hybrid hosts' /sys/fs/cgroup) also have cgroup.procs, but none
        // of the v2 files: refuse them by name rather than send zeros.
        let marker = self.roots.cgroup.join("cgroup.controllers");
        if !marker.is_file() {
            return Err(ProbeError::read(
                &marker,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a cgroup v2 root (set probes.cgroup_path, e.g. /sys/fs/cgroup/unified)",
                ),
            ));
        }
        let (mut groups, truncated) = find_groups(&self.roots.cgroup);
        if truncated || groups.len() > self.max {
            out.errors.push(ProbeError {
                reason: "limit",
                detail: format!(
                    "{} groups with processes under {}; reporting the first {} (probes.max_containers)",
                    groups.len(),
                    self.roots.cgroup.display(),
                    self.max
                ),
            });
            groups.truncate(self.max);
        }
        let mut now_prev = HashMap::new();
        for dir in groups {
            // Keyed relative to the root, so state survives a moved root (and fixture trees).
            let key = dir
                .strip_prefix(&self.roots.cgroup)
                .unwrap_or(&dir)
                .to_path_buf();
            let name = container_name(&dir);
            let dims = [("name", name.as_str())];
            let mut p = Prev::default();
            // A group that vanished mid-read simply yields fewer metrics.
            if let Ok(text) = super::read_capped(&dir.join("cpu.stat")) {
                let k = keyed(&text);
                p.usage_usec = k.get("usage_usec").copied().unwrap_or(0);
                p.user_usec = k.get("user_usec").copied().unwrap_or(0);
                p.system_usec = k.get("system_usec").copied().unwrap_or(0);
                let ticks = |usec: u64| (usec as f64 / 1e6 * self.hz).round();
                out.push_dims("container.cpu.user_time", &dims, ticks(p.user_usec));
                out.push_dims("container.cpu.system_time", &dims, ticks(p.system_usec));
                if let Some((t0, host0, prev)) = &self.prev
                    && let Some(before) = prev.get(&key)
                    && t > *t0
                {
                    let dt = t - t0;
                    let host_ns = delta(*host0, host_ticks) as f64 / self.hz * 1e9;
                    if host_ns > 0.0 {
                        let used_ns = delta(before.usage_usec, p.usage_usec) as f64 * 1000.0;
                        out.push_dims(
                            "container.cpu.utilization_perc",
                            &dims,
                            round(used_ns / host_ns * ncpu * 100.0, 2),
                        );
                    }
                    let tick_rate = |a: u64, b: u64| (delta(a, b) as f64 / 1e6 * self.hz) / dt;
                    out.push_dims(
                        "container.cpu.user_time_sec",
                        &dims,
                        tick_rate(before.user_usec, p.user_usec),
                    );
                    out.push_dims(
                        "container.cpu.system_time_sec",
                        &dims,
                        tick_rate(before.system_usec, p.system_usec),
                    );
                }
            }
            let current = super::read_number(&dir.join("memory.current"));
            let swap = super::read_number(&dir.join("memory.swap.current"));
            if let Some(c) = current {
                out.push_dims("container.mem.used_bytes", &dims, c as f64);
            }
            if let Ok(text) = super::read_capped(&dir.join("memory.stat")) {
                let k = keyed(&text);
                let anon = k.get("anon").copied().unwrap_or(0);
                let file = k.get("file").copied().unwrap_or(0);
                out.push_dims("container.mem.rss", &dims, anon as f64);
                out.push_dims("container.mem.cache", &dims, file as f64);
                if let Some(s) = swap {
                    out.push_dims("container.mem.swap", &dims, s as f64);
                }
                // "max" (no limit) reads as not-a-number, i.e. the host's memory.
                let limit = super::read_number(&dir.join("memory.max"))
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(u64::MAX)
                    .min(mem_total);
                if limit > 0 && limit != u64::MAX {
                    let used = (anon + file + swap.unwrap_or(0).max(0) as u64) as f64;
                    out.push_dims(
                        "container.mem.used_perc",
                        &dims,
                        round(used / limit as f64 * 100.0, 2),
                    );
                }
            }
            let pid = super::read_capped(&dir.join("cgroup.procs"))
                .ok()
                .and_then(|s| s.split_ascii_whitespace().next().map(str::to_owned));
            if let Some(pid) = pid
                && pid.bytes().all(|b| b.is_ascii_digit())
                && let Ok(text) = super::read_capped(&self.roots.proc(&format!("{pid}/net/dev")))
            {
                let (ifaces, _) = super::net::parse_net_dev(&text);
                for (ifname, c) in ifaces.into_iter().filter(|(n, _)| n != "lo") {
                    if let Some((t0, _, prev)) = &self.prev
                        && let Some(before) = prev.get(&key).and_then(|p| p.net.get(&ifname))
                        && t > *t0
                    {
                        let dt = t - t0;
                        let d = [("name", name.as_str()), ("interface", ifname.as_str())];
                        let r = |a: u64, b: u64| delta(a, b) as f64 / dt;
                        out.push_dims(
                            "container.net.in_bytes_sec",
                            &d,
                            r(before.rx_bytes, c.rx_bytes),
                        );
                        out.push_dims(
                            "container.net.out_bytes_sec",
                            &d,
                            r(before.tx_bytes, c.tx_bytes),
                        );
                        out.push_dims(
                            "container.net.in_packets_sec",
                            &d,
                            r(before.rx_packets, c.rx_packets),
                        );
                        out.push_dims(
                            "container.net.out_packets_sec",
                            &d,
                            r(before.tx_packets, c.tx_packets),
                        );
                    }
                    p.net.insert(ifname, c);
                }
            }
            now_prev.insert(key, p);
        }
        self.prev = Some((t, host_ticks, now_prev));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    fn of(out: &Out, name: &str) -> Vec<(String, f64)> {
        out.values
            .iter()
            .filter(|v| v.1.first().is_some_and(|d| d.1 == name))
            .map(|v| (v.0.clone(), v.2))
            .collect()
    }

    #[test]
    fn a_container_and_a_service() {
        let mut g = Containers::new(roots("a"), &ProbesConfig::default()).with_hz(100.0);
        let mut first = Out::default();
        g.sample(0.0, &mut first).unwrap();
        assert!(
            first
                .names()
                .iter()
                .all(|n| !n.ends_with("_sec") && !n.ends_with("utilization_perc"))
        );
        g.roots = roots("b");
        let mut out = Out::default();
        g.sample(10.0, &mut out).unwrap();
        let n = |s: &str, v: f64| (s.to_string(), v);
        assert_eq!(
            of(&out, "0123456789ab"),
            [
                n("container.cpu.user_time", 360.0),
                n("container.cpu.system_time", 240.0),
                n("container.cpu.utilization_perc", 52.63),
                n("container.cpu.user_time_sec", 30.0),
                n("container.cpu.system_time_sec", 20.0),
                n("container.mem.used_bytes", 104857600.0),
                n("container.mem.rss", 52428800.0),
                n("container.mem.cache", 41943040.0),
                n("container.mem.swap", 0.0),
                n("container.mem.used_perc", 45.0),
                n("container.net.in_bytes_sec", 1000.0),
                n("container.net.out_bytes_sec", 500.0),
                n("container.net.in_packets_sec", 1.0),
                n("container.net.out_packets_sec", 1.0),
            ]
        );
        let net: Vec<_> = out
            .values
            .iter()
            .filter(|v| v.0 == "container.net.in_bytes_sec")
            .collect();
        assert_eq!(net[0].1[1], ("interface", "eth0".to_string()));
        let nginx = of(&out, "nginx.service");
        assert!(
            nginx.contains(&n("container.mem.used_perc", 0.02)),
            "no limit: the host's memory"
        );
        assert!(
            !of(&out, "empty.scope").iter().any(|_| true),
            "a group without processes is no container"
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    #[test]
    fn bounded_by_max_containers() {
        let c = ProbesConfig {
            max_containers: 1,
            ..Default::default()
        };
        let mut out = Out::default();
        Containers::new(roots("a"), &c)
            .sample(0.0, &mut out)
            .unwrap();
        assert_eq!(out.errors[0].reason, "limit");
        let names: std::collections::BTreeSet<_> =
            out.values.iter().map(|v| v.1[0].1.clone()).collect();
        assert_eq!(names.len(), 1);
        assert_eq!(
            container_name(Path::new("/x/cri-containerd-abcdefabcdef0123.scope")),
            "abcdefabcdef"
        );
        assert_eq!(
            container_name(Path::new("/x/docker-xyz.scope")),
            "docker-xyz.scope"
        );
        let e = Containers::new(roots("old"), &ProbesConfig::default())
            .sample(0.0, &mut Out::default())
            .unwrap_err();
        assert_eq!(
            e.reason, "read",
            "a tree without cgroup.controllers is not cgroup v2"
        );
    }
}
