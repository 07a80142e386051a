//! Probes: the node's own metrics (CPU, memory, load, disk, network, Rainbow's extras, cgroup v2
//! containers) under monasca-agent's exact names (`reference/probes.md`), read straight from
//! `/proc`, `/sys` and the cgroup tree and delivered through the passthrough, so they share the
//! flush, batch, forward and spool path of every other metric.
//!
//! Owns: the schedule (one runner thread, a period per group), each group's previous sample
//! (for `_sec` rates), the error and duration counters ([`ProbeStats`]).
//! Must never: run on a reader thread, block the runner on a slow read (each group samples on a
//! helper thread and is cut at `probes.timeout`), shell out, trust a file's contents (every read
//! is size-capped and every parse is checked), or send a metric that fails Monasca validation.

pub mod container;
pub mod cpu;
pub mod disk;
pub mod load;
pub mod mem;
pub mod net;
pub mod system;

use crate::config::ProbesConfig;
use crate::metric::Metric;
use crate::passthrough::Passthrough;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every group, in sampling order; also the `group` label values (the config checks names
/// against the same list).
pub const GROUPS: [&str; 7] = crate::config::PROBE_GROUPS;
/// The `reason` label values of `statsgate_probe_errors_total`.
pub const REASONS: [&str; 6] = ["read", "parse", "timeout", "invalid", "dropped", "limit"];

/// Largest file a probe reads; the rest is ignored (a pathological `/proc/self/mounts` or
/// `/proc/net/dev` must not cost the gateway memory).
pub const MAX_FILE: u64 = 4 << 20;

/// Where the trees live, so a containerised gateway reads the host's and tests read fixtures.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub cgroup: PathBuf,
}

impl Roots {
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}

/// One failed read or parse; `reason` is one of [`REASONS`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeError {
    pub reason: &'static str,
    pub detail: String,
}

impl ProbeError {
    pub fn read(path: &Path, e: std::io::Error) -> Self {
        ProbeError {
            reason: "read",
            detail: format!("{}: {e}", path.display()),
        }
    }
    pub fn parse(path: &Path, what: impl std::fmt::Display) -> Self {
        ProbeError {
            reason: "parse",
            detail: format!("{}: {what}", path.display()),
        }
    }
}

/// Reads a whole file up to [`MAX_FILE`]; invalid UTF-8 is replaced, never trusted.
pub fn read_capped(path: &Path) -> Result<String, ProbeError> {
    let f = std::fs::File::open(path).map_err(|e| ProbeError::read(path, e))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut buf)
        .map_err(|e| ProbeError::read(path, e))?;
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A single number from a one-value file (`/sys/class/net/eth0/speed`, `memory.current`).
pub fn read_number(path: &Path) -> Option<i64> {
    read_capped(path).ok()?.trim().parse().ok()
}

/// The change of a monotonic kernel counter. A decrease is a wrap or a reset (a driver reload,
/// a re-created cgroup): as psutil's `nowrap`, count from zero rather than send a negative rate.
pub fn delta(prev: u64, now: u64) -> u64 {
    if now >= prev { now - prev } else { now }
}

/// `round(x, digits)` as Python rounds for display (half away from zero is close enough at
/// the precisions used here: 1–3 decimals of a ratio).
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// (name, probe dimensions, value).
pub type Value = (String, Vec<(&'static str, String)>, f64);

/// What a group produced in one sample: values (name, probe dimensions, value) and the errors
/// it met on the way (a group can be partly read: one mount timed out, the others answered).
#[derive(Debug, Default)]
pub struct Out {
    pub values: Vec<Value>,
    pub errors: Vec<ProbeError>,
}

impl Out {
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        self.values.push((name.into(), Vec::new(), value));
    }
    pub fn push_dims(
        &mut self,
        name: impl Into<String>,
        dims: &[(&'static str, &str)],
        value: f64,
    ) {
        let dims = dims.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.values.push((name.into(), dims, value));
    }
    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|v| v.0 == name).map(|v| v.2)
    }
    pub fn names(&self) -> Vec<&str> {
        self.values.iter().map(|v| v.0.as_str()).collect()
    }
}

/// One metric group: reads its files and keeps the previous sample for rates.
pub trait Group: Send + 'static {
    fn name(&self) -> &'static str;
    /// `t`: seconds on a monotonic clock (tests pass fixed values, so rates are exact).
    /// A fatal error (the group's main file unreadable) is returned; partial ones go to `out`.
    fn sample(&mut self, t: f64, out: &mut Out) -> Result<(), ProbeError>;
}

/// The counters `/metrics` renders; shared with the telemetry.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// `[group][reason]`, indexed as [`GROUPS`] × [`REASONS`].
    pub errors: [[AtomicU64; REASONS.len()]; GROUPS.len()],
    /// Metrics handed to the passthrough, per group.
    pub metrics: [AtomicU64; GROUPS.len()],
    /// Duration of the group's last sample, microseconds.
    pub duration_us: [AtomicU64; GROUPS.len()],
    /// Samples taken, per group.
    pub samples: [AtomicU64; GROUPS.len()],
}

impl ProbeStats {
    pub fn count_error(&self, group: &str, reason: &str) {
        if let (Some(g), Some(r)) = (
            GROUPS.iter().position(|x| *x == group),
            REASONS.iter().position(|x| *x == reason),
        ) {
            self.errors[g][r].fetch_add(1, Relaxed);
        }
    }
    pub fn errors_of(&self, group: &str, reason: &str) -> u64 {
        match (
            GROUPS.iter().position(|x| *x == group),
            REASONS.iter().position(|x| *x == reason),
        ) {
            (Some(g), Some(r)) => self.errors[g][r].load(Relaxed),
            _ => 0,
        }
    }
    fn index(group: &str) -> Option<usize> {
        GROUPS.iter().position(|x| *x == group)
    }
}

/// Turns a group's values into validated Metrics: default dimensions first (hostname included),
/// then the probe's own (`device`, `mount_point`, … win over a default of the same key, as in
/// monasca-agent). An invalid one is dropped and counted.
pub fn to_metrics(
    group: &str,
    out: &Out,
    defaults: &[(String, String)],
    timestamp: u64,
    stats: &ProbeStats,
) -> Vec<Metric> {
    let mut metrics = Vec::with_capacity(out.values.len());
    for (name, dims, value) in &out.values {
        let mut dimensions: BTreeMap<String, String> = defaults.iter().cloned().collect();
        for (k, v) in dims {
            dimensions.insert((*k).to_owned(), v.clone());
        }
        let ok = value.is_finite()
            && crate::validate::name(name).is_ok()
            && dimensions.iter().all(|(k, v)| {
                crate::validate::dimension_key(k).is_ok()
                    && crate::validate::dimension_value(v).is_ok()
            });
        if !ok {
            stats.count_error(group, "invalid");
            continue;
        }
        metrics.push(Metric {
            name: name.clone(),
            dimensions,
            timestamp,
            value: *value,
            value_meta: None,
        });
    }
    metrics
}

/// The groups the config enables, over `roots`.
pub fn build_groups(c: &ProbesConfig) -> anyhow::Result<Vec<(Box<dyn Group>, Duration)>> {
    let roots = Roots {
        proc: PathBuf::from(&c.proc_path),
        sys: PathBuf::from(&c.sys_path),
        cgroup: PathBuf::from(&c.cgroup_path),
    };
    let mut groups: Vec<(Box<dyn Group>, Duration)> = Vec::new();
    for name in GROUPS {
        if c.disabled_groups.iter().any(|g| g == name) {
            continue;
        }
        let g: Box<dyn Group> = match name {
            "cpu" => Box::new(cpu::Cpu::new(roots.clone(), c)),
            "mem" => Box::new(mem::Mem::new(roots.clone()).with_extras(c.extras)),
            "load" => Box::new(load::Load::new(roots.clone())),
            "disk" => Box::new(disk::Disk::new(roots.clone(), c)?),
            "net" => Box::new(net::Net::new(roots.clone(), c)?),
            "system" => Box::new(system::System::new(roots.clone())),
            _ => Box::new(container::Containers::new(roots.clone(), c)),
        };
        let period = c.periods.get(name).copied().unwrap_or(c.period).get();
        groups.push((g, period));
    }
    Ok(groups)
}

/// The running probes (or, with `probes.enabled: false`, none); [`ProbesHandle::stop`] ends
/// the runner.
pub struct ProbesHandle {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<ProbeStats>,
}

impl ProbesHandle {
    /// Whether a runner thread is collecting.
    pub fn running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops the runner and joins it (at once: it waits on this channel); a group still
    /// sampling on its helper thread is left to finish alone (it holds nothing the gateway
    /// needs, and its result goes nowhere).
    pub fn stop(self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

/// Starts the runner thread when `probes.enabled`; disabled, the handle runs nothing.
pub fn start(
    section: &ProbesConfig,
    defaults: Vec<(String, String)>,
    passthrough: Arc<Passthrough>,
) -> anyhow::Result<ProbesHandle> {
    let stats = Arc::new(ProbeStats::default());
    let (stop, stop_rx) = mpsc::channel();
    if !section.enabled {
        return Ok(ProbesHandle {
            stop,
            thread: None,
            stats,
        });
    }
    let groups = build_groups(section)?;
    let runner = Runner::new(
        groups,
        section.timeout.get(),
        defaults,
        passthrough,
        Arc::clone(&stats),
    );
    let thread = std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || runner.run(stop_rx))?;
    Ok(ProbesHandle {
        stop,
        thread: Some(thread),
        stats,
    })
}

type Done = (Box<dyn Group>, Out, Result<(), ProbeError>, Duration);

struct Slot {
    name: &'static str,
    /// `None` while a helper thread holds it.
    group: Option<Box<dyn Group>>,
    period: Duration,
    next: Instant,
    pending: Option<(mpsc::Receiver<Done>, Instant)>,
    timed_out: bool,
}

struct Runner {
    slots: Vec<Slot>,
    timeout: Duration,
    defaults: Vec<(String, String)>,
    passthrough: Arc<Passthrough>,
    stats: Arc<ProbeStats>,
    origin: Instant,
    /// Last log time per (group, reason): errors are logged at most once a minute.
    last_log: BTreeMap<(&'static str, &'static str), Instant>,
}

impl Runner {
    fn new(
        groups: Vec<(Box<dyn Group>, Duration)>,
        timeout: Duration,
        defaults: Vec<(String, String)>,
        passthrough: Arc<Passthrough>,
        stats: Arc<ProbeStats>,
    ) -> Self {
        Runner {
            slots: groups
                .into_iter()
                .map(|(g, period)| Slot {
                    name: g.name(),
                    group: Some(g),
                    period,
                    next: Instant::now(),
                    pending: None,
                    timed_out: false,
                })
                .collect(),
            timeout,
            defaults,
            passthrough,
            stats,
            origin: Instant::now(),
            last_log: BTreeMap::new(),
        }
    }

    fn run(mut self, stop: mpsc::Receiver<()>) {
        loop {
            let now = Instant::now();
            for i in 0..self.slots.len() {
                self.poll(i, now);
            }
            let wake = self
                .slots
                .iter()
                .map(|s| {
                    if s.pending.is_some() {
                        now + Duration::from_millis(20)
                    } else {
                        s.next
                    }
                })
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            let wait = wake.saturating_duration_since(Instant::now());
            match stop.recv_timeout(wait.min(Duration::from_secs(1))) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }

    fn poll(&mut self, i: usize, now: Instant) {
        let t = self.origin.elapsed().as_secs_f64();
        let slot = &mut self.slots[i];
        if let Some((rx, since)) = &slot.pending {
            match rx.try_recv() {
                Ok(done) => {
                    slot.pending = None;
                    slot.timed_out = false;
                    self.finish(i, done);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    if !slot.timed_out && since.elapsed() > self.timeout {
                        // Still hung: counted once; the group is not sampled again until it
                        // returns, so a stuck read never piles up threads.
                        slot.timed_out = true;
                        let name = slot.name;
                        self.error(
                            name,
                            &ProbeError {
                                reason: "timeout",
                                detail: format!("still sampling after {:?}", self.timeout),
                            },
                        );
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    // The helper panicked: the group's state is gone; rebuild nothing, count it.
                    slot.pending = None;
                    let name = slot.name;
                    self.error(
                        name,
                        &ProbeError {
                            reason: "read",
                            detail: "sampler panicked; group stopped".into(),
                        },
                    );
                }
            }
            return;
        }
        if now < slot.next {
            return;
        }
        let Some(mut group) = slot.group.take() else {
            return;
        };
        // Keep the phase: the next sample is one period after this one was due.
        slot.next += slot.period;
        if slot.next < now {
            slot.next = now + slot.period;
        }
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("probe-{}", slot.name))
            .spawn(move || {
                let started = Instant::now();
                let mut out = Out::default();
                let r = group.sample(t, &mut out);
                let _ = tx.send((group, out, r, started.elapsed()));
            });
        match spawned {
            Ok(_) => slot.pending = Some((rx, Instant::now())),
            Err(e) => {
                let name = slot.name;
                self.error(
                    name,
                    &ProbeError {
                        reason: "read",
                        detail: format!("cannot start a sampler thread: {e}"),
                    },
                );
            }
        }
    }

    fn finish(&mut self, i: usize, (group, out, result, took): Done) {
        let name = self.slots[i].name;
        self.slots[i].group = Some(group);
        if let Some(g) = ProbeStats::index(name) {
            self.stats.duration_us[g].store(took.as_micros() as u64, Relaxed);
            self.stats.samples[g].fetch_add(1, Relaxed);
        }
        if let Err(e) = &result {
            self.error(name, e);
        }
        for e in &out.errors {
            self.error(name, e);
        }
        let metrics = to_metrics(
            name,
            &out,
            &self.defaults,
            crate::clock::now_ms(),
            &self.stats,
        );
        if metrics.is_empty() {
            return;
        }
        match self.passthrough.push_metrics(&metrics) {
            Ok(()) => {
                if let Some(g) = ProbeStats::index(name) {
                    self.stats.metrics[g].fetch_add(metrics.len() as u64, Relaxed);
                }
            }
            Err(_) => {
                for _ in 0..metrics.len() {
                    self.stats.count_error(name, "dropped");
                }
                self.log_once(name, "dropped", "passthrough full (buffer.max_pending)");
            }
        }
    }

    fn error(&mut self, group: &'static str, e: &ProbeError) {
        self.stats.count_error(group, e.reason);
        let reason = e.reason;
        self.log_once(group, reason, &e.detail);
    }

    fn log_once(&mut self, group: &'static str, reason: &'static str, detail: &str) {
        let now = Instant::now();
        let due = self
            .last_log
            .get(&(group, reason))
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
        if due {
            self.last_log.insert((group, reason), now);
            tracing::warn!(
                group,
                reason,
                "probe: {detail} (logged at most once a minute)"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::Roots;
    use std::path::PathBuf;

    /// A fixture tree under `tests/fixtures/probes/<name>`.
    pub fn roots(name: &str) -> Roots {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probes");
        let base = base.join(name);
        Roots {
            proc: base.join("proc"),
            sys: base.join("sys"),
            cgroup: base.join("cgroup"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decrease_counts_from_zero() {
        assert_eq!(delta(10, 15), 5);
        assert_eq!(delta(100, 7), 7);
    }

    #[test]
    fn invalid_metrics_are_dropped_and_counted() {
        let stats = ProbeStats::default();
        let mut out = Out::default();
        out.push("cpu.ok", 1.0);
        out.push("bad name", 1.0);
        out.push("nan", f64::NAN);
        out.push_dims("net.x", &[("device", "a=b")], 1.0);
        let m = to_metrics("cpu", &out, &[("hostname".into(), "h".into())], 1, &stats);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].dimensions["hostname"], "h");
        assert_eq!(stats.errors_of("cpu", "invalid"), 3);
    }

    /// A group that answers at once, or hangs for `hang`.
    struct Fake {
        name: &'static str,
        hang: Duration,
    }
    impl Group for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn sample(&mut self, _t: f64, out: &mut Out) -> Result<(), ProbeError> {
            std::thread::sleep(self.hang);
            out.push(format!("{}.x", self.name), 1.0);
            Ok(())
        }
    }

    fn spawn(runner: Runner) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        (tx, std::thread::spawn(move || runner.run(rx)))
    }

    #[test]
    fn a_hung_group_is_timed_out_once_and_the_others_keep_their_schedule() {
        let pt = Arc::new(Passthrough::new(1 << 20));
        let stats = Arc::new(ProbeStats::default());
        let runner = Runner::new(
            vec![
                (
                    Box::new(Fake {
                        name: "disk",
                        hang: Duration::from_secs(5),
                    }),
                    Duration::from_millis(100),
                ),
                (
                    Box::new(Fake {
                        name: "cpu",
                        hang: Duration::ZERO,
                    }),
                    Duration::from_millis(100),
                ),
            ],
            Duration::from_millis(150),
            vec![("hostname".into(), "h".into())],
            Arc::clone(&pt),
            Arc::clone(&stats),
        );
        let (stop, thread) = spawn(runner);
        std::thread::sleep(Duration::from_millis(700));
        let started = Instant::now();
        stop.send(()).unwrap();
        thread.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "stop joins promptly"
        );
        assert_eq!(
            stats.errors_of("disk", "timeout"),
            1,
            "counted once, not per period"
        );
        let cpu_samples = stats.samples[0].load(Relaxed);
        assert!(cpu_samples >= 4, "cpu kept its 100ms period: {cpu_samples}");
        let sent: Vec<Metric> = serde_json::from_slice(&pt.take().to_array()).unwrap();
        assert!(
            sent.iter()
                .all(|m| m.name == "cpu.x" && m.dimensions["hostname"] == "h")
        );
        assert_eq!(sent.len() as u64, stats.metrics[0].load(Relaxed));
    }

    #[test]
    fn a_full_passthrough_is_a_counted_drop() {
        let pt = Arc::new(Passthrough::new(10));
        let stats = Arc::new(ProbeStats::default());
        let runner = Runner::new(
            vec![(
                Box::new(Fake {
                    name: "mem",
                    hang: Duration::ZERO,
                }),
                Duration::from_secs(60),
            )],
            Duration::from_secs(1),
            vec![],
            Arc::clone(&pt),
            Arc::clone(&stats),
        );
        let (stop, thread) = spawn(runner);
        std::thread::sleep(Duration::from_millis(200));
        stop.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(stats.errors_of("mem", "dropped"), 1);
        assert!(pt.take().is_empty());
    }

    #[test]
    fn start_over_fixture_roots_and_disabled() {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/probes/a");
        let c = ProbesConfig {
            proc_path: format!("{base}/proc"),
            sys_path: format!("{base}/sys"),
            cgroup_path: format!("{base}/cgroup"),
            disabled_groups: vec!["disk".into()],
            ..Default::default()
        };
        let pt = Arc::new(Passthrough::new(1 << 20));
        let h = start(&c, vec![("hostname".into(), "h".into())], Arc::clone(&pt)).unwrap();
        assert!(h.running());
        std::thread::sleep(Duration::from_millis(300));
        let stats = Arc::clone(&h.stats);
        h.stop();
        let sent: Vec<Metric> = serde_json::from_slice(&pt.take().to_array()).unwrap();
        let names: Vec<_> = sent.iter().map(|m| m.name.as_str()).collect();
        for n in [
            "mem.total_mb",
            "load.avg_1_min",
            "cpu.idle_time",
            "net.int_status",
            "net.tcp.connections_count",
            "container.mem.rss",
        ] {
            // disabled_groups replaces the default list, so system and container run too.
            assert!(names.contains(&n), "{n}: {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("disk.")));
        assert_eq!(
            stats
                .errors
                .iter()
                .flatten()
                .map(|a| a.load(Relaxed))
                .sum::<u64>(),
            0
        );

        let off = ProbesConfig {
            enabled: false,
            ..Default::default()
        };
        let h = start(&off, vec![], Arc::clone(&pt)).unwrap();
        assert!(!h.running());
        h.stop();
    }

    #[test]
    fn capped_reads_survive_binary_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [0xff, b'1', b'\n']).unwrap();
        assert!(read_capped(&p).unwrap().contains('1'));
        assert!(read_capped(&dir.path().join("missing")).is_err());
    }
}
