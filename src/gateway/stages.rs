//! The stages as the gateway runs them (the HTTP servers are in `servers`): each starts
//! from its config section and the [`Shared`] handles and returns a handle whose `stop`
//! ends it within the shutdown deadline.
//!
//! Owns: which thread or task each stage runs on and how it is told to stop. Must never:
//! hold pipeline logic (that lives in each stage's own module) or decide the stop order
//! (that is `gateway::run`).

use super::{CHECKPOINT_FILE, Shared};
use crate::aggregate::{self, Shard};
use crate::allow::AllowList;
use crate::config::Config;
use crate::flush::{FlushSettings, Flusher, TimerOutput};
use crate::forward::Forwarder;
use crate::listen::{self, Listener, LiveReaders, ReaderConfig};
use crate::live::Live;
use crate::parse::Limits;
use crate::shutdown;
use crate::sink::{ConsoleSink, Sink};
use crate::spool::SpoolDir;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

pub use super::servers::{Admin, HttpIngest, http_allow};

/// An address for the start-up log, or `disabled`.
pub fn shown(addr: Option<SocketAddr>) -> String {
    addr.map_or("disabled".to_owned(), |a| a.to_string())
}

/// The statsd sockets, bound first so that a taken port fails start-up before anything runs,
/// and the shards their readers will fill.
pub struct Udp {
    listener: Listener,
    config: LiveReaders,
    pub shards: Vec<Arc<Mutex<Shard>>>,
}

/// What every statsd reader and ingest thread runs with, from `config`.
pub fn reader_config(
    config: &Config,
    shared: &Shared,
    defaults: &[(String, String)],
) -> anyhow::Result<ReaderConfig> {
    let s = &config.statsd;
    let a = &config.aggregate;
    Ok(ReaderConfig {
        limits: Limits {
            max_line: s.max_line.bytes() as usize,
            max_dimensions: s.max_dimensions,
        },
        max_datagram: s.max_datagram.bytes() as usize,
        aggregate: aggregate::Settings {
            default_dimensions: defaults.to_vec(),
            budget: Arc::clone(&shared.budget),
            max_set_members: a.max_set_members,
            histogram: aggregate::HistogramSpec::new(a.histogram_precision, a.histogram_max_value),
        },
        // Validated at load; an entry that fails here cannot occur.
        allow: AllowList::new(
            crate::config::networks(&s.allow).map_err(|e| anyhow::anyhow!("statsd.allow: {e}"))?,
        ),
        heartbeats: Some(Arc::clone(&shared.heartbeats)),
        // Half the grace: the final flush and its delivery need the rest.
        drain_for: config.shutdown.grace.get() / 2,
    })
}

/// Binds `statsd.listen` with `readers` sockets.
pub fn bind_udp(config: &Config, readers: usize) -> anyhow::Result<Listener> {
    let s = &config.statsd;
    let addr: SocketAddr = s
        .listen
        .parse()
        .with_context(|| format!("statsd.listen: {:?} is not an address", s.listen))?;
    listen::bind(addr, readers, s.recv_buffer.bytes() as usize)
        .with_context(|| format!("statsd.listen: cannot bind UDP {addr}"))
}

impl Udp {
    pub fn bind(config: &Config, shared: &Shared) -> anyhow::Result<Udp> {
        let listener = bind_udp(config, shared.readers)?;
        let reader_config = reader_config(config, shared, &shared.defaults)?;
        Ok(Udp {
            listener,
            config: Live::new(reader_config),
            shards: (0..shared.readers).map(|_| Arc::default()).collect(),
        })
    }

    /// What every statsd reader and ingest thread is configured with, as a reload replaces it.
    pub fn reader_config(&self) -> &LiveReaders {
        &self.config
    }

    /// Starts the reader threads: from here on datagrams are read.
    pub fn start(self, shared: &Shared) -> anyhow::Result<Readers> {
        Readers::start(self.listener, self.shards, self.config, shared)
    }
}

/// The running reader threads.
pub struct Readers {
    pub addr: SocketAddr,
    pub config: LiveReaders,
    shards: Vec<Arc<Mutex<Shard>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Readers {
    fn start(
        listener: Listener,
        shards: Vec<Arc<Mutex<Shard>>>,
        config: LiveReaders,
        shared: &Shared,
    ) -> anyhow::Result<Readers> {
        let addr = listener.local_addr;
        let stop = Arc::new(AtomicBool::new(false));
        let handles = listen::spawn_readers(listener, &shards, &shared.telemetry, &config, &stop)?;
        Ok(Readers {
            addr,
            config,
            shards,
            stop,
            handles,
        })
    }

    /// Moves to `listener` (a reload changed `statsd.listen`, and bound it already, so the
    /// kernel queues what arrives there): the old readers drain their sockets and end, then
    /// new ones start on the new sockets with the same shards and counters. The open
    /// interval is kept and nothing queued on either address is lost. (Old and new readers
    /// never run at once: a reader's counters have one writer.)
    pub fn rebind(
        &mut self,
        listener: Listener,
        shared: &Shared,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if !shutdown::join_until(std::mem::take(&mut self.handles), deadline) {
            // They stop at their drain deadline; the new address must be read meanwhile.
            tracing::warn!(
                "statsd.listen: the old address's readers are still draining; new readers start beside them"
            );
        }
        let new = Readers::start(
            listener,
            self.shards.clone(),
            Arc::clone(&self.config),
            shared,
        )?;
        *self = new;
        Ok(())
    }

    /// Stops reading (after draining what the kernel queued); false if a reader is still
    /// running at `deadline`.
    pub fn stop(self, deadline: Instant) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        shutdown::join_until(self.handles, deadline)
    }
}

/// Where flushed metrics go: the Monasca forwarder (queue, senders, spool) or the console.
pub struct Output {
    forwarding: Option<(Arc<Forwarder>, Vec<tokio::task::JoinHandle<()>>)>,
    pub name: String,
}

impl Output {
    /// The output and the sink the flusher hands its batches to.
    pub fn start(config: &Config, shared: &Shared) -> anyhow::Result<(Output, Box<dyn Sink>)> {
        if !config.forwards() {
            let output = Output {
                forwarding: None,
                name: "console".to_owned(),
            };
            return Ok((output, Box::new(ConsoleSink::stdout())));
        }
        let (sink, forwarder, name) =
            shared
                .runtime
                .block_on(super::forwarding::start_forwarding(
                    config,
                    &shared.telemetry,
                ))?;
        let senders = shared.runtime.block_on(async { forwarder.spawn() });
        let output = Output {
            forwarding: Some((forwarder, senders)),
            name,
        };
        Ok((output, Box::new(sink)))
    }

    fn forwards(&self) -> bool {
        self.forwarding.is_some()
    }

    /// The Monasca senders, for a reload to point at a new URL or client.
    pub fn forwarder(&self) -> Option<std::sync::Arc<Forwarder>> {
        self.forwarding.as_ref().map(|(f, _)| Arc::clone(f))
    }

    /// Drains the queue (or spools it) until `deadline`; returns the metrics lost so.
    pub fn stop(self, shared: &Shared, deadline: Instant) -> u64 {
        match self.forwarding {
            Some((forwarder, senders)) => shared
                .runtime
                .block_on(forwarder.shutdown(senders, deadline)),
            None => 0,
        }
    }
}

/// The flusher thread: every interval it swaps the shards, renders and hands to the sink.
pub struct Flush {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
    updates: mpsc::Sender<FlushSettings>,
}

/// The flusher's settings from `config`, with `defaults` as the default dimensions.
pub fn flush_settings(config: &Config, defaults: &[(String, String)]) -> FlushSettings {
    let a = &config.aggregate;
    FlushSettings {
        interval: config.flush.interval.get(),
        idle_expiry: config.flush.idle_expiry.get(),
        counters_as_rate: a.counters_as_rate,
        timer_outputs: TimerOutput::list(&a.timer_aggregates, &a.percentiles),
        default_dimensions: defaults.to_vec().into(),
        max_persisted: a.max_series,
        part_metrics: crate::flush::part_metrics(config.monasca.max_batch_metrics),
    }
}

impl Flush {
    pub fn start(
        config: &Config,
        shared: &Shared,
        spool_dir: Option<&SpoolDir>,
        shards: &[Arc<Mutex<Shard>>],
        output: &Output,
        sink: Box<dyn Sink>,
    ) -> anyhow::Result<Flush> {
        let (updates, updated) = mpsc::channel();
        let flusher = Flusher::new(
            shards.to_vec(),
            flush_settings(config, &shared.defaults),
            Arc::clone(&shared.telemetry),
            sink,
        )
        .with_updates(updated)
        .with_passthrough(
            Arc::clone(&shared.passthrough),
            Some((
                Arc::clone(&shared.heartbeats),
                config.heartbeat.alive_gauges,
            )),
        );
        let flusher = match spool_dir {
            Some(d) => flusher.with_checkpoint(d.path().join(CHECKPOINT_FILE)),
            None => flusher,
        };
        let history = shared.telemetry.history.get();
        // Before the first flush, and under the spool directory's lock.
        if let (Some(d), Some(h)) = (spool_dir, history) {
            h.restore(d.path().join(crate::history::checkpoint::FILE_NAME));
        }
        // Only alongside real metrics: the console sink keeps printing just what was sent to it.
        let flusher = if output.forwards() && config.telemetry.self_metrics {
            flusher.with_self_metrics()
        } else {
            flusher
        };
        // The status page charts the gateway's own figures even when they are not sent.
        let flusher = if history.is_some() {
            flusher.with_history_self_metrics()
        } else {
            flusher
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || flusher.run(stopped))?;
        Ok(Flush {
            stop,
            handle,
            updates,
        })
    }

    /// Settings for the next interval (a reload): taken at the next boundary.
    pub fn update(&self, settings: FlushSettings) {
        let _ = self.updates.send(settings);
    }

    /// The final flush; false if it has not finished at `deadline`.
    pub fn stop(self, deadline: Instant) -> bool {
        let _ = self.stop.send(());
        shutdown::join_until(vec![self.handle], deadline)
    }
}

/// The host and container probes (`probes`), on their own thread; their metrics join each
/// flush through the passthrough.
pub fn start_probes(
    config: &Config,
    shared: &Shared,
) -> anyhow::Result<crate::probes::ProbesHandle> {
    let probes = crate::probes::start(
        &config.probes,
        shared.defaults.clone(),
        Arc::clone(&shared.passthrough),
    )?;
    shared
        .telemetry
        .probes
        .set(probes.running().then(|| Arc::clone(&probes.stats)));
    Ok(probes)
}

/// The active checks and Rainbow's files intake (`checks`), on their own thread and runtime;
/// their metrics join each flush through the passthrough.
pub fn start_checks(
    config: &Config,
    shared: &Shared,
) -> anyhow::Result<crate::checks::ChecksHandle> {
    let hostname = shared
        .defaults
        .iter()
        .find(|(k, _)| k == "hostname")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let ctx = crate::checks::Context {
        hostname,
        auth: shared.telemetry.auth.get().cloned(),
        proc_path: config.probes.proc_path.clone().into(),
    };
    let checks = crate::checks::start(
        &config.checks,
        &ctx,
        shared.defaults.clone(),
        Arc::clone(&shared.passthrough),
        Arc::clone(&shared.rainbow),
    )?;
    shared.telemetry.checks.set(Some(Arc::clone(&checks.stats)));
    Ok(checks)
}
