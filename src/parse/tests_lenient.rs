//! Named cases for where statsgate is as lenient as DogStatsD and gostatsd (and where it is
//! not, with the reason it refuses by): one test per case of the comparison in
//! NOTES-lenient.md, then a property that a lenient spelling parses as its plain one.

use super::tests::{Spec, dims_of, numbers, pairs, parse, spec};
use super::*;
use proptest::prelude::*;

fn ops(line: &Line<'_>) -> Vec<GaugeOp> {
    line.values.gauge_ops().collect()
}

// ---- empty pieces in packed values ----

#[test]
fn an_empty_piece_between_packed_values_is_skipped() {
    assert_eq!(numbers(&parse("a:1::2|c").unwrap()), vec![1.0, 2.0]);
    assert_eq!(
        numbers(&parse("lat:1::3:::4|ms").unwrap()),
        vec![1.0, 3.0, 4.0]
    );
    assert_eq!(
        ops(&parse("g:1::+2|g").unwrap()),
        vec![GaugeOp::Set(1.0), GaugeOp::Delta(2.0)]
    );
}

#[test]
fn a_trailing_empty_piece_leaves_one_value() {
    let l = parse("a:1:|c").unwrap();
    assert_eq!(numbers(&l), vec![1.0]);
    // One value: the aggregator's memo and single-value paths see exactly what `a:1|c` gives.
    assert_eq!(l.values.single(), Some(1.0));
    assert_eq!(ops(&parse("g:-4:|g").unwrap()), vec![GaugeOp::Delta(-4.0)]);
}

#[test]
fn a_leading_empty_piece_leaves_one_value() {
    let l = parse("a::1|c").unwrap();
    assert_eq!((numbers(&l), l.values.single()), (vec![1.0], Some(1.0)));
    assert_eq!(numbers(&parse("r::5:7|r").unwrap()), vec![5.0, 7.0]);
}

#[test]
fn only_empty_pieces_is_still_a_bad_value() {
    // DogStatsD refuses these ("no value found"); gostatsd takes them as no samples at all.
    for bad in ["a::|c", "a:|c", "a:::|ms", "a::|g"] {
        assert_eq!(parse(bad), Err(Reject::BadValue), "{bad}");
    }
}

#[test]
fn a_bad_piece_among_empty_ones_still_refuses_the_line() {
    assert_eq!(parse("a:1::x|c"), Err(Reject::BadValue));
    assert_eq!(parse("lat:1::-2|ms"), Err(Reject::NegativeSample));
    assert_eq!(parse("a:1::NaN|c"), Err(Reject::NonFiniteValue));
}

#[test]
fn a_set_member_keeps_its_colons_even_empty_ones() {
    assert_eq!(parse("u:a::b|s").unwrap().values.member(), "a::b");
    assert_eq!(parse("u:a:|s").unwrap().values.member(), "a:");
}

// ---- empty fields ----

#[test]
fn trailing_empty_fields_are_ignored() {
    for line in ["a:1|c|", "a:1|c||", "a:1|c|#t:1|", "a:1|c|@0.5||"] {
        assert!(parse(line).is_ok(), "{line}");
    }
    assert_eq!(
        dims_of(&parse("a:1|c|#t:1|").unwrap()),
        pairs(&[("t", "1")])
    );
}

#[test]
fn an_empty_field_before_the_tags_keeps_them() {
    // gostatsd reads `||#t:1` as one unknown field and loses the tags; DogStatsD keeps them.
    let l = parse("a:1|c||#t:1").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("t", "1")]));
}

#[test]
fn an_empty_tag_block_is_no_tags_and_leaves_room_for_one() {
    let l = parse("a:1|c|#").unwrap();
    assert!(l.dims.is_empty());
    let l = parse("a:1|c|#|#t:1").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("t", "1")]));
    assert_eq!(parse("a:1|c|#|@0.5").unwrap().sample_rate, 0.5);
}

#[test]
fn an_empty_sample_rate_is_refused_as_by_both_peers() {
    assert_eq!(parse("a:1|c|@"), Err(Reject::BadSampleRate));
}

#[test]
fn empty_tags_in_a_tag_list_are_skipped() {
    assert_eq!(
        dims_of(&parse("a:1|c|#,tag").unwrap()),
        pairs(&[("tag", "True")])
    );
    assert_eq!(
        dims_of(&parse("a:1|c|#tag,,tag2:v,").unwrap()),
        pairs(&[("tag", "True"), ("tag2", "v")])
    );
}

#[test]
fn an_empty_tag_value_or_key_is_refused_as_monasca_would() {
    for bad in ["a:1|c|#a:", "a:1|c|#:v", "a:1|c|#x:1,a:"] {
        assert_eq!(parse(bad), Err(Reject::BadDimension), "{bad}");
    }
}

// ---- whitespace ----

#[test]
fn a_trailing_carriage_return_is_dropped_with_the_newline() {
    let got: Vec<_> = lines(b"a:1|c\r\nb:2|c\r").collect();
    assert_eq!(got, vec![&b"a:1|c"[..], b"b:2|c"]);
    assert!(
        got.iter()
            .all(|l| parse_line(l, &Limits::default()).is_ok())
    );
}

#[test]
fn trailing_spaces_after_the_type_are_refused_as_by_both_peers() {
    assert_eq!(parse("a:1|c "), Err(Reject::UnknownType));
    assert_eq!(parse("a:1 |c"), Err(Reject::BadValue));
}

#[test]
fn a_space_inside_a_tag_value_is_kept() {
    // Monasca allows spaces in dimension values; both peers keep them too.
    assert_eq!(
        dims_of(&parse("a:1|c|#t:1 ").unwrap()),
        pairs(&[("t", "1 ")])
    );
}

// ---- numbers ----

#[test]
fn a_leading_plus_on_a_counter_is_a_positive_value() {
    assert_eq!(numbers(&parse("a:+1|c").unwrap()), vec![1.0]);
    // On a gauge it is a delta (Etsy statsd), where both peers set the value.
    assert_eq!(ops(&parse("g:+1|g").unwrap()), vec![GaugeOp::Delta(1.0)]);
}

#[test]
fn exponent_notation_is_accepted() {
    for (text, v) in [
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("1e+3", 1000.0),
        ("2.5e-1", 0.25),
    ] {
        assert_eq!(
            numbers(&parse(&format!("a:{text}|c")).unwrap()),
            vec![v],
            "{text}"
        );
    }
}

#[test]
fn nan_and_infinity_are_refused_as_monasca_would() {
    for bad in ["NaN", "nan", "Inf", "+Inf", "-inf", "infinity", "1e400"] {
        assert_eq!(
            parse(&format!("a:{bad}|g")),
            Err(Reject::NonFiniteValue),
            "{bad}"
        );
    }
}

#[test]
fn hexadecimal_floats_are_refused() {
    // Go's ParseFloat (both peers) reads `0x1p4` as 16; no statsd client writes one.
    assert_eq!(parse("a:0x1p4|c"), Err(Reject::BadValue));
}

// ---- sample rates ----

#[test]
fn sample_rates_one_and_a_bare_fraction_are_accepted() {
    assert_eq!(parse("a:1|c|@1").unwrap().sample_rate, 1.0);
    assert_eq!(parse("a:1|c|@.5").unwrap().sample_rate, 0.5);
}

#[test]
fn sample_rates_outside_zero_to_one_are_refused() {
    // Both peers parse these and then weigh by 1/rate: +Inf (or a sign flip) in the sums.
    for bad in ["@0", "@-0.5", "@1.5"] {
        assert_eq!(
            parse(&format!("a:1|c|{bad}")),
            Err(Reject::BadSampleRate),
            "{bad}"
        );
    }
}

// ---- service checks ----

#[test]
fn a_service_check_with_a_bad_timestamp_is_kept_and_timed_on_arrival() {
    for line in [
        "_sc|db.up|0|d:x",
        "_sc|db.up|0|d:",
        "_sc|db.up|0|d:1.5",
        "_sc|db.up|0|d:-5",
    ] {
        let l = parse(line).unwrap();
        assert_eq!((l.name, l.timestamp), ("db.up", None), "{line}");
    }
    // A bad `d:` after a good one leaves the good one, as in DogStatsD.
    let l = parse("_sc|db.up|1|d:1700000000|d:later").unwrap();
    assert_eq!(l.timestamp, Some(1_700_000_000));
}

#[test]
fn a_service_check_with_an_empty_host_gets_no_hostname_dimension() {
    let l = parse("_sc|db.up|0|h:|#zone:a").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("zone", "a")]));
    // The gateway's default `hostname` is added by the aggregator, as for any line.
    assert!(parse("_sc|db.up|0|h:").unwrap().dims.host.is_none());
}

#[test]
fn a_service_check_message_runs_to_the_end_of_the_line() {
    let l = parse("_sc|db.up|2|#zone:a|m:disk|full|#not:tags").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("zone", "a")]));
    assert_eq!(ops(&l), vec![GaugeOp::Set(2.0)]);
}

#[test]
fn a_service_check_ignores_unknown_and_empty_fields() {
    let l = parse("_sc|db.up|3|x:y||c:abc|#zone:a|").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("zone", "a")]));
}

#[test]
fn a_service_check_status_outside_zero_to_three_or_without_a_name_is_refused() {
    for bad in [
        "_sc|db.up|4",
        "_sc|db.up|-1",
        "_sc|db.up|ok",
        "_sc|db.up| 0",
    ] {
        assert_eq!(parse(bad), Err(Reject::BadServiceCheck), "{bad}");
    }
    assert_eq!(parse("_sc||0"), Err(Reject::BadName));
}

// ---- events ----

#[test]
fn every_event_is_dropped_as_an_event_malformed_or_not() {
    for e in [
        "_e{5,4}:title|text",
        "_e{9,9}:title|text",
        "_e{1,1}:title|text",
        "_e{5,4}:title|text|x:unknown",
        "_e{x}:a|b",
    ] {
        assert_eq!(parse(e), Err(Reject::Event), "{e}");
    }
}

// ---- timestamps and DogStatsD's extra fields ----

#[test]
fn a_timestamp_that_is_not_whole_seconds_is_refused() {
    for bad in ["Tabc", "T1.5", "T+5", "T", "T1700000000000"] {
        assert_eq!(
            parse(&format!("a:1|g|{bad}")),
            Err(Reject::BadTimestamp),
            "{bad}"
        );
    }
}

#[test]
fn container_external_data_and_cardinality_fields_are_ignored_anywhere() {
    let l = parse("a:1|c|c:ci-abc,in-42|#t:1|e:it-false,cn-web|card:high|T1700000000").unwrap();
    assert_eq!(dims_of(&l), pairs(&[("t", "1")]));
    assert_eq!(l.timestamp, Some(1_700_000_000));
    assert!(parse("a:1|c|c:|e:|card:").unwrap().dims.is_empty());
}

// ---- property: a lenient spelling parses as its plain one ----

/// `s` rendered with the leniencies inserted where `knobs` say: empty pieces around and
/// between packed values, empty fields, an empty `|#`, a trailing `|`.
fn render_lenient(s: &Spec, knobs: &[bool; 6]) -> String {
    let plain = s.render();
    let (head, fields) = plain.split_once('|').expect("a rendered line has a type");
    // Names and name tags hold no `:`, so the first one starts the values.
    let (name, values) = head.split_once(':').expect("a rendered line has a value");
    let values = if s.kind == Kind::Set {
        values.to_owned()
    } else {
        let sep = if knobs[0] { "::" } else { ":" };
        let mut v = values.replace(':', sep);
        if knobs[1] {
            v.insert(0, ':');
        }
        if knobs[2] {
            v.push(':');
        }
        v
    };
    let (code, rest) = fields.split_once('|').unwrap_or((fields, ""));
    let mut out = format!("{name}:{values}|{code}");
    if knobs[3] {
        out.push_str("|#");
    }
    for f in rest.split('|').filter(|f| !f.is_empty()) {
        if knobs[4] {
            out.push('|');
        }
        out.push('|');
        out.push_str(f);
    }
    if knobs[5] {
        out.push('|');
    }
    out
}

proptest! {
    #[test]
    fn a_lenient_spelling_parses_as_the_plain_line(s in spec(), knobs in any::<[bool; 6]>()) {
        let plain_text = s.render();
        let lenient_text = render_lenient(&s, &knobs);
        let plain = parse(&plain_text).map_err(|r| TestCaseError::fail(format!("{plain_text}: {r}")))?;
        let lenient = parse(&lenient_text)
            .map_err(|r| TestCaseError::fail(format!("{lenient_text}: {r}")))?;
        prop_assert_eq!(lenient.name, plain.name);
        prop_assert_eq!(lenient.kind, plain.kind);
        prop_assert_eq!(lenient.sample_rate, plain.sample_rate);
        prop_assert_eq!(lenient.timestamp, plain.timestamp);
        prop_assert_eq!(dims_of(&lenient), dims_of(&plain));
        if s.kind == Kind::Set {
            prop_assert_eq!(lenient.values.member(), plain.values.member());
        } else {
            prop_assert_eq!(numbers(&lenient), numbers(&plain));
            prop_assert_eq!(ops(&lenient), ops(&plain));
            // The memo's single-value path must see the same line as the plain spelling.
            prop_assert_eq!(lenient.values.single(), plain.values.single());
        }
    }
}
