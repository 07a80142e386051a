//! Fuzzes the statsd ingest entry point: datagram → lines → parse → aggregate, and heartbeats
//! (JSON datagrams, `_hb|` lines) → liveness table → rendered `GE_Heartbeat` measurements.
//! Invariants: no panic; every non-empty line is counted exactly once (accepted, rejected or
//! a heartbeat);
//! whatever was accepted renders into metrics that pass Monasca's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statsgate::aggregate::{Aggregator, SeriesBudget, Settings, Shard};
use statsgate::heartbeat::{Heartbeats, Liveness, LivenessSettings};
use statsgate::passthrough::Passthrough;
use statsgate::listen::process_datagram;
use statsgate::parse::{Limits, lines};
use statsgate::telemetry::ReaderStats;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_line: 1024, max_dimensions: 16 };
    let shard = Mutex::new(Shard::default());
    let stats = ReaderStats::default();
    let settings = Settings { budget: std::sync::Arc::new(SeriesBudget::new(64, 16)), max_set_members: 64, ..Settings::default() };
    let mut aggregator = Aggregator::new(settings);
    let passthrough = Arc::new(Passthrough::new(1 << 20));
    let liveness = Liveness::new(LivenessSettings {
        expected_interval: Duration::from_secs(60),
        expire_after: Duration::from_secs(600),
        max_senders: 64,
    });
    let beats = Heartbeats::new(liveness, Arc::clone(&passthrough), Duration::from_secs(300), true);
    let source = "127.0.0.1:9".parse().ok();
    process_datagram(data, &shard, &mut aggregator, &stats, &limits, Some(&beats), source);
    // Whatever beats were accepted render as a valid Monasca JSON array.
    let pending = passthrough.take();
    let parsed: Vec<statsgate::metric::Metric> =
        serde_json::from_slice(&pending.to_array()).expect("pending beats are valid JSON");
    for m in &parsed {
        assert!(m.dimensions.values().all(|v| statsgate::validate::dimension_value(v).is_ok()));
    }

    let counted: u64 = stats.accepted.iter().chain(stats.rejected.iter()).map(|c| c.get()).sum();
    if statsgate::parse::is_heartbeat(data) {
        assert_eq!((counted, stats.heartbeats.get()), (0, 1), "a heartbeat datagram is one beat");
    } else {
        let beats = stats.heartbeats.get();
        assert_eq!(counted + beats, lines(data).count() as u64, "every line is counted once");
    }

    let shard = shard.into_inner().unwrap_or_else(|p| p.into_inner());
    for key in shard.counters.keys().chain(shard.gauges.keys()).chain(shard.timers.keys()) {
        let k = statsgate::aggregate::SeriesKey::decode(key);
        assert!(statsgate::validate::name(k.name).is_ok(), "accepted names are valid");
        for (dk, dv) in k.dims() {
            assert!(statsgate::validate::dimension_key(dk).is_ok());
            assert!(statsgate::validate::dimension_value(dv).is_ok());
        }
    }
});
