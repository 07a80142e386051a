//! A steady-state driver for instruction counts of the reader's per-line work: the same
//! 20-line datagrams through `listen::process_datagram` over and over (so the line memo is
//! warm), for counting with callgrind rather than timing on a busy machine.
//!
//! Run: `cargo build --release --example line_cost`, then
//! `valgrind --tool=callgrind target/release/examples/line_cost WORKLOAD PASSES` for
//! PASSES = 0 and some N; (Ir(N) − Ir(0)) / (N × lines) is the instructions per line (or
//! add `--toggle-collect='line_cost::measured*'` to count the measured passes alone).
//! WORKLOAD: `counters` (`bench.c.{i}:1|c`, 1,000 series), `tagged`
//! (`bench.c.{i}:1|c|#service:api,shard:{i%10}`) or `timers` (`bench.ms.{i}:{v}|ms`, v
//! cycling 0..1000 apart from the series, so most lines are new to the memo and it gives up)
//! or `long` (~120-byte counter lines with six tags, for the cost of long lines).

use statsgate::aggregate::{Aggregator, Settings, Shard};
use statsgate::listen::process_datagram;
use statsgate::parse::Limits;
use statsgate::telemetry::ReaderStats;
use std::sync::Mutex;

/// Lines per pass: 10,000 datagrams of 20.
const LINES: usize = 200_000;
const SERIES: usize = 1_000;
/// Passes before counting starts: fills the memo (or lets it give up) and the series maps.
const WARM_PASSES: usize = 2;

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "counters".into());
    let passes: usize = args.next().and_then(|p| p.parse().ok()).unwrap_or(10);
    let line = |n: usize| -> String {
        let i = n % SERIES;
        match workload.as_str() {
            "counters" => format!("bench.c.{i}:1|c"),
            "tagged" => format!("bench.c.{i}:1|c|#service:api,shard:{}", i % 10),
            "timers" => format!("bench.ms.{i}:{}|ms", (n / SERIES + n * 7) % 1000),
            "long" => format!(
                "bench.c.{i}:1|c|#service:api,shard:{},region:eu-west-1,az:eu-west-1a,host:compute-node-{i},env:production,team:platform",
                i % 10
            ),
            other => panic!("unknown workload {other}"),
        }
    };
    let all: Vec<String> = (0..LINES).map(line).collect();
    let datagrams: Vec<Vec<u8>> = all.chunks(20).map(|c| c.join("\n").into_bytes()).collect();

    let shard = Mutex::new(Shard::default());
    let stats = ReaderStats::default();
    let mut aggregator = Aggregator::new(Settings::default());
    let limits = Limits::default();
    let mut run = |passes: usize| {
        for _ in 0..passes {
            for d in &datagrams {
                process_datagram(d, &shard, &mut aggregator, &stats, &limits, None, None);
            }
        }
    };
    warm(&mut run, WARM_PASSES);
    measured(&mut run, passes);
    let accepted: u64 = stats.accepted.iter().map(|c| c.get()).sum();
    assert_eq!(accepted, ((WARM_PASSES + passes) * LINES) as u64);
    eprintln!("{workload}: {accepted} lines accepted");
}

/// Separate from [`measured`] so callgrind can count only the latter
/// (`--toggle-collect='line_cost::measured*'`).
#[inline(never)]
fn warm(run: &mut impl FnMut(usize), passes: usize) {
    run(passes);
}

#[inline(never)]
fn measured(run: &mut impl FnMut(usize), passes: usize) {
    run(passes);
}
