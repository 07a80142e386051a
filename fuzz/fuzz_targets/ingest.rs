//! Fuzzes the statsd ingest entry point: datagram → lines → parse → aggregate → flush render.
//! Invariants: no panic; every non-empty line is counted exactly once (accepted, rejected or
//! a heartbeat);
//! whatever was accepted renders into metrics that pass Monasca's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statsgate::aggregate::{Aggregator, Settings, Shard};
use statsgate::listen::process_datagram;
use statsgate::parse::{Limits, lines};
use statsgate::telemetry::ReaderStats;
use std::sync::Mutex;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_line: 1024, max_dimensions: 16 };
    let shard = Mutex::new(Shard::default());
    let stats = ReaderStats::default();
    let settings = Settings { max_series_per_shard: 64, max_set_members: 64, ..Settings::default() };
    let mut aggregator = Aggregator::new(settings);
    process_datagram(data, &shard, &mut aggregator, &stats, &limits, None, None);

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
