//! Shutdown: SIGTERM/SIGINT, and waiting for the pipeline to drain within the grace period.
//!
//! Owns: the signal wait and the deadline. Must never: cut the final flush short while
//! time remains.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, caught from the moment this is built: build it before announcing
/// that the gateway listens, or a supervisor's early SIGTERM kills it without a final flush.
/// SIGHUP too: its default action would kill the gateway with the open interval unsent
/// (`systemctl reload` and a closing terminal send it). Must be built inside the runtime.
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

    /// Resolves with the signal's name on the first SIGTERM or SIGINT. A SIGHUP is logged
    /// and changes nothing: the configuration is read at start only.
    pub async fn recv(self) -> &'static str {
        let Some((mut term, mut int)) = self.stop else {
            // Without signal handlers the process can only be killed; wait forever.
            std::future::pending::<()>().await;
            return "none";
        };
        let mut hangup = self.hangup;
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                _ = hup => tracing::warn!(
                    "SIGHUP received: statsgate does not reload its configuration yet; \
                     still running with the one it started with (restart to apply changes)"
                ),
            }
        }
    }
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
