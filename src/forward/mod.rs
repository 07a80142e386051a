//! Forward: from flushed batches to `POST /v2.0/metrics`, through a bounded queue.
//!
//! Owns: the queue between the flush thread and the senders, the senders (at most
//! `monasca.concurrency` POSTs in flight), the retry policy in `policy`, the use of the disk
//! spool (`spooler`: outage routing and ordered replay), and the count of every outcome.
//! Must never: block the flush thread or the receive path on the network (a full queue
//! spills to the spool or refuses and counts), retry a request the API refused on its
//! merits, or log a token.

pub mod policy;
mod queue;
mod spooler;
mod stats;

pub use crate::reason::BatchDrop;
pub use queue::Queue;
pub use spooler::Spooler;
pub use stats::ForwardStats;

use crate::auth::{Auth, Token, check_roles};
use crate::batch::{self, Batch, Limits, Rendered};
use crate::secret::redact_url;
use crate::sink::Sink;
use crate::upstream;
use policy::{Action, Backoff};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Where and how to POST.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// `monasca.url`; empty: the token's catalog.
    pub url: String,
    pub tenant_id: String,
    pub delegate_roles: Vec<String>,
    /// Fixed once the senders are spawned: [`Forwarder::set_upstream`] ignores it.
    pub concurrency: usize,
    pub timeout: Duration,
    pub backoff: Backoff,
}

/// The sink the flusher hands batches to: packs them and queues them (or spools them),
/// never waiting on the network.
pub struct ForwardSink {
    pub queue: Arc<Queue>,
    pub limits: Limits,
    pub stats: Arc<ForwardStats>,
    pub spooler: Option<Arc<Spooler>>,
}

impl ForwardSink {
    fn queue_or_spool(&self, batch: Batch) {
        // In an outage the disk keeps it across a crash; memory is the fallback if the
        // disk fails, and the drop is counted only when both are out.
        if let Some(sp) = &self.spooler
            && sp.in_outage()
            && sp.put(&batch)
        {
            return;
        }
        let refused = match self.queue.push(batch) {
            Ok(()) => return,
            Err(refused) => refused,
        };
        match &self.spooler {
            Some(sp) if sp.put(&refused) => {}
            Some(_) => self.stats.drop_batch(BatchDrop::SpoolError, &refused),
            None => {
                self.stats.drop_batch(BatchDrop::BufferFull, &refused);
                self.stats.log_once("buffer_full", || {
                    tracing::error!("buffer.max_bytes is full: Monasca is not keeping up; batches are being dropped")
                });
            }
        }
    }
}

impl Sink for ForwardSink {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        let (batches, too_large) = batch::pack(&metrics, self.limits);
        self.stats
            .drop_metrics(BatchDrop::TooLarge, too_large as u64);
        for b in batches {
            self.queue_or_spool(b);
        }
        self.stats.set_queue(self.queue.len(), self.queue.bytes());
        Ok(())
    }
}

/// How a batch is being sent: from the memory queue, or replayed from the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Replay,
}

/// What `deliver` left to do.
enum Delivery {
    /// Delivered, dropped and counted, or (live) spooled or queued again: nothing left.
    Done,
    /// A replayed batch was refused as too large: its halves, for the replay stream to put
    /// back on disk before the record is acked (in memory, a crash would lose them).
    Split(Batch, Batch),
}

/// The client and settings one POST attempt uses.
struct Upstream {
    client: reqwest::Client,
    settings: ForwardSettings,
}

impl Upstream {
    async fn backoff(&self, attempt: &mut u32) {
        tokio::time::sleep(self.settings.backoff.delay(*attempt, fastrand::f64())).await;
        *attempt = attempt.saturating_add(1);
    }
}

/// The senders: each pops a batch and sees it through to an outcome.
pub struct Forwarder {
    pub queue: Arc<Queue>,
    pub stats: Arc<ForwardStats>,
    auth: Option<Arc<Auth>>,
    /// Replaced whole by [`Forwarder::set_upstream`]; each attempt takes its own snapshot.
    upstream: std::sync::RwLock<Arc<Upstream>>,
    concurrency: usize,
    spooler: Option<Arc<Spooler>>,
    /// Batches being sent by live senders, so the end of the grace period can spool them.
    in_flight: std::sync::Mutex<std::collections::HashMap<u64, Batch>>,
    next_flight: std::sync::atomic::AtomicU64,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Forwarder {
    pub fn new(
        queue: Arc<Queue>,
        stats: Arc<ForwardStats>,
        client: reqwest::Client,
        auth: Option<Arc<Auth>>,
        settings: ForwardSettings,
        spooler: Option<Arc<Spooler>>,
    ) -> Arc<Self> {
        Arc::new(Forwarder {
            queue,
            stats,
            auth,
            concurrency: settings.concurrency,
            upstream: std::sync::RwLock::new(Arc::new(Upstream { client, settings })),
            spooler,
            in_flight: Default::default(),
            next_flight: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Changes where and how batches are POSTed (a reload): the URL, tenant, delegate roles,
    /// timeout, backoff and HTTP client apply to every attempt that starts after the call;
    /// POSTs in flight finish as they began. The queue, the spool and the counters carry on.
    /// `settings.concurrency` is ignored: the senders are already running, so the caller
    /// refuses a reload that changes it.
    pub fn set_upstream(&self, client: reqwest::Client, settings: ForwardSettings) {
        let fresh = Arc::new(Upstream { client, settings });
        *self.upstream.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    fn upstream(&self) -> Arc<Upstream> {
        Arc::clone(&self.upstream.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Batch>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `concurrency` senders (and the spool's replay stream) on the current runtime.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    while let Some(batch) = me.queue.pop().await {
                        let flight = me.next_flight.fetch_add(1, Relaxed);
                        me.flights().insert(flight, batch.clone());
                        me.stats.in_flight(batch.metrics as i64);
                        let _ = me.deliver(&batch, Mode::Live).await;
                        me.stats.in_flight(-(batch.metrics as i64));
                        me.flights().remove(&flight);
                        me.queue.done(&batch);
                        me.stats.set_queue(me.queue.len(), me.queue.bytes());
                    }
                })
            })
            .collect();
        if let Some(sp) = &self.spooler {
            let (me, sp) = (Arc::clone(self), Arc::clone(sp));
            if let Some(period) = sp.spool.sync_period() {
                let (me, sp) = (Arc::clone(&me), Arc::clone(&sp));
                tasks.push(tokio::spawn(async move { me.sync_timer(sp, period).await }));
            }
            tasks.push(tokio::spawn(async move { me.replay(sp).await }));
        }
        tasks
    }

    /// `buffer.spool_fsync: <d>`: every `d`, syncs what was written and not yet synced, so the
    /// tail of a burst is not left unsynced until the next append. Ends at shutdown (which
    /// syncs the spool itself).
    async fn sync_timer(self: Arc<Self>, sp: Arc<Spooler>, period: Duration) {
        let mut stopping = self.stopping.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stopping.changed() => return,
            }
            if *stopping.borrow() {
                return;
            }
            let spool = Arc::clone(&sp.spool);
            match tokio::task::spawn_blocking(move || spool.sync_unsynced()).await {
                Ok(Ok(_)) => sp.update_gauges(),
                Ok(Err(e)) => self.stats.log_once("spool_sync", || {
                    tracing::error!(error = %e, "cannot fsync the disk spool; retrying every buffer.spool_fsync")
                }),
                Err(_) => return,
            }
        }
    }

    /// The replay stream: oldest spooled batch first, one at a time, paced; retried with
    /// backoff while Monasca is down (it is the probe that ends an outage).
    async fn replay(self: Arc<Self>, sp: Arc<Spooler>) {
        let mut stopping = self.stopping.subscribe();
        let mut last_expiry = Instant::now();
        loop {
            if *stopping.borrow() {
                return;
            }
            if last_expiry.elapsed() >= spooler::EXPIRE_EVERY {
                last_expiry = Instant::now();
                let sp = Arc::clone(&sp);
                let _ = tokio::task::spawn_blocking(move || sp.expire()).await;
            }
            let taken = {
                let spool = Arc::clone(&sp.spool);
                tokio::task::spawn_blocking(move || spool.take()).await
            };
            let record = match taken {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = sp.wait_for_append(Duration::from_secs(1)) => {}
                        _ = stopping.changed() => {}
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    self.stats.log_once(
                        "spool_read",
                        || tracing::error!(error = %e, "cannot read the disk spool; retrying"),
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            let started = Instant::now();
            let delivered = tokio::select! {
                d = self.deliver(&record.batch, Mode::Replay) => Some(d),
                _ = stopping.changed() => None,
            };
            let spool = Arc::clone(&sp.spool);
            let Some(delivery) = delivered else {
                // Shutting down mid-POST: it stays spooled, first in line next time.
                let evicted = spool.release(record.id);
                sp.released(evicted);
                return;
            };
            if let Delivery::Split(a, b) = delivery {
                self.respool_halves(&sp, &record, a, b).await;
                continue;
            }
            self.stats.replayed(&record.batch);
            let id = record.id;
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.ack(id)).await {
                self.stats.log_once("spool_ack", || {
                    tracing::error!(error = %e, "cannot record a replayed batch as sent; it may be sent again after a restart")
                });
            }
            sp.update_gauges();
            let pause = sp.pace(record.batch.metrics, started.elapsed());
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopping.changed() => {}
                }
            }
        }
    }

    /// A replayed batch got a 413: its halves replace it on disk (appended, then the record
    /// acked), so a crash at any moment keeps them. If the disk refuses, the halves go to the
    /// front of the memory queue as a live batch's would (kept while the process lives).
    async fn respool_halves(
        &self,
        sp: &Arc<Spooler>,
        record: &crate::spool::SpooledBatch,
        a: Batch,
        b: Batch,
    ) {
        let (me, id, created_ms) = (Arc::clone(sp), record.id, record.created_ms);
        let (a2, b2) = (a.clone(), b.clone());
        let replaced =
            tokio::task::spawn_blocking(move || me.replace(id, [&a2, &b2], created_ms)).await;
        if matches!(replaced, Ok(true)) {
            return;
        }
        self.queue.push_front(b);
        self.queue.push_front(a);
        let spool = Arc::clone(&sp.spool);
        let _ = tokio::task::spawn_blocking(move || spool.ack(id)).await;
        sp.update_gauges();
    }

    /// Closes the queue and lets the senders drain it until `deadline`. With a spool, what
    /// is still queued or in flight then is spooled (in-flight ones may be sent twice, and
    /// are counted so); without one, or if the disk fails, it is dropped and counted as
    /// `shutdown`. Returns how many metrics were lost so.
    pub async fn shutdown(
        &self,
        mut senders: Vec<tokio::task::JoinHandle<()>>,
        deadline: Instant,
    ) -> u64 {
        self.queue.close();
        let _ = self.stopping.send(true);
        // Leave time to write the rest to disk before the grace runs out.
        let spool_by = match &self.spooler {
            Some(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                deadline - (left / 4).min(Duration::from_secs(1))
            }
            None => deadline,
        };
        let spool_by = tokio::time::Instant::from_std(spool_by);
        for s in senders.iter_mut() {
            if tokio::time::timeout_at(spool_by, &mut *s).await.is_err() {
                break;
            }
        }
        for s in &senders {
            s.abort();
        }
        let queued = self.queue.drain();
        let in_flight: Vec<Batch> = self.flights().drain().map(|(_, b)| b).collect();
        let lost_in_flight: u64 = in_flight.iter().map(|b| b.metrics as u64).sum();
        let _ = self.stats.take_in_flight();
        let mut unsent = 0u64;
        for (b, was_in_flight) in queued
            .iter()
            .map(|b| (b, false))
            .chain(in_flight.iter().map(|b| (b, true)))
        {
            let spooled = match &self.spooler {
                Some(sp) => sp.put_async(b).await,
                None => false,
            };
            if spooled {
                if was_in_flight {
                    self.stats
                        .possible_duplicates
                        .fetch_add(b.metrics as u64, Relaxed);
                }
            } else {
                self.stats.drop_batch(BatchDrop::Shutdown, b);
                unsent += b.metrics as u64;
            }
        }
        if let Some(sp) = &self.spooler {
            let spool = Arc::clone(&sp.spool);
            let _ = tokio::task::spawn_blocking(move || spool.sync()).await;
        }
        if unsent > 0 {
            tracing::error!(
                metrics = unsent,
                in_flight = lost_in_flight,
                "shutdown.grace ran out with metrics still unsent"
            );
        }
        unsent
    }

    /// One batch to its outcome: delivered, dropped under a named reason, (live, with a
    /// spool, while Monasca fails) spooled, or split after a 413 (live: both halves queued
    /// first in line; replay: returned for the replay stream to put back on disk).
    async fn deliver(&self, batch: &Batch, mode: Mode) -> Delivery {
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            let token = match &self.auth {
                None => None,
                Some(auth) => match auth.token().await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.stats.log_once("auth", || {
                            tracing::error!(error = %e, "cannot get a Keystone token; batches wait in the buffer")
                        });
                        if self.spill(batch, mode).await {
                            return Delivery::Done;
                        }
                        self.upstream().backoff(&mut attempt).await;
                        continue;
                    }
                },
            };
            // Taken after the token, which may have waited on Keystone: a reload meanwhile
            // applies to this attempt.
            let upstream = self.upstream();
            let settings = &upstream.settings;
            if let Some(t) = &token
                && check_roles(t, &settings.tenant_id, &settings.delegate_roles).tenant_refused
            {
                self.stats.drop_batch(BatchDrop::TenantRefused, batch);
                self.stats.log_once("tenant", || {
                    tracing::error!(
                        "monasca.tenant_id is set but the token has none of monasca.delegate_roles; \
                         refusing to post (the API would store the metrics under the token's own project)"
                    )
                });
                return Delivery::Done;
            }
            let Some(url) = metrics_url_for(settings, token.as_deref()) else {
                self.stats.log_once("no_url", || {
                    tracing::error!("no Monasca URL: set monasca.url or register a `monitoring` endpoint in the catalog")
                });
                if self.spill(batch, mode).await {
                    return Delivery::Done;
                }
                upstream.backoff(&mut attempt).await;
                continue;
            };
            let Answer {
                status,
                body,
                location,
            } = self.post(&upstream, &url, token.as_deref(), batch).await;
            let action = policy::classify(status, &body);
            if !matches!(action, Action::Retry | Action::Redirected)
                && let Some(sp) = &self.spooler
            {
                // Monasca answered on the merits: it is up.
                sp.outage_ended();
            }
            match action {
                Action::Delivered => {
                    self.stats.delivered(batch);
                    return Delivery::Done;
                }
                Action::Reauthenticate if !reauthenticated && token.is_some() => {
                    reauthenticated = true;
                    self.stats.reauthentications.fetch_add(1, Relaxed);
                    if let (Some(auth), Some(t)) = (&self.auth, &token) {
                        auth.invalidate(t).await;
                    }
                }
                Action::Reauthenticate | Action::Retry | Action::Redirected => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    if action == Action::Redirected {
                        self.stats.log_once("post_redirect", || {
                            tracing::error!(
                                status = status.unwrap_or(0),
                                location = %location.as_deref().unwrap_or(""),
                                url = %redact_url(&url),
                                "Monasca answered with a redirect; statsgate does not follow \
                                 redirects (set monasca.url to the final URL); retrying with backoff"
                            )
                        });
                    } else if let Some(code) = status {
                        self.stats.log_once("post_status", || {
                            tracing::warn!(
                                status = code,
                                "Monasca answered with an error; retrying with backoff"
                            )
                        });
                    }
                    if action != Action::Reauthenticate && self.spill(batch, mode).await {
                        return Delivery::Done;
                    }
                    upstream.backoff(&mut attempt).await;
                    reauthenticated = false;
                }
                Action::Forbidden => {
                    self.stats.drop_batch(BatchDrop::Forbidden, batch);
                    self.stats.log_once("forbidden", || {
                        tracing::error!(
                            body = %String::from_utf8_lossy(&body[..body.len().min(500)]),
                            "Monasca answered Forbidden: the token's roles may not post metrics; \
                             give the user the monasca-agent role on its project"
                        )
                    });
                    return Delivery::Done;
                }
                Action::Split => match batch::split(batch) {
                    Some((a, b)) => {
                        self.stats.splits.fetch_add(1, Relaxed);
                        if mode == Mode::Replay {
                            return Delivery::Split(a, b);
                        }
                        self.queue.push_front(b);
                        self.queue.push_front(a);
                        return Delivery::Done;
                    }
                    None => {
                        self.stats.drop_batch(BatchDrop::TooLarge, batch);
                        return Delivery::Done;
                    }
                },
                Action::Refused => {
                    self.stats.drop_batch(BatchDrop::Refused, batch);
                    tracing::warn!(
                        status = status.unwrap_or(0),
                        body = %String::from_utf8_lossy(&body[..body.len().min(500)]),
                        metrics = batch.metrics,
                        "Monasca refused a batch; it is dropped"
                    );
                    return Delivery::Done;
                }
            }
        }
    }

    /// Monasca or Keystone failed: a live batch moves to the spool (when there is one and it
    /// can be written) and the outage begins. The replay stream keeps retrying instead.
    async fn spill(&self, batch: &Batch, mode: Mode) -> bool {
        let Some(sp) = &self.spooler else {
            return false;
        };
        sp.outage_began();
        mode == Mode::Live && sp.put_async(batch).await
    }

    /// One POST: exactly `application/json`, a fixed-length body, the token if any. The
    /// answer's body is read up to [`upstream::MONASCA_ANSWER_CAP`].
    async fn post(
        &self,
        upstream: &Upstream,
        url: &str,
        token: Option<&Token>,
        batch: &Batch,
    ) -> Answer {
        let mut request = upstream
            .client
            .post(url)
            .timeout(upstream.settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone());
        if let Some(t) = token
            && let Ok(mut value) = reqwest::header::HeaderValue::from_str(t.value.expose())
        {
            value.set_sensitive(true);
            request = request.header("X-Auth-Token", value);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let tls = upstream::tls_failure(&e).is_some();
                let kind = if e.is_timeout() {
                    "timeout"
                } else if tls {
                    "tls_error"
                } else {
                    "connection_error"
                };
                if tls {
                    // Does not heal by itself unless the server's certificate changes: louder.
                    self.stats.log_once("post_tls", || {
                        tracing::error!(error = %upstream::describe(e), "POST to Monasca failed (TLS); retrying with backoff, batches wait in the buffer (and the disk spool, if configured)")
                    });
                } else {
                    self.stats.log_once("post_failed", || {
                        tracing::warn!(error = %upstream::describe(e), "POST to Monasca failed; retrying with backoff")
                    });
                }
                self.stats.posted(kind, started.elapsed());
                return Answer::default();
            }
        };
        let status = response.status().as_u16();
        let location = (300..400)
            .contains(&status)
            .then(|| upstream::location(&response));
        let body = upstream::read_capped(response, upstream::MONASCA_ANSWER_CAP)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        self.stats
            .posted(status_label(Some(status)), started.elapsed());
        Answer {
            status: Some(status),
            body,
            location,
        }
    }
}

/// `…/v2.0/metrics[?tenant_id=…]` from `monasca.url` or the token's catalog.
fn metrics_url_for(settings: &ForwardSettings, token: Option<&Token>) -> Option<String> {
    let base = if settings.url.is_empty() {
        token?.monasca_url.clone()?
    } else {
        settings.url.clone()
    };
    let mut url = metrics_url(&base);
    if !settings.tenant_id.is_empty() {
        url.push_str("?tenant_id=");
        url.push_str(&settings.tenant_id);
    }
    Some(url)
}

/// What one POST got back (`status: None`: no answer at all).
#[derive(Default)]
struct Answer {
    status: Option<u16>,
    body: bytes::Bytes,
    location: Option<String>,
}

fn status_label(status: Option<u16>) -> &'static str {
    match status {
        Some(204) => "204",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400) => "400",
        Some(401) => "401",
        Some(413) => "413",
        Some(422) => "422",
        Some(400..=499) => "4xx",
        Some(500) => "500",
        Some(503) => "503",
        Some(_) => "5xx",
        None => "none",
    }
}

/// Accepts the API base (`…/v2.0`), the full path, or a bare host URL.
pub fn metrics_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v2.0/metrics") {
        base.to_owned()
    } else if base.ends_with("/v2.0") {
        format!("{base}/metrics")
    } else {
        format!("{base}/v2.0/metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_url_forms() {
        assert_eq!(
            metrics_url("http://m:8070/v2.0"),
            "http://m:8070/v2.0/metrics"
        );
        assert_eq!(
            metrics_url("http://m:8070/v2.0/"),
            "http://m:8070/v2.0/metrics"
        );
        assert_eq!(
            metrics_url("http://m:8070/v2.0/metrics"),
            "http://m:8070/v2.0/metrics"
        );
        assert_eq!(metrics_url("http://m:8070"), "http://m:8070/v2.0/metrics");
    }
}
