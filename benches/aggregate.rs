//! Parse + aggregate throughput on one core, the per-line work of a reader thread: a
//! datagram's lines through `listen::process_lines_into` (the shard's line memo, or while
//! it sits out the batched lookups, then parse + add), as a reader does. Shapes: plain
//! counters at 1,000, 100,000 and 1,000,000 series; DogStatsD-tagged counters (two tags) at
//! 1,000 and 100,000; timers at 1,000; and 10,000 series of c:g:ms:s = 6:1:2:1.
//! Run: `cargo bench --bench aggregate` (one shape: `-- counter_1m_series`)

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::aggregate::{Aggregator, Settings, Shard};
use statsgate::listen::process_lines_into;
use statsgate::parse::Limits;
use statsgate::telemetry::ReaderStats;

/// Datagram-sized blocks (20 lines) of `n` lines over `series` series, formatted by `line`.
fn blocks(n: usize, series: usize, line: impl Fn(usize, usize) -> String) -> Vec<Vec<u8>> {
    let all: Vec<String> = (0..n).map(|i| line(i % series, i)).collect();
    all.chunks(20).map(|c| c.join("\n").into_bytes()).collect()
}

fn run(c: &mut Criterion, name: &str, blocks: &[Vec<u8>], lines_total: usize) {
    let limits = Limits::default();
    let settings = Settings {
        default_dimensions: vec![("hostname".into(), "gw".into())],
        ..Settings::default()
    };
    let mut aggregator = Aggregator::new(settings);
    let mut shard = Shard::default();
    let stats = ReaderStats::default();
    let mut group = c.benchmark_group("parse_aggregate");
    group.throughput(Throughput::Elements(lines_total as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            for block in blocks {
                process_lines_into(
                    block,
                    &mut shard,
                    &mut aggregator,
                    &stats,
                    &limits,
                    None,
                    None,
                    0,
                );
            }
        })
    });
    group.finish();
    // Every line was taken: a bench that measured refusals would measure nothing.
    assert_eq!(
        stats.rejected.iter().map(|r| r.get()).sum::<u64>(),
        0,
        "{name}"
    );
}

fn parse_aggregate(c: &mut Criterion) {
    let n = 100_000;
    let counters_1k = blocks(n, 1_000, |s, _| format!("app.requests.{s}:1|c"));
    run(c, "counter_1k_series", &counters_1k, n);
    let tagged = |s: usize, _| {
        format!(
            "app.requests.{s}:1|c|#dim0:v{},dim1:v{}",
            s % 10,
            (s + 1) % 10
        )
    };
    run(
        c,
        "dogstatsd_tagged_counter_1k_series",
        &blocks(n, 1_000, tagged),
        n,
    );
    let timers_1k = blocks(n, 1_000, |s, _| format!("app.latency.{s}:{}|ms", s % 250));
    run(c, "timer_1k_series", &timers_1k, n);
    // c:g:ms:s = 6:1:2:1 over the series, gauge, timer and set values varying by line.
    let mixed = |s: usize, i: usize| match s % 10 {
        0..=5 => format!("app.c.{s}:1|c"),
        6 => format!("app.g.{s}:{}|g", i % 100),
        7 | 8 => format!("app.ms.{s}:{}|ms", i * 7 % 1000),
        _ => format!("app.s.{s}:u{}|s", i % 50),
    };
    let m = 1_000_000;
    run(c, "mixed_10k_series", &blocks(m, 10_000, mixed), m);
    run(
        c,
        "counter_100k_series",
        &blocks(m, 100_000, |s, _| format!("app.requests.{s}:1|c")),
        m,
    );
    run(
        c,
        "dogstatsd_tagged_counter_100k_series",
        &blocks(m, 100_000, tagged),
        m,
    );
    let counters_1m = blocks(m, m, |s, _| format!("app.requests.{s}:1|c"));
    run(c, "counter_1m_series", &counters_1m, m);
}

criterion_group!(benches, parse_aggregate);
criterion_main!(benches);
