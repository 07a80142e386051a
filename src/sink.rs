//! Sink: where a flushed interval goes. Today the console sink; the Monasca forwarder
//! plugs in behind the same trait.
//!
//! Owns: handing one flush's metrics to their destination. Must never: block the receive
//! path (it runs on the flusher thread) or drop metrics without returning an error the
//! flusher counts.

use crate::batch::Rendered;
use crate::metric::Metric;
use std::io::Write;

pub trait Sink: Send {
    /// Takes one flush's metrics; an error means none of them were delivered.
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()>;
}

/// Prints one JSON array per flush, byte for byte the body that would be POSTed to
/// Monasca, followed by a newline. The default when no Monasca is configured.
pub struct ConsoleSink<W: Write + Send> {
    out: W,
}

impl ConsoleSink<std::io::Stdout> {
    pub fn stdout() -> Self {
        ConsoleSink {
            out: std::io::stdout(),
        }
    }
}

impl<W: Write + Send> Sink for ConsoleSink<W> {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        let mut body = metrics.to_array();
        body.push(b'\n');
        self.out.write_all(&body)?;
        self.out.flush()
    }
}

/// Collects flushes in memory; for tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub flushes: std::sync::Arc<std::sync::Mutex<Vec<Vec<Metric>>>>,
}

impl Sink for MemorySink {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        let parsed: Vec<Metric> =
            serde_json::from_slice(&metrics.to_array()).map_err(std::io::Error::other)?;
        if let Ok(mut f) = self.flushes.lock() {
            f.push(parsed);
        }
        Ok(())
    }
}
