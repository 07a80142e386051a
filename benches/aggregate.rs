//! Parse + aggregate throughput on one core, the per-line work of a reader thread:
//! plain counter lines at 1,000 and 1,000,000 series, and tagged lines at 1,000 series,
//! through `Aggregator::add_line` (the shard's line memo, then parse + add) as a reader does.
//! Run: `cargo bench --bench aggregate`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::aggregate::{Aggregator, Settings, Shard};
use statsgate::parse::{Limits, lines, parse_line};
use std::hint::black_box;

/// Datagram-sized blocks of `n` lines over `series` series, formatted by `line`.
fn blocks(n: usize, series: usize, line: impl Fn(usize) -> String) -> Vec<Vec<u8>> {
    let all: Vec<String> = (0..n).map(|i| line(i % series)).collect();
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
    let mut group = c.benchmark_group("parse_aggregate");
    group.throughput(Throughput::Elements(lines_total as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            for block in blocks {
                for line in lines(block) {
                    let _ = black_box(
                        aggregator.add_line(&mut shard, line, 0, || parse_line(line, &limits)),
                    );
                }
            }
        })
    });
    group.finish();
}

fn parse_aggregate(c: &mut Criterion) {
    let n = 100_000;
    let counters_1k = blocks(n, 1_000, |s| format!("app.requests.{s}:1|c"));
    run(c, "counter_1k_series", &counters_1k, n);
    let tagged_1k = blocks(n, 1_000, |s| {
        format!("app.requests:1|c|#service:api,shard:{s}")
    });
    run(c, "dogstatsd_tagged_counter_1k_series", &tagged_1k, n);
    let timers_1k = blocks(n, 1_000, |s| format!("app.latency.{s}:{}|ms", s % 250));
    run(c, "timer_1k_series", &timers_1k, n);
    let m = 1_000_000;
    let counters_1m = blocks(m, m, |s| format!("app.requests.{s}:1|c"));
    run(c, "counter_1m_series", &counters_1m, m);
}

criterion_group!(benches, parse_aggregate);
criterion_main!(benches);
