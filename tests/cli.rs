//! The binary's command line: configuration errors name the key, `check-config` prints the
//! effective settings, environment overrides win over the file.

use std::process::Command;

fn statsgate(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statsgate"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run statsgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).expect("write");
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

#[test]
fn shipped_config_checks_out() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/statsgate.yaml");
    let (code, stdout, stderr) = statsgate(&["check-config", "--config", path], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("listen: 127.0.0.1:8125"), "{stdout}");
    assert!(stderr.contains("configuration OK"));
}

#[test]
fn a_bad_value_is_refused_naming_its_key() {
    let (_d, path) = config_file("flush:\n  interval: 10x\n");
    let (code, _, stderr) = statsgate(&["check-config", "-c", &path], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("flush.interval"), "{stderr}");

    let (_d, path) = config_file("statsd:\n  listne: 127.0.0.1:1\n");
    let (code, _, stderr) = statsgate(&["run", "-c", &path], &[]);
    assert_eq!(code, 2, "run refuses too, before binding anything");
    assert!(stderr.contains("listne"), "{stderr}");
}

#[test]
fn environment_overrides_win_and_are_checked() {
    let (_d, path) = config_file("flush:\n  interval: 10s\n");
    let (code, stdout, stderr) = statsgate(
        &["check-config", "-c", &path],
        &[("STATSGATE_FLUSH__INTERVAL", "30s")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("interval: 30s"), "{stdout}");

    let (code, _, stderr) = statsgate(&["check-config"], &[("STATSGATE_FLUSH__INTERVAL", "1ms")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("flush.interval") && stderr.contains("STATSGATE_FLUSH__INTERVAL"),
        "{stderr}"
    );

    let (code, _, stderr) = statsgate(&["check-config"], &[("STATSGATE_STATSD__NOPE", "1")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("STATSGATE_STATSD__NOPE"), "{stderr}");
}

#[test]
fn an_address_in_use_names_the_key() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    // Without SO_REUSEPORT on the squatter the gateway's bind fails.
    let (code, _, stderr) = statsgate(
        &["run"],
        &[
            ("STATSGATE_STATSD__LISTEN", addr.as_str()),
            ("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("statsd.listen"), "{stderr}");
}
