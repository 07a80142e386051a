//! Leniency where DogStatsD and gostatsd are lenient, over the real binary and real UDP:
//! every spelling statsgate now accepts is checked metric by metric in the printed flush
//! (value and the exact dimensions), and every case it still refuses by its
//! `lines_rejected_total{reason}`. The comparison with both peers is in NOTES-lenient.md.

mod common;

use common::start;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One hour: nothing flushes on the clock, so the final flush on SIGTERM holds everything.
const ONE_FLUSH: &str = "flush:\n  interval: 1h\n  idle_expiry: 1h\n";

/// Accepted spellings, one datagram each (repeated lines go through the aggregator's line
/// memo: a lenient spelling must add to the same series as its plain one, never collide
/// with another).
const ACCEPTED: &[&[u8]] = &[
    // Empty pieces in packed values.
    b"d.packed.mid:1::2|c",
    b"d.packed.trail:1:|c\nd.packed.trail:1:|c\nd.packed.trail:1|c",
    b"d.packed.lead::4|c",
    b"d.packed.timer:1::3|ms",
    b"d.packed.gauge:10::+5|g",
    b"d.memo:1|c\nd.memo:1:|c\nd.memo::1|c\nd.memo:1::|c\nd.memo:1|c\nd.memo:1:|c\nd.memo::1|c\nd.memo:1::|c",
    b"d.memo.g:+1|g\nd.memo.g:+1:|g\nd.memo.g:+1|g\nd.memo.g:+1:|g",
    // Empty fields, an empty tag block, empty tags in a list.
    b"d.empty.trail:1|c|\nd.empty.trail:1|c||",
    b"d.empty.mid:1|c||#t:1",
    b"d.empty.tags:1|c|#\nd.empty.tags:1|c",
    b"d.empty.tags2:1|c|#|#t:2",
    b"d.tags.commas:1|c|#,tag,,k:v,",
    // Whitespace: CRLF, a space inside a tag value.
    b"d.crlf:1|c\r\nd.crlf:1|c\r",
    b"d.space.value:1|c|#t:1 ",
    // Numbers and sample rates.
    b"d.plus:+2|c",
    b"d.exp:1e3|c\nd.exp.g:2.5E-1|g",
    b"d.rate.one:1|c|@1\nd.rate.frac:1|c|@.5",
    // Service checks' optional fields.
    b"_sc|d.sc.badts|1|d:x",
    b"_sc|d.sc.nohost|2|h:|#zone:a",
    b"_sc|d.sc.msg|0|#zone:b|m:disk|full|#not:tags",
    b"_sc|d.sc.unknown|3|x:y||c:abc",
    // DogStatsD's origin-detection fields.
    b"d.extra:1|c|c:ci-abc,in-42|e:it-false|card:high|#t:x",
];

/// What the final flush holds for the spellings above: (name, dimensions besides
/// `hostname: test-host`, value).
/// A metric expected in the flush: name, dimensions besides `hostname`, value.
type Expected = (&'static str, Vec<(&'static str, &'static str)>, f64);

fn expected() -> Vec<Expected> {
    vec![
        ("d.packed.mid", vec![], 3.0),
        ("d.packed.trail", vec![], 3.0),
        ("d.packed.lead", vec![], 4.0),
        ("d.packed.timer.count", vec![], 2.0),
        ("d.packed.timer.sum", vec![], 4.0),
        ("d.packed.timer.min", vec![], 1.0),
        ("d.packed.timer.max", vec![], 3.0),
        ("d.packed.timer.avg", vec![], 2.0),
        ("d.packed.gauge", vec![], 15.0),
        ("d.memo", vec![], 8.0),
        ("d.memo.g", vec![], 4.0),
        ("d.empty.trail", vec![], 2.0),
        ("d.empty.mid", vec![("t", "1")], 1.0),
        ("d.empty.tags", vec![], 2.0),
        ("d.empty.tags2", vec![("t", "2")], 1.0),
        ("d.tags.commas", vec![("tag", "True"), ("k", "v")], 1.0),
        ("d.crlf", vec![], 2.0),
        ("d.space.value", vec![("t", "1 ")], 1.0),
        ("d.plus", vec![], 2.0),
        ("d.exp", vec![], 1000.0),
        ("d.exp.g", vec![], 0.25),
        ("d.rate.one", vec![], 1.0),
        ("d.rate.frac", vec![], 2.0),
        ("d.sc.badts", vec![], 1.0),
        ("d.sc.nohost", vec![("zone", "a")], 2.0),
        ("d.sc.msg", vec![("zone", "b")], 0.0),
        ("d.sc.unknown", vec![], 3.0),
        ("d.extra", vec![("t", "x")], 1.0),
    ]
}

/// Still refused, each with the reason it is counted under.
const REFUSED: &[(&[u8], &str)] = &[
    (b"d.r.empty::|c", "bad_value"),
    (b"d.r.novalue:|c", "bad_value"),
    (b"d.r.nomember:|s", "bad_value"),
    (b"d.r.hex:0x1p4|c", "bad_value"),
    (b"d.r.tagval:1|c|#a:", "bad_dimension"),
    (b"d.r.tagkey:1|c|#:v", "bad_dimension"),
    (b"d.r.underscore:1|c|#_k:v", "bad_dimension"),
    (b"d.r.equals:1|c|#k:a=b", "bad_dimension"),
    (b"d.r.twotags:1|c|#a:b|#c:d", "bad_dimension"),
    (b"d.r.space:1|c ", "unknown_type"),
    (b"d.r.nan:NaN|g", "non_finite_value"),
    (b"d.r.inf:Inf|c", "non_finite_value"),
    (b"d.r.rate0:1|c|@0", "bad_sample_rate"),
    (b"d.r.ratenegative:1|c|@-1", "bad_sample_rate"),
    (b"d.r.rate2:1|c|@1.5", "bad_sample_rate"),
    (b"d.r.rateempty:1|c|@", "bad_sample_rate"),
    (b"d.r.ratetiny:1|c|@1e-9", "sample_rate_too_small"),
    (b"d.r.neg:-1|ms", "negative_sample"),
    (b"d.r.ts:1|g|Tabc", "bad_timestamp"),
    (b"d.r.tsfrac:1|g|T1.5", "bad_timestamp"),
    (b"d.r.tszero:1|g|T0", "bad_timestamp"),
    (b"d.r.tsms:1|g|T1700000000000", "bad_timestamp"),
    (b"_sc|d.r.sc|4", "bad_service_check"),
    (b"_sc||0", "bad_name"),
    (b"d.r name:1|c", "bad_name"),
    (b"d.r.enc\xff:1|c", "bad_encoding"),
    (b"_e{5,4}:title|text|x:unknown", "event"),
    (b"_e{9,9}:title|text", "event"),
];

/// Over the default limits: a 9000-byte line (`statsd.max_line` is 8 KiB) and 33 tags
/// (`statsd.max_dimensions` is 32).
fn over_limits() -> Vec<(Vec<u8>, &'static str)> {
    let long = format!("d.r.long:1|c|#k:{}", "v".repeat(9000));
    let tags: Vec<String> = (0..33).map(|i| format!("k{i}:v")).collect();
    let many = format!("d.r.many:1|c|#{}", tags.join(","));
    vec![
        (long.into_bytes(), "line_too_long"),
        (many.into_bytes(), "too_many_dimensions"),
    ]
}

fn lines_in(datagram: &[u8]) -> u64 {
    statsgate::parse::lines(datagram).count() as u64
}

#[test]
fn lenient_spellings_are_flushed_exactly_and_the_rest_counted_by_reason() {
    let gw = start(ONE_FLUSH);
    let sender = gw.sender();
    let mut refused: Vec<(Vec<u8>, &str)> = REFUSED.iter().map(|(d, r)| (d.to_vec(), *r)).collect();
    refused.extend(over_limits());
    let mut want_lines = 0;
    for d in ACCEPTED
        .iter()
        .copied()
        .chain(refused.iter().map(|(d, _)| &d[..]))
    {
        sender.send(d).expect("send");
        want_lines += lines_in(d);
    }
    gw.wait_for("all lines counted", Duration::from_secs(20), |g| {
        g.lines_counted() == want_lines
    });

    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, reason) in &refused {
        *by_reason.entry(reason).or_default() += 1;
    }
    for (reason, n) in &by_reason {
        assert_eq!(
            gw.counter(
                "statsgate_lines_rejected_total",
                &format!("reason=\"{reason}\"")
            ),
            *n,
            "reason {reason}"
        );
    }
    let accepted = gw.counter("statsgate_lines_accepted_total", "");
    let accepted_lines: u64 = ACCEPTED.iter().map(|d| lines_in(d)).sum();
    assert_eq!(
        accepted, accepted_lines,
        "every lenient spelling is accepted"
    );

    let (flushes, status) = gw.stop();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(flushes.len(), 1, "one final flush: {flushes:?}");
    let m: &[Value] = &flushes[0];
    let ours: Vec<&Value> = m
        .iter()
        .filter(|x| x["name"].as_str().is_some_and(|n| n.starts_with("d.")))
        .collect();

    let want = expected();
    for (name, dims, v) in &want {
        let mut want_dims: BTreeMap<&str, &str> = dims.iter().copied().collect();
        want_dims.insert("hostname", "test-host");
        let found: Vec<&&Value> = ours.iter().filter(|x| x["name"] == *name).collect();
        assert_eq!(found.len(), 1, "one series {name}: {found:?}");
        let got_dims: BTreeMap<&str, &str> = found[0]["dimensions"]
            .as_object()
            .expect("dimensions")
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().expect("string value")))
            .collect();
        assert_eq!(got_dims, want_dims, "{name}");
        assert_eq!(found[0]["value"].as_f64(), Some(*v), "{name}");
    }
    // A bad `d:` does not time the check: it carries the flush's timestamp like the others.
    let badts = ours
        .iter()
        .find(|x| x["name"] == "d.sc.badts")
        .expect("d.sc.badts");
    assert_eq!(badts["timestamp"], ours[0]["timestamp"]);

    // Nothing else: no refused line and no timer aggregate beyond those listed leaked out.
    let listed: BTreeSet<&str> = want.iter().map(|(n, _, _)| *n).collect();
    for x in &ours {
        let name = x["name"].as_str().unwrap_or_default();
        let timer_extra = name.starts_with("d.packed.timer.");
        assert!(
            listed.contains(name) || timer_extra,
            "unexpected metric {name}"
        );
        assert!(
            !name.starts_with("d.r."),
            "a refused line was flushed: {name}"
        );
    }
}
