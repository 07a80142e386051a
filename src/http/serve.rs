//! Serving HTTP/1.1 for both of the gateway's TCP listeners (`http.listen` and
//! `admin.listen`): one accept loop, one connection driver.
//!
//! Owns: the source allow-list at accept (a denied peer is closed before a byte is read),
//! the connection cap (a semaphore per listener; over it, closed at accept), then, when the
//! listener serves HTTPS, the TLS handshake on the connection's own task ([`super::tls`]),
//! hyper's header-read timeout, an idle timeout (no byte either way), a bound on each
//! connection's buffers, graceful shutdown, and the counters of all of these. Must never:
//! read a request body (that is the router's, under its own budget), block the runtime, or
//! spin on an accept error such as EMFILE.

use crate::allow::AllowList;
use crate::live::Live;
use crate::tls::ServerTls;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Most bytes hyper buffers per connection for a request head (and queued writes): the
/// largest head accepted, and a bound on what a slow client can pin. Larger heads get 431.
pub const MAX_CONNECTION_BUFFER: usize = 16 * 1024;

/// After an accept error (EMFILE, ENFILE, ENOBUFS...), wait this long before the next
/// accept, so that a full descriptor table does not turn the loop into a busy spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// How long open connections get to finish after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(2);

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// One listener's counters (all atomics: the accept loop and every connection write them).
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub refused_limit: AtomicU64,
    pub refused_denied: AtomicU64,
    pub accept_errors: AtomicU64,
    pub timeouts_header: AtomicU64,
    pub timeouts_body: AtomicU64,
    pub timeouts_idle: AtomicU64,
    /// Requests answered 413 (over `http.max_body`).
    pub refused_too_large: AtomicU64,
    /// Requests answered 503 because `http.body_budget` was spent.
    pub refused_busy: AtomicU64,
    /// HTTPS connections that never reached hyper: the handshake failed, did not finish
    /// within the header timeout, or the client spoke plain HTTP.
    pub tls_handshake_errors: AtomicU64,
    pub tls_handshake_timeouts: AtomicU64,
    pub tls_plain_http: AtomicU64,
}

/// What a listener is: its label in logs and counters, the allow-list checked at accept
/// (when given), and where each connection's TLS config comes from when it serves HTTPS
/// only.
pub struct Listener {
    pub name: &'static str,
    pub allow: Option<Arc<Live<AllowList>>>,
    pub tls: Option<Arc<ServerTls>>,
}

/// Binds `addr` and serves `router` on it, in plain HTTP, until `shutdown` completes.
/// `name` is the listener's label in logs and counters; `allow`, when given, is checked at
/// accept.
pub async fn serve(
    name: &'static str,
    addr: SocketAddr,
    router: Router,
    allow: Option<Arc<Live<AllowList>>>,
    limits: Limits,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = Listener {
        name,
        allow,
        tls: None,
    };
    serve_listener(listener, addr, router, limits, stats, shutdown).await
}

/// [`serve`] for any [`Listener`], HTTPS included.
pub async fn serve_listener(
    listener: Listener,
    addr: SocketAddr,
    router: Router,
    limits: Limits,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = TcpListener::bind(addr).await?;
    let local = socket.local_addr()?;
    let task = tokio::spawn(accept_loop(
        listener, socket, router, limits, stats, shutdown,
    ));
    Ok((local, task))
}

async fn accept_loop(
    Listener { name, allow, tls }: Listener,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Relaxed);
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warned = Some(Instant::now());
                    tracing::warn!(listener = name, error = %e, "cannot accept connections (is the open-files limit reached?)");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Dropping the stream closes it: no answer, no byte read, no buffer spent.
        // As it is now: a reload applies from the next connection.
        if let Some(allow) = &allow
            && !allow.get().permits(peer.ip())
        {
            stats.refused_denied.fetch_add(1, Relaxed);
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused_limit.fetch_add(1, Relaxed);
            continue;
        };
        stats.connections_accepted.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        // Taken now, so that a reload applies to the connections accepted after it.
        let tls = tls.as_ref().map(|t| t.current());
        let conn = open(
            stream,
            peer,
            tls,
            router.clone(),
            limits,
            Arc::clone(&stats),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back means every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
}

/// One accepted connection, on its own task: the TLS handshake first when the listener
/// serves HTTPS (bounded by the header timeout, cut at once by shutdown), then hyper.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: Limits,
    stats: Arc<ListenerStats>,
    mut stop: watch::Receiver<bool>,
) {
    stats.connections_open.fetch_add(1, Relaxed);
    match tls {
        None => connection(stream, peer, router, limits, &stats, stop).await,
        Some(config) => {
            let shake = super::tls::handshake(stream, peer, config, limits.header_timeout, &stats);
            let stream = tokio::select! {
                s = shake => s,
                _ = stop.changed() => None,
            };
            if let Some(stream) = stream {
                connection(stream, peer, router, limits, &stats, stop).await;
            }
        }
    }
    stats.connections_open.fetch_sub(1, Relaxed);
}

/// Drives one connection to its end: served, closed by the client, timed out, or shut down.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    stats: &ListenerStats,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(monotonic_ms()));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&service, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle_ms = limits.idle_timeout.as_millis() as u64;
    let mut draining = false;
    loop {
        let quiet_since = activity.load(Relaxed);
        let wake = quiet_since + idle_ms;
        let sleep = wake.saturating_sub(monotonic_ms());
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served
                    && e.is_timeout()
                {
                    stats.timeouts_header.fetch_add(1, Relaxed);
                }
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(sleep)) => {
                if monotonic_ms().saturating_sub(activity.load(Relaxed)) >= idle_ms {
                    stats.timeouts_idle.fetch_add(1, Relaxed);
                    break;
                }
            }
            changed = stop.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Milliseconds on a monotonic clock (since the first call), for idle tracking.
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A stream that records when a byte last moved, either way (for HTTPS: a plaintext byte).
struct Tracked<S> {
    inner: S,
    activity: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.activity.store(monotonic_ms(), Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut me.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            me.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            me.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            me.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
