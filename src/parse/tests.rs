//! Named cases per dialect feature and per rejection reason, then property tests.

use super::*;
use proptest::prelude::*;

pub(super) fn parse(s: &str) -> Result<Line<'_>, Reject> {
    parse_line(s.as_bytes(), &Limits::default())
}

pub(super) fn dims_of(line: &Line<'_>) -> Vec<(String, String)> {
    let mut v = Vec::new();
    line.dims
        .for_each(|k, val| v.push((k.to_owned(), val.to_owned())));
    v
}

pub(super) fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn numbers(line: &Line<'_>) -> Vec<f64> {
    line.values.numbers().collect()
}

#[test]
fn counter() {
    let l = parse("page.views:1|c").unwrap();
    assert_eq!(
        (l.name, l.kind, numbers(&l), l.sample_rate),
        ("page.views", Kind::Counter, vec![1.0], 1.0)
    );
    assert!(l.dims.is_empty());
    assert_eq!(numbers(&parse("x:-2.5|c").unwrap()), vec![-2.5]);
}

#[test]
fn every_type_code() {
    for (code, kind) in [
        ("c", Kind::Counter),
        ("g", Kind::Gauge),
        ("ms", Kind::Timer),
        ("h", Kind::Histogram),
        ("d", Kind::Distribution),
        ("s", Kind::Set),
        ("r", Kind::Rate),
        ("pc", Kind::PercentChange),
    ] {
        assert_eq!(parse(&format!("m:1|{code}")).unwrap().kind, kind, "{code}");
    }
}

#[test]
fn percent_change_takes_signed_packed_numbers_and_its_fields() {
    let l = parse("queue_depth:42|pc").unwrap();
    assert_eq!(
        (l.name, l.kind, numbers(&l)),
        ("queue_depth", Kind::PercentChange, vec![42.0])
    );
    let l = parse("q:-1.5:0:3|pc|#zone:a|T1700000000").unwrap();
    assert_eq!(numbers(&l), vec![-1.5, 0.0, 3.0]);
    assert_eq!(dims_of(&l), pairs(&[("zone", "a")]));
    assert_eq!(l.timestamp, Some(1_700_000_000));
    // A sample rate parses (and is ignored by the aggregator, as for gauges and rates).
    assert_eq!(parse("q:1|pc|@0.5").unwrap().sample_rate, 0.5);
    assert_eq!(parse("q:abc|pc"), Err(Reject::BadValue));
    assert_eq!(parse("q:1|p"), Err(Reject::UnknownType));
    assert_eq!(parse("q:1|pcx"), Err(Reject::UnknownType));
}

#[test]
fn gauge_set_and_deltas() {
    let ops: Vec<_> = parse("temp:20:+3:-1.5|g")
        .unwrap()
        .values
        .gauge_ops()
        .collect();
    assert_eq!(
        ops,
        vec![
            GaugeOp::Set(20.0),
            GaugeOp::Delta(3.0),
            GaugeOp::Delta(-1.5)
        ]
    );
}

#[test]
fn value_packing() {
    assert_eq!(
        numbers(&parse("lat:1:2:3.5|ms").unwrap()),
        vec![1.0, 2.0, 3.5]
    );
    // Empty pieces are skipped (DogStatsD and gostatsd do): see tests_lenient.rs.
    assert_eq!(numbers(&parse("lat:1::3|ms").unwrap()), vec![1.0, 3.0]);
}

#[test]
fn set_member_keeps_colons() {
    let l = parse("users:user:42|s").unwrap();
    assert_eq!((l.kind, l.values.member()), (Kind::Set, "user:42"));
}

#[test]
fn sample_rate() {
    assert_eq!(parse("hits:1|c|@0.1").unwrap().sample_rate, 0.1);
    assert_eq!(parse("hits:1|c|@1").unwrap().sample_rate, 1.0);
    assert_eq!(parse("hits:1|c|@0.000001").unwrap().sample_rate, 1e-6);
    // Guards: a weight of 1e300 overflowed the histogram's counts (a panic in debug).
    for tiny in ["@1e-300", "@0.0000009", "@5e-324"] {
        assert_eq!(
            parse(&format!("lat:1|ms|{tiny}")),
            Err(Reject::SampleRateTooSmall),
            "{tiny}"
        );
    }
    for bad in ["@0", "@-0.5", "@1.5", "@x", "@", "@NaN", "@inf"] {
        assert_eq!(
            parse(&format!("hits:1|c|{bad}")),
            Err(Reject::BadSampleRate),
            "{bad}"
        );
    }
}

#[test]
fn dogstatsd_tags_with_bare_tags_and_colons_in_values() {
    let l = parse("req:1|c|#service:api,url:http://x:80/a,canary").unwrap();
    assert_eq!(
        dims_of(&l),
        pairs(&[
            ("service", "api"),
            ("url", "http://x:80/a"),
            ("canary", BARE_TAG_VALUE)
        ])
    );
}

#[test]
fn dogstatsd_tags_after_rate_and_before_timestamp() {
    let l = parse("req:1|c|@0.5|#a:b|T1700000000").unwrap();
    assert_eq!((l.sample_rate, l.timestamp), (0.5, Some(1_700_000_000)));
    assert_eq!(dims_of(&l), pairs(&[("a", "b")]));
}

#[test]
fn monasca_dict_dimensions() {
    let l = parse("cpu:3|g|#{'service': 'nova', \"component\": \"api|v2\"}").unwrap();
    assert_eq!(
        dims_of(&l),
        pairs(&[("service", "nova"), ("component", "api|v2")])
    );
    let l = parse("cpu:3|g|#{'a': 'b'}|@0.5").unwrap();
    assert_eq!(l.sample_rate, 0.5);
    assert_eq!(parse("cpu:3|g|#{}").map(|l| l.dims.validate(32)), Ok(Ok(0)));
}

#[test]
fn influxdb_dimensions_in_name() {
    let l = parse("http.req,service=api,code=200:1|c").unwrap();
    assert_eq!(l.name, "http.req");
    assert_eq!(dims_of(&l), pairs(&[("service", "api"), ("code", "200")]));
}

#[test]
fn graphite_dimensions_in_name() {
    let l = parse("http.req;service=api;code=200:1|c").unwrap();
    assert_eq!(l.name, "http.req");
    assert_eq!(dims_of(&l), pairs(&[("service", "api"), ("code", "200")]));
}

#[test]
fn name_and_line_dimensions_combine() {
    let l = parse("m,a=1:1|c|#b:2").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("a", "1"), ("b", "2")]));
}

#[test]
fn timestamp_field() {
    assert_eq!(
        parse("m:1|g|T1700000000").unwrap().timestamp,
        Some(1_700_000_000)
    );
    for bad in ["T", "T0", "T-5", "T1.5", "T17000000000", "Tabc"] {
        assert_eq!(
            parse(&format!("m:1|g|{bad}")),
            Err(Reject::BadTimestamp),
            "{bad}"
        );
    }
}

#[test]
fn container_and_unknown_fields_are_ignored() {
    let l = parse("m:1|c|c:abc123|e:it-false|card:high|#a:b").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("a", "b")]));
}

#[test]
fn a_field_starting_with_a_multibyte_char_is_an_unknown_field() {
    // Found by cargo fuzz: slicing one byte into `׌` panicked.
    let l = parse("m:1|c|\u{5cc}x|#a:b").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("a", "b")]));
}

#[test]
fn service_check() {
    let l = parse("_sc|db.up|2|d:1700000000|h:db-1|#zone:a|m:disk full").unwrap();
    assert_eq!(
        (l.name, l.kind, l.timestamp),
        ("db.up", Kind::Gauge, Some(1_700_000_000))
    );
    assert_eq!(
        l.values.gauge_ops().collect::<Vec<_>>(),
        vec![GaugeOp::Set(2.0)]
    );
    assert_eq!(dims_of(&l), pairs(&[("zone", "a"), ("hostname", "db-1")]));
    for bad in ["_sc|db.up|4", "_sc|db.up|", "_sc|db.up"] {
        assert_eq!(parse(bad), Err(Reject::BadServiceCheck), "{bad}");
    }
    assert_eq!(parse("_sc||0"), Err(Reject::BadName));
}

#[test]
fn events_are_refused_by_their_own_reason() {
    assert_eq!(parse("_e{5,4}:title|text|#a:b"), Err(Reject::Event));
}

#[test]
fn datagram_lines_with_crlf_and_trailing_newline() {
    let d = b"a:1|c\r\nb:2|c\n\nc:3|c\n";
    let got: Vec<_> = lines(d).collect();
    assert_eq!(got, vec![&b"a:1|c"[..], b"b:2|c", b"c:3|c"]);
}

/// What [`lines`] must answer, written the obvious way.
fn plain_lines(d: &[u8]) -> Vec<&[u8]> {
    d.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn datagram_lines_agree_with_a_plain_split() {
    let cases: [&[u8]; 16] = [
        b"",
        b"\n",
        b"\n\n\n",
        b"\r",
        b"\r\n",
        b"\r\r\n",
        b"a",
        b"a\n",
        b"\na",
        b"a\r\n",
        b"a\r",
        b"a\rb",
        b"a\r\r\n",
        b"\r\na\r\n\r\n",
        b"a\n\nb\r\n\r\nc",
        b"a:1|c\r\nb:2|c\n\nc:3|c\n",
    ];
    for d in cases {
        let got: Vec<_> = lines(d).collect();
        assert_eq!(got, plain_lines(d), "{:?}", String::from_utf8_lossy(d));
    }
    // Lines of every length up to 70, so newlines fall on every side of the 16- and 64-byte
    // steps of a vectorised search; each separator; with and without a trailing one.
    for n in 0..=70usize {
        let line: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        for sep in [&b"\n"[..], b"\r\n", b"\n\n", b"\r\n\r\n"] {
            for trailing in [false, true] {
                let mut d = Vec::new();
                for k in 0..5 {
                    if k > 0 {
                        d.extend_from_slice(sep);
                    }
                    d.extend_from_slice(&line[..n.saturating_sub(k)]);
                }
                if trailing {
                    d.extend_from_slice(sep);
                }
                let got: Vec<_> = lines(&d).collect();
                assert_eq!(got, plain_lines(&d), "{:?}", String::from_utf8_lossy(&d));
            }
        }
    }
}

#[test]
fn heartbeat_datagrams_are_recognised() {
    assert!(is_heartbeat(b"{\"ID\":\"x\"}"));
    assert!(is_heartbeat(b"  \n{}"));
    assert!(!is_heartbeat(b"a:1|c"));
    assert!(!is_heartbeat(b""));
}

#[test]
fn rejection_reasons() {
    let limits = Limits {
        max_line: 64,
        max_dimensions: 2,
    };
    let p = |s: &[u8]| parse_line(s, &limits).map(|_| ());
    assert_eq!(p(&[b'a'; 65]), Err(Reject::LineTooLong));
    assert_eq!(p(b"caf\xff:1|c"), Err(Reject::BadEncoding));
    assert_eq!(p(b"no_value"), Err(Reject::MissingValue));
    assert_eq!(p(b"m:1"), Err(Reject::MissingType));
    assert_eq!(p(b"m:1|"), Err(Reject::MissingType));
    assert_eq!(p(b"m:1|x"), Err(Reject::UnknownType));
    assert_eq!(p(b"m:abc|c"), Err(Reject::BadValue));
    assert_eq!(p(b"m:|c"), Err(Reject::BadValue));
    assert_eq!(p(b"m:|s"), Err(Reject::BadValue));
    assert_eq!(p(b"m:NaN|g"), Err(Reject::NonFiniteValue));
    assert_eq!(p(b"m:inf|c"), Err(Reject::NonFiniteValue));
    assert_eq!(p(b"m:-1|ms"), Err(Reject::NegativeSample));
    assert_eq!(p(b"m:-1|h"), Err(Reject::NegativeSample));
    assert_eq!(p(b"m:1|c|@2"), Err(Reject::BadSampleRate));
    assert_eq!(p(b":1|c"), Err(Reject::BadName));
    assert_eq!(p(b"a b:1|c"), Err(Reject::BadName));
    assert_eq!(p(b"m:1|c|#_k:v"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#k:"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#:v"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#k:a=b"), Err(Reject::BadDimension));
    assert_eq!(p(b"m,k:1|c"), Err(Reject::BadDimension));
    assert_eq!(p(b"m,:1|c"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#{'k': 'v'"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#a:b|#c:d"), Err(Reject::BadDimension));
    assert_eq!(p(b"m:1|c|#a:1,b:2,c:3"), Err(Reject::TooManyDimensions));
    assert_eq!(p(b"m:1|c|T0"), Err(Reject::BadTimestamp));
    assert_eq!(p(b"_sc|m|9"), Err(Reject::BadServiceCheck));
    assert_eq!(p(b"_e{1,1}:a|b"), Err(Reject::Event));
}

// ---- properties ----

/// A line description that renders to statsd text in one of the dialects.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) values: Vec<f64>,
    pub(super) member: String,
    pub(super) rate: Option<f64>,
    pub(super) dims: Vec<(String, String)>,
    pub(super) dialect: u8,
    pub(super) timestamp: Option<u64>,
}

fn code(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "c",
        Kind::Gauge => "g",
        Kind::Timer => "ms",
        Kind::Histogram => "h",
        Kind::Distribution => "d",
        Kind::Set => "s",
        Kind::Rate => "r",
        Kind::PercentChange => "pc",
    }
}

impl Spec {
    pub(super) fn render(&self) -> String {
        let mut s = self.name.clone();
        let dims = |sep: &str, kv: &str| {
            self.dims
                .iter()
                .map(|(k, v)| format!("{k}{kv}{v}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        if !self.dims.is_empty() {
            match self.dialect {
                2 => s += &format!(",{}", dims(",", "=")),
                3 => s += &format!(";{}", dims(";", "=")),
                _ => {}
            }
        }
        s.push(':');
        if self.kind == Kind::Set {
            s += &self.member;
        } else {
            // Gauges are rendered as plain sets (a `+` would make them deltas).
            let v: Vec<String> = self.values.iter().map(|v| format!("{v:?}")).collect();
            s += &v.join(":");
        }
        s.push('|');
        s += code(self.kind);
        if let Some(r) = self.rate {
            s += &format!("|@{r:?}");
        }
        if !self.dims.is_empty() {
            match self.dialect {
                0 => s += &format!("|#{}", dims(",", ":")),
                1 => {
                    let body: Vec<String> = self
                        .dims
                        .iter()
                        .map(|(k, v)| format!("'{k}': '{v}'"))
                        .collect();
                    s += &format!("|#{{{}}}", body.join(", "));
                }
                _ => {}
            }
        }
        if let Some(t) = self.timestamp {
            s += &format!("|T{t}");
        }
        s
    }
}

pub(super) fn spec() -> impl Strategy<Value = Spec> {
    let kind = prop::sample::select(Kind::ALL.to_vec());
    let dim_text = "[a-z][a-z0-9._/-]{0,12}";
    (
        "[a-zA-Z][a-zA-Z0-9._-]{0,40}",
        kind,
        prop::collection::vec(0.0f64..1e9, 1..4),
        "[a-z0-9:@.-]{1,20}",
        prop::option::of(0.001f64..=1.0),
        prop::collection::btree_map(dim_text, dim_text, 0..5),
        0u8..4,
        prop::option::of(1u64..=9_999_999_999),
    )
        .prop_map(
            |(name, kind, values, member, rate, dims, dialect, timestamp)| Spec {
                name,
                kind,
                values,
                member,
                rate,
                dims: dims.into_iter().collect(),
                dialect,
                timestamp,
            },
        )
}

proptest! {
    #[test]
    fn rendered_lines_parse_back_to_what_was_rendered(s in spec()) {
        let text = s.render();
        let line = parse(&text).map_err(|r| TestCaseError::fail(format!("{text}: {r}")))?;
        prop_assert_eq!(line.name, s.name.as_str());
        prop_assert_eq!(line.kind, s.kind);
        prop_assert_eq!(line.sample_rate, s.rate.unwrap_or(1.0));
        prop_assert_eq!(line.timestamp, s.timestamp);
        prop_assert_eq!(dims_of(&line), s.dims.clone());
        if s.kind == Kind::Set {
            prop_assert_eq!(line.values.member(), s.member.as_str());
        } else {
            prop_assert_eq!(numbers(&line), s.values.clone());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let limits = Limits::default();
        for line in lines(&bytes) {
            if let Ok(l) = parse_line(line, &limits) {
                // Whatever parses must iterate without surprises.
                l.dims.for_each(|k, v| assert!(!k.is_empty() && !v.is_empty()));
                if l.kind != Kind::Set {
                    assert!(l.values.numbers().all(f64::is_finite));
                }
            }
        }
    }

    #[test]
    fn the_single_pass_name_check_agrees_with_monasca_rules(name in "[a-z<>={}\"\\\\&() é._-]{0,300}") {
        // A `:` ends the name in statsd, so only names without one are comparable.
        prop_assume!(!name.contains(':'));
        let line = format!("{name}:1|c");
        let parsed = parse(&line).map(|_| ());
        if validate::name(&name).is_ok() {
            prop_assert_eq!(parsed, Ok(()), "{}", line);
        } else {
            prop_assert_eq!(parsed, Err(Reject::BadName), "{}", line);
        }
    }

    #[test]
    fn datagram_lines_agree_with_a_plain_split_on_any_mix(
        d in prop::collection::vec(prop::sample::select(&b"ab\r\n"[..]), 0..400)
    ) {
        let got: Vec<_> = lines(&d).collect();
        prop_assert_eq!(got, plain_lines(&d));
    }

    #[test]
    fn statsd_shaped_noise_never_panics(s in "[a-z:|#@,;={}'\" T0-9.+-]{0,80}") {
        let _ = parse(&s);
    }
}
