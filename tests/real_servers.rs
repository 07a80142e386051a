//! End to end against the real Keystone 25.0.0 and monasca-api 11.0.0, installed from PyPI
//! and started on 127.0.0.1 by `tests/e2e/kit.py`. statsgate runs as a user that holds only
//! `monasca-agent`; each check reads what monasca-api published.
//!
//! The kit needs Python 3 and the package registries. Under CI (`CI` set) a missing piece
//! fails the test; elsewhere the suite is skipped with a loud message.

mod common;
#[path = "real_servers/kit.rs"]
mod kit;
#[path = "real_servers/tls.rs"]
mod tls;

use common::start;
use kit::{Kit, TOKEN_SECONDS, now_ms, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Keystone and monasca-api on HTTPS, their certificate from a CA the test made: statsgate
/// trusts it through `keystone.ca_file` (or `OS_CACERT`), so every scenario here also proves
/// the TLS path. Plain HTTP is the probe test's kit.
#[test]
fn real_keystone_and_monasca_api() {
    let Some(kit) = Kit::start_tls() else { return };
    assert!(kit.s("keystone_url").starts_with("https://"));
    assert!(kit.s("monasca_url").starts_with("https://"));
    scripted_datagrams_arrive_metric_by_metric(&kit);
    tls::openrc_with_os_cacert(&kit);
    tls::without_the_ca_batches_are_spooled_then_all_delivered_with_it(&kit);
    tls::certificates_for_another_host_name_are_refused_and_nothing_is_lost(&kit);
    tls::a_reload_that_adds_the_ca_delivers_what_waited(&kit);
    application_credential_with_an_explicit_url(&kit);
    heartbeats_and_client_metrics_reach_monasca(&kit);
    publisher_failing_for_20s_then_recovering_loses_nothing_across_token_renewals(&kit);
    a_hundred_thousand_series_in_one_flush_arrive_exactly_once(&kit);
}

/// Issues 12 and 13: the host probes' default names and every kind of check reach the real
/// monasca-api under monasca-agent's names, with their dimensions. Its own kit, so it runs
/// alone (`cargo test --test real_servers probe`).
#[test]
fn real_monasca_api_stores_probe_and_check_metrics() {
    use std::os::unix::fs::PermissionsExt;
    let Some(kit) = Kit::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("check_e2e");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho 'WARNING - e2e|queue=7;5;10'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = dir.path().join("rainbow");
    std::fs::create_dir(&files).unwrap();
    // What the Rainbow SDK appends with in_files=True (seed-apis.md §2).
    let record = format!(
        "{{\"name\": \"rainbow_e2e_depth\", \"units\": \"items\", \"desc\": \"e2e\", \"timestamp\": {}, \"val\": 12.5, \"higherIsBetter\": true, \"minVal\": 0, \"maxVal\": 100, \"group\": \"AppLevelMetrics\"}}\n",
        now_ms() / 1000
    );
    std::fs::write(files.join("rainbow.metrics.jsonl"), record).unwrap();
    // The process check finds the real monasca-api by a piece of its command line.
    let monasca_pid = kit.info["pids"]["monasca"].as_u64().expect("monasca pid");
    let cmdline = std::fs::read(format!("/proc/{monasca_pid}/cmdline")).expect("cmdline");
    let marker = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .max_by_key(String::len)
        .expect("an argument");
    let keystone = kit.s("keystone_url");
    let keystone_port = keystone
        .trim_start_matches("http://")
        .split(['/', ':'])
        .nth(1)
        .expect("keystone port")
        .to_owned();
    let checks = format!(
        "checks:\n  files_dir: {files}\n  files_period: 500ms\n  instances:\n\
         \x20   - {{name: monasca-api, kind: http, period: 2s, url: '{monasca}', keystone: true}}\n\
         \x20   - {{name: keystone-port, kind: tcp, period: 2s, address: '127.0.0.1:{keystone_port}'}}\n\
         \x20   - {{name: loopback, kind: host_alive, period: 2s, host: localhost, target: 127.0.0.1, mode: ping}}\n\
         \x20   - {{name: monasca-api-proc, kind: process, period: 2s, search: ['{marker}'], exact: false}}\n\
         \x20   - {{name: nagios.e2e, kind: nagios, period: 2s, command: ['{plugin}']}}\n",
        files = files.display(),
        monasca = kit.s("monasca_url"),
        plugin = plugin.display(),
    );
    let gw = common::start_env(
        &format!(
            "flush:\n  interval: 1s\nprobes:\n  period: 1s\n{checks}{}",
            kit.password_yaml()
        ),
        &[("STATSGATE_PROBES__ENABLED", "true")],
    );
    let sock = gw.sender();
    let want: [(&str, Vec<(&str, &str)>); 18] = [
        ("cpu.user_perc", vec![]),
        ("cpu.idle_perc", vec![]),
        ("mem.usable_perc", vec![]),
        ("load.avg_1_min", vec![]),
        ("disk.space_used_perc", vec![("mount_point", "/")]),
        ("io.read_req_sec", vec![("mount_point", "/")]),
        ("net.in_bytes_sec", vec![]),
        ("net.int_status", vec![]),
        ("http_status", vec![]),
        ("http_response_time", vec![]),
        ("network.tcp.response_time", vec![]),
        ("network.tcp.status", vec![]),
        (
            "host_alive_status",
            vec![("observer_host", "test-host"), ("test_type", "ping")],
        ),
        (
            "process.pid_count",
            vec![("process_name", "monasca-api-proc")],
        ),
        (
            "process.mem.rss_mbytes",
            vec![("process_name", "monasca-api-proc")],
        ),
        (
            "nagios.e2e",
            vec![("observer_host", "test-host"), ("target_host", "test-host")],
        ),
        ("nagios.e2e.queue", vec![]),
        ("rainbow_e2e_depth", vec![]),
    ];
    let stored = |name: &str, dims: &[(&str, &str)]| {
        kit.published().into_iter().find(|e| {
            let m = &e["metric"];
            m["name"] == name
                && (m["dimensions"]["hostname"] == "test-host" || name == "host_alive_status")
                && dims.iter().all(|(k, v)| m["dimensions"][*k] == *v)
                && (!name.starts_with("net.") || m["dimensions"]["device"].is_string())
                && (!name.starts_with("disk.") || m["dimensions"]["device"].is_string())
        })
    };
    wait_until(
        "the probes' default names and every check's metrics stored",
        Duration::from_secs(60),
        || {
            // Rainbow's DiffMetric as a statsd line: 100 then 150 is +50 %.
            let _ = sock.send_to(b"rainbow_e2e_change:100|pc", gw.udp);
            let _ = sock.send_to(b"rainbow_e2e_change:150|pc", gw.udp);
            want.iter().all(|(n, d)| stored(n, d).is_some())
                && stored("rainbow_e2e_change", &[]).is_some()
        },
    );
    let value =
        |name: &str, dims: &[(&str, &str)]| stored(name, dims).unwrap()["metric"]["value"].as_f64();
    let url = kit.s("monasca_url");
    assert_eq!(
        value("http_status", &[("url", &url)]),
        Some(0.0),
        "monasca-api answers its own token"
    );
    assert_eq!(value("network.tcp.status", &[]), Some(0.0));
    assert!(value("process.pid_count", &[]).unwrap() >= 1.0);
    assert_eq!(value("nagios.e2e", &[]), Some(1.0), "WARNING is 1");
    let nagios = stored("nagios.e2e", &[]).unwrap();
    assert_eq!(nagios["metric"]["value_meta"]["detail"], "WARNING - e2e");
    assert_eq!(value("nagios.e2e.queue", &[]), Some(7.0));
    assert_eq!(value("rainbow_e2e_depth", &[]), Some(12.5));
    let host = stored("host_alive_status", &[]).unwrap();
    assert_eq!(host["metric"]["dimensions"]["hostname"], "localhost");
    drop(gw);
}

fn scripted_datagrams_arrive_metric_by_metric(kit: &Kit) {
    let gw = start(&format!("flush:\n  interval: 1s\n{}", kit.password_yaml()));
    let sender = gw.sender();
    let started = now_ms();
    sender
        .send(b"e2e1.requests:1|c|@0.5|#service:api,canary")
        .unwrap();
    sender
        .send(b"e2e1.latency:10:20:30|ms|#{'service': 'api'}")
        .unwrap();
    sender
        .send(b"e2e1.queue,zone=a:42|g\ne2e1.users:alice|s\ne2e1.users:bob|s")
        .unwrap();
    wait_until("the script published", Duration::from_secs(30), || {
        kit.published_with_prefix("e2e1.").len() >= 12
    });
    let published = kit.published_with_prefix("e2e1.");
    let find = |name: &str| {
        published
            .iter()
            .find(|e| e["metric"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} not published: {published:?}"))
    };
    let project_id = kit.s("project_id");
    for e in &published {
        assert_eq!(
            e["meta"]["tenantId"],
            project_id.as_str(),
            "stored under the agent's project"
        );
        let ts = e["metric"]["timestamp"].as_u64().unwrap();
        assert_eq!(ts % 1000, 0, "interval-aligned timestamp");
        assert!(
            ts + 1000 >= started && ts <= now_ms() + 1000,
            "timestamp {ts} is the interval's end"
        );
        assert_eq!(e["metric"]["dimensions"]["hostname"], "test-host");
    }
    let requests = &find("e2e1.requests")["metric"];
    assert_eq!(requests["value"], 2, "1 / 0.5");
    assert_eq!(requests["dimensions"]["service"], "api");
    assert_eq!(requests["dimensions"]["canary"], "True");
    assert_eq!(find("e2e1.latency.count")["metric"]["value"], 3);
    assert_eq!(find("e2e1.latency.avg")["metric"]["value"], 20);
    assert_eq!(
        find("e2e1.latency.max")["metric"]["dimensions"]["service"],
        "api"
    );
    assert_eq!(find("e2e1.latency.median")["metric"]["value"], 20);
    assert_eq!(find("e2e1.queue")["metric"]["value"], 42);
    assert_eq!(find("e2e1.queue")["metric"]["dimensions"]["zone"], "a");
    assert_eq!(find("e2e1.users")["metric"]["value"], 2);
    assert_eq!(gw.counter("statsgate_forward_batches_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
}

fn application_credential_with_an_explicit_url(kit: &Kit) {
    let yaml = format!(
        "flush:\n  interval: 1s\nmonasca:\n  url: {}\n  ca_file: {}\nkeystone:\n  auth_url: {}\n  application_credential_id: {}\n  application_credential_secret: {}\n  ca_file: {}\n",
        kit.s("monasca_url"),
        kit.ca_file(),
        kit.s("keystone_url"),
        kit.s("app_credential_id"),
        kit.s("app_credential_secret"),
        kit.ca_file(),
    );
    let gw = start(&yaml);
    gw.sender().send(b"e2e3.appcred:7|g").unwrap();
    wait_until("published", Duration::from_secs(30), || {
        !kit.published_with_prefix("e2e3.appcred").is_empty()
    });
    let e = &kit.published_with_prefix("e2e3.appcred")[0];
    assert_eq!(e["metric"]["value"], 7);
    assert_eq!(e["meta"]["tenantId"], kit.s("project_id").as_str());
    let (_, status) = gw.stop();
    assert!(status.success());
}

fn heartbeats_and_client_metrics_reach_monasca(kit: &Kit) {
    let gw = start(&format!("flush:\n  interval: 1s\n{}", kit.password_yaml()));
    let ts = now_ms() - 2000;
    // Exactly what the GE Heartbeat script sends: curl -X POST -d '{...}' http://proxy:8080/beat
    let beat = format!(
        r#"{{"ID": "e2e5-http", "Enabler_ID": "orion", "Enabler_Version": "3.4.0", "Timestamp": "{ts}"}}"#
    );
    let (status, body) = common::curl_post(gw.http, "/beat", &beat);
    assert_eq!(status, 200, "{body}");
    let sender = gw.sender();
    sender
        .send(br#"{"ID": "e2e5-udp", "Enabler_ID": "orion", "Enabler_Version": "3.4.0"}"#)
        .unwrap();
    sender.send(b"_hb|orion|3.4.0|e2e5-compact").unwrap();
    let metric = format!(
        r#"{{"name": "e2e5.client", "dimensions": {{"app": "legacy"}}, "timestamp": {ts}, "value": 5, "value_meta": {{"source": "local"}}}}"#
    );
    let (status, body) = common::request(
        gw.http,
        &format!(
            "POST /v2.0/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{metric}",
            metric.len()
        ),
    );
    assert_eq!(status, 204, "{body}");
    let beats = || -> Vec<Value> {
        kit.published()
            .into_iter()
            .filter(|e| {
                e["metric"]["name"] == "GE_Heartbeat"
                    && e["metric"]["dimensions"]["id"]
                        .as_str()
                        .is_some_and(|i| i.starts_with("e2e5-"))
            })
            .collect()
    };
    wait_until("three beats published", Duration::from_secs(30), || {
        beats().len() == 3
    });
    wait_until(
        "the client metric published",
        Duration::from_secs(30),
        || !kit.published_with_prefix("e2e5.client").is_empty(),
    );
    let http_beat = beats()
        .into_iter()
        .find(|e| e["metric"]["dimensions"]["id"] == "e2e5-http")
        .unwrap();
    assert_eq!(http_beat["metric"]["timestamp"].as_u64(), Some(ts));
    assert_eq!(http_beat["metric"]["value"], 1);
    assert_eq!(http_beat["metric"]["dimensions"]["enabler_id"], "orion");
    assert_eq!(
        http_beat["metric"]["dimensions"]["enabler_version"],
        "3.4.0"
    );
    assert_eq!(http_beat["meta"]["tenantId"], kit.s("project_id").as_str());
    let client = &kit.published_with_prefix("e2e5.client")[0];
    assert_eq!(client["metric"]["value_meta"]["source"], "local");
    assert_eq!(client["metric"]["value"], 5);
    let (_, status) = gw.stop();
    assert!(status.success());
}

fn publisher_failing_for_20s_then_recovering_loses_nothing_across_token_renewals(kit: &Kit) {
    let gw = start(&format!(
        "flush:\n  interval: 1s\nmonasca:\n  backoff_initial: 200ms\n  backoff_max: 2s\n{}",
        kit.password_yaml()
    ));
    let sender = gw.sender();
    let begun = Instant::now();
    let mut sent = 0u64;
    kit.set_fault(true);
    while begun.elapsed() < Duration::from_secs(20) {
        sender.send(b"e2e4.ticks:1|c").unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        gw.counter("statsgate_forward_retries_total", "") > 0,
        "the 500s were retried"
    );
    kit.set_fault(false);
    // Keep going past a token lifetime so renewals happen with live traffic.
    while begun.elapsed() < Duration::from_secs(TOKEN_SECONDS + 10) {
        sender.send(b"e2e4.ticks:1|c").unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let total = || {
        kit.published_with_prefix("e2e4.ticks")
            .iter()
            .filter_map(|e| e["metric"]["value"].as_f64())
            .sum::<f64>()
    };
    wait_until("every tick published", Duration::from_secs(60), || {
        total() == sent as f64
    });
    assert!(
        gw.counter("statsgate_token_renewals_total", "") >= 2,
        "renewed before the 30 s expiry"
    );
    assert_eq!(gw.counter("statsgate_forward_batches_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
    assert_eq!(total(), sent as f64, "nothing lost, nothing twice");
}

fn a_hundred_thousand_series_in_one_flush_arrive_exactly_once(kit: &Kit) {
    const SERIES: usize = 100_000;
    // No flush on the clock: the final flush at SIGTERM holds all of them.
    let gw = start(&format!(
        "flush:\n  interval: 1h\n  idle_expiry: 1h\nshutdown:\n  grace: 5m\n{}",
        kit.password_yaml()
    ));
    let sender = gw.sender();
    let mut datagram = String::new();
    let mut sent_datagrams = 0u64;
    for i in 0..SERIES {
        datagram.push_str(&format!("e2e2.series.{i}:1|c\n"));
        if (i + 1) % 50 == 0 {
            sender.send(datagram.as_bytes()).unwrap();
            datagram.clear();
            sent_datagrams += 1;
            if sent_datagrams.is_multiple_of(200) {
                gw.wait_for("the gateway keeps up", Duration::from_secs(60), |g| {
                    g.counter("statsgate_datagrams_received_total", "") + 400 >= sent_datagrams
                });
            }
        }
    }
    gw.wait_for("every line accepted", Duration::from_secs(60), |g| {
        g.counter("statsgate_lines_accepted_total", "") == SERIES as u64
    });
    let (_, status) = gw.stop();
    assert!(status.success());
    let published = kit.published_with_prefix("e2e2.series.");
    assert_eq!(published.len(), SERIES, "each series exactly once");
    let distinct: std::collections::HashSet<&str> = published
        .iter()
        .filter_map(|e| e["metric"]["name"].as_str())
        .collect();
    assert_eq!(distinct.len(), SERIES);
    assert!(published.iter().all(|e| e["metric"]["value"] == 1));
}
