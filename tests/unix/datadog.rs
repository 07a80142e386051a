//! The Python `datadog` client (DogStatsD's own) over the datagram socket (`unix://`), the
//! stream socket (`unixstream://`, length-prefixed packets) and UDP: the same calls flush
//! the same metrics.

use super::common::{find, start, value};
use super::{accepted, sockets_config, stop, wait_accepted};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The same calls, whatever the transport: `DD_DOGSTATSD_URL` (the client's documented
/// setting) picks it, a constant tag says which it was.
const DD_SCRIPT: &str = r#"
import sys
from datadog.dogstatsd import DogStatsd
via, buffered = sys.argv[1], sys.argv[2] == "buffered"
# socket_timeout: wait for room in the socket's queue instead of dropping (the client's
# default, 0, drops a burst beyond net.unix.max_dgram_qlen, 10 on a stock kernel).
c = DogStatsd(constant_tags=["via:" + via], disable_telemetry=True, socket_timeout=5,
              disable_buffering=not buffered, origin_detection_enabled=False)
c.increment("dd.page.views", tags=["page:home", "canary"])
c.increment("dd.page.views", 2, tags=["page:home", "canary"])
c.decrement("dd.page.errors", tags=["page:home"])
c.gauge("dd.queue.depth", 17.5, tags=["queue:a"])
c.histogram("dd.request.size", 100)
c.histogram("dd.request.size", 300)
c.timing("dd.request.latency", 12.5)
c.distribution("dd.batch.items", 3)
c.set("dd.users", "alice")
c.set("dd.users", "bob")
c.service_check("dd.db.up", DogStatsd.CRITICAL, tags=["zone:a"], hostname="db-1", message="replica lag")
c.event("deploy", "v2 rolled out", tags=["zone:a"])
c.flush()
c.close_socket()
print("sent")
"#;

/// Lines of the script that statsgate accepts (the event is dropped and counted).
const DD_ACCEPTED: u64 = 11;

fn datadog_python() -> Option<PathBuf> {
    super::common::venv_python("datadog-venv", "import datadog", "datadog==0.56.0")
}

fn run_dd(py: &Path, url: &str, via: &str, buffered: bool) {
    let out = Command::new(py)
        .args([
            "-c",
            DD_SCRIPT,
            via,
            if buffered { "buffered" } else { "unbuffered" },
        ])
        .env("DD_DOGSTATSD_URL", url)
        .output()
        .expect("run python");
    assert!(
        out.status.success() && out.stdout.starts_with(b"sent"),
        "datadog client over {url}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (name, dimensions without `via`) → value, for the metrics tagged `via:<via>`.
fn by_series(metrics: &[Value], via: &str) -> BTreeMap<String, f64> {
    metrics
        .iter()
        .filter(|m| m["dimensions"]["via"] == via)
        .map(|m| {
            let mut dims = m["dimensions"].as_object().cloned().unwrap_or_default();
            dims.remove("via");
            let key = format!("{} {}", m["name"].as_str().unwrap(), Value::Object(dims));
            (key, m["value"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn the_datadog_client_over_both_sockets_gives_what_udp_gives() {
    let Some(py) = datadog_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the datadog client venv (see .ci/run)"
        );
        eprintln!(
            "SKIPPED the_datadog_client_over_both_sockets_gives_what_udp_gives: no python3 venv with datadog==0.56.0 (target/datadog-venv)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    let gw = start(&yaml);
    // `unix://` tries a datagram socket first: the convention containers mount.
    run_dd(&py, &format!("unix://{}", dgram.display()), "unix", false);
    // The stream socket in DogStatsD's own framing (a length before each packet), with
    // the client's buffering putting several lines in a packet.
    run_dd(
        &py,
        &format!("unixstream://{}", stream.display()),
        "unix_stream",
        true,
    );
    run_dd(&py, &format!("udp://{}", gw.udp), "udp", false);
    for transport in ["unix", "unix_stream", "udp"] {
        wait_accepted(&gw, transport, DD_ACCEPTED);
    }
    gw.wait_for("the three events", Duration::from_secs(5), |g| {
        g.counter("statsgate_lines_rejected_total", "reason=\"event\"") == 3
    });
    assert_eq!(accepted(&gw, "unix"), DD_ACCEPTED);
    assert_eq!(accepted(&gw, "unix_stream"), DD_ACCEPTED);
    let metrics = stop(gw);

    let udp = by_series(&metrics, "udp");
    let views = [("page", "home"), ("canary", "True"), ("via", "udp")];
    assert_eq!(value(&metrics, "dd.page.views", &views), 3.0);
    assert_eq!(value(&metrics, "dd.page.errors", &[("via", "udp")]), -1.0);
    assert_eq!(value(&metrics, "dd.queue.depth", &[("queue", "a")]), 17.5);
    assert_eq!(value(&metrics, "dd.request.size.avg", &[]), 200.0);
    assert_eq!(value(&metrics, "dd.request.latency.max", &[]), 12.5);
    assert_eq!(value(&metrics, "dd.batch.items.count", &[]), 1.0);
    assert_eq!(value(&metrics, "dd.users", &[]), 2.0);
    let up = find(&metrics, "dd.db.up", &[("via", "udp")]).expect("service check");
    assert_eq!(up["value"], 2.0);
    assert_eq!(up["dimensions"]["hostname"], "db-1");
    assert_eq!(up["dimensions"]["zone"], "a");
    for via in ["unix", "unix_stream"] {
        assert_eq!(
            by_series(&metrics, via),
            udp,
            "over {via} the flush differs from UDP's"
        );
    }
}
