//! One stream connection's read loop, over any byte stream (plain TCP, TLS, a Unix stream):
//! one bounded read buffer, newline framing, the idle timeout, and the hand-over of whole
//! lines to the transport's ingest thread.
//!
//! Owns: reading until EOF, a read error, `statsd.tcp_idle_timeout` of silence or the stop
//! signal, and, however it ends, handing over the final line without a newline. Must never:
//! hold more than its read buffer, one partial line (at most `statsd.max_line`) and one chunk
//! waiting for the ingest channel, or read on after the stop signal beyond what is already
//! there.

use crate::listen::LiveReaders;
use crate::listen::stream::{Chunk, ChunkSender, Framer, count_skipped};
use crate::telemetry::{ConnOutcome, Telemetry, Transport};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::watch;

/// One read's worth: a TLS record's plaintext at most, and a few hundred statsd lines.
pub const READ_BUFFER: usize = 16 * 1024;

/// How a connection reads.
pub struct Settings {
    pub telemetry: Arc<Telemetry>,
    /// `statsd.max_line` (the longest partial line kept) and the drain time after the stop
    /// signal, as they are when a connection opens.
    pub readers: LiveReaders,
    /// `statsd.tcp_idle_timeout`.
    pub idle: Duration,
}

/// Reads `io` into `sender` until it ends; the outcome to count beyond `accepted`, if any
/// (`idle`, `error`), or `None` for a close by the peer or at stop.
pub async fn serve<R: AsyncRead + Unpin>(
    mut io: R,
    source: Option<SocketAddr>,
    transport: Transport,
    sender: &ChunkSender,
    settings: &Settings,
    mut stop: watch::Receiver<bool>,
) -> Option<ConnOutcome> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut framer = Framer::new(settings.readers.get().limits.max_line);
    let idle = tokio::time::sleep(settings.idle);
    tokio::pin!(idle);
    let mut outcome = None;
    let mut stopping = *stop.borrow();
    while !stopping {
        let read = tokio::select! {
            biased;
            _ = stop.changed() => {
                stopping = true;
                break;
            }
            _ = &mut idle => {
                outcome = Some(ConnOutcome::Idle);
                break;
            }
            r = io.read(&mut buf) => r,
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + settings.idle);
                if !hand_over(&mut framer, &buf[..n], source, transport, sender, settings).await {
                    return None;
                }
            }
            // A TLS peer that closes its socket without close_notify: its lines were sent.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                tracing::debug!(?source, error = %e, "statsd stream read failed");
                outcome = Some(ConnOutcome::Error);
                break;
            }
        }
    }
    if stopping {
        drain(
            &mut io,
            &mut buf,
            &mut framer,
            source,
            transport,
            sender,
            settings,
        )
        .await;
    }
    if let Some(mut last) = framer.finish() {
        last.push(b'\n');
        let _ = sender
            .send(Chunk {
                lines: last,
                source,
            })
            .await;
    }
    outcome
}

/// Frames `bytes` and sends the whole lines; false if the ingest thread is gone.
async fn hand_over(
    framer: &mut Framer,
    bytes: &[u8],
    source: Option<SocketAddr>,
    transport: Transport,
    sender: &ChunkSender,
    settings: &Settings,
) -> bool {
    let (lines, skipped) = framer.push(bytes);
    count_skipped(&settings.telemetry, transport, skipped);
    match lines {
        // Waiting here is the backpressure: the peer's socket fills, not the gateway's memory.
        Some(lines) => sender.send(Chunk { lines, source }).await.is_ok(),
        None => true,
    }
}

/// At stop: reads what the peer already sent (whatever is readable without waiting), for
/// at most `drain_for`, so lines in flight at SIGTERM are kept as the UDP readers keep
/// theirs.
async fn drain<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut [u8],
    framer: &mut Framer,
    source: Option<SocketAddr>,
    transport: Transport,
    sender: &ChunkSender,
    settings: &Settings,
) {
    let until = std::time::Instant::now() + settings.readers.get().drain_for;
    while std::time::Instant::now() < until {
        // Unconstrained: a spent task budget must not pass for an empty socket.
        let n = tokio::task::unconstrained(ready_now(io, buf)).await;
        match n {
            Some(n) if n > 0 => {
                if !hand_over(framer, &buf[..n], source, transport, sender, settings).await {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// One read if bytes are there now: `Some(0)` at EOF, `None` when the read would wait or
/// failed.
async fn ready_now<R: AsyncRead + Unpin>(io: &mut R, buf: &mut [u8]) -> Option<usize> {
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Some(rb.filled().len())),
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(None),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn settings(idle: Duration) -> Settings {
        let readers = crate::listen::ReaderConfig {
            limits: crate::parse::Limits {
                max_line: 16,
                ..Default::default()
            },
            max_datagram: 1432,
            aggregate: Default::default(),
            allow: Default::default(),
            drain_for: Duration::from_secs(1),
            heartbeats: None,
        };
        Settings {
            telemetry: Arc::new(Telemetry::new(1)),
            readers: crate::live::Live::new(readers),
            idle,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Everything the ingest channel got, in order.
    fn received(rx: &mut tokio::sync::mpsc::Receiver<Chunk>) -> Vec<u8> {
        let mut all = Vec::new();
        while let Ok(c) = rx.try_recv() {
            all.extend(c.lines);
        }
        all
    }

    #[test]
    fn lines_an_over_long_line_and_the_final_line_at_eof() {
        runtime().block_on(async {
            let s = settings(Duration::from_secs(30));
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let (_stop_tx, stop) = watch::channel(false);
            let (mut peer, io) = tokio::io::duplex(64);
            let served =
                tokio::spawn(async move { serve(io, None, Transport::Tcp, &tx, &s, stop).await });
            peer.write_all(b"a:1|c\n").await.unwrap();
            peer.write_all(&[b'x'; 100]).await.unwrap();
            peer.write_all(b"\nb:2|c\nc:3|c").await.unwrap();
            drop(peer);
            assert_eq!(served.await.unwrap(), None);
            assert_eq!(received(&mut rx), b"a:1|c\nb:2|c\nc:3|c\n");
        });
    }

    #[test]
    fn silence_is_idle_and_the_partial_line_is_kept() {
        runtime().block_on(async {
            let s = settings(Duration::from_millis(50));
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let (_stop_tx, stop) = watch::channel(false);
            let (mut peer, io) = tokio::io::duplex(64);
            peer.write_all(b"a:1|c\nb:2").await.unwrap();
            let outcome = serve(io, None, Transport::Tcp, &tx, &s, stop).await;
            assert_eq!(outcome, Some(ConnOutcome::Idle));
            assert_eq!(received(&mut rx), b"a:1|c\nb:2\n");
        });
    }

    #[test]
    fn at_stop_what_is_already_readable_is_read() {
        runtime().block_on(async {
            let s = settings(Duration::from_secs(30));
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let (stop_tx, stop) = watch::channel(false);
            let (mut peer, io) = tokio::io::duplex(64);
            stop_tx.send_replace(true);
            peer.write_all(b"a:1|c\nb:2|c").await.unwrap();
            let outcome = serve(io, None, Transport::Tcp, &tx, &s, stop).await;
            assert_eq!(outcome, None);
            assert_eq!(received(&mut rx), b"a:1|c\nb:2|c\n");
            drop(peer);
        });
    }
}
