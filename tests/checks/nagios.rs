//! `kind: nagios` checks against real things on loopback: Nagios-convention shell scripts
//! the tests write (mode 0755), coreutils run as plugins, the real binary's console sink and
//! `/metrics`, and `/proc` to see which of a plugin's processes are still alive.

use crate::common;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Writes an executable script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_string_lossy().into_owned()
}

fn gateway(instances: &str) -> common::Gateway {
    common::start(&format!(
        "flush:\n  interval: 1s\nchecks:\n  instances:\n{instances}"
    ))
}

/// Flushes until every name in `names` has been seen (latest value wins), or panics.
fn collect(gw: &common::Gateway, names: &[&str], timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut seen: Vec<Value> = Vec::new();
    while Instant::now() < deadline {
        if let Some(flush) = gw.next_flush(Duration::from_millis(500)) {
            for m in flush {
                seen.retain(|s| s["name"] != m["name"]);
                seen.push(m);
            }
        }
        if names.iter().all(|n| seen.iter().any(|m| m["name"] == *n)) {
            return seen;
        }
    }
    panic!(
        "not all of {names:?} within {timeout:?}: {}\nstderr:\n{}",
        serde_json::to_string_pretty(&seen).unwrap(),
        gw.stderr.lock().unwrap()
    );
}

/// The first metric `name` for which `f` holds, within `timeout`.
fn wait_metric(
    gw: &common::Gateway,
    name: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    gw.first_flushed(name, timeout, |m| m["name"] == name && f(m))
}

fn meta(m: &Value, key: &str) -> String {
    m["value_meta"][key].as_str().unwrap_or_default().to_owned()
}

/// The live (not zombie) processes of process group `pgid`, from `/proc`.
fn group_members(pgid: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<i64>() == Ok(pgid) {
            let pid = head.split(' ').next().unwrap_or("").parse().unwrap_or(0);
            out.push((pid, head.to_owned()));
        }
    }
    out
}

fn read_pid(path: &Path, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the plugin never wrote {path:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exit_codes_are_the_states_with_detail_perfdata_and_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let ok = script(
        dir.path(),
        "check_ok",
        "#!/bin/sh\necho \"OK - load fine|load1=0.5;1;2;0; 'disk free'=42%;;;0;100\"\nexit 0\n",
    );
    let plugin = |name: &str, line: &str, code: i32| {
        script(
            dir.path(),
            name,
            &format!("#!/bin/bash\necho '{line}'\nexit {code}\n"),
        )
    };
    let warn = plugin("check_warn", "WARNING - slow", 1);
    let crit = plugin("check_crit", "CRITICAL - down | rta=U;1;2", 2);
    let unknown = plugin("check_unknown", "UNKNOWN - no idea", 3);
    let seven = plugin("check_seven", "oops | v=1", 7);
    let gw = gateway(&format!(
        "    - {{name: nagios.load, kind: nagios, period: 1s, command: [{ok}]}}\n\
         \x20   - {{name: w, kind: nagios, period: 1s, command: [{warn}], metric_name: nagios.warn, host: db-1,\n\
         \x20       dimensions: {{service: db, target_host: spoofed}}}}\n\
         \x20   - {{name: nagios.crit, kind: nagios, period: 1s, command: [{crit}, --some-arg]}}\n\
         \x20   - {{name: nagios.unknown, kind: nagios, period: 1s, command: [{unknown}]}}\n\
         \x20   - {{name: nagios.seven, kind: nagios, period: 1s, command: [{seven}]}}\n"
    ));
    let names = [
        "nagios.load",
        "nagios.load.load1",
        "nagios.load.disk_free",
        "nagios.warn",
        "nagios.crit",
        "nagios.unknown",
        "nagios.seven",
        "nagios.seven.v",
    ];
    let got = collect(&gw, &names, Duration::from_secs(8));
    let here = [("observer_host", "test-host"), ("target_host", "test-host")];

    let load = common::find(&got, "nagios.load", &here).expect("nagios.load");
    assert_eq!(load["value"], 0.0);
    assert_eq!(meta(load, "detail"), "OK - load fine");
    assert_eq!(load["dimensions"]["hostname"], "test-host");
    assert_eq!(common::value(&got, "nagios.load.load1", &here), 0.5);
    let disk = common::find(&got, "nagios.load.disk_free", &here).expect("disk_free");
    assert_eq!(disk["value"], 42.0);
    assert!(
        disk["value_meta"].is_null(),
        "perfdata gauges carry no meta"
    );

    // metric_name honoured; host is the target; an instance dimension cannot move it.
    let w = common::find(&got, "nagios.warn", &[]).unwrap();
    assert_eq!(w["value"], 1.0);
    assert_eq!(meta(w, "detail"), "WARNING - slow");
    assert_eq!(w["dimensions"]["target_host"], "db-1");
    assert_eq!(w["dimensions"]["observer_host"], "test-host");
    assert_eq!(w["dimensions"]["service"], "db");
    assert!(common::find(&got, "w", &[]).is_none());

    let crit = common::find(&got, "nagios.crit", &here).unwrap();
    assert_eq!(crit["value"], 2.0);
    assert_eq!(meta(crit, "detail"), "CRITICAL - down");
    assert!(
        !got.iter().any(|m| m["name"] == "nagios.crit.rta"),
        "U is no value"
    );
    let unknown = common::find(&got, "nagios.unknown", &here).unwrap();
    assert_eq!(unknown["value"], 3.0);
    assert_eq!(meta(unknown, "detail"), "UNKNOWN - no idea");

    let seven = common::find(&got, "nagios.seven", &here).unwrap();
    assert_eq!(seven["value"], 3.0, "outside 0-3 is UNKNOWN");
    assert_eq!(
        seven["value_meta"],
        serde_json::json!({"error": "exit code 7"})
    );
    assert_eq!(common::value(&got, "nagios.seven.v", &here), 1.0);

    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"nagios.seven\",outcome=\"ok\""
        ) >= 1
    );
    gw.stop();
}

#[test]
fn a_hung_plugin_is_cut_at_its_timeout_and_its_whole_group_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let hang = script(
        dir.path(),
        "check_hang",
        "#!/bin/sh\necho $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nsleep 300 &\nsh -c 'sleep 301; :' &\nwait\n",
    );
    let gw = gateway(&format!(
        "    - {{name: hang, kind: nagios, period: 2s, timeout: 1s, command: [{hang}, {}]}}\n",
        pidfile.display()
    ));
    let pgid = read_pid(&pidfile, Duration::from_secs(5));
    let started = Instant::now();
    // The script, its two children and the grandchild: the group the kill must reach.
    let deadline = Instant::now() + Duration::from_secs(2);
    while group_members(pgid).len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", group_members(pgid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = wait_metric(&gw, "hang", Duration::from_secs(4), |_| true);
    let reported = started.elapsed();
    assert_eq!(m["value"], 3.0);
    assert_eq!(
        m["value_meta"],
        serde_json::json!({"error": "timed out after 1 s"})
    );
    assert!(reported < Duration::from_millis(2500), "{reported:?}");
    // The kill happened before the UNKNOWN was sent; allow the kernel a moment to finish it.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !group_members(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left alive: {:?}",
            group_members(pgid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.wait_for("the timeout counted", Duration::from_secs(2), |g| {
        g.counter(
            "statsgate_check_runs_total",
            "check=\"hang\",outcome=\"timeout\"",
        ) >= 1
    });
    gw.stop();
}

#[test]
fn a_plugin_that_exits_leaving_a_child_completes_and_the_child_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // The background sleep holds the output pipe open: reading to its end would wait for it.
    let fork = script(
        dir.path(),
        "check_fork",
        "#!/bin/sh\nsleep 300 &\necho $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\necho 'OK - forked'\nexit 0\n",
    );
    let gw = gateway(&format!(
        "    - {{name: fork, kind: nagios, period: 10s, timeout: 5s, command: [{fork}, {}]}}\n",
        pidfile.display()
    ));
    let pgid = read_pid(&pidfile, Duration::from_secs(5));
    let started = Instant::now();
    let m = wait_metric(&gw, "fork", Duration::from_secs(4), |_| true);
    assert_eq!(m["value"], 0.0, "{m}");
    assert_eq!(meta(&m, "detail"), "OK - forked");
    assert!(started.elapsed() < Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(1);
    while !group_members(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left alive: {:?}",
            group_members(pgid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.stop();
}

#[test]
fn fifty_megabytes_of_output_are_drained_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    // pipefail: had the gateway stopped reading, tr would die of SIGPIPE and the plugin
    // would exit 5 rather than 2.
    let chatty = script(
        dir.path(),
        "check_chatty",
        "#!/bin/bash\nset -o pipefail\nhead -c 50000000 /dev/zero | tr '\\0' x || exit 5\necho\necho 'more | late=1'\nexit 2\n",
    );
    let gw = gateway(&format!(
        "    - {{name: chatty, kind: nagios, period: 30s, timeout: 10s, command: [{chatty}]}}\n"
    ));
    let m = wait_metric(&gw, "chatty", Duration::from_secs(12), |_| true);
    assert_eq!(m["value"], 2.0, "{}", m["value_meta"]);
    let json = serde_json::to_string(&m["value_meta"]).unwrap();
    assert!(json.chars().count() <= 2048, "{}", json.len());
    let detail = meta(&m, "detail");
    assert!(detail.len() > 1900 && detail.bytes().all(|b| b == b'x'));
    let rss = gw.rss_kib();
    assert!(rss > 0 && rss < 100 * 1024, "RSS {rss} KiB");
    gw.stop();
}

#[test]
fn the_plugin_sees_only_its_path_its_env_its_workdir_and_no_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().canonicalize().unwrap();
    // `env -0` separates variables with NUL, so the whole environment is the first "line";
    // env itself adds nothing (a shell would add PWD and the like).
    let gw = common::start_env(
        &format!(
            "flush:\n  interval: 1s\nchecks:\n  instances:\n\
             \x20   - {{name: env.default, kind: nagios, period: 1s, command: [env, '-0']}}\n\
             \x20   - {{name: env.set, kind: nagios, period: 1s, command: [env, '-0'],\n\
             \x20       env: {{PATH: '/usr/bin:/bin', NAGIOS_X: 'a b=c'}}}}\n\
             \x20   - {{name: cwd, kind: nagios, period: 1s, command: [pwd], workdir: '{}'}}\n\
             \x20   - {{name: stdin, kind: nagios, period: 1s, command: [readlink, /proc/self/fd/0]}}\n",
            work.display()
        ),
        &[("LEAKED_SECRET", "hunter2")],
    );
    let got = collect(
        &gw,
        &["env.default", "env.set", "cwd", "stdin"],
        Duration::from_secs(6),
    );
    let vars = |name: &str| -> Vec<String> {
        let m = common::find(&got, name, &[]).unwrap();
        assert_eq!(m["value"], 0.0, "{m}");
        let mut v: Vec<String> = meta(m, "detail")
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        vars("env.default"),
        ["PATH=/usr/lib/nagios/plugins:/usr/local/bin:/usr/bin:/bin"]
    );
    assert_eq!(vars("env.set"), ["NAGIOS_X=a b=c", "PATH=/usr/bin:/bin"]);
    let cwd = common::find(&got, "cwd", &[]).unwrap();
    assert_eq!(meta(cwd, "detail"), work.to_string_lossy());
    let stdin = common::find(&got, "stdin", &[]).unwrap();
    assert_eq!(meta(stdin, "detail"), "/dev/null");
    gw.stop();
}

#[test]
fn shell_true_runs_one_line_through_sh() {
    let gw = gateway(
        "    - name: sh\n      kind: nagios\n      period: 1s\n      shell: true\n      \
         command: ['echo \"ok - $((2+3)) via sh | n=$((6*7))\" | tr a-z A-Z; exit 1']\n",
    );
    let got = collect(&gw, &["sh", "sh.N"], Duration::from_secs(5));
    let m = common::find(&got, "sh", &[]).unwrap();
    assert_eq!(m["value"], 1.0);
    assert_eq!(meta(m, "detail"), "OK - 5 VIA SH");
    assert_eq!(common::value(&got, "sh.N", &[]), 42.0);
    gw.stop();
}

#[test]
fn a_plugin_that_vanishes_is_unknown_and_the_run_failed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = script(dir.path(), "check_gone", "#!/bin/sh\necho 'OK - here'\n");
    let gw = gateway(&format!(
        "    - {{name: gone, kind: nagios, period: 1s, command: [{plugin}]}}\n"
    ));
    let first = wait_metric(&gw, "gone", Duration::from_secs(4), |_| true);
    assert_eq!(meta(&first, "detail"), "OK - here");
    std::fs::remove_file(&plugin).unwrap();
    let m = wait_metric(&gw, "gone", Duration::from_secs(4), |m| m["value"] == 3.0);
    assert_eq!(
        meta(&m, "error"),
        format!("{plugin} is missing or unreadable: No such file or directory (os error 2)")
    );
    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"gone\",outcome=\"failed\""
        ) >= 1
    );
    gw.stop();
}

#[test]
fn check_config_refuses_plugins_that_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("check_plain");
    std::fs::write(&plain, "#!/bin/sh\necho OK\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let command = "checks.instances[0].command";
    let cases = [
        (
            format!("command: ['{}']", plain.display()),
            command,
            "not an executable",
        ),
        ("period: 1s".to_owned(), command, "required"),
        ("command: []".to_owned(), command, "required"),
        (
            "command: [check_no_such_plugin_anywhere, -w, '1']".to_owned(),
            command,
            "not an executable file on PATH",
        ),
        (
            "command: [check_dummy], env: {PATH: /nonexistent}".to_owned(),
            command,
            "on PATH /nonexistent",
        ),
        (
            "command: [sh], shell: true, metric_name: 'a b'".to_owned(),
            "checks.instances[0].metric_name",
            "not a valid Monasca metric name",
        ),
        (
            "command: [sh], host: 'a,b'".to_owned(),
            "checks.instances[0].host",
            "target_host",
        ),
        (
            "command: [sh], env: {'A=B': hunter2}".to_owned(),
            "checks.instances[0].env.A=B",
            "without =",
        ),
    ];
    for (i, (keys, key, why)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(
            &path,
            format!("checks:\n  instances:\n    - {{name: n, kind: nagios, {keys}}}\n"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys}: accepted");
        assert!(
            stderr.contains(key) && stderr.contains(why),
            "{keys}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "an env value is never printed");
    }
    // And a good one passes, so the refusals above are about the plugin.
    let path = dir.path().join("good.yaml");
    std::fs::write(
        &path,
        "checks:\n  instances:\n    - {name: n, kind: nagios, command: [sh, -c, 'exit 0'],\n        env: {PGPASSWORD: hunter2}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PGPASSWORD: '***'") || stdout.contains("PGPASSWORD: \"***\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2"),
        "the effective config hides env values"
    );
}
