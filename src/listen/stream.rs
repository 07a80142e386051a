//! Stream: statsd over connections (TCP, TLS, Unix stream): newline framing per connection,
//! and the one ingest thread per transport that parses and aggregates what was framed.
//!
//! Owns: cutting a byte stream into whole lines with memory bounded per connection (a line
//! over `statsd.max_line` is skipped to its newline and counted, and the connection lives
//! on; a final line without a newline is kept for [`Framer::finish`]), and the ingest
//! thread with its own aggregator shard, fed through a bounded channel so a flood of
//! connections waits on its own sockets (TCP flow control), never on the UDP readers.
//! Must never: share a shard or a lock with a UDP reader, or buffer more than the channel's
//! bound plus one partial line per connection.

use super::{LiveReaders, process_lines_into};
use crate::aggregate::{Aggregator, Shard};
use crate::clock::now_ms;
use crate::telemetry::{Telemetry, Transport};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Whole lines in flight from the connections to the ingest thread, per transport.
pub const CHANNEL_CHUNKS: usize = 64;

/// Newline framing for one connection.
#[derive(Debug)]
pub struct Framer {
    /// The unfinished last line, at most `max_line` bytes.
    partial: Vec<u8>,
    max_line: usize,
    /// In a line already over `max_line`: its bytes are dropped up to its newline.
    skipping: bool,
}

impl Framer {
    pub fn new(max_line: usize) -> Framer {
        Framer {
            partial: Vec::new(),
            max_line,
            skipping: false,
        }
    }

    /// Takes bytes just read; returns the whole lines they complete (each ending in `\n`,
    /// ready for the parser; `None` when none completed) and how many over-long lines were
    /// given up on in them.
    pub fn push(&mut self, mut bytes: &[u8]) -> (Option<Vec<u8>>, u64) {
        let mut skipped = 0;
        if self.skipping {
            match memchr::memchr(b'\n', bytes) {
                Some(nl) => {
                    self.skipping = false;
                    bytes = &bytes[nl + 1..];
                }
                None => return (None, 0),
            }
        }
        let out = match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                let mut out = std::mem::take(&mut self.partial);
                out.extend_from_slice(&bytes[..=last]);
                bytes = &bytes[last + 1..];
                Some(out)
            }
            None => None,
        };
        if self.partial.len() + bytes.len() > self.max_line {
            // Longer than any line the parser accepts: counted once, skipped to its newline.
            self.partial.clear();
            self.skipping = true;
            skipped += 1;
        } else {
            self.partial.extend_from_slice(bytes);
        }
        (out, skipped)
    }

    /// At the connection's end: the last line, if it had no newline (a sender that closes
    /// after its final line without one loses nothing).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.skipping || self.partial.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.partial))
    }
}

/// Whole lines from one connection.
#[derive(Debug)]
pub struct Chunk {
    pub lines: Vec<u8>,
    pub source: Option<SocketAddr>,
}

/// What the connection tasks of one transport hand their lines to.
pub type ChunkSender = tokio::sync::mpsc::Sender<Chunk>;

/// One transport's ingest thread: it owns an aggregator and the shard the flusher takes.
pub struct Ingest {
    pub transport: Transport,
    pub shard: Arc<Mutex<Shard>>,
    sender: Option<ChunkSender>,
    handle: Option<JoinHandle<()>>,
}

impl Ingest {
    /// Starts the thread; it ends once every [`ChunkSender`] is dropped (after
    /// [`Ingest::close`]) and the chunks queued before are processed.
    pub fn start(
        transport: Transport,
        readers: &LiveReaders,
        telemetry: &Arc<Telemetry>,
    ) -> std::io::Result<Ingest> {
        let (sender, mut chunks) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let shard: Arc<Mutex<Shard>> = Arc::default();
        // The UDP readers' parse and aggregate settings, followed across reloads.
        let mut follow = readers.follow();
        let mut config = follow.current();
        let mut aggregator = Aggregator::new(config.aggregate.clone());
        let telemetry = Arc::clone(telemetry);
        let thread_shard = Arc::clone(&shard);
        let handle = std::thread::Builder::new()
            .name(format!("ingest-{}", transport.label()))
            .spawn(move || {
                let Some(stats) = telemetry.transport(transport) else {
                    return;
                };
                let stats = &stats.lines;
                while let Some(chunk) = chunks.blocking_recv() {
                    if let Some(new) = follow.changed() {
                        aggregator.replace_settings(new.aggregate.clone());
                        config = new;
                    }
                    stats.datagrams.add(1);
                    stats.bytes.add(chunk.lines.len() as u64);
                    let mut shard = thread_shard
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    process_lines_into(
                        &chunk.lines,
                        &mut shard,
                        &mut aggregator,
                        stats,
                        &config.limits,
                        config.heartbeats.as_deref(),
                        chunk.source,
                        now_ms(),
                    );
                }
            })?;
        Ok(Ingest {
            transport,
            shard,
            sender: Some(sender),
            handle: Some(handle),
        })
    }

    /// A sender for one more connection task (or listener).
    pub fn sender(&self) -> Option<ChunkSender> {
        self.sender.clone()
    }

    /// Drops the ingest's own sender: the thread ends when the connections' senders are gone.
    pub fn close(&mut self) -> Option<JoinHandle<()>> {
        self.sender = None;
        self.handle.take()
    }
}

/// Counts a line skipped by a framer.
pub fn count_skipped(telemetry: &Telemetry, transport: Transport, n: u64) {
    if n > 0
        && let Some(s) = telemetry.transport(transport)
    {
        s.long_lines.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Framer, parts: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut all = Vec::new();
        let mut skipped = 0;
        for p in parts {
            let (out, s) = f.push(p);
            skipped += s;
            if let Some(o) = out {
                all.extend(o);
            }
        }
        (all, skipped)
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut f = Framer::new(64);
        let (out, skipped) = feed(&mut f, &[b"a:1|c\nb:", b"2|c\nc:3", b"|c"]);
        assert_eq!(out, b"a:1|c\nb:2|c\n");
        assert_eq!(skipped, 0);
        assert_eq!(f.finish().as_deref(), Some(&b"c:3|c"[..]));
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn an_over_long_line_is_skipped_to_its_newline_and_the_rest_kept() {
        let mut f = Framer::new(8);
        let long = [b'x'; 100];
        let (out, skipped) = feed(&mut f, &[b"a:1|c\nyyyy", &long, &long, b"zz\nb:2|c\n"]);
        assert_eq!(out, b"a:1|c\nb:2|c\n");
        assert_eq!(skipped, 1);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn an_unfinished_over_long_line_at_close_is_not_processed() {
        let mut f = Framer::new(8);
        let (_, skipped) = feed(&mut f, &[b"0123456789abcdef"]);
        assert_eq!(skipped, 1);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn the_partial_line_never_outgrows_max_line() {
        let mut f = Framer::new(16);
        for _ in 0..1000 {
            let _ = f.push(b"0123456789");
            assert!(f.partial.len() <= 16);
        }
    }
}
