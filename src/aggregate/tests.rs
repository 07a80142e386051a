use super::*;
use crate::parse::{Limits, parse_line};

fn feed(agg: &mut Aggregator, shard: &mut Shard, lines: &[&str]) -> Vec<Result<(), Reject>> {
    lines
        .iter()
        .map(|l| {
            parse_line(l.as_bytes(), &Limits::default())
                .and_then(|line| agg.add(shard, &line, 5_000))
        })
        .collect()
}

/// A decoded key: name, `|T`, dimensions.
type Decoded = (String, Option<u64>, Vec<(String, String)>);

fn key_of(shard_map_keys: impl Iterator<Item = Vec<u8>>) -> Vec<Decoded> {
    let mut v: Vec<_> = shard_map_keys
        .map(|k| {
            let d = SeriesKey::decode(&k);
            let dims = d
                .dims()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
            (d.name.to_owned(), d.timestamp, dims)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn counters_weight_by_sample_rate() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(
        &mut agg,
        &mut shard,
        &["hits:1|c", "hits:2|c|@0.5", "hits:1:1|c|@0.25"],
    );
    assert_eq!(
        shard.counters.get(&b"hits"[..]).map(|c| c.sum),
        Some(1.0 + 4.0 + 8.0)
    );
}

#[test]
fn dimension_order_and_dialect_do_not_split_a_series() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(
        &mut agg,
        &mut shard,
        &[
            "r:1|c|#b:2,a:1",
            "r,a=1,b=2:1|c",
            "r;b=2;a=1:1|c",
            "r:1|c|#{'a': '1', 'b': '2'}",
        ],
    );
    assert_eq!(shard.counters.len(), 1);
    let keys = key_of(shard.counters.keys().map(|k| k.to_vec()));
    assert_eq!(
        keys[0].2,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    assert_eq!(shard.counters.values().next().map(|c| c.sum), Some(4.0));
}

#[test]
fn duplicate_dimension_keys_keep_the_last_value() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(&mut agg, &mut shard, &["r,a=1:1|c|#a:2"]);
    let keys = key_of(shard.counters.keys().map(|k| k.to_vec()));
    assert_eq!(keys[0].2, vec![("a".into(), "2".into())]);
}

#[test]
fn a_dimension_equal_to_a_default_is_the_same_series() {
    let settings = Settings {
        default_dimensions: vec![("hostname".into(), "gw".into())],
        ..Settings::default()
    };
    let mut agg = Aggregator::new(settings);
    let mut shard = Shard::default();
    feed(
        &mut agg,
        &mut shard,
        &["r:1|c", "r:1|c|#hostname:gw", "r:1|c|#hostname:other"],
    );
    assert_eq!(shard.counters.get(&b"r"[..]).map(|c| c.sum), Some(2.0));
    assert_eq!(shard.counters.len(), 2);
}

#[test]
fn timestamped_lines_are_their_own_series() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(
        &mut agg,
        &mut shard,
        &["g:1|g|T1700000000", "g:2|g|T1700000010", "g:3|g"],
    );
    let keys = key_of(shard.gauges.keys().map(|k| k.to_vec()));
    let stamps: Vec<_> = keys.iter().map(|k| k.1).collect();
    assert_eq!(stamps, vec![None, Some(1_700_000_000), Some(1_700_000_010)]);
}

#[test]
fn series_limit_refuses_new_series_only() {
    let settings = Settings {
        budget: std::sync::Arc::new(SeriesBudget::new(2, 2)),
        ..Settings::default()
    };
    let mut agg = Aggregator::new(settings);
    let mut shard = Shard::default();
    let got = feed(
        &mut agg,
        &mut shard,
        &["a:1|c", "b:1|g", "c:1|ms", "a:1|c", "b:+1|g"],
    );
    assert_eq!(
        got,
        vec![Ok(()), Ok(()), Err(Reject::SeriesLimit), Ok(()), Ok(())]
    );
    assert_eq!(shard.series(), 2);
}

#[test]
fn sets_count_distinct_members_and_merge_across_shards() {
    let mut agg = Aggregator::new(Settings {
        max_set_members: 3,
        ..Settings::default()
    });
    let (mut a, mut b) = (Shard::default(), Shard::default());
    feed(&mut agg, &mut a, &["u:alice|s", "u:bob|s", "u:alice|s"]);
    let got = feed(
        &mut agg,
        &mut b,
        &["u:bob|s", "u:carol|s", "u:dave|s", "u:erin|s"],
    );
    assert_eq!(got[3], Err(Reject::SetMemberLimit));
    a.merge(&b);
    assert_eq!(a.sets.get(&b"u"[..]).map(|s| s.members.len()), Some(4));
}

#[test]
fn rates_use_line_timestamps_as_sample_times() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(
        &mut agg,
        &mut shard,
        &["bytes:100|r|T1700000000", "bytes:400|r|T1700000003"],
    );
    feed(&mut agg, &mut shard, &["rx:1:2|r"]);
    let bytes = shard.rates.get(&b"bytes"[..]).copied();
    assert_eq!(
        bytes.map(|r| (r.first, r.last)),
        Some(((1_700_000_000_000, 100.0), (1_700_000_003_000, 400.0)))
    );
    let rx = shard.rates.get(&b"rx"[..]).copied();
    assert_eq!(
        rx.map(|r| (r.first, r.last)),
        Some(((5_000, 1.0), (5_000, 2.0)))
    );
    assert_eq!(shard.rates.len(), 2, "|T does not split a rate series");
}

#[test]
fn percent_changes_keep_the_last_two_values_in_order() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    // A new series holds its first value once (not twice: that would read as 0% change).
    feed(&mut agg, &mut shard, &["depth:10|pc|@0.5"]);
    let depth = |s: &Shard| s.percents.get(&b"depth"[..]).map(|p| (p.prev, p.last));
    assert_eq!(depth(&shard), Some((None, (5_000, 10.0))));
    feed(&mut agg, &mut shard, &["depth:20:30|pc"]);
    assert_eq!(depth(&shard), Some((Some((5_000, 20.0)), (5_000, 30.0))));
    // `|T` times the sample and does not split the series; an older one is the second newest.
    feed(
        &mut agg,
        &mut shard,
        &["t:1|pc|T1700000005", "t:2|pc|T1700000001"],
    );
    assert_eq!(
        shard.percents.get(&b"t"[..]).map(|p| (p.prev, p.last)),
        Some((Some((1_700_000_001_000, 2.0)), (1_700_000_005_000, 1.0)))
    );
    assert_eq!(shard.percents.len(), 2);
    assert_eq!(shard.series(), 2);
    // Another reader's later values win the merge; its series are added.
    let mut other = Shard::default();
    let line = parse_line(b"depth:40|pc", &Limits::default()).unwrap();
    agg.add(&mut other, &line, 6_000).unwrap();
    shard.merge(&other);
    assert_eq!(depth(&shard), Some((Some((5_000, 30.0)), (6_000, 40.0))));
    shard.recycle();
    assert_eq!(
        shard.slots(),
        0,
        "percent changes are carried by the flusher"
    );
}

#[test]
fn percent_change_series_count_against_the_budget() {
    let budget = std::sync::Arc::new(SeriesBudget::new(1, 1));
    let mut agg = Aggregator::new(Settings {
        budget,
        ..Settings::default()
    });
    let mut shard = Shard::default();
    let got = feed(&mut agg, &mut shard, &["a:1|pc", "a:2|pc", "b:1|pc"]);
    assert_eq!(got[..2], [Ok(()), Ok(())]);
    assert!(got[2].is_err(), "{:?}", got[2]);
}

#[test]
fn gauges_follow_sets_and_deltas() {
    let mut agg = Aggregator::new(Settings::default());
    let mut shard = Shard::default();
    feed(&mut agg, &mut shard, &["q:+5|g", "q:-2|g"]);
    assert_eq!(
        shard.gauges.get(&b"q"[..]).map(|g| g.resolve(Some(10.0))),
        Some(13.0)
    );
    feed(&mut agg, &mut shard, &["q:1|g", "q:+1|g"]);
    assert_eq!(
        shard.gauges.get(&b"q"[..]).map(|g| g.resolve(Some(10.0))),
        Some(2.0)
    );
}

/// How [`ingest`] feeds lines.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// `add_line`: through the line memo.
    Memo,
    /// Parse and `add` every line.
    Plain,
    /// `add_lines` in chunks of this many lines, the memo sitting out.
    Batched(usize),
}

/// The shard one reader would hold after `rounds` copies of `lines`, fed along `path`,
/// with the outcome of every line.
fn ingest(lines: &[&str], rounds: usize, path: Path) -> (Shard, Vec<Result<Kind, Reject>>) {
    let settings = Settings {
        default_dimensions: vec![("hostname".into(), "gw".into())],
        budget: std::sync::Arc::new(SeriesBudget::new(100, 3)),
        max_set_members: 2,
        ..Settings::default()
    };
    let mut agg = Aggregator::new(settings);
    let mut shard = Shard::default();
    let limits = Limits::default();
    let mut outcomes = Vec::new();
    for round in 0..rounds {
        let now = 5_000 + round as u64;
        if let Path::Batched(chunk) = path {
            shard.sit_out_memo();
            let raws: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            for chunk in raws.chunks(chunk) {
                let parse = |raw| parse_line(raw, &limits);
                agg.add_lines(&mut shard, chunk, now, parse, |o| outcomes.push(o));
            }
            continue;
        }
        for l in lines {
            let raw = l.as_bytes();
            outcomes.push(if path == Path::Memo {
                agg.add_line(&mut shard, raw, now, || parse_line(raw, &limits))
            } else {
                parse_line(raw, &limits)
                    .and_then(|line| agg.add(&mut shard, &line, now).map(|()| line.kind))
            });
        }
    }
    (shard, outcomes)
}

#[test]
fn the_line_memo_changes_nothing_but_the_cost() {
    let lines = [
        "hits:1|c",
        "hits:2|c|@0.5",
        "hits:0.1|c|@0.3",
        "hits:1|c|#env:prod",
        "hits,env=prod:1|c",
        "hits:1|c|#hostname:gw",
        "pk:1:2:0.1|c",
        "q:5|g",
        "q:+3|g",
        "q:-1.5|g",
        "q:+1:-2|g",
        "g2:1|g|T1700000000",
        "_sc|check|2|h:web1",
        "lat:12|ms",
        "lat:0.7|ms|@0.1",
        "lat:1:2:3|h",
        "lat:4|d",
        "neg:-1|ms",
        "u:alice|s",
        "u:bob|s",
        "u:carol|s",
        "rx:10|r",
        "rx:12|r|T1700000000",
        "many:1|c|#i:1",
        "many:1|c|#i:2",
        "many:1|c|#i:3",
        "many:1|c|#i:4",
        "bad:x|c",
        "_e{1,1}:a|b",
    ];
    let (plain, plain_outcomes) = ingest(&lines, 3, Path::Plain);
    assert!(plain_outcomes.contains(&Err(Reject::SetMemberLimit)));
    assert!(plain_outcomes.contains(&Err(Reject::BadValue)));
    assert!(plain_outcomes.contains(&Err(Reject::NameSeriesLimit)));
    assert_eq!(plain.memo_len(), 0);
    let (memo, memo_outcomes) = ingest(&lines, 3, Path::Memo);
    assert_eq!(memo_outcomes, plain_outcomes);
    assert!(memo.memo_len() > 10, "repeated lines were remembered");
    same_shards(&memo, &plain);
    // Taken together while the memo sits out: chunks that split a datagram's worth of lines
    // anywhere, and one that takes BATCH_LINES at once.
    for chunk in [1, 7, BATCH_LINES] {
        let (batched, outcomes) = ingest(&lines, 3, Path::Batched(chunk));
        assert_eq!(outcomes, plain_outcomes, "chunks of {chunk}");
        assert_eq!(batched.memo_len(), 0);
        same_shards(&batched, &plain);
    }
}

/// Every series of `a` and `b` holds the same state.
fn same_shards(memo: &Shard, plain: &Shard) {
    fn sorted<V, T>(m: &SeriesMap<V>, f: impl Fn(&V) -> T) -> Vec<(Vec<u8>, T)> {
        let mut v: Vec<_> = m.iter().map(|(k, v)| (k.to_vec(), f(v))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    assert_eq!(
        sorted(&memo.counters, |c| c.sum),
        sorted(&plain.counters, |c| c.sum)
    );
    assert_eq!(sorted(&memo.gauges, |g| *g), sorted(&plain.gauges, |g| *g));
    let timer = |t: &Timer| {
        (
            t.count,
            t.sum,
            t.min,
            t.max,
            t.quantile(0.5),
            t.quantile(0.9),
        )
    };
    assert_eq!(sorted(&memo.timers, timer), sorted(&plain.timers, timer));
    let set = |s: &Set| {
        let mut m: Vec<u64> = s.members.iter().copied().collect();
        m.sort_unstable();
        m
    };
    assert_eq!(sorted(&memo.sets, set), sorted(&plain.sets, set));
    assert_eq!(sorted(&memo.rates, |r| *r), sorted(&plain.rates, |r| *r));
    assert_eq!(
        sorted(&memo.percents, |p| *p),
        sorted(&plain.percents, |p| *p)
    );
    assert_eq!(memo.series(), plain.series());
}

/// The touched series of a shard, sorted, with what flush reads of each.
fn touched_view(shard: &Shard) -> Vec<(Vec<u8>, String)> {
    fn add<V: Recycle>(
        out: &mut Vec<(Vec<u8>, String)>,
        m: &SeriesMap<V>,
        f: impl Fn(&V) -> String,
    ) {
        out.extend(
            m.iter()
                .filter(|(_, v)| v.touched())
                .map(|(k, v)| (k.to_vec(), f(v))),
        );
    }
    let mut out = Vec::new();
    add(&mut out, &shard.counters, |c| format!("c {}", c.sum));
    add(&mut out, &shard.gauges, |g| {
        format!("g {:?} {}", g.set, g.delta)
    });
    add(&mut out, &shard.timers, |t| {
        format!(
            "t {} {} {} {} {}",
            t.count,
            t.sum,
            t.min,
            t.max,
            t.quantile(0.5)
        )
    });
    add(&mut out, &shard.sets, |s| format!("s {}", s.members.len()));
    add(&mut out, &shard.rates, |r| {
        format!("r {:?}", (r.first, r.last))
    });
    add(&mut out, &shard.percents, |p| {
        format!("pc {:?}", (p.prev, p.last))
    });
    out.sort();
    out
}

#[test]
fn a_recycled_shard_keeps_steady_series_and_its_memo_stays_right() {
    // Interval by interval, a recycled shard fed through the memo must hold exactly what a
    // fresh shard fed by the parser holds, while series come and go (freed series shift the
    // positions the memo remembers).
    let all = [
        "a:1|c",
        "b:2|c",
        "c:3|c",
        "q:5|g",
        "q:+1|g",
        "lat:7|ms",
        "u:x|s",
        "rx:1|r",
        "d:1|c",
        "depth:4|pc",
    ];
    let intervals: [&[&str]; 5] = [
        &all,
        &["b:2|c", "c:3|c", "lat:7|ms", "d:1|c"],
        &all,
        &["d:1|c", "c:3|c", "u:x|s", "q:+1|g"],
        &["d:1|c", "c:3|c", "new:1|c", "u:x|s", "q:+1|g"],
    ];
    let limits = Limits::default();
    let mut agg = Aggregator::new(Settings::default());
    let mut recycled = Shard::default();
    let mut plain_agg = Aggregator::new(Settings::default());
    for (n, lines) in intervals.iter().enumerate() {
        let mut fresh = Shard::default();
        for _ in 0..3 {
            for l in lines.iter() {
                let raw = l.as_bytes();
                let got = agg.add_line(&mut recycled, raw, 5_000, || parse_line(raw, &limits));
                let want = parse_line(raw, &limits)
                    .and_then(|line| plain_agg.add(&mut fresh, &line, 5_000).map(|()| line.kind));
                assert_eq!(got, want, "interval {n}: {l}");
            }
        }
        assert_eq!(
            touched_view(&recycled),
            touched_view(&fresh),
            "interval {n}"
        );
        assert_eq!(recycled.series(), fresh.series());
        recycled.recycle();
        assert_eq!(recycled.series(), 0, "nothing is touched after recycling");
        // Only what this interval touched stays (rates and percent changes never do).
        let rates = lines
            .iter()
            .filter(|l| l.ends_with("|r") || l.ends_with("|pc"))
            .count();
        assert_eq!(recycled.slots(), fresh.slots() - rates, "interval {n}");
        if n == 0 {
            assert!(
                // Every line but the `r` and `pc` ones (timed by the receive clock).
                recycled.memo_len() >= all.len() - 2,
                "the memo survives recycling"
            );
        }
    }
}
