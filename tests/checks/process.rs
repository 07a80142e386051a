//! `kind: process` checks against real child processes this test starts: a copy of `sleep`
//! under a unique name (short, and longer than the kernel's 15-character `comm`), a shell
//! whose command line holds a unique marker, and the current user's processes.

use crate::common;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running copy of `/bin/sleep` named `name`, killed on drop.
struct Sleeper {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sleeper {
    fn start(name: &str) -> Sleeper {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join(name);
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let child = Command::new(&exe)
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Sleeper { child, _dir: dir }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", fastrand::u32(..))
}

fn of<'a>(metrics: &'a [Value], name: &str, check: &str) -> Vec<&'a Value> {
    metrics
        .iter()
        .filter(|m| m["name"] == name && m["dimensions"]["process_name"] == check)
        .collect()
}

fn yaml(instances: &str) -> String {
    format!("flush:\n  interval: 1s\nchecks:\n  instances:\n{instances}")
}

#[test]
fn an_exact_name_is_counted_with_its_details_then_missed_once_killed() {
    let name = unique("sgchk");
    let sleeper = Sleeper::start(&name);
    // A period twice the flush interval: each flush holds at most one run.
    let gw = common::start(&yaml(&format!(
        "    - name: sleeper\n      kind: process\n      search: [{name}]\n      period: 2s\n"
    )));
    let all = gw.flushed_until(Duration::from_secs(10), |m| {
        !of(m, "process.cpu_perc", "sleeper").is_empty()
    });
    let counts = of(&all, "process.pid_count", "sleeper");
    assert!(counts.len() >= 2, "{counts:?}");
    assert!(counts.iter().all(|m| m["value"] == 1.0), "{counts:?}");
    // The first run only primes the CPU rate: its flush has the run's other metrics only.
    let first_run_ts = &counts[0]["timestamp"];
    assert!(
        !all.iter()
            .any(|m| m["name"] == "process.cpu_perc" && m["timestamp"] == *first_run_ts),
        "cpu_perc on the first run"
    );
    let cpu = of(&all, "process.cpu_perc", "sleeper")[0]["value"]
        .as_f64()
        .unwrap();
    assert!((0.0..5.0).contains(&cpu), "a sleeping process: {cpu}");

    let statm = std::fs::read_to_string(format!("/proc/{}/statm", sleeper.pid())).unwrap();
    let resident: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    let expected = (resident * procfs::page_size()) as f64 / 1_048_576.0;
    let rss = of(&all, "process.mem.rss_mbytes", "sleeper")[0]["value"]
        .as_f64()
        .unwrap();
    // Within 25 pages: a sleeping process's resident set does not move, and MiB are not
    // floored.
    assert!(
        (rss - expected).abs() < 0.1,
        "rss {rss} vs statm {expected}"
    );
    let threads = of(&all, "process.thread_count", "sleeper")[0]["value"]
        .as_f64()
        .unwrap();
    assert!(threads >= 1.0);
    let fds = of(&all, "process.open_file_descriptors", "sleeper")[0]["value"]
        .as_f64()
        .unwrap();
    assert!(fds >= 3.0, "{fds}");
    for io in [
        "process.io.read_count",
        "process.io.write_count",
        "process.io.read_kbytes",
        "process.io.write_kbytes",
    ] {
        let m = of(&all, io, "sleeper");
        assert!(!m.is_empty(), "{io} (the test runs as the child's user)");
        assert!(m[0]["value"].as_f64().unwrap() >= 0.0);
    }
    let m = of(&all, "process.pid_count", "sleeper")[0];
    assert_eq!(m["dimensions"]["hostname"], "test-host");
    assert!(m["dimensions"].get("process_user").is_none());

    drop(sleeper);
    let after = gw.flushed_until(Duration::from_secs(8), |m| {
        of(m, "process.pid_count", "sleeper")
            .iter()
            .any(|m| m["value"] == 0.0)
    });
    // With no pid, nothing but the count.
    let last_ts = &of(&after, "process.pid_count", "sleeper")
        .into_iter()
        .find(|m| m["value"] == 0.0)
        .unwrap()["timestamp"];
    assert!(
        !after
            .iter()
            .any(|m| m["name"] != "process.pid_count" && m["timestamp"] == *last_ts),
        "{after:?}"
    );
}

#[test]
fn a_name_longer_than_comm_matches_by_its_full_name_only() {
    let name = unique("sgchk-long-name-");
    assert!(name.len() > 15);
    let _sleeper = Sleeper::start(&name);
    let comm = &name[..15];
    let gw = common::start(&yaml(&format!(
        "    - name: full\n      kind: process\n      search: [{name}]\n      period: 1s\n      detailed: false\n\
         \x20   - name: truncated\n      kind: process\n      search: ['{comm}']\n      period: 1s\n      detailed: false\n"
    )));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        !of(m, "process.pid_count", "full").is_empty()
            && !of(m, "process.pid_count", "truncated").is_empty()
    });
    assert_eq!(of(&all, "process.pid_count", "full")[0]["value"], 1.0);
    // psutil's name() is the full basename, so the kernel's truncated comm does not match.
    assert_eq!(of(&all, "process.pid_count", "truncated")[0]["value"], 0.0);
    // detailed: false sends only the count.
    assert!(
        all.iter().all(|m| m["name"] == "process.pid_count"),
        "{all:?}"
    );
}

#[test]
fn a_command_line_substring_matches_with_exact_false() {
    let marker = unique("sgmark");
    let mut sh = Command::new("sh")
        .args(["-c", &format!("sleep 30; : {marker}")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let gw = common::start(&yaml(&format!(
        "    - name: marked\n      kind: process\n      search: [{marker}]\n      exact: false\n      period: 1s\n\
         \x20   - name: marked-exact\n      kind: process\n      search: [{marker}]\n      period: 1s\n"
    )));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        !of(m, "process.pid_count", "marked").is_empty()
            && !of(m, "process.pid_count", "marked-exact").is_empty()
    });
    let _ = sh.kill();
    let _ = sh.wait();
    // The shell holds the marker; its `sleep` child does not.
    assert_eq!(of(&all, "process.pid_count", "marked")[0]["value"], 1.0);
    assert_eq!(
        of(&all, "process.pid_count", "marked-exact")[0]["value"],
        0.0
    );
}

/// The real uid of this process and its passwd name, if any.
fn me() -> (u32, Option<String>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_owned())
    });
    (uid, name)
}

#[test]
fn a_users_processes_are_counted_by_name_and_by_uid() {
    let (uid, name) = me();
    let by_name = name.clone().unwrap_or_else(|| uid.to_string());
    let gw = common::start(&yaml(&format!(
        "    - name: mine\n      kind: process\n      user: '{by_name}'\n      period: 1s\n\
         \x20   - name: my-uid\n      kind: process\n      user: '{uid}'\n      period: 1s\n\
         \x20   - name: nobody-such\n      kind: process\n      user: sgchk-no-such-user\n      period: 1s\n"
    )));
    let all = gw.flushed_until(Duration::from_secs(8), |m| {
        ["mine", "my-uid", "nobody-such"]
            .iter()
            .all(|c| !of(m, "process.pid_count", c).is_empty())
    });
    let mine = of(&all, "process.pid_count", "mine")[0];
    // At least the gateway itself and this test.
    assert!(mine["value"].as_f64().unwrap() >= 2.0, "{mine}");
    assert_eq!(mine["dimensions"]["process_user"], by_name.as_str());
    let by_uid = of(&all, "process.pid_count", "my-uid")[0];
    assert!(by_uid["value"].as_f64().unwrap() >= 2.0, "{by_uid}");
    assert_eq!(by_uid["dimensions"]["process_user"], uid.to_string());
    assert!(!of(&all, "process.thread_count", "mine").is_empty());
    assert_eq!(
        of(&all, "process.pid_count", "nobody-such")[0]["value"],
        0.0
    );
}

#[test]
fn search_and_user_together_or_neither_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    for keys in ["search: [x]\n      user: root\n", "exact: true\n"] {
        std::fs::write(
            &path,
            format!("checks:\n  instances:\n    - name: p\n      kind: process\n      {keys}"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args(["check-config", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys}: {stderr}");
        assert!(stderr.contains("checks.instances[0].search"), "{stderr}");
    }
}
