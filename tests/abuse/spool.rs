//! The spool directory and the files in it (issue 11, items 6, 9 and 10): a second instance
//! on the same directory, file modes, a symlink planted at the checkpoint's temp name, the
//! fsync timer, a 413 on a replayed batch followed by kill -9, and a directory that cannot
//! be created.

use crate::common::fake_openstack::Fake;
use crate::common::{Gateway, start};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FAST: &str = "flush:\n  interval: 1s\n";
const QUIET: &str = "telemetry:\n  self_metrics: false\n";

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Fast flushes, quick retries, the fake's Keystone and Monasca, no self-metrics (so only
/// what a test sends is ever spooled), a spool in `dir` with `fsync`.
fn outage_yaml(fake: &Fake, dir: &Path, fsync: &str) -> String {
    format!(
        "{FAST}{QUIET}monasca:\n  backoff_initial: 50ms\n  backoff_max: 1s\n{}buffer:\n  spool_dir: {}\n  spool_fsync: {fsync}\n",
        fake.password_yaml(),
        dir.display()
    )
}

/// Runs the binary with `args` and the harness's ephemeral ports until it exits (killed and
/// reported as `None` after `timeout`): (exit code, stderr).
fn run_to_exit(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(args)
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_AGGREGATE__HOSTNAME", "test-host")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn statsgate");
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            // Only the process this test started.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (code, stderr)
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("statsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_string_lossy().into_owned()
}

/// Guards: without a lock, a second gateway on the same `buffer.spool_dir` (a rolling update)
/// started and both wrote the same segments, state and checkpoint.
#[test]
fn a_second_instance_on_the_same_spool_dir_refuses_to_start_naming_the_first_pid() {
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("spool");
    let yaml = format!("{FAST}buffer:\n  spool_dir: {}\n", spool.display());
    let first = start(&yaml);
    let config = write_config(root.path(), &yaml);
    let (code, stderr) = run_to_exit(&["--config", &config], Duration::from_secs(10));
    assert!(
        code.is_some_and(|c| c != 0),
        "the second instance must exit non-zero (got {code:?}): {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.pid()))
            && stderr.contains("buffer.spool_dir")
            && stderr.contains(&spool.display().to_string()),
        "names the holder's pid and the directory: {stderr}"
    );
    assert!(first.get("/healthz").0 == 200, "the first one runs on");
    let (_, status) = first.stop();
    assert!(status.success());
    // Released at exit: the directory is usable again.
    let again = start(&yaml);
    let (_, status) = again.stop();
    assert!(status.success());
}

/// Guards: segments, state and checkpoint were 0644 in a 0755 directory (world-readable
/// metric data).
#[test]
fn spool_files_are_0600_in_a_0700_directory() {
    let fake = Fake::start();
    fake.with(|s| s.faults.monasca_500 = true);
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("var/spool");
    let gw = start(&outage_yaml(&fake, &spool, "always"));
    gw.sender()
        .send(b"modes.count:1|c\nmodes.level:3|g")
        .unwrap();
    let checkpoint = spool.join("gauges.checkpoint.json");
    gw.wait_for("a batch spooled", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_spooled_batches_total", "") >= 1 && checkpoint.exists()
    });
    assert_eq!(mode(&root.path().join("var")), 0o700, "created parents too");
    assert_eq!(mode(&spool), 0o700);
    let files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for name in ["LOCK", "spool.state", "gauges.checkpoint.json"] {
        assert!(files.contains(&spool.join(name)), "{name} in {files:?}");
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "seg"))
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// Guards: the checkpoint went through the fixed `gauges.checkpoint.json.tmp` opened with
/// `File::create`, which followed a symlink planted there and overwrote its target.
#[test]
fn a_symlink_planted_at_the_checkpoint_temp_name_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = root.path().join("victim");
    std::fs::write(&target, b"precious").unwrap();
    let planted = spool.join("gauges.checkpoint.json.tmp");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    let gw = start(&format!(
        "{FAST}buffer:\n  spool_dir: {}\n",
        spool.display()
    ));
    gw.sender().send(b"sym.level:5|g").unwrap();
    let checkpoint = spool.join("gauges.checkpoint.json");
    wait_until("a flush with the gauge", Duration::from_secs(10), || {
        gw.next_flush(Duration::from_secs(5))
            .is_some_and(|f| f.iter().any(|m| m["name"] == "sym.level"))
    });
    wait_until("the checkpoint", Duration::from_secs(10), || {
        std::fs::read_to_string(&checkpoint).is_ok_and(|t| t.contains("sym.level"))
    });
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"precious",
        "target untouched"
    );
    let meta = std::fs::symlink_metadata(&checkpoint).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the checkpoint is a file, not the planted link"
    );
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "the stale temp name is removed at start"
    );
    let (_, status) = gw.stop();
    assert!(status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
}

/// Guards: `spool_fsync: <d>` synced only inside the next append or ack, so the tail of a
/// burst stayed unsynced until more traffic came. One append and one in-flight mark, then
/// silence: the timer alone must sync them within a period.
#[test]
fn the_fsync_timer_syncs_what_a_burst_left_without_new_appends() {
    let fake = Fake::start();
    fake.with(|s| s.faults.monasca_500 = true);
    let spool = tempfile::tempdir().unwrap();
    // Long enough that the append (within a flush or two of start) cannot sync on its own.
    let gw = start(&outage_yaml(&fake, spool.path(), "4s"));
    let started = Instant::now();
    gw.sender().send(b"fsync.count:1|c").unwrap();
    gw.wait_for("the batch spooled", Duration::from_secs(10), |g| {
        g.counter("statsgate_forward_spooled_batches_total", "") == 1
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "spooled too late for this test to tell the timer from an append-time sync"
    );
    assert_eq!(gw.counter("statsgate_spool_syncs_total", ""), 0);
    gw.wait_for("a timed fsync", Duration::from_secs(8), |g| {
        g.counter("statsgate_spool_syncs_total", "") >= 1
    });
    assert_eq!(
        gw.counter("statsgate_forward_spooled_batches_total", ""),
        1,
        "no append came along to trigger it"
    );
    gw.kill9();
}

fn stored_names(fake: &Fake, prefix: &str) -> Vec<String> {
    fake.with(|s| {
        s.metrics
            .iter()
            .filter_map(|m| m["name"].as_str())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    })
}

/// Guards: a 413 on a replayed batch put its halves in the memory queue and acked the
/// record, so a crash then lost both halves. Monasca answers slowly, so the kill lands while
/// the halves wait to be sent; after the restart every metric arrives exactly once.
#[test]
fn a_413_on_replay_then_kill_9_then_restart_delivers_each_metric_once() {
    const SERIES: usize = 200;
    let fake = Fake::start();
    fake.with(|s| s.faults.monasca_500 = true);
    let spool = tempfile::tempdir().unwrap();
    let yaml = outage_yaml(&fake, spool.path(), "always");
    let gw = start(&yaml);
    // One datagram, so one interval and one batch.
    let lines: Vec<String> = (0..SERIES).map(|i| format!("split.c{i}:1|c")).collect();
    gw.sender().send(lines.join("\n").as_bytes()).unwrap();
    gw.wait_for("one batch spooled", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_spooled_metrics_total", "") == SERIES as u64
            && g.counter("statsgate_spool_batches", "") == 1
            && g.counter("statsgate_forward_queue_batches", "") == 0
    });
    let body = gw.counter("statsgate_spool_bytes", "") as usize - 24;
    // The whole batch is too large for the "proxy", its halves are not.
    fake.with(|s| {
        s.faults.max_body = body * 3 / 4;
        s.faults.monasca_delay = Duration::from_secs(3);
        s.faults.monasca_500 = false;
    });
    // Split and settled: on disk as two halves (fixed), or acked with the halves in memory.
    gw.wait_for("a split replay", Duration::from_secs(20), |g| {
        g.counter("statsgate_forward_splits_total", "") >= 1
            && g.counter("statsgate_spool_batches", "") != 1
    });
    // POSTs now in flight answer 500 after their delay: nothing of them is stored.
    fake.with(|s| s.faults.monasca_500 = true);
    gw.kill9();
    std::thread::sleep(Duration::from_millis(3500));
    assert!(stored_names(&fake, "split.").is_empty());

    fake.with(|s| {
        s.faults.monasca_500 = false;
        s.faults.monasca_delay = Duration::ZERO;
    });
    let gw: Gateway = start(&yaml);
    wait_until("the halves replayed", Duration::from_secs(30), || {
        stored_names(&fake, "split.").len() >= SERIES
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut names = stored_names(&fake, "split.");
    names.sort();
    let mut expected: Vec<String> = (0..SERIES).map(|i| format!("split.c{i}")).collect();
    expected.sort();
    assert_eq!(names, expected, "each metric exactly once");
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// Guards: `check-config` said OK for a `buffer.spool_dir` that cannot be created; start-up
/// must refuse it too, both naming the key and the OS reason.
#[test]
fn check_config_and_start_refuse_a_spool_dir_that_cannot_be_created() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let under_file = file.join("spool");
    let config = write_config(
        root.path(),
        &format!("buffer:\n  spool_dir: {}\n", under_file.display()),
    );
    let (code, stderr) = run_to_exit(
        &["check-config", "--config", &config],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("buffer.spool_dir") && stderr.contains("Not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("configuration OK"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--config", &config], Duration::from_secs(10));
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(
        stderr.contains("buffer.spool_dir") && stderr.contains("Not a directory"),
        "{stderr}"
    );

    // A directory without write permission (meaningless as root, who may write anyway).
    let locked = root.path().join("read-only");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(locked.join("probe"), b"").is_err() {
        let config = write_config(
            root.path(),
            &format!("buffer:\n  spool_dir: {}\n", locked.display()),
        );
        let (code, stderr) = run_to_exit(
            &["check-config", "--config", &config],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("buffer.spool_dir") && stderr.contains("Permission denied"),
            "{stderr}"
        );
    }

    // A usable one is created (0700) and left without a lock or any file in it.
    let fresh = root.path().join("fresh/spool");
    let config = write_config(
        root.path(),
        &format!("buffer:\n  spool_dir: {}\n", fresh.display()),
    );
    let (code, stderr) = run_to_exit(
        &["check-config", "--config", &config],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
}
