//! Forward: from flushed batches to `POST /v2.0/metrics`, through a bounded queue.
//!
//! Owns: the queue between the flush thread and the senders, the senders (at most
//! `monasca.concurrency` POSTs in flight), the retry policy in `policy`, and the count of every
//! outcome. Must never: block the flush thread or the receive path (a full queue refuses and
//! counts), retry a request the API refused on its merits, or log a token.

pub mod policy;
mod queue;
mod stats;

pub use crate::reason::BatchDrop;
pub use queue::Queue;
pub use stats::ForwardStats;

use crate::auth::{Auth, Token, check_roles, error_chain};
use crate::batch::{self, Batch, Limits, Rendered};
use crate::sink::Sink;
use policy::{Action, Backoff};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to POST.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// `monasca.url`; empty: the token's catalog.
    pub url: String,
    pub tenant_id: String,
    pub delegate_roles: Vec<String>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub backoff: Backoff,
}

/// The sink the flusher hands batches to: packs them and queues them, never waiting.
pub struct ForwardSink {
    pub queue: Arc<Queue>,
    pub limits: Limits,
    pub stats: Arc<ForwardStats>,
}

impl Sink for ForwardSink {
    fn submit(&mut self, metrics: Rendered) -> std::io::Result<()> {
        let (batches, too_large) = batch::pack(&metrics, self.limits);
        self.stats
            .drop_metrics(BatchDrop::TooLarge, too_large as u64);
        for b in batches {
            if let Err(refused) = self.queue.push(b) {
                self.stats.drop_batch(BatchDrop::BufferFull, &refused);
                self.stats.log_once("buffer_full", || {
                    tracing::error!("buffer.max_bytes is full: Monasca is not keeping up; batches are being dropped")
                });
            }
        }
        self.stats.set_queue(self.queue.len(), self.queue.bytes());
        Ok(())
    }
}

/// The senders: each pops a batch and sees it through to an outcome.
pub struct Forwarder {
    pub queue: Arc<Queue>,
    pub stats: Arc<ForwardStats>,
    client: reqwest::Client,
    auth: Option<Arc<Auth>>,
    settings: ForwardSettings,
}

impl Forwarder {
    pub fn new(
        queue: Arc<Queue>,
        stats: Arc<ForwardStats>,
        client: reqwest::Client,
        auth: Option<Arc<Auth>>,
        settings: ForwardSettings,
    ) -> Arc<Self> {
        Arc::new(Forwarder {
            queue,
            stats,
            client,
            auth,
            settings,
        })
    }

    /// Starts `concurrency` senders on the current tokio runtime.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings.concurrency)
            .map(|_| {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    while let Some(batch) = me.queue.pop().await {
                        me.stats.in_flight(batch.metrics as i64);
                        me.deliver(&batch).await;
                        me.stats.in_flight(-(batch.metrics as i64));
                        me.queue.done(&batch);
                        me.stats.set_queue(me.queue.len(), me.queue.bytes());
                    }
                })
            })
            .collect()
    }

    /// Closes the queue and lets the senders drain it until `deadline`; whatever is still
    /// queued or in flight then is dropped and counted as `shutdown`.
    pub async fn shutdown(&self, mut senders: Vec<tokio::task::JoinHandle<()>>, deadline: Instant) {
        self.queue.close();
        let deadline = tokio::time::Instant::from_std(deadline);
        for s in senders.iter_mut() {
            if tokio::time::timeout_at(deadline, &mut *s).await.is_err() {
                break;
            }
        }
        for s in &senders {
            s.abort();
        }
        for b in self.queue.drain() {
            self.stats.drop_batch(BatchDrop::Shutdown, &b);
        }
        let lost = self.stats.take_in_flight();
        self.stats.drop_metrics(BatchDrop::Shutdown, lost);
        if lost > 0 {
            tracing::error!(
                metrics = lost,
                "shutdown.grace ran out with metrics still unsent"
            );
        }
    }

    /// One batch to its outcome: delivered, or dropped under a named reason.
    async fn deliver(&self, batch: &Batch) {
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
                        self.backoff(&mut attempt).await;
                        continue;
                    }
                },
            };
            if let Some(t) = &token
                && check_roles(t, &self.settings.tenant_id, &self.settings.delegate_roles)
                    .tenant_refused
            {
                self.stats.drop_batch(BatchDrop::TenantRefused, batch);
                self.stats.log_once("tenant", || {
                    tracing::error!(
                        "monasca.tenant_id is set but the token has none of monasca.delegate_roles; \
                         refusing to post (the API would store the metrics under the token's own project)"
                    )
                });
                return;
            }
            let Some(url) = self.metrics_url(token.as_deref()) else {
                self.stats.log_once("no_url", || {
                    tracing::error!("no Monasca URL: set monasca.url or register a `monitoring` endpoint in the catalog")
                });
                self.backoff(&mut attempt).await;
                continue;
            };
            let (status, body) = self.post(&url, token.as_deref(), batch).await;
            match policy::classify(status, &body) {
                Action::Delivered => {
                    self.stats.delivered(batch);
                    return;
                }
                Action::Reauthenticate if !reauthenticated && token.is_some() => {
                    reauthenticated = true;
                    self.stats
                        .reauthentications
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let (Some(auth), Some(t)) = (&self.auth, &token) {
                        auth.invalidate(t).await;
                    }
                }
                Action::Reauthenticate | Action::Retry => {
                    self.stats
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(code) = status {
                        self.stats.log_once("post_status", || {
                            tracing::warn!(
                                status = code,
                                "Monasca answered with an error; retrying with backoff"
                            )
                        });
                    }
                    self.backoff(&mut attempt).await;
                    reauthenticated = false;
                }
                Action::Forbidden => {
                    self.stats.drop_batch(BatchDrop::Forbidden, batch);
                    self.stats.log_once("forbidden", || {
                        tracing::error!(
                            body = %String::from_utf8_lossy(&body),
                            "Monasca answered Forbidden: the token's roles may not post metrics; \
                             give the user the monasca-agent role on its project"
                        )
                    });
                    return;
                }
                Action::Split => match batch::split(batch) {
                    Some((a, b)) => {
                        self.stats
                            .splits
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.queue.push_front(b);
                        self.queue.push_front(a);
                        return;
                    }
                    None => {
                        self.stats.drop_batch(BatchDrop::TooLarge, batch);
                        return;
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
                    return;
                }
            }
        }
    }

    async fn backoff(&self, attempt: &mut u32) {
        tokio::time::sleep(self.settings.backoff.delay(*attempt, fastrand::f64())).await;
        *attempt = attempt.saturating_add(1);
    }

    /// `…/v2.0/metrics[?tenant_id=…]` from `monasca.url` or the token's catalog.
    fn metrics_url(&self, token: Option<&Token>) -> Option<String> {
        let base = if self.settings.url.is_empty() {
            token?.monasca_url.clone()?
        } else {
            self.settings.url.clone()
        };
        let mut url = metrics_url(&base);
        if !self.settings.tenant_id.is_empty() {
            url.push_str("?tenant_id=");
            url.push_str(&self.settings.tenant_id);
        }
        Some(url)
    }

    /// One POST: exactly `application/json`, a fixed-length body, the token if any.
    async fn post(
        &self,
        url: &str,
        token: Option<&Token>,
        batch: &Batch,
    ) -> (Option<u16>, bytes::Bytes) {
        let mut request = self
            .client
            .post(url)
            .timeout(self.settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone());
        if let Some(t) = token {
            request = request.header("X-Auth-Token", t.value.expose());
        }
        let started = Instant::now();
        let outcome = request.send().await;
        let result = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                (Some(status), body)
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection_error"
                };
                self.stats.log_once("post_failed", || {
                    tracing::warn!(error = %error_chain(&e), "POST to Monasca failed; retrying with backoff")
                });
                self.stats.posted(kind, started.elapsed());
                return (None, bytes::Bytes::new());
            }
        };
        self.stats.posted(status_label(result.0), started.elapsed());
        result
    }
}

fn status_label(status: Option<u16>) -> &'static str {
    match status {
        Some(204) => "204",
        Some(200..=299) => "2xx",
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
