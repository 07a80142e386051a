//! HTTPS to the real Keystone and monasca-api (issue 15): trusting the test CA through
//! `OS_CACERT`, what happens without it (logged with the URL and the certificate problem,
//! batches spooled, all of them delivered once the CA is given), and certificates for another
//! host name. Runs on the HTTPS kit of `real_keystone_and_monasca_api`, one scenario at a time
//! (the certificate swaps are global to the kit).

use crate::common::{Gateway, start, start_env};
use crate::kit::{Kit, wait_until};
use std::collections::HashMap;
use std::time::Duration;

/// Retries come quickly, so recovery is seen within a second or two.
const FAST: &str =
    "flush:\n  interval: 1s\nmonasca:\n  backoff_initial: 200ms\n  backoff_max: 1s\n";

fn stderr(gw: &Gateway) -> String {
    gw.stderr.lock().unwrap().clone()
}

/// Published `name -> [values]` for names starting with `prefix`.
fn published_values(kit: &Kit, prefix: &str) -> HashMap<String, Vec<f64>> {
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for e in kit.published_with_prefix(prefix) {
        let name = e["metric"]["name"].as_str().unwrap_or_default().to_owned();
        out.entry(name)
            .or_default()
            .push(e["metric"]["value"].as_f64().unwrap_or(f64::NAN));
    }
    out
}

fn published_sum(kit: &Kit, prefix: &str) -> f64 {
    published_values(kit, prefix).values().flatten().sum()
}

/// No `keystone:` section: the identity and the CA come from an openrc-style environment,
/// and the (https) Monasca URL from the catalog.
pub fn openrc_with_os_cacert(kit: &Kit) {
    let user = &kit.info["users"]["statsgate"];
    let ca = kit.ca_file();
    let env = [
        ("OS_AUTH_URL", kit.s("keystone_url")),
        ("OS_USERNAME", user["name"].as_str().unwrap().to_owned()),
        ("OS_PASSWORD", user["password"].as_str().unwrap().to_owned()),
        ("OS_PROJECT_NAME", kit.s("project_name")),
        ("OS_USER_DOMAIN_NAME", kit.s("user_domain_name")),
        ("OS_PROJECT_DOMAIN_NAME", kit.s("project_domain_name")),
        ("OS_CACERT", ca),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = start_env("flush:\n  interval: 1s\n", &env);
    gw.sender().send(b"e2e9.openrc:3|g").unwrap();
    wait_until(
        "the openrc gauge published",
        Duration::from_secs(30),
        || !kit.published_with_prefix("e2e9.openrc").is_empty(),
    );
    let e = &kit.published_with_prefix("e2e9.openrc")[0];
    assert_eq!(e["metric"]["value"], 3);
    assert_eq!(e["meta"]["tenantId"], kit.s("project_id").as_str());
    let log = stderr(&gw);
    assert!(
        log.contains(&format!("monasca={}", kit.s("monasca_url"))),
        "the https endpoint came from the catalog: {log}"
    );
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// The operator forgot the CA: only the system store is trusted, which does not hold the test
/// CA. Nothing is lost: batches go to the disk spool, and a restart with the CA on the same
/// spool delivers every one of them, once.
pub fn without_the_ca_batches_are_spooled_then_all_delivered_with_it(kit: &Kit) {
    const LINES: usize = 20;
    let spool = tempfile::tempdir().expect("spool dir");
    let buffer = format!("buffer:\n  spool_dir: {}\n", spool.path().display());
    let gw = start(&format!("{FAST}{buffer}{}", kit.password_yaml_without_ca()));
    let tokens_url = format!("{}/auth/tokens", kit.s("keystone_url"));
    gw.wait_for(
        "the certificate failure logged",
        Duration::from_secs(20),
        |g| stderr(g).contains("invalid peer certificate: UnknownIssuer"),
    );
    let log = stderr(&gw);
    let line = log
        .lines()
        .find(|l| l.contains("UnknownIssuer"))
        .expect("a line naming UnknownIssuer");
    assert!(line.contains(&tokens_url), "names the URL: {line}");
    assert!(
        line.contains("its issuer is not a trusted CA") && line.contains("keystone.ca_file"),
        "says what is wrong and what fixes it: {line}"
    );
    assert!(
        !line.contains(kit.info["users"]["statsgate"]["password"].as_str().unwrap()),
        "{line}"
    );
    let sender = gw.sender();
    for i in 0..LINES {
        sender
            .send(format!("e2e6.held.{i}:1|c").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.wait_for(
        "every line in a spooled batch",
        Duration::from_secs(20),
        |g| {
            g.counter("statsgate_lines_accepted_total", "") >= LINES as u64
                && g.counter("statsgate_forward_queue_batches", "") == 0
                && g.counter("statsgate_forward_spooled_metrics_total", "") >= LINES as u64
        },
    );
    assert!(spool_metrics(&gw) >= LINES as u64, "held in the spool");
    assert_eq!(gw.counter("statsgate_forward_metrics_sent_total", ""), 0);
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    assert!(gw.counter("statsgate_token_failures_total", "") >= 2);
    assert!(
        kit.published_with_prefix("e2e6.").is_empty(),
        "nothing reached Monasca without a token"
    );
    let log = std::sync::Arc::clone(&gw.stderr);
    let (_, status) = gw.stop();
    assert!(status.success(), "{}", log.lock().unwrap());
    assert!(
        !log.lock().unwrap().contains("ran out"),
        "everything spooled at shutdown"
    );

    // The same spool, now with the CA: the replay delivers all of them.
    let gw = start(&format!("{FAST}{buffer}{}", kit.password_yaml()));
    wait_until(
        "every spooled line published",
        Duration::from_secs(60),
        || published_values(kit, "e2e6.held.").len() == LINES,
    );
    gw.wait_for("the spool drained", Duration::from_secs(30), |g| {
        spool_metrics(g) == 0
    });
    let published = published_values(kit, "e2e6.held.");
    for i in 0..LINES {
        assert_eq!(
            published.get(&format!("e2e6.held.{i}")),
            Some(&vec![1.0]),
            "e2e6.held.{i} exactly once: {published:?}"
        );
    }
    assert!(gw.counter("statsgate_forward_replayed_metrics_total", "") >= LINES as u64);
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
}

/// Without the CA, then a reload that adds `keystone.ca_file`: the new client fetches a
/// token from the real Keystone over TLS, and what waited in memory reaches monasca-api
/// once, without a restart.
pub fn a_reload_that_adds_the_ca_delivers_what_waited(kit: &Kit) {
    const LINES: usize = 10;
    let gw = start(&format!("{FAST}{}", kit.password_yaml_without_ca()));
    gw.wait_for("the certificate failure", Duration::from_secs(20), |g| {
        stderr(g).contains("invalid peer certificate: UnknownIssuer")
    });
    let sender = gw.sender();
    for i in 0..LINES {
        sender
            .send(format!("e2e10.reloadca.{i}:1|c").as_bytes())
            .unwrap();
    }
    gw.wait_for("the lines accepted", Duration::from_secs(20), |g| {
        g.counter("statsgate_lines_accepted_total", "") >= LINES as u64
    });
    assert!(kit.published_with_prefix("e2e10.").is_empty());
    let (outcome, message) = gw.reload_with(&format!("{FAST}{}", kit.password_yaml()));
    assert_eq!(outcome, "applied", "{message}");
    assert!(
        message.contains("keystone.ca_file (new token first)"),
        "{message}"
    );
    wait_until(
        "every waiting line published",
        Duration::from_secs(60),
        || published_values(kit, "e2e10.reloadca.").len() == LINES,
    );
    let published = published_values(kit, "e2e10.reloadca.");
    assert!(
        published.values().all(|v| v == &vec![1.0]),
        "once each: {published:?}"
    );
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
}

fn spool_metrics(gw: &Gateway) -> u64 {
    gw.counter("statsgate_spool_metrics", "")
}

/// Keystone, then monasca-api, serve a certificate the trusted CA signed for `wrong.example`:
/// refused, the error names the host-name problem and the URL, and what was sent meanwhile is
/// delivered once the right certificate is back (memory buffer, no spool).
pub fn certificates_for_another_host_name_are_refused_and_nothing_is_lost(kit: &Kit) {
    let pki = kit.pki.as_ref().expect("an HTTPS kit");

    let wrong = kit.serve_cert("keystone", &pki.wrong_cert, &pki.wrong_key);
    let gw = start(&format!("{FAST}{}", kit.password_yaml()));
    gw.sender().send(b"e2e7.wronghost:5|c").unwrap();
    gw.wait_for(
        "Keystone's certificate refused",
        Duration::from_secs(20),
        |g| {
            g.counter("statsgate_token_failures_total", "") >= 2
                && stderr(g).contains("wrong.example")
        },
    );
    let log = stderr(&gw);
    let line = log
        .lines()
        .find(|l| l.contains("wrong.example"))
        .expect("a line naming the certificate's host");
    assert!(
        line.contains("not valid for the host name")
            && line.contains("certificate not valid for name \"127.0.0.1\""),
        "names the host-name problem: {line}"
    );
    assert!(
        line.contains(&format!("{}/auth/tokens", kit.s("keystone_url"))),
        "names the URL: {line}"
    );
    assert!(kit.published_with_prefix("e2e7.").is_empty());
    drop(wrong); // the right certificate again: the buffered counter goes out
    wait_until(
        "the buffered counter published",
        Duration::from_secs(30),
        || published_sum(kit, "e2e7.wronghost") == 5.0,
    );
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());

    let wrong = kit.serve_cert("monasca", &pki.wrong_cert, &pki.wrong_key);
    let gw = start(&format!("{FAST}{}", kit.password_yaml()));
    gw.sender().send(b"e2e8.wronghost:4|c").unwrap();
    gw.wait_for(
        "monasca-api's certificate refused",
        Duration::from_secs(20),
        |g| g.counter("statsgate_forward_posts_total", "outcome=\"tls_error\"") >= 2,
    );
    let log = stderr(&gw);
    let line = log
        .lines()
        .find(|l| l.contains("POST to Monasca failed (TLS)"))
        .unwrap_or_else(|| panic!("the POST failure logged: {log}"));
    assert!(
        line.contains("not valid for the host name") && line.contains("wrong.example"),
        "names the host-name problem: {line}"
    );
    assert!(
        line.contains(&format!("{}/metrics", kit.s("monasca_url"))),
        "names the URL: {line}"
    );
    assert!(kit.published_with_prefix("e2e8.").is_empty());
    drop(wrong);
    wait_until(
        "the retried batch published",
        Duration::from_secs(30),
        || published_sum(kit, "e2e8.wronghost") == 4.0,
    );
    assert_eq!(gw.counter("statsgate_forward_metrics_dropped_total", ""), 0);
    let (_, status) = gw.stop();
    assert!(status.success());
}
