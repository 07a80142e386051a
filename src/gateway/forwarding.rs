//! Start-up of the Monasca path: the HTTP client, the token cache, the queue and the senders,
//! and the first authentication that reports roles and the endpoint once, clearly.

use crate::auth::{self, Auth, check_roles};
use crate::batch;
use crate::config::Config;
use crate::config::SpoolFsync;
use crate::forward::{
    ForwardSettings, ForwardSink, ForwardStats, Forwarder, Queue, Spooler, policy::Backoff,
};
use crate::secret::redact_url;
use crate::spool::{Fsync, Spool, SpoolSettings};
use crate::telemetry::Telemetry;
use crate::upstream;
use anyhow::{Context, bail};
use std::sync::Arc;

/// Builds the Monasca sink and senders, and authenticates once so that a role problem shows
/// at start-up. Keystone being down is not fatal: batches wait in the buffer.
pub async fn start_forwarding(
    config: &Config,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<(ForwardSink, Arc<Forwarder>, String)> {
    let (m, k) = (&config.monasca, &config.keystone);
    let client = http_client(config)?;
    let auth = (!k.auth_url.is_empty()).then(|| Arc::new(Auth::new(client.clone(), k.clone())));
    if let Some(a) = &auth {
        let _ = telemetry.auth.set(Arc::clone(a));
        check_first_token(a, config).await?;
    } else {
        tracing::warn!("monasca.url is set without keystone.auth_url: POSTs carry no token");
    }
    let queue = Arc::new(Queue::new(config.buffer.max_bytes.bytes() as usize));
    let stats = Arc::clone(&telemetry.forward);
    let settings = forward_settings(config);
    let spooler = open_spool(config, &stats)?;
    let forwarder = Forwarder::new(
        Arc::clone(&queue),
        Arc::clone(&stats),
        client,
        auth,
        settings,
        spooler.clone(),
    );
    let limits = batch::Limits {
        max_metrics: m.max_batch_metrics,
        max_bytes: m.max_batch_bytes.bytes() as usize,
    };
    let name = if m.url.is_empty() {
        "monasca (from the Keystone catalog)".to_owned()
    } else {
        format!("monasca {}", redact_url(&m.url))
    };
    Ok((
        ForwardSink {
            queue,
            limits,
            stats,
            spooler,
        },
        forwarder,
        name,
    ))
}

/// Where and how the senders POST, from `monasca.*`: at start-up, and again on a reload.
pub fn forward_settings(config: &Config) -> ForwardSettings {
    let m = &config.monasca;
    ForwardSettings {
        url: m.url.clone(),
        tenant_id: m.tenant_id.clone(),
        delegate_roles: m.delegate_roles.clone(),
        concurrency: m.concurrency,
        timeout: m.timeout.get(),
        backoff: Backoff {
            initial: m.backoff_initial.get(),
            max: m.backoff_max.get(),
        },
    }
}

/// Segment files roll over at this size: small enough that evicting the oldest frees
/// space in modest steps.
const SPOOL_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Opens `buffer.spool_dir` (recovering what a previous run left), if configured.
fn open_spool(config: &Config, stats: &Arc<ForwardStats>) -> anyhow::Result<Option<Arc<Spooler>>> {
    let b = &config.buffer;
    if b.spool_dir.is_empty() {
        return Ok(None);
    }
    let settings = SpoolSettings {
        dir: b.spool_dir.clone().into(),
        max_bytes: b.spool_max_bytes.bytes(),
        max_age: b.spool_max_age.get(),
        segment_bytes: SPOOL_SEGMENT_BYTES
            .min(b.spool_max_bytes.bytes() / 4)
            .max(64 * 1024),
        fsync: match b.spool_fsync {
            SpoolFsync::Always => Fsync::Always,
            SpoolFsync::Never => Fsync::Never,
            SpoolFsync::Every(d) => Fsync::Every(d.get()),
        },
    };
    let (spool, recovery) = Spool::open(settings)
        .with_context(|| format!("buffer.spool_dir: cannot use {:?}", b.spool_dir))?;
    Ok(Some(Arc::new(Spooler::new(
        spool,
        &recovery,
        Arc::clone(stats),
        b.replay_rate,
    ))))
}

/// The Monasca URL this token leads to: `monasca.url`, else the catalog's.
fn endpoint(config: &Config, token: &auth::Token) -> Option<String> {
    if config.monasca.url.is_empty() {
        token.monasca_url.clone()
    } else {
        Some(config.monasca.url.clone())
    }
}

async fn check_first_token(auth: &Auth, config: &Config) -> anyhow::Result<()> {
    let token = match tokio::time::timeout(config.keystone.timeout.get(), auth.token()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) if e.is_refusal() => bail!("keystone: {e}"),
        // Not fatal: the server's certificate may be fixed while batches wait (and a wrong
        // statsgate setting loses nothing either: restart with it corrected).
        Ok(Err(e @ auth::AuthError::Tls { .. })) => {
            tracing::error!(error = %e, "TLS with Keystone failed; starting anyway, batches wait in the buffer (and the disk spool, if configured)");
            return Ok(());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Keystone is unavailable; starting anyway, batches wait in the buffer");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(
                "Keystone did not answer within keystone.timeout; starting anyway, batches wait in the buffer"
            );
            return Ok(());
        }
    };
    let report = check_roles(
        &token,
        &config.monasca.tenant_id,
        &config.monasca.delegate_roles,
    );
    if report.tenant_refused {
        bail!(
            "monasca.tenant_id: the token (roles {:?}) has none of monasca.delegate_roles {:?}; \
             Monasca would silently store the metrics under project {} instead",
            token.roles,
            config.monasca.delegate_roles,
            token.project_id
        );
    }
    if !report.may_post {
        tracing::error!(roles = ?token.roles, "the token has no role that may post metrics: grant monasca-agent");
    }
    if !report.broader.is_empty() {
        tracing::warn!(roles = ?report.broader, "the token holds more than it needs; monasca-agent alone is enough");
    }
    let endpoint = endpoint(config, &token);
    if endpoint.is_none() {
        tracing::error!(
            interface = %config.keystone.interface,
            region = %config.keystone.region_name,
            "no `monitoring` endpoint in the catalog and no monasca.url"
        );
    }
    tracing::info!(
        project = %token.project_name,
        project_id = %token.project_id,
        roles = ?token.roles,
        monasca = %endpoint.as_deref().map_or("none".into(), redact_url),
        "authenticated with Keystone"
    );
    Ok(())
}

/// `check-config --online`: authenticate and report what statsgate would use, never a secret.
pub fn check_online(config: &Config) -> anyhow::Result<String> {
    let k = &config.keystone;
    if k.auth_url.is_empty() {
        return Ok(if config.monasca.url.is_empty() {
            "no Keystone or Monasca configured: flushes go to the console sink\n".to_owned()
        } else {
            format!(
                "monasca: {} (no Keystone: POSTs carry no token)\n",
                redact_url(&config.monasca.url)
            )
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = http_client(config)?;
        let auth = Auth::new(client, k.clone());
        let token = auth.token().await.context("keystone")?;
        let report = check_roles(
            &token,
            &config.monasca.tenant_id,
            &config.monasca.delegate_roles,
        );
        let endpoint = endpoint(config, &token);
        let mut out = format!(
            "keystone: authenticated to project {} ({})\nroles: {}\nmonasca: {}\n",
            token.project_name,
            token.project_id,
            token.roles.join(", "),
            endpoint.as_deref().map_or_else(
                || "NONE: set monasca.url or add a `monitoring` endpoint to the catalog".into(),
                redact_url
            ),
        );
        if !report.may_post {
            out.push_str("PROBLEM: no role that may post metrics; grant monasca-agent\n");
        }
        if !report.broader.is_empty() {
            out.push_str(&format!(
                "warning: broader roles than needed: {}\n",
                report.broader.join(", ")
            ));
        }
        if report.tenant_refused {
            bail!("monasca.tenant_id: the token has none of monasca.delegate_roles");
        }
        Ok(out)
    })
}

/// The client for Keystone and Monasca: their CA bundles, and their URLs to check that
/// HTTPS can be verified. Also built again on a reload, with the new CA files.
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let (k, m) = (&config.keystone, &config.monasca);
    upstream::client(&[&k.ca_file, &m.ca_file], &[&k.auth_url, &m.url])
}
