//! Parse throughput per dialect: lines/s for `parse_line` alone.
//! Run: `cargo bench --bench parse`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::parse::{Limits, parse_line};
use std::hint::black_box;

const DIALECTS: &[(&str, &str)] = &[
    ("plain_counter", "api.requests.count:1|c"),
    ("sampled_timer", "api.request.latency:12.5|ms|@0.1"),
    ("packed_timer", "api.request.latency:12:15:9:22|ms"),
    (
        "dogstatsd_tags",
        "api.requests:1|c|#service:api,region:eu-1,canary",
    ),
    (
        "monasca_dict",
        "api.requests:1|c|#{'service': 'api', 'region': 'eu-1'}",
    ),
    ("influxdb", "api.requests,service=api,region=eu-1:1|c"),
    ("graphite", "api.requests;service=api;region=eu-1:1|c"),
    ("timestamped_gauge", "queue.depth:42|g|T1700000000"),
    ("service_check", "_sc|db.up|0|h:db-1|#zone:a"),
];

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse");
    for (name, line) in DIALECTS {
        // Distinct names so branch predictors do not learn one line by heart.
        let lines: Vec<String> = (0..1000)
            .map(|i| line.replacen(':', &format!("{i}:"), 1))
            .collect();
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for l in &lines {
                    let _ = black_box(parse_line(black_box(l.as_bytes()), &limits));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
