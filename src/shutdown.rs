//! Shutdown: SIGTERM/SIGINT (and SIGHUP, the reload signal), and waiting for the pipeline to drain within the grace period.
//!
//! Owns: the signal wait and the deadline. Must never: cut the final flush short while
//! time remains.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, caught from the moment this is built: build it before announcing
/// that the gateway listens, or a supervisor's early SIGTERM kills it without a final flush.
/// SIGHUP too: it asks for a reload (`systemctl reload` sends it), where its default action
/// would kill the gateway with the open interval unsent. Must be built inside the runtime.
pub struct Signals {
    stop: Option<(Signal, Signal)>,
    hangup: Option<Signal>,
}

impl Signals {
    pub fn install() -> Self {
        let stop = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot catch SIGTERM/SIGINT; only SIGKILL stops statsgate");
                None
            }
        };
        let hangup = signal(SignalKind::hangup())
            .map_err(|e| tracing::error!(error = %e, "cannot catch SIGHUP; it would stop statsgate without a final flush"))
            .ok();
        Signals { stop, hangup }
    }

    /// The next signal: SIGTERM or SIGINT (stop, with its name) or SIGHUP (reload).
    pub async fn next(&mut self) -> Event {
        let Some((term, int)) = self.stop.as_mut() else {
            // Without signal handlers the process can only be killed; wait forever.
            std::future::pending::<()>().await;
            return Event::Stop("none");
        };
        let hup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => Event::Stop("SIGTERM"),
            _ = int.recv() => Event::Stop("SIGINT"),
            _ = hup => Event::Reload,
        }
    }
}

/// What a caught signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stop(&'static str),
    Reload,
}

/// Joins `handles` before `deadline`; false if any is still running then.
pub fn join_until(handles: Vec<JoinHandle<()>>, deadline: Instant) -> bool {
    for h in handles {
        while !h.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.join().is_err() {
            tracing::error!("a pipeline thread panicked");
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_respects_the_deadline() {
        let quick = std::thread::spawn(|| {});
        assert!(join_until(
            vec![quick],
            Instant::now() + Duration::from_secs(5)
        ));
        let slow = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(300)));
        assert!(!join_until(
            vec![slow],
            Instant::now() + Duration::from_millis(20)
        ));
    }
}
