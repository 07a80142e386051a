//! Gateway: builds the pipeline from a validated [`Config`] and runs it until a signal.
//!
//! Owns: start-up order (bind everything first so a bad address fails fast and names its
//! key), thread ownership, and the shutdown sequence: stop reading → final flush → exit
//! within `shutdown.grace`. Must never: contain pipeline logic of its own.

use crate::aggregate::{self, Shard};
use crate::allow::AllowList;
use crate::config::Config;
use crate::flush::{FlushSettings, Flusher, TimerOutput};
use crate::heartbeat::{Heartbeats, Liveness, LivenessSettings};
use crate::listen::{self, ReaderConfig};
use crate::parse::Limits;
use crate::passthrough::Passthrough;
use crate::sink::{ConsoleSink, Sink};
use crate::telemetry::Telemetry;
use crate::{admin, http, shutdown};
use anyhow::{Context, bail};
use forwarding::start_forwarding;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

mod forwarding;

pub use forwarding::check_online;

/// Reader threads: the configured number, or one per core.
pub fn reader_count(config: &Config) -> usize {
    match config.statsd.readers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The `hostname` dimension and the configured defaults.
pub fn default_dimensions(config: &Config) -> Vec<(String, String)> {
    let a = &config.aggregate;
    let mut dims: Vec<(String, String)> = Vec::new();
    if a.add_hostname && !a.default_dimensions.contains_key("hostname") {
        let host = if a.hostname.is_empty() {
            gethostname::gethostname().to_string_lossy().into_owned()
        } else {
            a.hostname.clone()
        };
        dims.push(("hostname".into(), host));
    }
    dims.extend(
        a.default_dimensions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    dims
}

/// The address `value` holds, or `None` when it is empty (the listener is disabled).
fn optional_addr(key: &str, value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .with_context(|| format!("{key}: {value:?} is not an address"))
}

/// `<buffer.spool_dir>/gauges.checkpoint.json`, the directory created if need be.
fn checkpoint_path(config: &Config) -> anyhow::Result<Option<std::path::PathBuf>> {
    let dir = &config.buffer.spool_dir;
    if dir.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("buffer.spool_dir: cannot create {dir:?}"))?;
    Ok(Some(std::path::Path::new(dir).join(CHECKPOINT_FILE)))
}

/// The gauge checkpoint's file name in `buffer.spool_dir`.
pub const CHECKPOINT_FILE: &str = "gauges.checkpoint.json";

pub fn run(config: Config) -> anyhow::Result<()> {
    let readers = reader_count(&config);
    let telemetry = Arc::new(Telemetry::new(readers));
    let defaults = default_dimensions(&config);
    if let Some((_, host)) = defaults.iter().find(|(k, _)| k == "hostname")
        && crate::validate::dimension_value(host).is_err()
    {
        bail!(
            "aggregate.hostname: this machine's hostname {host:?} is not a valid Monasca dimension; set aggregate.hostname"
        );
    }

    let statsd_addr: SocketAddr = config.statsd.listen.parse().with_context(|| {
        format!(
            "statsd.listen: {:?} is not an address",
            config.statsd.listen
        )
    })?;
    let listener = listen::bind(
        statsd_addr,
        readers,
        config.statsd.recv_buffer.bytes() as usize,
    )
    .with_context(|| format!("statsd.listen: cannot bind UDP {statsd_addr}"))?;
    let udp_addr = listener.local_addr;

    let passthrough = Arc::new(Passthrough::new(config.buffer.max_pending.bytes() as usize));
    let probes = crate::probes::start(&config.probes, defaults.clone(), Arc::clone(&passthrough))?;
    if probes.running() {
        let _ = telemetry.probes.set(Arc::clone(&probes.stats));
    }
    let hb = &config.heartbeat;
    let liveness = Liveness::new(LivenessSettings {
        expected_interval: hb.expected_interval.get(),
        expire_after: hb.expire_after.get(),
        max_senders: hb.max_senders,
    });
    let heartbeats = Arc::new(Heartbeats::new(
        liveness,
        Arc::clone(&passthrough),
        hb.max_skew.get(),
        hb.derive_id,
    ));
    let _ = telemetry.heartbeats.set(Arc::clone(&heartbeats));
    let budget = Arc::new(aggregate::SeriesBudget::new(
        config.aggregate.max_series,
        config.aggregate.max_series_per_name,
    ));
    let _ = telemetry.budget.set(Arc::clone(&budget));

    let shards: Vec<Arc<Mutex<Shard>>> = (0..readers).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader_config = ReaderConfig {
        limits: Limits {
            max_line: config.statsd.max_line.bytes() as usize,
            max_dimensions: config.statsd.max_dimensions,
        },
        max_datagram: config.statsd.max_datagram.bytes() as usize,
        aggregate: aggregate::Settings {
            default_dimensions: defaults.clone(),
            budget: Arc::clone(&budget),
            max_set_members: config.aggregate.max_set_members,
            histogram_precision: config.aggregate.histogram_precision,
        },
        // Validated at load; an entry that fails here cannot occur.
        allow: AllowList::new(
            crate::config::networks(&config.statsd.allow)
                .map_err(|e| anyhow::anyhow!("statsd.allow: {e}"))?,
        ),
        heartbeats: Some(Arc::clone(&heartbeats)),
        // Half the grace: the final flush and its delivery need the rest.
        drain_for: config.shutdown.grace.get() / 2,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("statsgate-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let (sink, forwarding, sink_name): (Box<dyn Sink>, _, String) = if config.forwards() {
        let (sink, forwarder, name) = runtime.block_on(start_forwarding(&config, &telemetry))?;
        let senders = runtime.block_on(async { forwarder.spawn() });
        (Box::new(sink), Some((forwarder, senders)), name)
    } else {
        (Box::new(ConsoleSink::stdout()), None, "console".to_owned())
    };

    let flusher = Flusher::new(
        shards.clone(),
        FlushSettings {
            interval: config.flush.interval.get(),
            idle_expiry: config.flush.idle_expiry.get(),
            counters_as_rate: config.aggregate.counters_as_rate,
            timer_outputs: TimerOutput::list(
                &config.aggregate.timer_aggregates,
                &config.aggregate.percentiles,
            ),
            default_dimensions: defaults.into(),
            max_persisted: config.aggregate.max_series,
        },
        Arc::clone(&telemetry),
        sink,
    )
    .with_passthrough(
        Arc::clone(&passthrough),
        Some((Arc::clone(&heartbeats), hb.alive_gauges)),
    );
    let flusher = match checkpoint_path(&config)? {
        Some(path) => flusher.with_checkpoint(path),
        None => flusher,
    };
    // Only alongside real metrics: the console sink keeps printing just what was sent to it.
    let flusher = if forwarding.is_some() && config.telemetry.self_metrics {
        flusher.with_self_metrics()
    } else {
        flusher
    };

    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin = match optional_addr("admin.listen", &config.admin.listen)? {
        None => None,
        Some(addr) => {
            let stopped = async {
                let _ = admin_stop_rx.await;
            };
            let beats = Some(Arc::clone(&heartbeats));
            let served =
                runtime.block_on(admin::serve(addr, Arc::clone(&telemetry), beats, stopped));
            Some(served.with_context(|| format!("admin.listen: cannot bind TCP {addr}"))?)
        }
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_server = match optional_addr("http.listen", &config.http.listen)? {
        None => None,
        Some(addr) => {
            let state = http::HttpState {
                beats: Arc::clone(&heartbeats),
                passthrough: Arc::clone(&passthrough),
                allow: Arc::new(AllowList::new(
                    crate::config::networks(&config.http.allow)
                        .map_err(|e| anyhow::anyhow!("http.allow: {e}"))?,
                )),
                stats: Arc::clone(&telemetry.http),
            };
            let stopped = async {
                let _ = http_stop_rx.await;
            };
            let max_body = config.http.max_body.bytes() as usize;
            let served = runtime.block_on(http::serve(addr, state, max_body, stopped));
            Some(served.with_context(|| format!("http.listen: cannot bind TCP {addr}"))?)
        }
    };

    let reader_handles =
        listen::spawn_readers(listener, &shards, &telemetry, &reader_config, &stop)?;
    let (flush_stop_tx, flush_stop_rx) = mpsc::channel::<()>();
    let flush_handle = std::thread::Builder::new()
        .name("flush".into())
        .spawn(move || flusher.run(flush_stop_rx))?;

    let signals = runtime.block_on(async { shutdown::Signals::install() });
    tracing::info!(
        udp = %udp_addr,
        admin = %admin.as_ref().map_or("disabled".to_owned(), |(a, _)| a.to_string()),
        http = %http_server.as_ref().map_or("disabled".to_owned(), |(a, _)| a.to_string()),
        readers,
        flush_interval = %humantime::format_duration(config.flush.interval.get()),
        sink = %sink_name,
        "statsgate listening"
    );

    let signal = runtime.block_on(signals.recv());
    let deadline = Instant::now() + config.shutdown.grace.get();
    tracing::info!(signal, grace = %humantime::format_duration(config.shutdown.grace.get()), "shutting down: final flush");
    stop.store(true, Ordering::Relaxed);
    let readers_done = shutdown::join_until(reader_handles, deadline);
    // No new beats or client metrics once the final flush is under way.
    let _ = http_stop_tx.send(());
    if let Some((_, task)) = http_server {
        runtime.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), task).await;
        });
    }
    probes.stop();
    let _ = flush_stop_tx.send(());
    let flushed = shutdown::join_until(vec![flush_handle], deadline);
    let unsent = match forwarding {
        Some((forwarder, senders)) => runtime.block_on(forwarder.shutdown(senders, deadline)),
        None => 0,
    };
    let _ = admin_stop_tx.send(());
    if let Some((_, task)) = admin {
        runtime.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), task).await;
        });
    }
    if !(readers_done && flushed) {
        bail!(
            "shutdown.grace ({}) ran out before the final flush finished",
            humantime::format_duration(config.shutdown.grace.get())
        );
    }
    if unsent > 0 {
        // A supervisor must be able to tell: exit 1, as for an unfinished flush.
        bail!(
            "shutdown.grace ({}) ran out with {unsent} metrics unsent and not spooled (counted as dropped, reason shutdown)",
            humantime::format_duration(config.shutdown.grace.get())
        );
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
