//! One real gateway with all five statsd transports open (UDP, TCP, TCP+TLS, Unix datagram,
//! Unix stream) is sent the same script of datagrams over each, every copy under its own
//! prefix; after one flush the five sets of metrics, prefixes stripped, must be identical,
//! and each transport's accepted, rejected and heartbeat counts the same.

mod common;
// Shared with tests/tcp.rs, which uses the rest of it (the stalling peer's ClientHello).
#[allow(dead_code)]
#[path = "tcp/tls.rs"]
mod tls;

use common::pki::Pki;
use common::{Gateway, start};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

/// One flush at the end (SIGTERM): every line sent lands in the same interval.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";
const WAIT: Duration = Duration::from_secs(15);

/// Each transport's `transport` label and the prefix its copy of the script carries. No
/// prefix is a prefix of another, so stripping one never claims another's metric.
const TRANSPORTS: [(&str, &str); 5] = [
    ("udp", "udp"),
    ("tcp", "tcp"),
    ("tls", "tls"),
    ("unix", "ugram"),
    ("unix_stream", "ustream"),
];

/// The script: datagrams of lines, `{p}` standing for the transport's prefix. Only what
/// every transport accepts the same way: a JSON heartbeat is a datagram of its own (not a
/// line) and so is left out; the compact `_hb|` line is in.
const SCRIPT: &[&[&str]] = &[
    &[
        "{p}.hits:1|c",
        "{p}.hits:2|c|@0.5",
        "{p}.hits:3|c|@0.1|#region:eu",
    ],
    &["{p}.temp:20|g", "{p}.temp:+3|g", "{p}.temp:-5|g"],
    &["{p}.temp:7|g|#region:eu,role:web"],
    // A packed line, a sampled timer and a tagged one.
    &[
        "{p}.lat:10|ms",
        "{p}.lat:20:30:40|ms",
        "{p}.lat:50|ms|@0.5",
        "{p}.lat:5|ms|#region:eu",
    ],
    &["{p}.size:100|h", "{p}.size:300|h"],
    &["{p}.dist:1:2:3:4:5|d|#region:eu"],
    &[
        "{p}.users:alice|s",
        "{p}.users:bob|s",
        "{p}.users:alice|s",
        "{p}.users:carol|s|#region:eu",
    ],
    &["_hb|{p}-app|3.4.0|{p}-1"],
    &["_sc|{p}.db.up|2|h:db-1|#zone:a|m:disk full"],
    // Refused, each for its own reason, between good lines.
    &[
        "{p}.ok:1|c",
        "{p}.broken",
        "{p}.bad:x|c",
        "{p}.odd:1|zz",
        "{p}.neg:-1|ms",
        "_e{5,4}:title|text",
        "{p}.ok:1|c",
    ],
];

/// Lines of the script that are statsd lines accepted into aggregation (not the beat, not
/// the refused ones): counted by hand from [`SCRIPT`].
const ACCEPTED: u64 = 3 + 3 + 1 + 4 + 2 + 1 + 4 + 1 + 2;

/// The refusals the script asks for, by reason label, counted by hand.
const REJECTED: [(&str, u64); 5] = [
    ("missing_value", 1),
    ("bad_value", 1),
    ("unknown_type", 1),
    ("negative_sample", 1),
    ("event", 1),
];

fn datagrams(prefix: &str) -> Vec<String> {
    SCRIPT
        .iter()
        .map(|d| d.join("\n").replace("{p}", prefix))
        .collect()
}

/// What one transport's copy moved on the counters.
#[derive(Debug, Clone, PartialEq, Default)]
struct Counts {
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    beats: u64,
}

/// The counters after one transport's copy: its own accepted lines, and the rejections (by
/// every reason, so a line refused for an unexpected reason shows) and beats of all.
fn counts(gw: &Gateway, transport: &str) -> Counts {
    let (_, body) = gw.get("/metrics");
    let mut rejected = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("statsgate_lines_rejected_total{reason=\"") else {
            continue;
        };
        let (reason, n) = rest.split_once("\"} ").expect("a labelled counter");
        rejected.insert(reason.to_owned(), n.parse::<f64>().expect("a count") as u64);
    }
    Counts {
        accepted: gw.counter(
            "statsgate_transport_lines_accepted_total",
            &format!("transport=\"{transport}\""),
        ),
        rejected,
        // Counted under the transport's own label.
        beats: gw.counter(
            "statsgate_heartbeats_accepted_total",
            &format!("via=\"{transport}\""),
        ),
    }
}

/// `after - before` for the counters all transports share; reasons that did not move are
/// left out.
fn delta(before: &Counts, after: &Counts) -> Counts {
    Counts {
        accepted: after.accepted,
        rejected: after
            .rejected
            .iter()
            .map(|(r, n)| (r.clone(), n - before.rejected.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        beats: after.beats - before.beats,
    }
}

/// One flushed metric as compared across transports: name, dimensions, value, value_meta,
/// with `prefix` taken off the name (`udp.`) and off dimension values (`udp-`). `None` when
/// the metric is not this transport's.
fn strip(m: &Value, prefix: &str) -> Option<Value> {
    let name = m["name"].as_str()?;
    let mut mine = false;
    let name = match name.strip_prefix(&format!("{prefix}.")) {
        Some(rest) => {
            mine = true;
            rest
        }
        None => name,
    };
    let mut dims = serde_json::Map::new();
    for (k, v) in m["dimensions"].as_object()? {
        let text = v.as_str()?;
        let text = match text.strip_prefix(&format!("{prefix}-")) {
            Some(rest) => {
                mine = true;
                rest
            }
            None => text,
        };
        dims.insert(k.clone(), json!(text));
    }
    mine.then(|| {
        json!({
            "name": name,
            "dimensions": dims,
            "value": m["value"],
            "value_meta": m["value_meta"],
        })
    })
}

/// One transport's metrics, prefix stripped, sorted so that order of emission is no part
/// of the comparison.
fn metrics_of(all: &[Value], prefix: &str) -> Vec<Value> {
    let mut v: Vec<Value> = all.iter().filter_map(|m| strip(m, prefix)).collect();
    v.sort_by_key(|m| m.to_string());
    v
}

/// The value of the metric `name` with exactly the dimensions `dims`.
fn value_of(set: &[Value], name: &str, dims: &[(&str, &str)]) -> f64 {
    let dims: serde_json::Map<String, Value> = dims
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    set.iter()
        .find(|m| m["name"] == name && m["dimensions"].as_object() == Some(&dims))
        .unwrap_or_else(|| panic!("no {name} {dims:?} in {set:#?}"))["value"]
        .as_f64()
        .expect("numeric value")
}

#[test]
fn the_same_script_over_all_five_transports_flushes_the_same_metrics() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (dgram, stream) = (
        dir.path().join("dsd.socket"),
        dir.path().join("dsd-s.socket"),
    );
    let gw = start(&format!(
        "{ONE_FLUSH}statsd:\n  tcp_listen: 127.0.0.1:0\n  tls_listen: 127.0.0.1:0\n  \
         tls_cert: {}\n  tls_key: {}\n  unix_listen: {}\n  unix_stream_listen: {}\n",
        pki.cert.display(),
        pki.key.display(),
        dgram.display(),
        stream.display()
    ));
    let (tcp, tls_addr) = (gw.stream_addr("tcp"), gw.stream_addr("tls"));
    let tls_config = tls::client_config(&pki, false);

    // One transport at a time, each waited for in full, so the counters shared by all
    // (rejections by reason, beats) can be read per transport as differences.
    let mut per_transport = BTreeMap::new();
    for (transport, prefix) in TRANSPORTS {
        let before = counts(&gw, transport);
        let packets = datagrams(prefix);
        // Over a stream the same lines, newline-framed, one write per datagram.
        let framed: Vec<String> = packets.iter().map(|d| format!("{d}\n")).collect();
        match transport {
            "udp" => {
                let s = gw.sender();
                for d in &packets {
                    s.send(d.as_bytes()).expect("UDP send");
                }
            }
            "unix" => {
                let s = UnixDatagram::unbound().expect("unbound");
                for d in &packets {
                    s.send_to(d.as_bytes(), &dgram).expect("Unix datagram send");
                }
            }
            "tcp" => {
                let mut s = TcpStream::connect(tcp).expect("connect");
                for d in &framed {
                    s.write_all(d.as_bytes()).expect("TCP write");
                }
            }
            "unix_stream" => {
                let mut s = UnixStream::connect(&stream).expect("connect");
                for d in &framed {
                    s.write_all(d.as_bytes()).expect("Unix stream write");
                }
            }
            "tls" => {
                let mut c = tls::Client::connect(tls_addr, &tls_config).expect("TLS connect");
                for d in &framed {
                    c.send(d.as_bytes()).expect("TLS write");
                }
                c.close().expect("TLS close");
            }
            other => unreachable!("{other}"),
        }
        let want_rejected: u64 = REJECTED.iter().map(|(_, n)| n).sum();
        let mut got = Counts::default();
        gw.wait_for(&format!("the script over {transport}"), WAIT, |g| {
            got = delta(&before, &counts(g, transport));
            got.accepted >= ACCEPTED
                && got.rejected.values().sum::<u64>() >= want_rejected
                && got.beats >= 1
        });
        per_transport.insert(transport, got);
    }

    let expected = Counts {
        accepted: ACCEPTED,
        rejected: REJECTED.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        beats: 1,
    };
    for (transport, got) in &per_transport {
        assert_eq!(got, &expected, "counters for {transport}");
    }
    assert_eq!(
        gw.counter("statsgate_heartbeats_rejected_total", ""),
        0,
        "every beat accepted"
    );

    let (flushes, status) = gw.stop();
    assert!(status.success(), "exit status {status}");
    let all: Vec<Value> = flushes.into_iter().flatten().collect();
    let sets: Vec<(&str, Vec<Value>)> = TRANSPORTS
        .iter()
        .map(|(t, p)| (*t, metrics_of(&all, p)))
        .collect();
    let (_, udp) = &sets[0];
    // hits 2, temp 2, lat 2 x 7 (count sum min max avg median 95percentile), size 7,
    // dist 7, users 2, ok 1, db.up 1, GE_Heartbeat 1, heartbeat.alive 1.
    assert_eq!(udp.len(), 38, "{udp:#?}");
    for (transport, set) in &sets[1..] {
        let only = |a: &[Value], b: &[Value]| -> Vec<String> {
            a.iter()
                .filter(|m| !b.contains(m))
                .map(|m| m.to_string())
                .collect()
        };
        assert!(
            set == udp,
            "{transport} differs from udp; only over {transport}: {:#?}\nonly over udp: {:#?}",
            only(set, udp),
            only(udp, set)
        );
    }

    // And what they all are, worked out from the script rather than from any transport.
    let host = ("hostname", "test-host");
    let eu = ("region", "eu");
    assert_eq!(value_of(udp, "hits", &[host]), 1.0 + 2.0 / 0.5);
    assert_eq!(value_of(udp, "hits", &[host, eu]), 30.0);
    assert_eq!(value_of(udp, "temp", &[host]), 20.0 + 3.0 - 5.0);
    assert_eq!(
        value_of(udp, "temp", &[host, ("role", "web"), eu]),
        7.0,
        "two tags"
    );
    // 10, 20, 30, 40 once each and 50 weighing 2: count 6, sum 200.
    assert_eq!(value_of(udp, "lat.count", &[host]), 6.0);
    assert_eq!(value_of(udp, "lat.max", &[host]), 50.0);
    assert!((value_of(udp, "lat.avg", &[host]) - 200.0 / 6.0).abs() < 1e-6);
    // The weighted samples 10 20 30 40 50 50: the middle two's mean, and the top one.
    assert_eq!(value_of(udp, "lat.median", &[host]), 35.0);
    assert_eq!(value_of(udp, "lat.95percentile", &[host]), 50.0);
    assert_eq!(value_of(udp, "lat.count", &[host, eu]), 1.0);
    assert_eq!(value_of(udp, "size.avg", &[host]), 200.0);
    assert_eq!(value_of(udp, "dist.count", &[host, eu]), 5.0);
    assert_eq!(value_of(udp, "dist.max", &[host, eu]), 5.0);
    assert_eq!(value_of(udp, "users", &[host]), 2.0);
    assert_eq!(value_of(udp, "users", &[host, eu]), 1.0);
    assert_eq!(value_of(udp, "ok", &[host]), 2.0);
    assert_eq!(
        value_of(udp, "db.up", &[("hostname", "db-1"), ("zone", "a")]),
        2.0
    );
    let beat = udp
        .iter()
        .find(|m| m["name"] == "GE_Heartbeat")
        .unwrap_or_else(|| panic!("no GE_Heartbeat in {udp:#?}"));
    assert_eq!(beat["dimensions"]["enabler_id"], "app");
    assert_eq!(beat["dimensions"]["id"], "1");
    let app = [host, ("enabler_id", "app"), ("enabler_version", "3.4.0")];
    assert_eq!(value_of(udp, "heartbeat.alive", &app), 1.0);
    // No refused line left a metric behind.
    for name in ["broken", "bad", "odd", "neg", "neg.count"] {
        assert!(
            udp.iter().all(|m| m["name"] != name),
            "{name} was refused but flushed"
        );
    }
    eprintln!("{} metrics per transport: {udp:#?}", udp.len());
}
