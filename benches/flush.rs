//! Flush throughput: swap, merge, render to Monasca JSON and pack into POST bodies, for
//! 100,000 counter series with two dimensions plus the hostname default.
//! Run: `cargo bench --bench flush`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use statsgate::aggregate::{Aggregator, Settings, Shard};
use statsgate::batch::{self, Limits, Rendered};
use statsgate::flush::{FlushSettings, Flusher, TimerOutput};
use statsgate::parse::{Limits as ParseLimits, parse_line};
use statsgate::sink::Sink;
use statsgate::telemetry::Telemetry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SERIES: usize = 100_000;

/// Packs like the forwarder does, then drops the bodies.
struct PackSink(Arc<Mutex<usize>>);

impl Sink for PackSink {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        let (batches, _) = batch::pack(
            &metrics,
            Limits {
                max_metrics: 5000,
                max_bytes: 4 << 20,
            },
        );
        *self.0.lock().unwrap() += batches.iter().map(|b| b.metrics).sum::<usize>();
        Ok(())
    }
}

fn flush(c: &mut Criterion) {
    let defaults = vec![("hostname".to_owned(), "gateway-01".to_owned())];
    let shard = Arc::new(Mutex::new(Shard::default()));
    let packed = Arc::new(Mutex::new(0));
    let settings = FlushSettings {
        interval: Duration::from_secs(10),
        idle_expiry: Duration::from_secs(300),
        counters_as_rate: false,
        timer_outputs: TimerOutput::list(&[], &[0.95]),
        default_dimensions: defaults.clone().into(),
        max_persisted: 1_000_000,
        part_metrics: 5000,
    };
    let mut flusher = Flusher::new(
        vec![Arc::clone(&shard)],
        settings,
        Arc::new(Telemetry::new(1)),
        Box::new(PackSink(Arc::clone(&packed))),
    );
    let lines: Vec<String> = (0..SERIES)
        .map(|i| {
            format!(
                "api.requests.count:1|c|#service:api{},endpoint:/v1/items/{i}",
                i % 10
            )
        })
        .collect();
    let mut aggregator = Aggregator::new(Settings {
        default_dimensions: defaults,
        ..Settings::default()
    });
    let limits = ParseLimits::default();

    let mut group = c.benchmark_group("flush");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.sample_size(20);
    group.bench_function("counters_100k_series_to_batches", |b| {
        b.iter_batched(
            || {
                let mut s = shard.lock().unwrap();
                for l in &lines {
                    if let Ok(line) = &parse_line(l.as_bytes(), &limits) {
                        let _ = aggregator.add(&mut s, line, 0);
                    }
                }
            },
            |()| flusher.flush(1_795_000_000_000),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    assert!(*packed.lock().unwrap() >= SERIES, "every series was packed");
}

criterion_group!(benches, flush);
criterion_main!(benches);
