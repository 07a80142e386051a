//! The flush loop's watchdog pings: at the asked cadence between flushes, none while a flush
//! hangs.

use super::*;
use crate::sink::Sink;
use std::sync::mpsc::{Sender, channel};

fn settings(interval: Duration) -> FlushSettings {
    FlushSettings {
        interval,
        idle_expiry: Duration::from_secs(300),
        counters_as_rate: false,
        timer_outputs: Vec::new(),
        default_dimensions: Vec::new().into(),
        max_persisted: 1000,
        part_metrics: 5000,
    }
}

/// Reports each submit; the first one waits until `release` says so (a hung downstream).
struct HangingSink {
    submits: Sender<Instant>,
    release: Option<Receiver<()>>,
}

impl Sink for HangingSink {
    fn submit(&mut self, _metrics: Rendered) -> std::io::Result<()> {
        let _ = self.submits.send(Instant::now());
        if let Some(release) = self.release.take() {
            let _ = release.recv();
        }
        Ok(())
    }
}

/// Runs a flusher on its own thread; returns (stop, pings, submits, release, thread).
#[allow(clippy::type_complexity)]
fn start(
    interval: Duration,
    ping_every: Duration,
    hang_first: bool,
) -> (
    Sender<()>,
    Receiver<Instant>,
    Receiver<Instant>,
    Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (submits_tx, submits) = channel();
    let (release, release_rx) = channel();
    let sink = HangingSink {
        submits: submits_tx,
        release: hang_first.then_some(release_rx),
    };
    let flusher = Flusher::new(
        vec![Arc::new(Mutex::new(Shard::default()))],
        settings(interval),
        Arc::new(Telemetry::new(1)),
        Box::new(sink),
    );
    let (stop, stopped) = channel();
    let (pings_tx, pings) = channel();
    let thread = std::thread::spawn(move || {
        flusher.run_watched(stopped, Some(ping_every), move || {
            let _ = pings_tx.send(Instant::now());
        })
    });
    (stop, pings, submits, release, thread)
}

#[test]
fn pings_between_flushes_without_flushing_early() {
    // An interval far longer than the test: every ping here comes from a wake-up alone.
    let (stop, pings, submits, _release, thread) =
        start(Duration::from_secs(3600), Duration::from_millis(20), false);
    let started = Instant::now();
    let mut seen = 0;
    while seen < 10 {
        pings
            .recv_timeout(Duration::from_secs(5))
            .expect("a ping every 20ms");
        seen += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "10 pings at 20ms took {:?}",
        started.elapsed()
    );
    assert!(submits.try_recv().is_err(), "no flush before the boundary");
    stop.send(()).unwrap();
    thread.join().unwrap();
    assert!(submits.try_recv().is_ok(), "the final flush at stop");
}

#[test]
fn a_hung_flush_stops_the_pings_until_it_returns() {
    let (stop, pings, submits, release, thread) =
        start(Duration::from_millis(100), Duration::from_millis(10), true);
    submits
        .recv_timeout(Duration::from_secs(5))
        .expect("the first flush");
    // Pings sent before the flush began may still be queued; none may be stamped after.
    let hung_at = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let late: Vec<_> = pings.try_iter().filter(|t| *t > hung_at).collect();
    assert!(
        late.is_empty(),
        "{} pings while the flush hung: the watchdog would never fire",
        late.len()
    );
    release.send(()).unwrap();
    pings
        .recv_timeout(Duration::from_secs(5))
        .expect("pings resume once the flush returns");
    stop.send(()).unwrap();
    thread.join().unwrap();
}
