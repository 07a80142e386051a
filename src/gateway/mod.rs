//! Gateway: builds the pipeline from a validated [`Config`] and runs it until a signal.
//!
//! Owns: start-up order (bind everything first so a bad address fails fast and names its
//! key), thread ownership, and the shutdown sequence: stop reading → final flush → exit
//! within `shutdown.grace`. Must never: contain pipeline logic of its own.

use crate::aggregate;
use crate::config::Config;
use crate::heartbeat::{Heartbeats, Liveness, LivenessSettings};
use crate::passthrough::Passthrough;
use crate::shutdown;
use crate::spool::SpoolDir;
use crate::telemetry::Telemetry;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod forwarding;
mod reload;
mod servers;
mod stages;
mod streams;

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

/// [`default_dimensions`], refused when the machine's hostname is no valid dimension value.
fn checked_default_dimensions(config: &Config) -> anyhow::Result<Vec<(String, String)>> {
    let defaults = default_dimensions(config);
    if let Some((_, host)) = defaults.iter().find(|(k, _)| k == "hostname")
        && crate::validate::dimension_value(host).is_err()
    {
        bail!(
            "aggregate.hostname: this machine's hostname {host:?} is not a valid Monasca dimension; set aggregate.hostname"
        );
    }
    Ok(defaults)
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

/// `buffer.spool_dir`, created `0700` and locked until the value is dropped, if configured:
/// a second instance on the same directory refuses to start, naming this one's pid.
fn lock_spool_dir(config: &Config) -> anyhow::Result<Option<SpoolDir>> {
    let dir = &config.buffer.spool_dir;
    if dir.is_empty() {
        return Ok(None);
    }
    Ok(Some(SpoolDir::open(std::path::Path::new(dir))?))
}

/// The gauge checkpoint's file name in `buffer.spool_dir`.
pub const CHECKPOINT_FILE: &str = "gauges.checkpoint.json";

/// Sets the log filter to a `log.level` value; the error says why the filter refused it.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// What `run` needs beyond the configuration: where a reload reads it again, and how to
/// change the log filter.
#[derive(Default)]
pub struct Options {
    /// The file given with `--config`; a reload reads it and the environment again.
    pub config_path: Option<std::path::PathBuf>,
    /// Sets `log.level` on a reload; an error names what the filter refused.
    pub set_log_level: Option<SetLogLevel>,
}

/// The pipeline, in data-path order: each stage starts from its config section and the
/// shared handles, and stops in the same order, readers first, the admin port last. Until
/// SIGTERM or SIGINT it waits; each SIGHUP (or `POST /-/reload`) reloads the configuration.
pub fn run(config: Config, options: Options) -> anyhow::Result<()> {
    // Held until `run` returns, so through the final flush and spooling.
    let spool_dir = lock_spool_dir(&config)?;
    let mut shared = Shared::new(&config)?;
    let udp = stages::Udp::bind(&config, &shared)?;
    let streams = streams::Streams::bind(&config, &shared, udp.reader_config())?;
    let shards: Vec<_> = udp.shards.iter().cloned().chain(streams.shards()).collect();
    let (output, sink) = stages::Output::start(&config, &shared)?;
    let flush = stages::Flush::start(&config, &shared, spool_dir.as_ref(), &shards, &output, sink)?;
    let caps = crate::config::connection_caps(&config, crate::config::fd_limit())
        .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
    let (reload_trigger, mut reload_requests) = tokio::sync::mpsc::channel(4);
    let admin = stages::Admin::start(&config, &shared, caps.admin, Some(reload_trigger.clone()))?;
    let http = stages::HttpIngest::start(&config, &shared, caps.http)?;
    let readers = udp.start(&shared)?;
    let streams = streams.start()?;
    let probes = stages::start_probes(&config, &shared)?;
    let checks = stages::start_checks(&config, &shared)?;
    let mut p = reload::Pipeline {
        config,
        caps,
        reload_trigger,
        readers,
        streams,
        output,
        flush,
        admin,
        http,
        probes: Some(probes),
        checks: Some(checks),
    };

    let mut signals = shared
        .runtime
        .block_on(async { shutdown::Signals::install() });
    tracing::info!(
        udp = %p.readers.addr,
        streams = %p.streams.shown(),
        admin = %stages::shown(p.admin.addr()),
        http = %stages::shown(p.http.addr()),
        readers = shared.readers,
        flush_interval = %humantime::format_duration(p.config.flush.interval.get()),
        sink = %p.output.name,
        "statsgate listening"
    );
    // Every listener is bound, the readers run and the signals are caught: ready.
    crate::service::ready(&p.listening());
    let signal = loop {
        let event = shared.runtime.block_on(async {
            tokio::select! {
                e = signals.next() => (e, None),
                r = reload_requests.recv() => (shutdown::Event::Reload, r),
            }
        });
        match event {
            (shutdown::Event::Stop(signal), _) => break signal,
            (shutdown::Event::Reload, reply) => {
                let outcome = reload::reload(&mut p, &mut shared, &options);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    };
    drop(reload_requests);
    let grace = p.config.shutdown.grace.get();
    let deadline = Instant::now() + grace;
    crate::service::stopping();
    crate::service::status(&format!("{signal}: final flush"));
    tracing::info!(signal, grace = %humantime::format_duration(grace), "shutting down: final flush");

    let readers_done = p.readers.stop(deadline);
    let streams_done = p.streams.stop(deadline);
    // No new beats, client or probe metrics once the final flush is under way.
    if let Some(probes) = p.probes.take() {
        probes.stop();
    }
    if let Some(checks) = p.checks.take() {
        checks.stop();
    }
    p.http.stop(&shared);
    let flushed = p.flush.stop(deadline);
    let unsent = p.output.stop(&shared, deadline);
    p.admin.stop(&shared);
    if !(readers_done && streams_done && flushed) {
        bail!(
            "shutdown.grace ({}) ran out before the final flush finished",
            humantime::format_duration(grace)
        );
    }
    if unsent > 0 {
        // A supervisor must be able to tell: exit 1, as for an unfinished flush.
        bail!(
            "shutdown.grace ({}) ran out with {unsent} metrics unsent and not spooled (counted as dropped, reason shutdown)",
            humantime::format_duration(grace)
        );
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// What every stage may hold a handle to: the counters, the default dimensions, the
/// pending buffer of beats and client metrics, the liveness table, the series budget and
/// the I/O runtime.
pub struct Shared {
    pub readers: usize,
    pub telemetry: Arc<Telemetry>,
    pub defaults: Vec<(String, String)>,
    pub passthrough: Arc<Passthrough>,
    pub heartbeats: Arc<Heartbeats>,
    pub budget: Arc<aggregate::SeriesBudget>,
    /// Rainbow's user-defined metrics counters: the files intake and the HTTP route share them.
    pub rainbow: Arc<crate::checks::rainbow::RainbowStats>,
    pub runtime: tokio::runtime::Runtime,
}

impl Shared {
    fn new(config: &Config) -> anyhow::Result<Shared> {
        let readers = reader_count(config);
        let telemetry = Arc::new(Telemetry::new(readers));
        let defaults = checked_default_dimensions(config)?;
        let passthrough = Arc::new(Passthrough::new(config.buffer.max_pending.bytes() as usize));
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
        if config.history.enabled {
            let history = crate::history::History::new(&config.history);
            let _ = telemetry.history.set(Arc::new(history));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("statsgate-io")
            .enable_all()
            .build()
            .context("starting the I/O runtime")?;
        Ok(Shared {
            readers,
            telemetry,
            defaults,
            passthrough,
            heartbeats,
            budget,
            rainbow: Default::default(),
            runtime,
        })
    }
}
