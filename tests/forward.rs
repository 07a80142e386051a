//! The real binary forwarding to an in-process Keystone + Monasca that speaks the measured
//! contract, with faults injected: token expiry and revocation, Keystone down at start-up,
//! 5xx then recovery, slow answers under load, 413, wrong roles, a refused tenant_id.

mod common;

use common::fake_openstack::{APP_SECRET, Fake, PASSWORD};
use common::start;
use std::time::{Duration, Instant};

/// One-second flushes and quick retries, so the tests run in seconds.
const FAST: &str =
    "flush:\n  interval: 1s\nmonasca:\n  backoff_initial: 50ms\n  backoff_max: 500ms\n";

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary once with `yaml` (ephemeral ports added) and returns how it ended.
fn run_once(yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!("statsd:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n{yaml}"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap()
}

/// Sum of the values of metric `name` the fake stored.
fn stored_sum(fake: &Fake, name: &str) -> f64 {
    fake.metrics()
        .iter()
        .filter(|m| m["name"] == name)
        .filter_map(|m| m["value"].as_f64())
        .sum()
}

#[test]
fn every_metric_arrives_with_a_catalog_discovered_endpoint() {
    let fake = Fake::start();
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let sender = gw.sender();
    sender
        .send(b"orders:3|c|#service:shop\nlatency:10|ms\nlatency:30|ms\nqueue:7|g")
        .unwrap();
    wait_until("metrics stored", Duration::from_secs(10), || {
        stored_sum(&fake, "orders") == 3.0
    });
    wait_until("gauge stored", Duration::from_secs(5), || {
        stored_sum(&fake, "queue") >= 7.0
    });
    let metrics = fake.metrics();
    let orders = metrics.iter().find(|m| m["name"] == "orders").unwrap();
    assert_eq!(orders["dimensions"]["service"], "shop");
    assert_eq!(orders["dimensions"]["hostname"], "test-host");
    assert!(
        metrics
            .iter()
            .any(|m| m["name"] == "latency.avg" && m["value"] == 20)
    );
    fake.with(|s| {
        assert!(
            s.content_types.iter().all(|c| c == "application/json"),
            "{:?}",
            s.content_types
        );
        assert_eq!(
            s.tokens_issued, 1,
            "the token is cached, not fetched per POST"
        );
        let user = &s.auth_requests[0]["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "statsgate");
        assert_eq!(
            s.auth_requests[0]["auth"]["scope"]["project"]["name"],
            "service"
        );
    });
    // The fake stores before it answers; the gateway counts once the answer is in.
    gw.wait_for("the sends counted", Duration::from_secs(5), |g| {
        g.counter("statsgate_forward_metrics_sent_total", "") >= 4
    });
    assert_eq!(gw.counter("statsgate_token_renewals_total", ""), 1);
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// Sends one `ticks:1|c` every 700 ms for `rounds` rounds, calling `between` after each.
fn tick(gw: &common::Gateway, rounds: usize, mut between: impl FnMut(usize)) -> f64 {
    let sender = gw.sender();
    for round in 0..rounds {
        sender.send(b"ticks:1|c").unwrap();
        between(round);
        std::thread::sleep(Duration::from_millis(700));
    }
    rounds as f64
}

#[test]
fn short_lived_tokens_are_renewed_before_expiry_with_nothing_lost() {
    let fake = Fake::start();
    fake.with(|s| s.token_lifetime = Duration::from_secs(3));
    // An explicit URL this time (the other tests discover it from the catalog).
    let yaml = format!(
        "flush:\n  interval: 1s\nmonasca:\n  url: {}\n  backoff_initial: 50ms\n  backoff_max: 500ms\n{}",
        fake.monasca_url(),
        fake.password_yaml()
    );
    let gw = start(&yaml);
    let sent = tick(&gw, 9, |_| {});
    wait_until("all ticks stored", Duration::from_secs(15), || {
        stored_sum(&fake, "ticks") == sent
    });
    let issued = fake.with(|s| s.tokens_issued);
    assert!(
        issued >= 3,
        "a 3 s token over ~6 s is renewed ahead of expiry (issued {issued})"
    );
    assert_eq!(
        gw.counter("statsgate_forward_reauthentications_total", ""),
        0,
        "renewed before any 401"
    );
    let (_, status) = gw.stop();
    assert!(status.success());
    assert_eq!(
        stored_sum(&fake, "ticks"),
        sent,
        "nothing lost, nothing twice"
    );
}

#[test]
fn a_revoked_token_is_replaced_on_the_first_401() {
    let fake = Fake::start();
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let sent = tick(&gw, 5, |round| {
        if round == 2 {
            fake.revoke_all();
        }
    });
    wait_until("all ticks stored", Duration::from_secs(15), || {
        stored_sum(&fake, "ticks") == sent
    });
    assert_eq!(
        gw.counter("statsgate_forward_reauthentications_total", ""),
        1
    );
    assert_eq!(fake.with(|s| s.tokens_issued), 2);
    let (_, status) = gw.stop();
    assert!(status.success());
    assert_eq!(stored_sum(&fake, "ticks"), sent);
}

#[test]
fn keystone_down_at_start_buffers_then_delivers() {
    let fake = Fake::start();
    fake.with(|s| s.faults.keystone_down = true);
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let sender = gw.sender();
    for _ in 0..5 {
        sender.send(b"early:1|c").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(stored_sum(&fake, "early"), 0.0);
    assert!(gw.counter("statsgate_token_failures_total", "") >= 1);
    assert!(
        gw.counter("statsgate_forward_queue_bytes", "") >= 1,
        "batches wait in the buffer (queued or held by a sender)"
    );
    fake.with(|s| s.faults.keystone_down = false);
    wait_until(
        "buffered metrics delivered",
        Duration::from_secs(15),
        || stored_sum(&fake, "early") == 5.0,
    );
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn monasca_5xx_for_a_while_then_every_metric_delivered() {
    let fake = Fake::start();
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let sender = gw.sender();
    fake.with(|s| s.faults.monasca_500 = true);
    let mut sent = 0.0;
    for i in 0..30 {
        sender
            .send(format!("during:1|c\nseries.{i}:1|c").as_bytes())
            .unwrap();
        sent += 1.0;
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("retries", Duration::from_secs(10), || {
        gw.counter("statsgate_forward_retries_total", "") >= 3
    });
    fake.with(|s| s.faults.monasca_500 = false);
    wait_until(
        "all delivered after recovery",
        Duration::from_secs(20),
        || stored_sum(&fake, "during") == sent,
    );
    assert_eq!(gw.counter("statsgate_forward_batches_dropped_total", ""), 0);
    let series = fake
        .metrics()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("series."))
        .count();
    assert_eq!(series, 30);
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn a_slow_api_does_not_slow_ingest() {
    let fake = Fake::start();
    fake.with(|s| s.faults.monasca_delay = Duration::from_secs(3));
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let sender = gw.sender();
    let lines = 200_000u64;
    let mut sent = 0u64;
    while sent < lines {
        let mut d = String::new();
        for j in 0..20 {
            d.push_str(&format!("busy.{}:1|c\n", (sent + j) % 500));
        }
        sender.send(d.as_bytes()).unwrap();
        sent += 20;
        if sent.is_multiple_of(2_000) {
            // Bursts of 100 datagrams, each taken in before the next: they fit the kernel's
            // default socket buffer (net.core.rmem_max 208 KiB caps statsd.recv_buffer), so a
            // debug build on a host with default sysctls drops nothing.
            let target = sent;
            wait_until("ingest keeps up", Duration::from_secs(20), || {
                gw.counter("statsgate_lines_accepted_total", "") >= target
            });
        }
    }
    wait_until(
        "all lines accepted while POSTs are slow",
        Duration::from_secs(20),
        || gw.counter("statsgate_lines_accepted_total", "") == lines,
    );
    assert_eq!(gw.counter("statsgate_kernel_receive_drops_total", ""), 0);
    fake.with(|s| s.faults.monasca_delay = Duration::ZERO);
    let total = || {
        fake.metrics()
            .iter()
            .filter(|m| m["name"].as_str().unwrap().starts_with("busy."))
            .filter_map(|m| m["value"].as_f64())
            .sum::<f64>()
    };
    wait_until("everything delivered", Duration::from_secs(30), || {
        total() == lines as f64
    });
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn a_413_splits_the_batch_and_everything_arrives() {
    let fake = Fake::start();
    fake.with(|s| s.faults.max_body = 4096);
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    let mut d = String::new();
    for i in 0..100 {
        d.push_str(&format!("split.{i}:1|c\n"));
    }
    gw.sender().send(d.as_bytes()).unwrap();
    wait_until("all 100 series stored", Duration::from_secs(15), || {
        fake.metrics()
            .iter()
            .filter(|m| m["name"].as_str().unwrap().starts_with("split."))
            .count()
            == 100
    });
    assert!(gw.counter("statsgate_forward_splits_total", "") >= 1);
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn a_token_without_monasca_roles_is_reported_and_not_retried_in_a_loop() {
    let fake = Fake::start();
    fake.with(|s| s.roles = vec!["member".into()]);
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    gw.sender().send(b"denied:1|c").unwrap();
    wait_until("forbidden counted", Duration::from_secs(10), || {
        gw.counter(
            "statsgate_forward_metrics_dropped_total",
            "reason=\"forbidden\"",
        ) >= 1
    });
    let posts = fake.with(|s| s.posts);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        fake.with(|s| s.posts) <= posts + 2,
        "no retry loop on Forbidden"
    );
    let log = gw.stderr.lock().unwrap().clone();
    assert!(log.contains("no role that may post metrics"), "{log}");
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn application_credentials_and_secrets_never_logged() {
    let fake = Fake::start();
    let yaml = format!(
        "{FAST}keystone:\n  auth_url: {}\n  application_credential_id: ac-1\n  application_credential_secret: {APP_SECRET}\n",
        fake.keystone_url()
    );
    let gw = start(&yaml);
    gw.sender().send(b"appcred:1|c").unwrap();
    wait_until("stored", Duration::from_secs(10), || {
        stored_sum(&fake, "appcred") == 1.0
    });
    fake.with(|s| {
        let ident = &s.auth_requests[0]["auth"]["identity"];
        assert_eq!(ident["methods"][0], "application_credential");
        assert!(s.auth_requests[0]["auth"].get("scope").is_none());
    });
    let (_, status) = gw.stop();
    assert!(status.success());
}

#[test]
fn a_tenant_id_the_token_cannot_honour_is_refused_at_start() {
    let fake = Fake::start();
    let out = run_once(&format!(
        "monasca:\n  tenant_id: other-project\n{}",
        fake.password_yaml()
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("monasca.tenant_id"), "{err}");
    assert!(!err.contains(PASSWORD), "the password never appears");
}

#[test]
fn check_config_online_reports_roles_and_endpoint_without_secrets() {
    let fake = Fake::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "--online"])
        .env("OS_AUTH_URL", fake.keystone_url())
        .env("OS_USERNAME", "statsgate")
        .env("OS_PASSWORD", PASSWORD)
        .env("OS_PROJECT_NAME", "service")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("roles: monasca-agent"), "{stderr}");
    assert!(stderr.contains(&fake.monasca_url()), "{stderr}");
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "secret printed"
    );
    assert!(!stderr.contains("gAAAAAB-token"), "token printed");
}

/// Every log line of a run that saw tokens come and go must be free of secrets.
#[test]
fn logs_never_carry_a_password_or_token() {
    let fake = Fake::start();
    fake.with(|s| s.token_lifetime = Duration::from_secs(2));
    let gw = start(&format!(
        "{FAST}log:\n  level: debug\n{}",
        fake.password_yaml()
    ));
    gw.sender().send(b"x:1|c").unwrap();
    wait_until("stored", Duration::from_secs(10), || {
        stored_sum(&fake, "x") == 1.0
    });
    fake.revoke_all();
    gw.sender().send(b"x:1|c").unwrap();
    wait_until("stored again", Duration::from_secs(10), || {
        stored_sum(&fake, "x") == 2.0
    });
    let log = std::sync::Arc::clone(&gw.stderr);
    let (_, status) = gw.stop();
    assert!(status.success());
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("authenticated with Keystone"),
        "debug log captured: {log}"
    );
    assert!(!log.contains(PASSWORD), "password in the log");
    assert!(!log.contains("gAAAAAB-token"), "token in the log");
}

#[test]
fn wrong_credentials_stop_the_start_with_a_clear_message() {
    let fake = Fake::start();
    let out = run_once(&fake.password_yaml().replace(PASSWORD, "not-the-password"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Keystone refused the credentials (HTTP 401)"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-password"),
        "the password never appears: {err}"
    );
}

#[test]
fn the_gateway_sends_its_own_counters_as_statsgate_metrics() {
    let fake = Fake::start();
    let gw = start(&format!("{FAST}{}", fake.password_yaml()));
    gw.sender()
        .send(b"own.a:1|c\nown.b:1|c\nbroken line")
        .unwrap();
    let sum = |name: &str| -> f64 {
        fake.metrics()
            .iter()
            .filter(|m| m["name"] == name)
            .filter_map(|m| m["value"].as_f64())
            .sum()
    };
    wait_until(
        "self metrics counted the lines",
        Duration::from_secs(15),
        || sum("statsgate.lines_accepted") == 2.0 && sum("statsgate.lines_rejected") == 1.0,
    );
    wait_until("metrics_sent reported", Duration::from_secs(10), || {
        sum("statsgate.metrics_sent") >= 2.0
    });
    let one = fake
        .metrics()
        .into_iter()
        .find(|m| m["name"] == "statsgate.datagrams")
        .unwrap();
    assert_eq!(one["dimensions"]["hostname"], "test-host");
    assert!(
        fake.metrics()
            .iter()
            .any(|m| m["name"] == "statsgate.flush_ms")
    );
    let (_, status) = gw.stop();
    assert!(status.success());
}
