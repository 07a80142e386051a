//! `kind: process` (monasca-agent `process`, `probes.md` §7.5): `process.pid_count` and, with
//! `detailed`, the matched processes' threads, CPU, memory, descriptors and I/O, summed.
//!
//! Owns: one scan of `<proc_path>` per run (on a blocking thread), matching by user or by
//! name/command line with psutil's semantics, and the previous CPU times of the matched pids
//! (replaced each run, so bounded by the live matched pids).
//! Must never: hold a `/proc/<pid>` descriptor past that pid's turn in the scan (with
//! `All`, thousands of them would exhaust the open-files limit), read more than
//! [`CMDLINE_MAX`] of a command line or [`PASSWD_MAX`] of `/etc/passwd`, or fail a run
//! because a process vanished or denied a read mid-scan (it is skipped).

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::ProcessCheck;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most bytes of `/proc/<pid>/cmdline` read (the kernel's own per-argument limit is 128 KiB);
/// a substring beyond it is not seen.
pub const CMDLINE_MAX: u64 = 256 * 1024;
/// Most bytes of `/etc/passwd` read to resolve `user`.
pub const PASSWD_MAX: u64 = 8 << 20;
const PASSWD: &str = "/etc/passwd";

pub struct ProcessProbe {
    name: String,
    user: String,
    detailed: bool,
    scan: Arc<Scan>,
}

/// What the blocking scan needs; shared with the blocking thread of a run still going.
struct Scan {
    proc_path: PathBuf,
    matcher: Matcher,
    detailed: bool,
    /// Per pid: (start time, utime + stime ticks, when read), from the last run.
    prev: Mutex<HashMap<i32, (u64, u64, Instant)>>,
    ticks_per_second: f64,
    page_size: u64,
}

enum Matcher {
    /// A name in `/etc/passwd`, or a uid; matched against the real uid.
    User(String),
    Search {
        terms: Vec<String>,
        all: bool,
        exact: bool,
    },
}

/// The sums of one run; `None`: no pid contributed.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    pids: usize,
    threads: Option<f64>,
    cpu_perc: Option<f64>,
    rss_mbytes: Option<f64>,
    fds: Option<f64>,
    io: Option<[f64; 4]>,
}

fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v);
}

impl ProcessProbe {
    pub fn new(c: &ProcessCheck, name: &str, ctx: &Context) -> anyhow::Result<Self> {
        let matcher = if c.user.is_empty() {
            Matcher::Search {
                terms: c.search.clone(),
                all: c.search.iter().any(|s| s == "All"),
                exact: c.exact,
            }
        } else {
            Matcher::User(c.user.clone())
        };
        Ok(ProcessProbe {
            name: name.to_owned(),
            user: c.user.clone(),
            detailed: c.detailed,
            scan: Arc::new(Scan {
                proc_path: ctx.proc_path.clone(),
                matcher,
                detailed: c.detailed,
                prev: Mutex::new(HashMap::new()),
                ticks_per_second: crate::sys::clock_ticks_per_second() as f64,
                page_size: procfs::page_size(),
            }),
        })
    }

    fn samples(&self, t: &Totals) -> Vec<Sample> {
        let sample = |name: &str, v: f64| {
            let s = Sample::new(name, v).dim("process_name", &self.name);
            if self.user.is_empty() {
                s
            } else {
                s.dim("process_user", &self.user)
            }
        };
        let mut out = vec![sample("process.pid_count", t.pids as f64)];
        if !self.detailed {
            return out;
        }
        let optional = [
            ("process.thread_count", t.threads),
            ("process.cpu_perc", t.cpu_perc),
            ("process.mem.rss_mbytes", t.rss_mbytes),
            ("process.open_file_descriptors", t.fds),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(n, v)| v.map(|v| sample(n, v))),
        );
        if let Some([rc, wc, rk, wk]) = t.io {
            out.push(sample("process.io.read_count", rc));
            out.push(sample("process.io.write_count", wc));
            out.push(sample("process.io.read_kbytes", rk));
            out.push(sample("process.io.write_kbytes", wk));
        }
        out
    }
}

impl Check for ProcessProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        let scan = Arc::clone(&self.scan);
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || scan.run()).await {
                Ok(Ok(totals)) => Report::ok(self.samples(&totals)),
                Ok(Err(e)) => {
                    tracing::warn!(check = %self.name, "process check cannot list processes: {e}");
                    Report::failed(Vec::new())
                }
                Err(e) => {
                    tracing::warn!(check = %self.name, "process scan failed: {e}");
                    Report::failed(Vec::new())
                }
            }
        })
    }

    fn timed_out(&mut self, _timeout: Duration) -> Vec<Sample> {
        Vec::new()
    }
}

impl Scan {
    fn run(&self) -> procfs::ProcResult<Totals> {
        let uid = match &self.matcher {
            Matcher::User(u) => match resolve_user(u) {
                Some(uid) => Some(uid),
                // An unknown user owns no process (psutil would match nothing either).
                None => return Ok(Totals::default()),
            },
            Matcher::Search { .. } => None,
        };
        let mut totals = Totals::default();
        let mut seen = HashSet::new();
        // Built fresh, so pids that ended (or stopped matching) leave the map.
        let mut next = HashMap::new();
        let prev = self
            .prev
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for proc in procfs::process::all_processes_with_root(&self.proc_path)? {
            // Vanished or denied mid-scan: skipped, as psutil's NoSuchProcess/AccessDenied.
            let Ok(proc) = proc else { continue };
            let dir = self.proc_path.join(proc.pid.to_string());
            let mut stat = None;
            let mut status = None;
            let matched = match &self.matcher {
                Matcher::User(_) => match proc.status() {
                    Ok(s) => {
                        let m = Some(s.ruid) == uid;
                        status = Some(s);
                        m
                    }
                    Err(_) => continue,
                },
                Matcher::Search { all: true, .. } => true,
                Matcher::Search { terms, exact, .. } => {
                    if *exact {
                        let Ok(s) = proc.stat() else { continue };
                        let name = psutil_name(&s.comm, || read_cmdline(&dir));
                        stat = Some(s);
                        terms.contains(&name)
                    } else {
                        let Some(cmdline) = read_cmdline(&dir) else {
                            continue;
                        };
                        let joined = cmdline.join(" ");
                        terms.iter().any(|t| joined.contains(t.as_str()))
                    }
                }
            };
            if !matched || !seen.insert(proc.pid) {
                continue;
            }
            totals.pids += 1;
            if !self.detailed {
                continue;
            }
            if status.is_none() {
                status = proc.status().ok();
            }
            if let Some(s) = &status {
                add(&mut totals.threads, s.threads as f64);
            }
            if stat.is_none() {
                stat = proc.stat().ok();
            }
            if let Some(s) = &stat {
                let ticks = s.utime.saturating_add(s.stime);
                let now = Instant::now();
                if let Some(&(start, before, at)) = prev.get(&proc.pid)
                    && start == s.starttime
                {
                    let dt = now.duration_since(at).as_secs_f64();
                    let used = ticks.saturating_sub(before) as f64 / self.ticks_per_second;
                    add(&mut totals.cpu_perc, cpu_percent(used, dt));
                }
                next.insert(proc.pid, (s.starttime, ticks, now));
            }
            if let Ok(m) = proc.statm() {
                add(
                    &mut totals.rss_mbytes,
                    (m.resident * self.page_size) as f64 / 1_048_576.0,
                );
            }
            if let Ok(n) = proc.fd_count() {
                add(&mut totals.fds, n as f64);
            }
            if let Ok(io) = proc.io() {
                let sum = totals.io.get_or_insert([0.0; 4]);
                sum[0] += io.syscr as f64;
                sum[1] += io.syscw as f64;
                sum[2] += io.read_bytes as f64 / 1024.0;
                sum[3] += io.write_bytes as f64 / 1024.0;
            }
        }
        if let Ok(mut p) = self.prev.lock() {
            *p = next;
        }
        Ok(totals)
    }
}

/// psutil's `cpu_percent(None)` of one process: CPU seconds used over wall seconds, in
/// percent of one core, rounded to one decimal.
fn cpu_percent(used_secs: f64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    (used_secs / wall_secs * 100.0 * 10.0).round() / 10.0
}

/// psutil's `Process.name()`: `comm`, unless the kernel truncated it (15 characters) and
/// the basename of the first argument starts with it, in which case that basename.
fn psutil_name(comm: &str, cmdline: impl FnOnce() -> Option<Vec<String>>) -> String {
    if comm.chars().count() >= 15
        && let Some(first) = cmdline().and_then(|c| c.into_iter().next())
    {
        let base = first.rsplit('/').next().unwrap_or_default();
        if base.starts_with(comm) {
            return base.to_owned();
        }
    }
    comm.to_owned()
}

/// `/proc/<pid>/cmdline` as psutil splits it; `None` when unreadable.
fn read_cmdline(dir: &Path) -> Option<Vec<String>> {
    let mut data = Vec::new();
    std::fs::File::open(dir.join("cmdline"))
        .ok()?
        .take(CMDLINE_MAX)
        .read_to_end(&mut data)
        .ok()?;
    Some(split_cmdline(&String::from_utf8_lossy(&data)))
}

/// psutil's split: NUL-separated; a process that rewrote its title with spaces (no final
/// NUL, or one NUL-terminated string holding spaces) is split on spaces.
fn split_cmdline(data: &str) -> Vec<String> {
    if data.is_empty() {
        return Vec::new();
    }
    let sep = if data.ends_with('\0') { '\0' } else { ' ' };
    let data = data.strip_suffix(sep).unwrap_or(data);
    let parts: Vec<String> = data.split(sep).map(str::to_owned).collect();
    if sep == '\0' && parts.len() == 1 && data.contains(' ') {
        return data.split(' ').map(str::to_owned).collect();
    }
    parts
}

/// `user` as a uid: its `/etc/passwd` entry, else the number itself.
fn resolve_user(user: &str) -> Option<u32> {
    let mut text = Vec::new();
    if let Ok(f) = std::fs::File::open(PASSWD) {
        let _ = f.take(PASSWD_MAX).read_to_end(&mut text);
    }
    passwd_uid(&String::from_utf8_lossy(&text), user).or_else(|| user.parse().ok())
}

fn passwd_uid(passwd: &str, user: &str) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != user {
            return None;
        }
        f.nth(1)?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_psutil() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(psutil_name("sleep", || unreachable!()), "sleep");
        let long = "sgchk-a-very-lo";
        assert_eq!(
            psutil_name(long, || Some(args(&[
                "/tmp/x/sgchk-a-very-long-name",
                "30"
            ]))),
            "sgchk-a-very-long-name"
        );
        // The basename must extend comm; otherwise comm stands.
        assert_eq!(
            psutil_name(long, || Some(args(&["/usr/bin/other", "30"]))),
            long
        );
        assert_eq!(psutil_name(long, || None), long);
    }

    #[test]
    fn command_lines_split_as_psutil() {
        assert_eq!(split_cmdline("sleep\x0030\x00"), ["sleep", "30"]);
        assert_eq!(split_cmdline("a\x00\x00b\x00"), ["a", "", "b"]);
        assert_eq!(
            split_cmdline("nginx: worker process"),
            ["nginx:", "worker", "process"]
        );
        assert_eq!(
            split_cmdline("postgres: writer  \x00"),
            ["postgres:", "writer", "", ""]
        );
        assert!(split_cmdline("").is_empty());
    }

    #[test]
    fn passwd_names_resolve_and_cpu_rounds() {
        let p = "root:x:0:0:root:/root:/bin/bash\nbad line\nsvc:x:1001:1001::/:/bin/false\n";
        assert_eq!(passwd_uid(p, "root"), Some(0));
        assert_eq!(passwd_uid(p, "svc"), Some(1001));
        assert_eq!(passwd_uid(p, "nobody"), None);
        assert_eq!(passwd_uid(p, "x"), None);
        assert_eq!(cpu_percent(0.5, 2.0), 25.0);
        assert_eq!(cpu_percent(1.0, 3.0), 33.3);
        assert_eq!(cpu_percent(1.0, 0.0), 0.0);
    }
}
