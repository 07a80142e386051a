//! Host probes end to end: the real binary sends every default monasca-agent name in one flush,
//! and the values agree with Python's psutil sampling the same machine over the same window.

mod common;

use serde_json::Value;
use statsgate::config::ProbesConfig;
use statsgate::probes::{Group, Out, Roots, cpu, disk, mem, net};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// monasca-agent's default system metrics (probes.md §2.7): 11 cpu (frequency included where
/// /proc/cpuinfo has it), 13 mem, 3 load, 8 disk + io, 9 net.
const HOST: &[&str] = &[
    "cpu.user_perc",
    "cpu.system_perc",
    "cpu.wait_perc",
    "cpu.idle_perc",
    "cpu.stolen_perc",
    "cpu.percent",
    "cpu.idle_time",
    "cpu.wait_time",
    "cpu.user_time",
    "cpu.system_time",
    "mem.total_mb",
    "mem.free_mb",
    "mem.usable_mb",
    "mem.usable_perc",
    "mem.swap_total_mb",
    "mem.swap_used_mb",
    "mem.swap_free_mb",
    "mem.swap_free_perc",
    "load.avg_1_min",
    "load.avg_5_min",
    "load.avg_15_min",
];
/// Sent only when the value is non-zero (Buffers, Cached, Shmem, Slab).
const MEM_NONZERO: &[&str] = &[
    "mem.used_buffers",
    "mem.used_cache",
    "mem.used_real_mb",
    "mem.used_shared",
    "mem.used_slab_mb",
];
const DISK: &[&str] = &[
    "disk.space_used_perc",
    "disk.inode_used_perc",
    "io.read_req_sec",
    "io.write_req_sec",
    "io.read_kbytes_sec",
    "io.write_kbytes_sec",
    "io.read_time_sec",
    "io.write_time_sec",
];
const NET: &[&str] = &[
    "net.in_bytes_sec",
    "net.out_bytes_sec",
    "net.in_packets_sec",
    "net.out_packets_sec",
    "net.in_errors_sec",
    "net.out_errors_sec",
    "net.in_packets_dropped_sec",
    "net.out_packets_dropped_sec",
    "net.int_status",
];

fn dims(m: &Value) -> Vec<String> {
    m["dimensions"]
        .as_object()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn one_flush_carries_every_default_name_with_its_dimensions() {
    let gw = common::start_env(
        "flush:\n  interval: 1s\nprobes:\n  period: 1s\n",
        &[("STATSGATE_PROBES__ENABLED", "true")],
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let nonzero = |k: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .is_some_and(|v| v > 0)
    };
    let mut want: Vec<&str> = HOST.to_vec();
    want.extend(DISK);
    want.extend(NET);
    if nonzero("Buffers:") {
        want.push("mem.used_buffers");
    }
    if nonzero("Cached:") {
        want.push("mem.used_cache");
    }
    if nonzero("Buffers:") && nonzero("Cached:") {
        want.push("mem.used_real_mb");
    }
    if nonzero("Shmem:") {
        want.push("mem.used_shared");
    }
    if nonzero("Slab:") {
        want.push("mem.used_slab_mb");
    }
    // Where the kernel reports a current frequency, as lscpu's `CPU MHz:` line did.
    if std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| t.contains("cpu MHz")) {
        want.push("cpu.frequency_mhz");
    }
    // probes.md §2.7: 44 system names on by default, five of them only when non-zero.
    assert!(want.len() <= 44, "{want:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut best: Vec<String> = Vec::new();
    let mut found = None;
    while Instant::now() < deadline {
        let Some(flush) = gw.next_flush(Duration::from_secs(3)) else {
            continue;
        };
        let names: Vec<&str> = flush.iter().filter_map(|m| m["name"].as_str()).collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|w| !names.contains(w))
            .map(|s| s.to_string())
            .collect();
        if missing.is_empty() {
            found = Some(flush);
            break;
        }
        if best.is_empty() || missing.len() < best.len() {
            best = missing;
        }
    }
    let flush =
        found.unwrap_or_else(|| panic!("no flush carried every default name; missing {best:?}"));
    for m in &flush {
        let name = m["name"].as_str().unwrap_or_default();
        let d = dims(m);
        assert_eq!(m["dimensions"]["hostname"], "test-host", "{m}");
        let expect: &[&str] = if name.starts_with("disk.") || name.starts_with("io.") {
            &["device", "hostname", "mount_point"]
        } else if name.starts_with("net.") {
            &["device", "hostname"]
        } else if HOST.contains(&name) || MEM_NONZERO.contains(&name) || name == "cpu.frequency_mhz"
        {
            &["hostname"]
        } else {
            continue;
        };
        assert_eq!(d, expect, "{m}");
    }
    let root = flush
        .iter()
        .find(|m| m["name"] == "disk.space_used_perc" && m["dimensions"]["mount_point"] == "/");
    assert!(
        root.is_some(),
        "disk.space_used_perc{{mount_point=/}} is what alarms use"
    );
    assert!(
        !flush
            .iter()
            .any(|m| m["name"] == "net.in_bytes_sec" && m["dimensions"]["device"] == "lo"),
        "lo is excluded by default"
    );
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// A venv with psutil 5.9.6–7.0 (the `used` formula of the agent's lifetime), created once
/// under target/. `None` when Python or PyPI is unavailable.
fn psutil_python() -> Option<PathBuf> {
    common::venv_python("probes-venv", "import psutil", "psutil>=5.9.6,<7.1")
}

const SCRIPT: &str = r#"
import json, sys, time, psutil
MiB = 1048576
def out(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
out("ready")
sys.stdin.readline()
psutil.cpu_times_percent(interval=None); psutil.cpu_percent(interval=None)
n0, t0 = psutil.net_io_counters(pernic=True)["lo"], time.monotonic()
out("a")
sys.stdin.readline()
c = psutil.cpu_times_percent(interval=None); p = psutil.cpu_percent(interval=None)
n1, t1 = psutil.net_io_counters(pernic=True)["lo"], time.monotonic()
vm = psutil.virtual_memory(); sw = psutil.swap_memory(); du = psutil.disk_usage("/")
dt = t1 - t0
out({
  "cpu.user_perc": c.user + c.nice, "cpu.system_perc": c.system + c.irq + c.softirq,
  "cpu.wait_perc": c.iowait, "cpu.idle_perc": c.idle, "cpu.stolen_perc": c.steal, "cpu.percent": p,
  "mem.total_mb": vm.total // MiB, "mem.free_mb": vm.free // MiB, "mem.usable_mb": vm.available // MiB,
  "mem.used_real_mb": vm.used // MiB, "mem.swap_used_mb": sw.used // MiB,
  "disk.space_used_perc": du.percent,
  "net.in_bytes_sec": (n1.bytes_recv - n0.bytes_recv) / dt, "net.out_bytes_sec": (n1.bytes_sent - n0.bytes_sent) / dt,
})
"#;

fn sample(g: &mut dyn Group, t0: Instant) -> Out {
    let mut out = Out::default();
    g.sample(t0.elapsed().as_secs_f64(), &mut out)
        .expect("sample");
    out
}

fn find(out: &Out, name: &str, dim: Option<(&str, &str)>) -> f64 {
    out.values
        .iter()
        .find(|v| {
            v.0 == name && dim.is_none_or(|(k, val)| v.1.iter().any(|d| d.0 == k && d.1 == val))
        })
        .unwrap_or_else(|| panic!("no {name} in {:?}", out.names()))
        .2
}

#[test]
fn agrees_with_psutil_over_the_same_window() {
    let Some(py) = psutil_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3 and psutil (see .ci/run)"
        );
        eprintln!(
            "SKIPPED agrees_with_psutil_over_the_same_window: no python3 with psutil (pip install psutil<7.1)"
        );
        return;
    };
    let roots = Roots {
        proc: "/proc".into(),
        sys: "/sys".into(),
        cgroup: "/sys/fs/cgroup".into(),
    };
    let c = ProbesConfig {
        excluded_interface_re: "no-such-interface".into(),
        ..Default::default()
    };
    let mut cpu = cpu::Cpu::new(roots.clone(), &c);
    let mut net = net::Net::new(roots.clone(), &c).unwrap();
    let mut mem = mem::Mem::new(roots.clone());
    let mut disk = disk::Disk::new(roots.clone(), &c).unwrap();
    let mut child = Command::new(py)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    assert_eq!(next(), "ready");

    // Traffic on loopback while the window is open: ~20 MB/s of UDP.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let buf = [7u8; 8192];
            let mut sink = [0u8; 9000];
            rx.set_nonblocking(true).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..25 {
                    let _ = tx.send_to(&buf, rx.local_addr().unwrap());
                    let _ = rx.recv(&mut sink);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let t0 = Instant::now();
    writeln!(stdin, "a").unwrap();
    assert_eq!(next(), "a");
    sample(&mut cpu, t0);
    sample(&mut net, t0);
    std::thread::sleep(Duration::from_secs(3));
    let mem_before = sample(&mut mem, t0);
    let disk_before = sample(&mut disk, t0);
    writeln!(stdin, "b").unwrap();
    let ps = next();
    let c_out = sample(&mut cpu, t0);
    let n_out = sample(&mut net, t0);
    let mem_after = sample(&mut mem, t0);
    let disk_after = sample(&mut disk, t0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = traffic.join();
    let _ = child.wait();

    let mut report = Vec::new();
    let mut check = |name: &str, ours: &[f64], tol: f64, relative: bool| {
        let theirs = ps[name].as_f64().unwrap();
        let lo = ours.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ours.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let tol = if relative { theirs.abs() * tol } else { tol };
        let ok = theirs >= lo - tol && theirs <= hi + tol;
        report.push(format!(
            "{name}: ours {ours:?} psutil {theirs} tolerance {tol} {}",
            if ok { "ok" } else { "FAIL" }
        ));
        ok
    };
    let mut ok = true;
    // The six CPU percentages lead the list of default names.
    for &n in &HOST[..6] {
        ok &= check(n, &[find(&c_out, n, None)], 2.0, false);
    }
    for n in [
        "mem.total_mb",
        "mem.free_mb",
        "mem.usable_mb",
        "mem.used_real_mb",
        "mem.swap_used_mb",
    ] {
        ok &= check(
            n,
            &[find(&mem_before, n, None), find(&mem_after, n, None)],
            1.0,
            false,
        );
    }
    let root = Some(("mount_point", "/"));
    ok &= check(
        "disk.space_used_perc",
        &[
            find(&disk_before, "disk.space_used_perc", root),
            find(&disk_after, "disk.space_used_perc", root),
        ],
        0.1,
        false,
    );
    for n in ["net.in_bytes_sec", "net.out_bytes_sec"] {
        let ours = find(&n_out, n, Some(("device", "lo")));
        assert!(
            ours > 1_000_000.0,
            "the loopback traffic did not show: {ours}"
        );
        ok &= check(n, &[ours], 0.05, true);
    }
    eprintln!("{}", report.join("\n"));
    assert!(ok, "{}", report.join("\n"));
}

/// Rainbow's extras and the container group read this machine's real trees without errors.
#[test]
fn extras_and_containers_read_this_machine() {
    let cgroup = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|p| std::path::Path::new(p).join("cgroup.controllers").is_file());
    let roots = Roots {
        proc: "/proc".into(),
        sys: "/sys".into(),
        cgroup: cgroup.unwrap_or("/sys/fs/cgroup").into(),
    };
    let c = ProbesConfig {
        extras: true,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut groups: Vec<Box<dyn Group>> = vec![
        Box::new(cpu::Cpu::new(roots.clone(), &c)),
        Box::new(mem::Mem::new(roots.clone()).with_extras(true)),
        Box::new(statsgate::probes::system::System::new(roots.clone())),
    ];
    if cgroup.is_some() {
        groups.push(Box::new(statsgate::probes::container::Containers::new(
            roots.clone(),
            &c,
        )));
    } else {
        eprintln!("no cgroup v2 tree here: the container group is not exercised");
    }
    for g in &mut groups {
        sample(g.as_mut(), t0);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut names = Vec::new();
    for g in &mut groups {
        let out = sample(g.as_mut(), t0);
        assert!(
            out.errors.iter().all(|e| e.reason == "limit"),
            "{}: {:?}",
            g.name(),
            out.errors
        );
        names.extend(out.names().into_iter().map(str::to_owned));
    }
    for n in [
        "cpu.core.percent",
        "mem.committed_mb",
        "mem.kernel_mb",
        "cpu.ctx_switches_sec",
        "net.tcp.in_segments_sec",
        "net.ipv4.sockets_count",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
}
