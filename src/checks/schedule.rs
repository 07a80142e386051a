//! The checks' schedule: one thread with its own single-threaded runtime, one task per check.
//!
//! Owns: when each check runs (first run at start, spread over the first second, then once a
//! period), the concurrency bound (a semaphore of `checks.max_concurrent` permits), the
//! timeout (the run's future is dropped and the check's failure samples sent), and the
//! counters `/metrics` renders. Must never: run two runs of one check at once, or wait on a
//! check from the gateway's own threads (stop cancels every run).

use super::{Check, Context, Outcome, Report, Sample, rainbow, to_metric};
use crate::clock::now_ms;
use crate::config::{CheckInstance, ChecksConfig};
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
    let files = (!section.files_dir.is_empty()).then(|| rainbow::FilesIntake {
        dir: section.files_dir.clone().into(),
        period: section.files_period.get(),
        max_bytes: section.files_max_bytes.bytes(),
    });
    let out = Out {
        defaults: Arc::new(defaults),
        passthrough,
    };
    spawn(built, section.max_concurrent, files, out, rainbow_stats)
}

/// Runs `built` (and the files intake) on the checks thread.
fn spawn(
    built: Vec<(CheckInstance, Box<dyn Check>)>,
    max_concurrent: usize,
    files: Option<rainbow::FilesIntake>,
    out: Out,
    rainbow_stats: Arc<rainbow::RainbowStats>,
) -> anyhow::Result<ChecksHandle> {
    let stats = Arc::new(CheckStats {
        checks: built
            .iter()
            .map(|(c, _)| (c.name.clone(), CheckCounters::default()))
            .collect(),
        rainbow: rainbow_stats,
    });
    let (stop, stop_rx) = watch::channel(false);
    if built.is_empty() && files.is_none() {
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
    let permits = Arc::new(Semaphore::new(max_concurrent));
    let task_stats = Arc::clone(&stats);
    let thread = std::thread::Builder::new()
        .name("checks".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                let n = built.len().max(1) as u32;
                for (i, (instance, check)) in built.into_iter().enumerate() {
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
                        Arc::clone(&task_stats),
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
    instance: CheckInstance,
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

#[cfg(test)]
mod tests {
    //! The schedule with instrumented checks: each records when its runs start and end, so
    //! the bound, the timeout and the periods are observed, not assumed.
    use super::*;
    use crate::checks::{BoxFuture, Report};
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<(&'static str, Instant, Option<Instant>)>>>;

    /// Sleeps `busy` per run and logs (name, start, end) on a shared timeline.
    struct Busy {
        name: &'static str,
        busy: Duration,
        log: Log,
    }

    impl Check for Busy {
        fn run(&mut self) -> BoxFuture<'_, Report> {
            Box::pin(async move {
                let i = {
                    let mut log = self.log.lock().unwrap();
                    log.push((self.name, Instant::now(), None));
                    log.len() - 1
                };
                tokio::time::sleep(self.busy).await;
                self.log.lock().unwrap()[i].2 = Some(Instant::now());
                Report::ok(vec![Sample::new(format!("{}.up", self.name), 0.0)])
            })
        }
        fn timed_out(&mut self, _: Duration) -> Vec<Sample> {
            vec![Sample::new(format!("{}.up", self.name), 1.0)]
        }
    }

    fn instance(name: &str, period_ms: u64, timeout_ms: u64) -> CheckInstance {
        let yaml = format!(
            "name: {name}\nkind: tcp\naddress: 127.0.0.1:9\nperiod: {period_ms}ms\ntimeout: {timeout_ms}ms\n"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    fn run_for(
        checks: Vec<(CheckInstance, Duration, &'static str)>,
        max_concurrent: usize,
        for_: Duration,
    ) -> (Log, Arc<CheckStats>, Vec<crate::metric::Metric>) {
        let log: Log = Arc::default();
        let built = checks
            .into_iter()
            .map(|(i, busy, name)| {
                let c: Box<dyn Check> = Box::new(Busy {
                    name,
                    busy,
                    log: Arc::clone(&log),
                });
                (i, c)
            })
            .collect();
        let passthrough = Arc::new(Passthrough::new(1 << 20));
        let out = Out {
            defaults: Arc::new(vec![("hostname".into(), "h".into())]),
            passthrough: Arc::clone(&passthrough),
        };
        let handle = spawn(built, max_concurrent, None, out, Arc::default()).unwrap();
        std::thread::sleep(for_);
        let stats = Arc::clone(&handle.stats);
        let stopping = Instant::now();
        handle.stop();
        assert!(
            stopping.elapsed() < Duration::from_millis(500),
            "stop waits for no run"
        );
        let metrics = serde_json::from_slice(&passthrough.take().to_array()).unwrap();
        (log, stats, metrics)
    }

    #[test]
    fn at_most_max_concurrent_runs_at_once() {
        let checks = (0..4)
            .map(|i| {
                let name: &'static str = ["a", "b", "c", "d"][i];
                (instance(name, 1000, 900), Duration::from_millis(300), name)
            })
            .collect();
        let (log, stats, _) = run_for(checks, 2, Duration::from_millis(1900));
        let log = log.lock().unwrap();
        let mut most = 0;
        for (_, start, _) in log.iter() {
            let overlapping = log
                .iter()
                .filter(|(_, s, e)| s <= start && e.is_none_or(|e| e > *start))
                .count();
            most = most.max(overlapping);
        }
        assert_eq!(most, 2, "{log:?}");
        // Every check still ran in its first period: a bounded wait, not a skip.
        for (name, c) in &stats.checks {
            assert!(c.runs_of("ok") >= 1, "{name} never ran");
        }
    }

    #[test]
    fn a_hung_check_is_cut_at_its_timeout_and_does_not_delay_another() {
        let checks = vec![
            (instance("hung", 1000, 200), Duration::from_secs(60), "hung"),
            (
                instance("quick", 200, 100),
                Duration::from_millis(1),
                "quick",
            ),
        ];
        let (_, stats, metrics) = run_for(checks, 2, Duration::from_millis(1500));
        let (hung, quick) = (&stats.checks[0].1, &stats.checks[1].1);
        assert!(hung.runs_of("timeout") >= 1);
        assert_eq!(hung.runs_of("ok"), 0);
        // quick's period is 200 ms: about 7 runs in 1.5 s, however long hung hangs.
        assert!(quick.runs_of("ok") >= 5, "{}", quick.runs_of("ok"));
        assert!(
            metrics
                .iter()
                .any(|m| m.name == "hung.up" && m.value == 1.0 && m.dimensions["hostname"] == "h"),
            "the timed-out report is sent"
        );
    }

    #[test]
    fn a_run_longer_than_its_period_skips_the_missed_runs() {
        let checks = vec![(
            instance("slow", 200, 1000),
            Duration::from_millis(500),
            "slow",
        )];
        let (log, stats, _) = run_for(checks, 1, Duration::from_millis(1300));
        let c = &stats.checks[0].1;
        assert!(c.runs_of("skipped") >= 2, "{}", c.runs_of("skipped"));
        let log = log.lock().unwrap();
        for pair in log.windows(2) {
            assert!(
                pair[0].2.is_some_and(|end| end <= pair[1].1),
                "never two at once: {log:?}"
            );
        }
    }
}
