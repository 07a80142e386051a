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

    /// One part of a flush the flusher hands over in parts, so that a large flush is never
    /// held whole; [`Sink::end_flush`] follows its last part. An error means none of this
    /// part's metrics were delivered. Default: the part is submitted on its own, which is
    /// the same thing for a sink that does not frame a flush (the forwarder packs POSTs
    /// per submit).
    fn submit_part(&mut self, metrics: Rendered) -> std::io::Result<()> {
        self.submit(metrics)
    }

    /// Every part of the flush was submitted.
    fn end_flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes written to the console per write call.
const CONSOLE_CHUNK: usize = 64 << 10;

/// Prints one JSON array per flush, byte for byte the body that would be POSTed to
/// Monasca, followed by a newline. The default when no Monasca is configured.
pub struct ConsoleSink<W: Write + Send> {
    out: W,
    /// The open flush's array was started (its `[` written) and is not closed yet.
    open: bool,
}

impl ConsoleSink<std::io::Stdout> {
    pub fn stdout() -> Self {
        ConsoleSink {
            out: std::io::stdout(),
            open: false,
        }
    }
}

impl<W: Write + Send> Sink for ConsoleSink<W> {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        self.submit_part(metrics)?;
        self.end_flush()
    }

    /// Parts of one flush continue one array: the output is the same as for the flush whole.
    fn submit_part(&mut self, metrics: Rendered) -> std::io::Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        // Streamed, not joined first: a flush of 100k series would otherwise hold its JSON
        // twice (~25 MiB more at the peak).
        let mut out = std::io::BufWriter::with_capacity(CONSOLE_CHUNK, &mut self.out);
        for object in metrics.iter() {
            out.write_all(if self.open { b"," } else { b"[" })?;
            self.open = true;
            out.write_all(object)?;
        }
        out.flush()
    }

    /// Nothing is printed for a flush with no metrics.
    fn end_flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.open) {
            self.out.write_all(b"]\n")?;
        }
        self.out.flush()
    }
}

/// Collects flushes in memory; for tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub flushes: std::sync::Arc<std::sync::Mutex<Vec<Vec<Metric>>>>,
    /// The parts of the open flush so far.
    pending: Vec<Metric>,
}

impl Sink for MemorySink {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        self.submit_part(metrics)?;
        self.end_flush()
    }

    fn submit_part(&mut self, metrics: Rendered) -> std::io::Result<()> {
        let parsed: Vec<Metric> =
            serde_json::from_slice(&metrics.to_array()).map_err(std::io::Error::other)?;
        self.pending.extend(parsed);
        Ok(())
    }

    /// One entry per flush, as for a flush submitted whole.
    fn end_flush(&mut self) -> std::io::Result<()> {
        let flush = std::mem::take(&mut self.pending);
        if let Ok(mut f) = self.flushes.lock() {
            f.push(flush);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_prints_one_json_array_line_per_flush() {
        let mut metrics = Rendered::default();
        // More than one write chunk of JSON, to cross the streaming buffer's boundary.
        for i in 0..2_000 {
            let dims = [("hostname", "gw"), ("i", "x")];
            metrics.push("m", ".count", dims.into_iter(), 1_000, f64::from(i));
        }
        assert!(metrics.bytes() > 2 * CONSOLE_CHUNK);
        let mut want = metrics.to_array();
        want.push(b'\n');
        let mut sink = ConsoleSink {
            out: Vec::new(),
            open: false,
        };
        sink.submit(metrics).unwrap();
        sink.submit(Rendered::default()).unwrap();
        assert_eq!(sink.out, want, "nothing is printed for an empty flush");
        let parsed: Vec<Metric> = serde_json::from_slice(&sink.out).unwrap();
        assert_eq!(parsed.len(), 2_000);
        assert_eq!(parsed[1999].value, 1999.0);
    }
}
