//! `disk.*` space and inodes per mount and `io.*` per mounted device (probes.md §2.4), plus
//! with `probes.extras` `io.busy_perc` (§6.1).
//!
//! Owns: the mount filter (nodev types, `ignore_filesystem_types`, `device_blacklist_re`), the
//! `statvfs` calls, the previous `/proc/diskstats` counters. Must never: let one hung mount
//! (NFS, FUSE) stall the group: each `statvfs` runs on a helper thread cut at
//! `probes.mount_timeout`, and a mount still hung is skipped (counted) until it answers.
//!
//! Departures from monasca-agent: `io.*` is also sent for LVM/dm mounts (`/dev/mapper/vg-root`
//! is matched to its `dm-N` through `/sys/block/dm-N/dm/name`; the agent silently sent none);
//! `/proc/filesystems` is read under `proc_path` (the agent always read the host path); a mount
//! point listed twice is reported once.

use super::{Group, Out, ProbeError, Roots, delta, round};
use crate::config::ProbesConfig;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const MIB: f64 = 1_048_576.0;

pub use crate::sys::FsStat;

pub type StatFn = Arc<dyn Fn(&Path) -> std::io::Result<FsStat> + Send + Sync>;

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
}

/// The kernel escapes space, tab, newline and backslash in mount fields as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts, skipping lines with fewer than three fields (a truncated read).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            Some(Mount {
                device: unescape(w.next()?),
                mount_point: unescape(w.next()?),
                fstype: w.next()?.to_owned(),
            })
        })
        .collect()
}

/// The `nodev` types of `/proc/filesystems`.
pub fn nodev_types(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nodev"))
        .map(|t| t.trim().to_owned())
        .collect()
}

/// The counters of one `/proc/diskstats` line that `io.*` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Io {
    reads: u64,
    writes: u64,
    sectors_read: u64,
    sectors_written: u64,
    ms_reading: u64,
    ms_writing: u64,
    io_ticks: u64,
}

pub struct Disk {
    roots: Roots,
    statfn: StatFn,
    mount_timeout: Duration,
    ignore_types: Vec<String>,
    blacklist: regex::Regex,
    io_stats: bool,
    rollups: bool,
    use_mount: bool,
    extras: bool,
    /// Mount points whose `statvfs` has not come back yet.
    hung: Arc<Mutex<HashSet<String>>>,
    prev: Option<(f64, HashMap<String, Io>)>,
}

impl Disk {
    pub fn new(roots: Roots, c: &ProbesConfig) -> anyhow::Result<Self> {
        let blacklist = crate::config::prefix_regex(&c.device_blacklist_re)
            .map_err(|e| anyhow::anyhow!("probes.device_blacklist_re: {e}"))?;
        Ok(Disk {
            roots,
            statfn: Arc::new(crate::sys::statvfs),
            mount_timeout: c.mount_timeout.get(),
            ignore_types: c.ignore_filesystem_types.clone(),
            blacklist,
            io_stats: c.send_io_stats,
            rollups: c.send_rollup_stats,
            use_mount: c.use_mount,
            extras: c.extras,
            hung: Arc::default(),
            prev: None,
        })
    }

    pub fn with_statfn(mut self, f: StatFn) -> Self {
        self.statfn = f;
        self
    }

    /// The mounts monasca-agent reports.
    fn mounts(&self) -> Result<Vec<Mount>, ProbeError> {
        let path = self.roots.proc("self/mounts");
        let mounts = parse_mounts(&super::read_capped(&path)?);
        let nodev = super::read_capped(&self.roots.proc("filesystems"))
            .map(|t| nodev_types(&t))
            .unwrap_or_default();
        let mut seen = HashSet::new();
        Ok(mounts
            .into_iter()
            .filter(|m| {
                !nodev.contains(&m.fstype)
                    && !self.ignore_types.contains(&m.fstype)
                    && !self.blacklist.is_match(&m.device)
                    && seen.insert(m.mount_point.clone())
            })
            .collect())
    }

    /// `statvfs` on a helper thread, cut at the mount timeout.
    fn stat(&self, mount_point: &str) -> Result<FsStat, ProbeError> {
        {
            let hung = self.hung.lock().unwrap_or_else(|p| p.into_inner());
            if hung.contains(mount_point) {
                return Err(ProbeError {
                    reason: "timeout",
                    detail: format!("statvfs {mount_point}: still hung from an earlier sample"),
                });
            }
        }
        // Marked hung before the call; the helper unmarks the mount when statvfs returns, so a
        // late answer frees it whatever the timing.
        self.hung
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mount_point.to_owned());
        let (tx, rx) = mpsc::channel();
        let (f, mp, hung) = (
            Arc::clone(&self.statfn),
            mount_point.to_owned(),
            Arc::clone(&self.hung),
        );
        let spawned = std::thread::Builder::new()
            .name("probe-statvfs".into())
            .spawn(move || {
                let r = f(Path::new(&mp));
                hung.lock().unwrap_or_else(|p| p.into_inner()).remove(&mp);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.hung
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(mount_point);
            return Err(ProbeError::read(Path::new(mount_point), e));
        }
        match rx.recv_timeout(self.mount_timeout) {
            Ok(r) => r.map_err(|e| ProbeError::read(Path::new(mount_point), e)),
            Err(_) => Err(ProbeError {
                reason: "timeout",
                detail: format!(
                    "statvfs {mount_point}: no answer in {:?}",
                    self.mount_timeout
                ),
            }),
        }
    }

    fn diskstats(&self, out: &mut Out) -> HashMap<String, Io> {
        let path = self.roots.proc("diskstats");
        let text = match super::read_capped(&path) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(e);
                return HashMap::new();
            }
        };
        let mut map = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match procfs::DiskStat::from_line(line) {
                Ok(d) => {
                    map.insert(
                        d.name.clone(),
                        Io {
                            reads: d.reads,
                            writes: d.writes,
                            sectors_read: d.sectors_read,
                            sectors_written: d.sectors_written,
                            ms_reading: d.time_reading,
                            ms_writing: d.time_writing,
                            io_ticks: d.time_in_progress,
                        },
                    );
                }
                Err(e) => out.errors.push(ProbeError::parse(&path, e)),
            }
        }
        map
    }

    /// `vg-root` → `dm-0`, from `/sys/block/dm-*/dm/name`.
    fn dm_names(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        let Ok(dir) = std::fs::read_dir(self.roots.sys("block")) else {
            return map;
        };
        for e in dir.flatten().take(4096) {
            let kernel = e.file_name().to_string_lossy().into_owned();
            if !kernel.starts_with("dm-") {
                continue;
            }
            if let Ok(name) = super::read_capped(&e.path().join("dm/name")) {
                map.insert(name.trim().to_owned(), kernel);
            }
        }
        map
    }
}

fn basename(device: &str) -> &str {
    device.rsplit('/').next().unwrap_or(device)
}

impl Group for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn sample(&mut self, t: f64, out: &mut Out) -> Result<(), ProbeError> {
        let mounts = self.mounts()?;
        let (mut total, mut used_total) = (0.0, 0.0);
        let io_now = if self.io_stats {
            self.diskstats(out)
        } else {
            HashMap::new()
        };
        let dm = if self.io_stats && !io_now.is_empty() {
            self.dm_names()
        } else {
            HashMap::new()
        };
        for m in &mounts {
            let device = basename(&m.device);
            let mut dims: Vec<(&'static str, &str)> = vec![("device", device)];
            if self.use_mount {
                dims.push(("mount_point", &m.mount_point));
            }
            match self.stat(&m.mount_point) {
                Ok(s) => {
                    let used = s.blocks.saturating_sub(s.bfree) as f64 * s.frsize as f64;
                    let avail = s.bavail as f64 * s.frsize as f64;
                    let size = s.blocks as f64 * s.frsize as f64;
                    let pct = if used + avail > 0.0 {
                        round(used / (used + avail) * 100.0, 1)
                    } else {
                        0.0
                    };
                    out.push_dims("disk.space_used_perc", &dims, pct);
                    if s.files > 0 {
                        let iu = s.files.saturating_sub(s.ffree) as f64 / s.files as f64 * 100.0;
                        out.push_dims("disk.inode_used_perc", &dims, round(iu, 2));
                    }
                    total += size;
                    used_total += used;
                }
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            }
            let Some((t0, prev)) = &self.prev else {
                continue;
            };
            let dt = t - t0;
            let kernel = if io_now.contains_key(device) {
                device
            } else {
                match dm.get(device) {
                    Some(k) => k.as_str(),
                    None => continue,
                }
            };
            let (Some(now), Some(before)) = (io_now.get(kernel), prev.get(kernel)) else {
                continue;
            };
            if dt <= 0.0 {
                continue;
            }
            let rate = |a: u64, b: u64| delta(a, b) as f64 / dt;
            let kib = |a: u64, b: u64| round(delta(a, b) as f64 * 512.0 / 1024.0, 2) / dt;
            out.push_dims("io.read_req_sec", &dims, rate(before.reads, now.reads));
            out.push_dims("io.write_req_sec", &dims, rate(before.writes, now.writes));
            out.push_dims(
                "io.read_kbytes_sec",
                &dims,
                kib(before.sectors_read, now.sectors_read),
            );
            out.push_dims(
                "io.write_kbytes_sec",
                &dims,
                kib(before.sectors_written, now.sectors_written),
            );
            out.push_dims(
                "io.read_time_sec",
                &dims,
                rate(before.ms_reading, now.ms_reading) / 1000.0,
            );
            out.push_dims(
                "io.write_time_sec",
                &dims,
                rate(before.ms_writing, now.ms_writing) / 1000.0,
            );
            if self.extras {
                let busy = (rate(before.io_ticks, now.io_ticks) / 10.0).min(100.0);
                out.push_dims("io.busy_perc", &dims, round(busy, 2));
            }
        }
        if self.rollups {
            out.push("disk.total_space_mb", total / MIB);
            out.push("disk.total_used_space_mb", used_total / MIB);
        }
        if self.io_stats {
            self.prev = Some((t, io_now));
        }
        Ok(())
    }
}

/// Mount points to their fixture `statvfs` answers; `None` hangs 400 ms the first time, then
/// answers at once.
#[cfg(test)]
pub(crate) fn fake_statfn(
    table: std::collections::BTreeMap<&'static str, Option<FsStat>>,
) -> StatFn {
    let hung_once = std::sync::atomic::AtomicBool::new(false);
    Arc::new(move |p: &Path| match table.get(p.to_str().unwrap_or("")) {
        Some(Some(s)) => Ok(*s),
        Some(None) => {
            if !hung_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(400));
            }
            Ok(FsStat {
                blocks: 10,
                bavail: 10,
                frsize: 4096,
                ..FsStat::default()
            })
        }
        None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::testutil::roots;

    fn fs(blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64) -> Option<FsStat> {
        Some(FsStat {
            blocks,
            bfree,
            bavail,
            frsize: 4096,
            files,
            ffree,
        })
    }

    fn table(hang_data: bool) -> StatFn {
        fake_statfn(std::collections::BTreeMap::from([
            ("/", fs(1_000_000, 400_000, 350_000, 100_000, 75_000)),
            ("/srv", fs(1_000_000, 400_000, 350_000, 100_000, 75_000)),
            ("/snap/core/1", fs(100, 0, 0, 10, 0)),
            (
                "/data",
                if hang_data {
                    None
                } else {
                    fs(1000, 500, 500, 0, 0)
                },
            ),
        ]))
    }

    fn by_mount(out: &Out, name: &str) -> Vec<(String, String, f64)> {
        out.values
            .iter()
            .filter(|v| v.0 == name)
            .map(|v| {
                let get = |k: &str| {
                    v.1.iter()
                        .find(|d| d.0 == k)
                        .map(|d| d.1.clone())
                        .unwrap_or_default()
                };
                (get("device"), get("mount_point"), v.2)
            })
            .collect()
    }

    #[test]
    fn mounts_space_inodes_and_io_rates() {
        let c = ProbesConfig {
            extras: true,
            send_rollup_stats: true,
            ..Default::default()
        };
        let mut g = Disk::new(roots("a"), &c).unwrap().with_statfn(table(false));
        let mut first = Out::default();
        g.sample(0.0, &mut first).unwrap();
        let s = |d: &str, m: &str, v: f64| (d.to_string(), m.to_string(), v);
        assert_eq!(
            by_mount(&first, "disk.space_used_perc"),
            [
                s("sda1", "/", 63.2),
                s("sda1", "/srv", 63.2),
                s("loop0", "/snap/core/1", 100.0),
                s("vg-root", "/data", 50.0),
            ],
            "tmpfs, proc, nfs4 (nodev), iso9660 and the blacklisted device are left out; the bind mount is its own series"
        );
        assert_eq!(
            by_mount(&first, "disk.inode_used_perc"),
            [
                s("sda1", "/", 25.0),
                s("sda1", "/srv", 25.0),
                s("loop0", "/snap/core/1", 100.0)
            ],
            "no inode metric when f_files is 0"
        );
        assert!(
            first.names().iter().all(|n| !n.starts_with("io.")),
            "no rates on the first sample"
        );
        let total = (2_000_000.0 + 100.0 + 1000.0) * 4096.0 / MIB;
        assert_eq!(first.value("disk.total_space_mb"), Some(total));

        g.roots = roots("b");
        let mut out = Out::default();
        g.sample(10.0, &mut out).unwrap();
        assert_eq!(
            by_mount(&out, "io.read_req_sec"),
            [
                s("sda1", "/", 10.0),
                s("sda1", "/srv", 10.0),
                s("loop0", "/snap/core/1", 1.0),
                s("vg-root", "/data", 10.0)
            ]
        );
        assert_eq!(by_mount(&out, "io.write_req_sec")[0].2, 20.0);
        assert_eq!(by_mount(&out, "io.read_kbytes_sec")[0].2, 102.4);
        assert_eq!(by_mount(&out, "io.write_kbytes_sec")[0].2, 204.8);
        assert_eq!(by_mount(&out, "io.read_time_sec")[0].2, 0.05);
        assert_eq!(by_mount(&out, "io.write_time_sec")[0].2, 0.1);
        assert_eq!(by_mount(&out, "io.busy_perc")[0].2, 25.0);
        assert_eq!(
            by_mount(&out, "io.busy_perc")[3].2,
            10.0,
            "dm-0 through its dm name"
        );
    }

    #[test]
    fn a_hung_mount_is_cut_skipped_and_the_rest_reported() {
        let c = ProbesConfig {
            mount_timeout: crate::config::Duration::millis(100),
            ..Default::default()
        };
        let mut g = Disk::new(roots("a"), &c).unwrap().with_statfn(table(true));
        let started = std::time::Instant::now();
        let mut out = Out::default();
        g.sample(0.0, &mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(by_mount(&out, "disk.space_used_perc").len(), 3);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].reason, "timeout");
        // Still hung: skipped at once, without a new thread.
        let started = std::time::Instant::now();
        let mut out = Out::default();
        g.sample(1.0, &mut out).unwrap();
        assert!(started.elapsed() < Duration::from_millis(90));
        assert_eq!(out.errors[0].reason, "timeout");
        // Once it answers, it is reported again.
        std::thread::sleep(Duration::from_millis(400));
        let mut out = Out::default();
        g.sample(2.0, &mut out).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(by_mount(&out, "disk.space_used_perc").len(), 4);
    }

    #[test]
    fn hostile_and_old_files() {
        assert_eq!(
            parse_mounts("a\nx /b ext4\n/dev/x /a\\040b xfs rw 0 0\n").len(),
            2
        );
        assert_eq!(
            parse_mounts("/dev/x /a\\040b xfs rw 0 0\n")[0].mount_point,
            "/a b"
        );
        assert_eq!(unescape("\\04"), "\\04");
        let c = ProbesConfig::default();
        let g = Disk::new(roots("old"), &c).unwrap();
        let mut out = Out::default();
        let io = g.diskstats(&mut out);
        assert_eq!(
            io["sda"].io_ticks, 6000,
            "the 14-field layout of kernels before 4.18"
        );
        assert_eq!(out.errors.len(), 1, "a bad line is counted, the rest read");
        let g = Disk::new(roots("real"), &c).unwrap();
        let mut out = Out::default();
        assert!(!g.diskstats(&mut out).is_empty());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(!g.mounts().unwrap().is_empty());
    }
}
