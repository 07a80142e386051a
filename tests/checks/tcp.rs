//! `kind: tcp` checks against real things on loopback: a listener this test binds, a port
//! nothing listens on, IPv6 loopback where the machine has it, through the real binary.

use crate::common::{self, Gateway};
use serde_json::Value;
use std::time::Duration;

fn gateway(checks: &[(&str, &str)]) -> Gateway {
    let mut yaml = String::from("flush:\n  interval: 1s\nchecks:\n  instances:\n");
    for (name, address) in checks {
        yaml.push_str(&format!(
            "    - name: {name}\n      kind: tcp\n      period: 1s\n      address: \"{address}\"\n      dimensions:\n        url: overridden?\n        service: db\n"
        ));
    }
    common::start(&yaml)
}

fn of<'a>(all: &'a [Value], name: &str, url: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|m| m["name"] == name && m["dimensions"]["url"] == url)
        .collect()
}

#[test]
fn an_open_port_is_up_with_a_response_time_and_a_closed_one_down_with_the_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = format!("127.0.0.1:{}", common::closed_port());
    let gw = gateway(&[("open", &open), ("closed", &closed)]);
    let all = gw.flushed_within(Duration::from_secs(4));

    let up = of(&all, "network.tcp.status", &open);
    assert!(!up.is_empty(), "{all:?}");
    assert!(up.iter().all(|m| m["value"] == 0.0), "{up:?}");
    assert_eq!(up[0]["dimensions"]["hostname"], "test-host");
    assert_eq!(up[0]["dimensions"]["service"], "db");
    let times = of(&all, "network.tcp.response_time", &open);
    assert!(!times.is_empty());
    let t = times[0]["value"].as_f64().unwrap();
    assert!(t > 0.0 && t < 1.0, "{t}");

    let down = of(&all, "network.tcp.status", &closed);
    assert!(!down.is_empty(), "{all:?}");
    assert_eq!(down[0]["value"], 1.0);
    let text = down[0]["value_meta"]["error"].as_str().unwrap();
    assert!(
        text.starts_with("error: connection refused. Connection failed after "),
        "{text}"
    );
    assert!(of(&all, "network.tcp.response_time", &closed).is_empty());
    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"closed\",outcome=\"failed\""
        ) >= 1
    );
    assert!(
        gw.counter(
            "statsgate_check_runs_total",
            "check=\"open\",outcome=\"ok\""
        ) >= 1
    );
}

#[test]
fn ipv6_loopback_is_checked_when_the_machine_has_it() {
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    let open = format!("[::1]:{}", listener.local_addr().unwrap().port());
    // A port bound and released on ::1: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        format!("[::1]:{}", l.local_addr().unwrap().port())
    };
    let gw = gateway(&[("v6", &open), ("v6-closed", &closed)]);
    let all = gw.flushed_within(Duration::from_secs(4));
    let up = of(&all, "network.tcp.status", &open);
    assert!(
        !up.is_empty() && up.iter().all(|m| m["value"] == 0.0),
        "{all:?}"
    );
    assert!(!of(&all, "network.tcp.response_time", &open).is_empty());
    let down = of(&all, "network.tcp.status", &closed);
    assert!(!down.is_empty() && down[0]["value"] == 1.0, "{all:?}");
}

#[test]
fn a_name_is_resolved_and_its_addresses_tried_in_order() {
    // `localhost` may resolve to ::1 first; only 127.0.0.1 listens, so a v6 refusal must
    // fall through to the v4 address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("localhost:{}", listener.local_addr().unwrap().port());
    let gw = gateway(&[("by-name", &address)]);
    let all = gw.flushed_within(Duration::from_secs(3));
    let up = of(&all, "network.tcp.status", &address);
    assert!(
        !up.is_empty() && up.iter().all(|m| m["value"] == 0.0),
        "{all:?}"
    );
}

#[test]
fn a_missing_or_bad_address_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for body in ["", "      address: \"db\"\n"] {
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!("checks:\n  instances:\n    - name: db\n      kind: tcp\n{body}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args(["check-config", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("checks.instances[0]"), "{stderr}");
        assert!(stderr.contains("address"), "{stderr}");
    }
}
