//! Running it as a service, held to real things: systemd's notify protocol as a service
//! manager sees it (a Unix datagram socket this test binds), the unit as `systemd-analyze`
//! reads it, the Debian package as `cargo deb` builds it and `dpkg` installs it (into a
//! scratch root), and the Dockerfile and compose.yaml held to the configuration keys and to
//! each other, their senders' own commands run against a real gateway.

mod common;

#[path = "service/files.rs"]
mod files;
#[path = "service/notify.rs"]
mod notify;

use files::{Dockerfile, ROOT};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_statsgate");

/// Runs `cmd`, failing with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether `program` runs here; in CI (CI=true) it must, so a missing tool fails there
/// instead of skipping silently.
fn have(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is missing in CI (.ci/run installs it)"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

// ---------------------------------------------------------------------------------------
// (a) The notify protocol, as systemd would receive it.

#[test]
fn ready_after_every_listener_answers_then_watchdog_pings_then_stopping() {
    let manager = notify::Manager::bind();
    // An interval longer than the watchdog timeout: the pings between flushes must come
    // from the flush loop's wake-ups, without flushing early.
    let gw = notify::spawn(
        "flush:\n  interval: 4s\n",
        &[
            ("NOTIFY_SOCKET", manager.path()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let ready = manager.wait_for(&gw, "READY=1", Duration::from_secs(20));
    let status = ready
        .get("STATUS")
        .expect("READY=1 comes with a STATUS line");
    let addrs = notify::Listening::parse(status);

    // At once, nothing else awaited: every listener the STATUS names answers.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"svc.ready:1|c", addrs.udp).unwrap();
    let beat = r#"{"ID": "i-1", "Enabler_ID": "svc", "Enabler_Version": "1", "Timestamp": "1"}"#;
    assert_eq!(common::curl_post(addrs.http, "/beat", beat).0, 200);
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(common::request(addrs.admin, healthz).0, 200);
    let line = gw.first_flushed("svc.ready", Duration::from_secs(15));
    let ts = line["timestamp"].as_u64().unwrap();
    assert_eq!(ts % 4000, 0, "flushed at a 4s boundary, not early: {line}");

    // Pings over more than a whole interval: WATCHDOG_USEC/2 apart, never WATCHDOG_USEC.
    let window = Duration::from_millis(5500);
    let since = Instant::now();
    std::thread::sleep(window.saturating_sub(since.elapsed()));
    let pings = manager.times_of("WATCHDOG", "1");
    let recent: Vec<_> = pings.iter().filter(|t| **t >= since).collect();
    assert!(
        recent.len() >= 4,
        "{} pings in {window:?} with WatchdogSec=2s (one a second expected); messages:\n{}",
        recent.len(),
        manager.transcript()
    );
    let gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        gap < Duration::from_secs(2),
        "a {gap:?} gap between pings: systemd would have killed the gateway"
    );

    let (exit, stopped_at) = gw.sigterm();
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let msgs = manager.drain();
    assert!(
        msgs.iter().all(|m| m.get("MALFORMED").is_none()),
        "{}",
        manager.transcript()
    );
    let pos = |key: &str, value: &str| msgs.iter().position(|m| m.is(key, value));
    let ready_at = pos("READY", "1").unwrap();
    let stopping_at = pos("STOPPING", "1")
        .unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM:\n{}", manager.transcript()));
    assert!(ready_at < stopping_at, "{}", manager.transcript());
    assert!(
        msgs[stopping_at].at >= stopped_at,
        "STOPPING=1 only once the signal came"
    );
    assert_eq!(
        msgs.iter().filter(|m| m.is("READY", "1")).count(),
        1,
        "one READY=1 (no reload here)"
    );
    let final_flush = msgs
        .iter()
        .position(|m| m.get("STATUS") == Some("SIGTERM: final flush"))
        .expect("a STATUS line for the final flush");
    assert!(final_flush > stopping_at, "{}", manager.transcript());
}

#[test]
fn a_sighup_reload_is_reloading_then_ready_and_the_gateway_serves_on() {
    let manager = notify::Manager::bind();
    let gw = notify::spawn(
        "flush:\n  interval: 200ms\n",
        &[("NOTIFY_SOCKET", manager.path())],
    );
    manager.wait_for(&gw, "READY=1", Duration::from_secs(20));
    let sent = gw.sighup();
    let reloading = manager.wait_for(&gw, "RELOADING=1", Duration::from_secs(20));
    assert!(reloading.at >= sent, "{}", manager.transcript());
    // systemd 253+ needs the monotonic time of the reload's start beside RELOADING=1.
    let usec: u64 = reloading
        .get("MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC:\n{}", manager.transcript()));
    assert!(usec > 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.stderr().contains("reload: configuration unchanged") {
        assert!(
            Instant::now() < deadline,
            "no reload logged:\n{}",
            gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // READY=1 is sent right after the log line.
    std::thread::sleep(Duration::from_millis(200));
    let msgs = manager.drain();
    let pos = |key: &str| msgs.iter().rposition(|m| m.is(key, "1"));
    let (ready, reload) = (pos("READY"), pos("RELOADING"));
    assert!(
        reload.is_some() && ready > reload,
        "READY=1 after RELOADING=1:\n{}",
        manager.transcript()
    );
    let status = msgs[ready.unwrap()].get("STATUS").unwrap_or_default();
    assert!(status.starts_with("listening: statsd udp"), "{status}");
    let (exit, _) = gw.sigterm();
    assert!(exit.success(), "a SIGHUP does not stop the gateway: {exit}");
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let manager = notify::Manager::bind();
    // pid 1 is never the gateway's; a wrongly enabled watchdog would ping every 100ms.
    let gw = notify::spawn(
        "flush:\n  interval: 100ms\n",
        &[
            ("NOTIFY_SOCKET", manager.path()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    manager.wait_for(&gw, "READY=1", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        manager.times_of("WATCHDOG", "1").is_empty(),
        "pinged for WATCHDOG_PID=1:\n{}",
        manager.transcript()
    );
    let (exit, _) = gw.sigterm();
    assert!(exit.success());
}

#[test]
fn an_unreachable_notify_socket_is_one_warning_and_the_gateway_serves() {
    let missing = tempfile::tempdir().unwrap();
    let socket = missing.path().join("no-such-dir/notify.sock");
    let gw = common::start_env(
        "flush:\n  interval: 200ms\n",
        &[
            ("NOTIFY_SOCKET", socket.to_str().unwrap()),
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    gw.sender().send(b"still.serving:1|c").unwrap();
    gw.first_flushed("the line", Duration::from_secs(10), |m| {
        m["name"] == "still.serving"
    });
    // READY and several pings failed by now; each would have logged without the once-guard.
    std::thread::sleep(Duration::from_millis(500));
    let stderr = gw.stderr.lock().unwrap().clone();
    assert_eq!(
        stderr.matches("cannot notify the service manager").count(),
        1,
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// (b) The unit, as systemd reads it.

#[test]
fn the_unit_agrees_with_the_package_and_passes_systemd_analyze() {
    let unit = files::read("packaging/statsgate.service");
    let deb = files::deb_metadata();
    let asset = |source: &str| -> String {
        let dest = deb.asset_dest(source);
        format!("/{}", dest.trim_end_matches('/'))
    };
    // The paths the unit names are the ones the package installs.
    let exec = format!(
        "ExecStart={} --config {} run",
        asset("target/release/statsgate"),
        asset("config/statsgate.yaml")
    );
    for line in [
        exec.as_str(),
        &format!("EnvironmentFile=-{}", asset("packaging/statsgate.env")),
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=statsgate",
        "Environment=STATSGATE_BUFFER__SPOOL_DIR=%S/statsgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "packaging/statsgate.service lacks `{line}`"
        );
    }
    // check-config before the signal: a bad file fails the reload, naming the key.
    let reloads: Vec<_> = unit
        .lines()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert!(reloads[0].contains("check-config"), "{reloads:?}");

    if !have("systemd-analyze", &["--version"]) {
        return;
    }
    // verify wants ExecStart's binary to exist: this build's, in a copy.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("statsgate.service");
    std::fs::write(&copy, unit.replace("/usr/bin/statsgate", BIN)).unwrap();
    let out = run_ok(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(complaints.trim().is_empty(), "verify: {complaints}");
    // The hardening, as systemd scores it: at most 2.0 ("OK"; 10 is an unsandboxed root).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0:\n{report}");
    assert!(report.contains("Overall exposure level"), "{report}");
}

// ---------------------------------------------------------------------------------------
// (c) The Debian package.

#[test]
fn the_debian_package_holds_the_binary_unit_conffiles_and_docs_and_installs() {
    if !have("cargo", &["deb", "--version"]) || !have("dpkg-deb", &["--version"]) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let deb = out.path().join("statsgate.deb");
    // This test build's binary, packaged as `cargo deb` packages a release one: no second
    // compile of the whole tree (README's release command builds with the release profile).
    let profile_dir = Path::new(BIN).parent().unwrap().file_name().unwrap();
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        profile_dir.to_str().unwrap()
    };
    run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(ROOT)
            .args([
                "deb",
                "--no-build",
                "--no-dbgsym",
                "--fast",
                "--locked",
                "--quiet",
            ])
            .args(["--profile", profile, "--output"])
            .arg(&deb),
    );
    files::check_deb(&deb, out.path(), BIN);
}

// ---------------------------------------------------------------------------------------
// (d) The container image and the compose example.

/// `check-config` on `config/statsgate.yaml` (the image's file) with exactly `env`: the
/// effective settings, or the refusal.
fn check_config(env: &[(String, String)]) -> Result<Value, String> {
    let out = Command::new(BIN)
        .current_dir(ROOT)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--config", "config/statsgate.yaml", "check-config"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string())
}

/// `env` with the spool moved to `dir`: check-config creates the directory it names.
fn spool_in(env: &[(String, String)], dir: &Path) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    for (k, v) in &mut env {
        if k == "STATSGATE_BUFFER__SPOOL_DIR" {
            *v = dir.display().to_string();
        }
    }
    env
}

#[test]
fn the_dockerfile_configures_what_its_comments_say() {
    let df = Dockerfile::read();
    let env = df.env();
    let spool = tempfile::tempdir().unwrap();
    let config = check_config(&spool_in(&env, spool.path()))
        .unwrap_or_else(|e| panic!("the image's ENV is refused: {e}"));
    // The GE proxy's port on the wildcard, so that other containers' beats reach it.
    assert_eq!(config["http"]["listen"], "0.0.0.0:8080");
    assert_eq!(config["statsd"]["listen"], "0.0.0.0:8125");
    assert_eq!(config["admin"]["listen"], "0.0.0.0:8126");
    // On the wildcard, the endpoints that forward without a credential stay off.
    assert_eq!(config["http"]["metrics_endpoint"], "auto");
    let spool_dir = env
        .iter()
        .find(|(k, _)| k == "STATSGATE_BUFFER__SPOOL_DIR")
        .map(|(_, v)| v.as_str());
    assert_eq!(spool_dir, Some("/var/lib/statsgate"));
    assert_eq!(
        df.args("VOLUME"),
        ["/var/lib/statsgate"],
        "the spool is the volume"
    );
    let exposed = df.exposed();
    for port in ["8125/udp", "8080/tcp", "8126/tcp"] {
        assert!(exposed.contains(port), "EXPOSE lacks {port}: {exposed:?}");
    }
    assert_eq!(exposed.len(), 3, "{exposed:?}");
    assert_eq!(df.args("USER"), ["statsgate"], "an unprivileged user");
    assert!(
        df.last("HEALTHCHECK").contains("/dev/tcp/127.0.0.1/8126"),
        "the health check asks the admin port"
    );
    assert!(
        df.last("ENTRYPOINT")
            .contains(r#""--config", "/etc/statsgate/statsgate.yaml""#)
    );
    assert!(
        df.copies().iter().any(|(from, src, dest)| from.is_none()
            && src == &["config/statsgate.yaml"]
            && dest == "/etc/statsgate/statsgate.yaml"),
        "the image's config is config/statsgate.yaml"
    );
}

#[test]
fn the_dockerfile_builds_what_ci_and_the_package_build() {
    files::check_docker_build(&Dockerfile::read());
}

#[test]
fn the_compose_example_matches_the_image_and_its_senders_are_accepted() {
    let df = Dockerfile::read();
    let compose: Value =
        serde_saphyr::from_str(&files::read("compose.yaml")).expect("compose.yaml parses");
    let services = compose["services"].as_object().expect("services");
    let gateway = &services["statsgate"];
    assert_eq!(gateway["build"], ".", "built from this Dockerfile");

    // Published ports: only what the image exposes; the admin port on loopback alone.
    let exposed = df.exposed();
    for port in gateway["ports"].as_array().unwrap() {
        let port = port.as_str().unwrap();
        let (published, container) = port.rsplit_once(':').unwrap();
        let container = if container.contains('/') {
            container.to_owned()
        } else {
            format!("{container}/tcp")
        };
        assert!(exposed.contains(&container), "{port}: not exposed");
        if container == "8126/tcp" {
            assert!(
                published.starts_with("127.0.0.1:"),
                "{port}: admin beyond loopback"
            );
        }
    }
    let volume = gateway["volumes"][0].as_str().unwrap();
    let (name, target) = volume.split_once(':').unwrap();
    assert_eq!([target], df.args("VOLUME").as_slice(), "the spool volume");
    assert!(
        compose["volumes"].get(name).is_some(),
        "volume {name} declared"
    );

    // Its environment, on top of the image's, is accepted and means what it says.
    let mut env = df.env();
    for (k, v) in gateway["environment"].as_object().unwrap() {
        env.push((k.clone(), v.as_str().unwrap().to_owned()));
    }
    let spool = tempfile::tempdir().unwrap();
    let config = check_config(&spool_in(&env, spool.path())).expect("compose environment");
    assert_eq!(config["flush"]["interval"], "10s");
    assert_eq!(config["heartbeat"]["expected_interval"], "10s");

    // Each sender waits on a health check the image has, and names services that exist.
    assert!(!df.last("HEALTHCHECK").is_empty());
    for (name, svc) in services.iter().filter(|(n, _)| *n != "statsgate") {
        for dep in svc["depends_on"].as_object().unwrap().keys() {
            assert!(services.contains_key(dep), "{name} depends on {dep}");
        }
    }

    // The senders' own commands, against a real gateway.
    let gw = common::start("flush:\n  interval: 500ms\n");
    let beat = &services["beat-sender"];
    let url = beat["environment"]["STATSGATE_URL"].as_str().unwrap();
    assert_eq!(
        url, "http://statsgate:8080",
        "the service name and http.listen's port"
    );
    let curl = files::loop_line(beat, "curl ");
    run_ok(
        Command::new("sh")
            .args(["-c", &curl])
            .envs(files::string_env(beat))
            .env("STATSGATE_URL", format!("http://{}", gw.http))
            .env("HOSTNAME", "compose-test"),
    );
    let statsd = &services["statsd-sender"];
    assert_eq!(statsd["environment"]["STATSD_HOST"], "statsgate");
    assert_eq!(statsd["environment"]["STATSD_PORT"], "8125");
    let echo = files::loop_line(statsd, "/dev/udp/");
    run_ok(
        Command::new("bash")
            .args(["-c", &echo])
            .env("STATSD_HOST", "127.0.0.1")
            .env("STATSD_PORT", gw.udp.port().to_string()),
    );
    let enabler = beat["environment"]["ENABLER_ID"].as_str().unwrap();
    let got = gw.flushed_until(Duration::from_secs(15), |all| {
        common::find(all, "GE_Heartbeat", &[("id", "compose-test")]).is_some()
            && common::find(all, "demo.requests", &[("service", "demo")]).is_some()
    });
    let hb = common::find(&got, "GE_Heartbeat", &[("id", "compose-test")]).unwrap();
    assert_eq!(hb["dimensions"]["enabler_id"], enabler);
    assert_eq!(hb["dimensions"]["enabler_version"], "1.0");
}
