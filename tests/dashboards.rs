//! The Grafana dashboards in `dashboards/` kept true: every metric name and dimension key
//! their panels and variables query is checked against what the real binary sends to a
//! Monasca API (probes, checks, heartbeats and its own `statsgate.*` metrics), so a rename
//! cannot silently empty a panel. The checker itself is proved to catch a misspelled name.
//! Nothing here writes to `dashboards/`.

#[path = "dashboards/check.rs"]
mod check;
mod common;

use check::{Emitted, check, emitted_of, panels, targets};
use common::curl_post;
use common::fake_openstack::Fake;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every `dashboards/*.json`, parsed: (file name, dashboard).
fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let dash = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, dash)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn the_three_dashboards_are_there_and_valid() {
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "ge-heartbeats.json",
        "host-overview.json",
        "statsgate-health.json",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let mut uids = BTreeSet::new();
    for (name, dash) in &all {
        assert!(
            uids.insert(dash["uid"].as_str().unwrap_or("").to_owned()),
            "{name}: uid shared with another dashboard"
        );
        let mut ids = BTreeSet::new();
        for p in panels(dash) {
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{name}: id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
        }
        assert!(
            targets(dash).len() >= 3,
            "{name}: a dashboard with no queries"
        );
        // Grafana 7.5's export form (the plugin 1.4.0 supports 7.x): the schema 7.3–7.5 write.
        assert_eq!(dash["schemaVersion"], 27, "{name}");
    }
}

/// A free loopback port nobody listens on: the ssh check's connection is refused at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn every_queried_name_and_dimension_is_what_statsgate_sends() {
    let all = dashboards();
    let wanted: BTreeSet<String> = all
        .iter()
        .flat_map(|(_, d)| targets(d).into_iter().map(|t| t.metric))
        .collect();

    let fake = Fake::start();
    let yaml = format!(
        "flush:\n  interval: 1s\nmonasca:\n  backoff_initial: 50ms\n  backoff_max: 500ms\n\
         probes:\n  period: 1s\n\
         checks:\n  instances:\n\
         \x20   - {{name: web, kind: http, period: 1s, url: 'http://{fake}/v2.0/metrics'}}\n\
         \x20   - {{name: self, kind: process, period: 1s, search: [statsgate], detailed: false}}\n\
         \x20   - {{name: peer, kind: host_alive, period: 1s, timeout: 1s, mode: ssh, host: peer-host, target: 127.0.0.1, port: {port}}}\n\
         {keystone}",
        fake = fake.addr,
        port = closed_port(),
        keystone = fake.password_yaml()
    );
    let gw = common::start_env(&yaml, &[("STATSGATE_PROBES__ENABLED", "true")]);
    // Both ways a GE Generic Enabler beats: the script's HTTP request and the UDP line.
    let (status, body) = curl_post(
        gw.http,
        "/beat",
        r#"{"ID": "container-7f3a", "Enabler_ID": "orion", "Enabler_Version": "3.4.0"}"#,
    );
    assert_eq!(status, 200, "{body}");
    gw.sender()
        .send(b"_hb|keyrock|8.1.0|vm-2\nshop.orders:1|c")
        .unwrap();

    // Rates need two probe samples and the self metrics a flush: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let emitted: Emitted = loop {
        let emitted = emitted_of(&fake.metrics());
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| !emitted.contains_key(*n))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break emitted;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    gw.kill9();

    // What this run sent must be the real thing: the probes, the checks, both heartbeat
    // forms and the self metrics all reached Monasca (else the test would prove nothing).
    for prefix in [
        "cpu.",
        "statsgate.",
        "heartbeat.alive",
        "GE_Heartbeat",
        "http_status",
    ] {
        assert!(
            emitted.keys().any(|n| n.starts_with(prefix)),
            "nothing named {prefix}* reached Monasca: {:?}",
            emitted.keys().collect::<Vec<_>>()
        );
    }
    let problems: Vec<String> = all
        .iter()
        .flat_map(|(name, dash)| check(name, dash, &emitted))
        .collect();
    assert!(
        problems.is_empty(),
        "dashboards disagree with what statsgate sends:\n{}\n\nsent: {emitted:#?}",
        problems.join("\n")
    );
}

/// A dashboard like ours, written here, and what a gateway sent for it.
fn small_dashboard() -> (Value, Emitted) {
    let dash = json!({
        "__inputs": [{"name": "DS_MONASCA", "type": "datasource", "pluginId": "monasca-datasource"}],
        "schemaVersion": 27,
        "uid": "t",
        "templating": {"list": [
            {"name": "enabler", "type": "query", "datasource": "${DS_MONASCA}", "query": "enabler_id"},
            {"name": "hostname", "type": "query", "datasource": "${DS_MONASCA}", "query": "hostname"},
            {"name": "interval", "type": "interval", "query": "1m,5m"}
        ]},
        "panels": [
            {"id": 1, "type": "row", "title": "Liveness", "panels": []},
            {"id": 2, "type": "graph", "title": "Alive: $enabler", "datasource": "${DS_MONASCA}",
             "targets": [{"refId": "A", "metric": "heartbeat.alive", "aggregator": "sum",
                          "period": "$interval", "alias": "@enabler_id @enabler_version",
                          "dimensions": [{"key": "enabler_id", "value": "$enabler"},
                                         {"key": "enabler_version", "value": "$all"},
                                         {"key": "hostname", "value": "$hostname"}]}]}
        ]
    });
    let emitted = emitted_of(&[json!({"name": "heartbeat.alive", "dimensions": {
        "enabler_id": "orion", "enabler_version": "3.4.0", "hostname": "h"}})]);
    (dash, emitted)
}

#[test]
fn the_checker_passes_a_true_dashboard_and_names_each_kind_of_mistake() {
    let (good, emitted) = small_dashboard();
    assert_eq!(check("t", &good, &emitted), Vec::<String>::new());

    let target = "/panels/1/targets/0";
    let cases: &[(&str, Value, &str)] = &[
        (
            "/metric",
            json!("heartbeat.alvie"),
            "metric \"heartbeat.alvie\" is not emitted",
        ),
        (
            "/dimensions/1/key",
            json!("enabler_versoin"),
            "has no dimension \"enabler_versoin\"",
        ),
        (
            "/dimensions/0/value",
            json!("$enablr"),
            "uses $enablr, which the dashboard's templating does not define",
        ),
        ("/alias", json!("@enabler @hostname"), "names @enabler,"),
        ("/aggregator", json!("median"), "aggregator \"median\""),
        ("/period", json!("${interval_s}"), "uses $interval_s"),
    ];
    for (path, value, want) in cases {
        let mut bad = good.clone();
        *bad.pointer_mut(&format!("{target}{path}")).unwrap() = value.clone();
        let problems = check("t", &bad, &emitted);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{path} = {value}: want {want:?}, got {problems:?}"
        );
    }

    let mut twice = good.clone();
    twice["panels"][1]["id"] = json!(1);
    assert!(
        check("t", &twice, &emitted)
            .iter()
            .any(|p| p.contains("panel id 1 is used twice"))
    );

    let mut no_input = good.clone();
    no_input["panels"][1]["datasource"] = json!("Monasca");
    assert!(
        check("t", &no_input, &emitted)
            .iter()
            .any(|p| p.contains("is not ${DS_MONASCA}"))
    );

    let mut var = good.clone();
    var["templating"]["list"][0]["query"] = json!("enabler");
    assert!(
        check("t", &var, &emitted)
            .iter()
            .any(|p| p.contains("queries dimension \"enabler\""))
    );
}

#[test]
fn every_real_dashboard_fails_the_check_once_a_name_is_misspelled() {
    for (name, dash) in dashboards() {
        // What the dashboard queries, as if a gateway had sent exactly that.
        let mut emitted = Emitted::new();
        for t in targets(&dash) {
            let keys = emitted.entry(t.metric.clone()).or_default();
            keys.extend(t.keys().map(str::to_owned));
            keys.extend(t.alias_keys());
        }
        assert_eq!(
            check(&name, &dash, &emitted),
            Vec::<String>::new(),
            "{name}"
        );
        let first = targets(&dash).remove(0).metric;
        let renamed = format!("{first}_renamed");
        let text = serde_json::to_string(&dash).unwrap().replace(
            &format!("\"metric\":\"{first}\""),
            &format!("\"metric\":\"{renamed}\""),
        );
        let bad: Value = serde_json::from_str(&text).unwrap();
        let problems = check(&name, &bad, &emitted);
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("\"{renamed}\" is not emitted"))),
            "{name}: {problems:?}"
        );
    }
}
