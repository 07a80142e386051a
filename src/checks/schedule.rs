//! The checks' schedule: one thread with its own single-threaded runtime, one task per check.
//!
//! Owns: when each check runs (first run at start, spread over the first second, then once a
//! period), the concurrency bound (a semaphore of `checks.max_concurrent` permits), the
//! timeout (the run's future is dropped and the check's failure samples sent), and the
//! counters `/metrics` renders. Must never: run two runs of one check at once, or wait on a
//! check from the gateway's own threads (stop cancels every run).

use super::{Check, Context, Outcome, Report, Sample, rainbow, to_metric};
use crate::clock::now_ms;
use crate::config::ChecksConfig;
use crate::passthrough::Passthrough;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// The `outcome` label values of `statsgate_check_runs_total`.
pub const OUTCOMES: [&str; 4] = ["ok", "failed", "timeout", "skipped"];

/// One check's counters.
#[derive(Debug, Default)]
pub struct CheckCounters {
    /// Indexed as [`OUTCOMES`].
    pub runs: [AtomicU64; OUTCOMES.len()],
    /// Duration of the last completed (or cut) run, microseconds.
    pub duration_us: AtomicU64,
    /// Metrics handed to the passthrough.
    pub metrics: AtomicU64,
    /// Samples refused: invalid for Monasca, or the pending buffer was full.
    pub invalid: AtomicU64,
    pub full: AtomicU64,
}

impl CheckCounters {
    pub fn runs_of(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.runs[i].load(Relaxed))
    }
    fn count(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.runs[i].fetch_add(1, Relaxed);
        }
    }
}

/// All checks' counters, in configuration order, and the Rainbow intake's.
#[derive(Debug, Default)]
pub struct CheckStats {
    pub checks: Vec<(String, CheckCounters)>,
    pub rainbow: Arc<rainbow::RainbowStats>,
}

/// The running checks; [`ChecksHandle::stop`] cancels every run and joins the thread.
pub struct ChecksHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<CheckStats>,
}

impl ChecksHandle {
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What each run's metrics go through.
#[derive(Clone)]
struct Out {
    defaults: Arc<Vec<(String, String)>>,
    passthrough: Arc<Passthrough>,
}

/// Builds every check (a failure names the instance) and starts the thread. With no checks
/// and no `files_dir`, no thread is started.
pub fn start(
    section: &ChecksConfig,
    ctx: &Context,
    defaults: Vec<(String, String)>,
    passthrough: Arc<Passthrough>,
    rainbow_stats: Arc<rainbow::RainbowStats>,
) -> anyhow::Result<ChecksHandle> {
    let mut built = Vec::with_capacity(section.instances.len());
    for (i, instance) in section.instances.iter().enumerate() {
        let check = super::build(instance, ctx)
            .map_err(|e| anyhow::anyhow!("checks.instances[{i}] ({:?}): {e:#}", instance.name))?;
        built.push((instance.clone(), check));
    }
    let stats = Arc::new(CheckStats {
        checks: section
            .instances
            .iter()
            .map(|c| (c.name.clone(), CheckCounters::default()))
            .collect(),
        rainbow: rainbow_stats,
    });
    let (stop, stop_rx) = watch::channel(false);
    if built.is_empty() && section.files_dir.is_empty() {
        return Ok(ChecksHandle {
            stop,
            thread: None,
            stats,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("statsgate-check")
        .build()?;
    let out = Out {
        defaults: Arc::new(defaults),
        passthrough,
    };
    let files = (!section.files_dir.is_empty()).then(|| rainbow::FilesIntake {
        dir: section.files_dir.clone().into(),
        period: section.files_period.get(),
        max_bytes: section.files_max_bytes.bytes(),
    });
    let permits = Arc::new(Semaphore::new(section.max_concurrent));
    let task_stats = Arc::clone(&stats);
    let thread = std::thread::Builder::new()
        .name("checks".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                let n = built.len().max(1) as u32;
                for (i, (instance, check)) in built.into_iter().enumerate() {
                    let stats = Arc::clone(&task_stats);
                    // Spread the first runs over a second so that a hundred checks do not
                    // open a hundred sockets in the same millisecond.
                    let first = Duration::from_millis(1000) * i as u32 / n;
                    tasks.spawn(run_check(
                        i,
                        instance,
                        check,
                        first,
                        Arc::clone(&permits),
                        out.clone(),
                        stats,
                        stop_rx.clone(),
                    ));
                }
                if let Some(files) = files {
                    tasks.spawn(rainbow::run_files(
                        files,
                        Arc::clone(&out.defaults),
                        Arc::clone(&out.passthrough),
                        Arc::clone(&task_stats.rainbow),
                        stop_rx.clone(),
                    ));
                }
                while tasks.join_next().await.is_some() {}
            });
            // A blocking read still going (a process scan) is not waited for.
            runtime.shutdown_background();
        })?;
    Ok(ChecksHandle {
        stop,
        thread: Some(thread),
        stats,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_check(
    index: usize,
    instance: crate::config::CheckInstance,
    mut check: Box<dyn Check>,
    first: Duration,
    permits: Arc<Semaphore>,
    out: Out,
    stats: Arc<CheckStats>,
    mut stop: watch::Receiver<bool>,
) {
    let counters = &stats.checks[index].1;
    let period = instance.period.get();
    let timeout = instance.timeout().get();
    let mut next = tokio::time::Instant::now() + first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        next += period;
        // A slot must free before the next run is due, or this run is skipped.
        let permit = tokio::select! {
            p = tokio::time::timeout_at(next, Arc::clone(&permits).acquire_owned()) => p,
            _ = stop.changed() => return,
        };
        let Ok(Ok(_permit)) = permit else {
            counters.count("skipped");
            continue;
        };
        let started = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, check.run()) => r,
            _ = stop.changed() => return,
        };
        let elapsed = started.elapsed();
        counters
            .duration_us
            .store(elapsed.as_micros() as u64, Relaxed);
        let samples = match result {
            Ok(Report { outcome, samples }) => {
                counters.count(match outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failed => "failed",
                });
                samples
            }
            Err(_) => {
                counters.count("timeout");
                tracing::warn!(check = %instance.name, timeout = %humantime::format_duration(timeout), "check cut at its timeout");
                check.timed_out(timeout)
            }
        };
        deliver(&samples, &instance.dimensions, &out, counters);
        // A run that overran its period skips the runs it missed rather than firing them
        // back to back.
        let now = tokio::time::Instant::now();
        while next <= now {
            counters.count("skipped");
            next += period;
        }
    }
}

fn deliver(
    samples: &[Sample],
    instance_dims: &BTreeMap<String, String>,
    out: &Out,
    counters: &CheckCounters,
) {
    let timestamp = now_ms();
    let mut metrics = Vec::with_capacity(samples.len());
    for s in samples {
        match to_metric(s, &out.defaults, instance_dims, timestamp) {
            Ok(m) => metrics.push(m),
            Err(_) => {
                counters.invalid.fetch_add(1, Relaxed);
                tracing::debug!(metric = %s.name, "check metric refused: not valid for Monasca");
            }
        }
    }
    if metrics.is_empty() {
        return;
    }
    match out.passthrough.push_metrics(&metrics) {
        Ok(()) => {
            counters.metrics.fetch_add(metrics.len() as u64, Relaxed);
        }
        Err(_) => {
            counters.full.fetch_add(metrics.len() as u64, Relaxed);
        }
    }
}
