//! Reload: SIGHUP (or `POST /-/reload` from `statsgate reload`) reads the configuration file
//! and the environment again, and applies what changed to the running pipeline without
//! losing the open interval, gauges, rate bases, the liveness table, the queue or the spool.
//!
//! Owns: the order of a reload (load and validate; refuse a key that cannot change live,
//! naming it and why; prepare everything that can fail; only then apply), its outcome on
//! `statsgate_reloads_total` and `/healthz`, and the service manager's RELOADING/READY
//! around it. Must never: apply part of a configuration that failed (the old one runs on
//! whole), or show a value (a message names keys; secrets are compared, never printed).

mod keys;

use super::{Shared, checked_default_dimensions, forwarding, stages, streams};
use crate::admin::ReloadTrigger;
use crate::config::{self, Config};
use crate::telemetry::Transport;
use crate::telemetry::reload::ReloadOutcome;
pub use keys::{Apply, apply_of};
use std::time::{Duration, Instant};

/// The running stages a reload may change.
pub struct Pipeline {
    pub config: Config,
    pub caps: config::ConnectionCaps,
    pub reload_trigger: ReloadTrigger,
    pub readers: stages::Readers,
    pub streams: streams::RunningStreams,
    pub output: stages::Output,
    pub flush: stages::Flush,
    pub admin: stages::Admin,
    pub http: stages::HttpIngest,
    /// `None` only while a reload restarts them.
    pub probes: Option<crate::probes::ProbesHandle>,
    pub checks: Option<crate::checks::ChecksHandle>,
}

impl Pipeline {
    /// The service manager's STATUS= line.
    pub fn listening(&self) -> String {
        format!(
            "listening: statsd udp {}, streams {}, http {}, admin {}; flushing every {} to {}",
            self.readers.addr,
            self.streams.shown(),
            stages::shown(self.http.addr()),
            stages::shown(self.admin.addr()),
            humantime::format_duration(self.config.flush.interval.get()),
            self.output.name,
        )
    }
}

/// How long the old readers may take to drain when `statsd.listen` moves.
const REBIND_DRAIN: Duration = Duration::from_secs(10);

/// Reloads, records and logs the outcome, and tells the service manager; returns the
/// outcome and its message (for `statsgate reload`).
pub fn reload(
    p: &mut Pipeline,
    shared: &mut Shared,
    options: &super::Options,
) -> (ReloadOutcome, String) {
    crate::service::reloading();
    let (outcome, message) = match attempt(p, shared, options) {
        Ok(done) => done,
        Err(e) => (ReloadOutcome::Failed, format!("{e:#}")),
    };
    shared
        .telemetry
        .reloads
        .record(outcome, &message, crate::clock::now_ms() / 1000);
    match outcome {
        ReloadOutcome::Applied | ReloadOutcome::Unchanged => {
            tracing::info!(outcome = outcome.label(), "reload: {message}")
        }
        ReloadOutcome::Failed | ReloadOutcome::Refused => tracing::error!(
            outcome = outcome.label(),
            "reload: {message}; still running with the previous configuration"
        ),
    }
    crate::service::ready(&p.listening());
    (outcome, message)
}

/// Why a change cannot apply live, beyond the key table: switching a stage on or off.
fn switches(old: &Config, new: &Config) -> Vec<String> {
    let mut refused = Vec::new();
    if old.forwards() != new.forwards()
        || old.keystone.auth_url.is_empty() != new.keystone.auth_url.is_empty()
    {
        refused.push(
            "monasca.url/keystone.auth_url: switching between the console and Monasca (or Keystone on and off) needs a restart"
                .to_owned(),
        );
    }
    for (key, was, now) in [
        (
            "statsd.tcp_listen",
            &old.statsd.tcp_listen,
            &new.statsd.tcp_listen,
        ),
        (
            "statsd.tls_listen",
            &old.statsd.tls_listen,
            &new.statsd.tls_listen,
        ),
        (
            "statsd.unix_listen",
            &old.statsd.unix_listen,
            &new.statsd.unix_listen,
        ),
        (
            "statsd.unix_stream_listen",
            &old.statsd.unix_stream_listen,
            &new.statsd.unix_stream_listen,
        ),
        ("http.listen", &old.http.listen, &new.http.listen),
        ("admin.listen", &old.admin.listen, &new.admin.listen),
    ] {
        if was.is_empty() != now.is_empty() {
            refused.push(format!(
                "{key}: turning a listener on or off needs a restart"
            ));
        }
    }
    if old.http.tls_cert.is_empty() != new.http.tls_cert.is_empty() {
        refused.push("http.tls_cert: turning HTTPS on or off needs a restart".to_owned());
    }
    refused
}

fn attempt(
    p: &mut Pipeline,
    shared: &mut Shared,
    options: &super::Options,
) -> anyhow::Result<(ReloadOutcome, String)> {
    let new = config::load_reporting(options.config_path.as_deref(), config::utf8_env())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?
        .config;
    let changed = keys::changed(&p.config, &new);
    let mut refused: Vec<String> = changed
        .iter()
        .filter_map(|k| match apply_of(k) {
            Apply::Refused(why) => Some(format!("{k}: {why}")),
            _ => None,
        })
        .collect();
    refused.extend(switches(&p.config, &new));
    if !refused.is_empty() {
        return Ok((ReloadOutcome::Refused, refused.join("; ")));
    }
    let is = |key: &str| changed.iter().any(|k| k == key);
    let section = |s: &str| changed.iter().any(|k| k.split('.').next() == Some(s));

    // Prepare: everything that can fail, before anything changes.
    let defaults = checked_default_dimensions(&new)?;
    let readers = stages::reader_config(&new, shared, &defaults)?;
    let http_allow = match p.http.allow() {
        Some(_) => Some(stages::http_allow(&new)?),
        None => None,
    };
    // Certificates are read on every reload, changed paths or not: rotation keeps the paths.
    let statsd_tls = match p.streams.tls() {
        Some(_) => Some(crate::listen::tcp::tls_config(&new)?),
        None => None,
    };
    let http_tls = match (p.http.tls(), config::http_tls(&new)) {
        (Some(_), Some(files)) => Some(
            crate::http::tls::config(&files)
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::http::tls::key(e.file)))?,
        ),
        _ => None,
    };
    let udp = if is("statsd.listen") {
        Some(stages::bind_udp(&new, shared.readers)?)
    } else {
        None
    };
    let mut streams = Vec::new();
    for (transport, key, value) in [
        (Transport::Tcp, "statsd.tcp_listen", &new.statsd.tcp_listen),
        (Transport::Tls, "statsd.tls_listen", &new.statsd.tls_listen),
    ] {
        if is(key) {
            streams.push((transport, key, p.streams.bind_new(key, value)?));
        }
    }
    let mut unix_sockets = Vec::new();
    for key in ["statsd.unix_listen", "statsd.unix_stream_listen"] {
        if is(key) {
            unix_sockets.push((key, p.streams.bind_new_unix(key, &new)?));
        }
    }
    // New listeners next: bound (and serving) before the old ones close, stopped again if
    // a later step fails.
    let admin = if is("admin.listen") {
        let trigger = Some(p.reload_trigger.clone());
        Some(stages::Admin::start(&new, shared, p.caps.admin, trigger)?)
    } else {
        None
    };
    let http = if is("http.listen") {
        match stages::HttpIngest::start(&new, shared, p.caps.http) {
            Ok(h) => Some(h),
            Err(e) => {
                admin.into_iter().for_each(|a| a.stop(shared));
                return Err(e);
            }
        }
    } else {
        None
    };
    // The Keystone switch last: it is the one step that cannot be undone.
    let upstream = match prepare_upstream(&changed, &new, p, shared) {
        Ok(u) => u,
        Err(e) => {
            admin.into_iter().for_each(|a| a.stop(shared));
            http.into_iter().for_each(|h| h.stop(shared));
            return Err(e);
        }
    };

    // Apply: nothing below fails (a stage that cannot restart is noted, the rest applies).
    let mut notes: Vec<String> = Vec::new();
    if let Some(admin) = admin {
        std::mem::replace(&mut p.admin, admin).stop(shared);
    }
    if let Some(http) = http {
        std::mem::replace(&mut p.http, http).stop(shared);
    }
    for (transport, key, socket) in streams {
        if let Err(e) = p.streams.move_to(transport, socket) {
            notes.push(format!("{key}: {e:#}"));
        }
    }
    for (key, socket) in unix_sockets {
        if let Err(e) = p.streams.move_unix(socket, Instant::now() + REBIND_DRAIN) {
            notes.push(format!("{key}: {e:#}"));
        }
    }
    p.readers.config.replace(readers);
    shared
        .budget
        .set_limits(new.aggregate.max_series, new.aggregate.max_series_per_name);
    p.flush.update(stages::flush_settings(&new, &defaults));
    if let (Some(allow), Some(list)) = (p.http.allow(), http_allow) {
        allow.replace(list);
    }
    if let (Some(holder), Some(tls)) = (p.streams.tls(), statsd_tls) {
        holder.replace(tls);
        notes.push("statsd TLS certificate re-read".to_owned());
    }
    if let (Some(holder), Some(tls)) = (p.http.tls(), http_tls) {
        holder.replace(tls);
        notes.push("HTTPS certificate re-read".to_owned());
    }
    if is("log.level")
        && let Some(set) = &options.set_log_level
        && let Err(e) = set(&new.log.level)
    {
        notes.push(format!("log.level: {e}; the old filter runs on"));
    }
    if let Some((forwarder, client, settings)) = upstream {
        forwarder.set_upstream(client, settings);
    }
    let defaults_changed = defaults != shared.defaults;
    shared.defaults = defaults;
    if section("probes") || defaults_changed {
        if let Some(old) = p.probes.take() {
            old.stop();
        }
        // Validated at load; a start that still fails (a thread) leaves the stage off.
        match stages::start_probes(&new, shared) {
            Ok(probes) => p.probes = Some(probes),
            Err(e) => notes.push(format!("probes: {e:#}; the stage is stopped")),
        }
    }
    if section("checks") || defaults_changed {
        if let Some(old) = p.checks.take() {
            old.stop();
        }
        match stages::start_checks(&new, shared) {
            Ok(checks) => p.checks = Some(checks),
            Err(e) => notes.push(format!("checks: {e:#}; the stage is stopped")),
        }
    }
    if let Some(listener) = udp {
        p.readers
            .rebind(listener, shared, Instant::now() + REBIND_DRAIN)?;
    }
    p.config = new;
    if changed.is_empty() {
        let mut message = "configuration unchanged".to_owned();
        for n in notes {
            message.push_str("; ");
            message.push_str(&n);
        }
        return Ok((ReloadOutcome::Unchanged, message));
    }
    let applied: Vec<String> = changed
        .iter()
        .map(|k| format!("{k} ({})", apply_of(k).describe()))
        .chain(notes)
        .collect();
    Ok((
        ReloadOutcome::Applied,
        format!("applied {}", applied.join(", ")),
    ))
}

/// The new HTTP client and Monasca settings when an upstream key changed, after a token
/// from the new Keystone settings (if those changed) replaced the old one.
#[allow(clippy::type_complexity)]
fn prepare_upstream(
    changed: &[String],
    new: &Config,
    p: &Pipeline,
    shared: &Shared,
) -> anyhow::Result<
    Option<(
        std::sync::Arc<crate::forward::Forwarder>,
        reqwest::Client,
        crate::forward::ForwardSettings,
    )>,
> {
    if !changed.iter().any(|k| apply_of(k) == Apply::Upstream) {
        return Ok(None);
    }
    let Some(forwarder) = p.output.forwarder() else {
        return Ok(None);
    };
    let client = forwarding::http_client(new)?;
    let keystone_changed = changed
        .iter()
        .any(|k| k.starts_with("keystone.") || k == "monasca.ca_file");
    if keystone_changed && let Some(auth) = shared.telemetry.auth.get() {
        // A new token first: on failure the old credentials and token stay. Bounded, since
        // the main thread that answers SIGTERM waits for it.
        let timeout = new.keystone.timeout.get();
        let switched = shared.runtime.block_on(async {
            tokio::time::timeout(timeout, auth.switch(client.clone(), new.keystone.clone())).await
        });
        match switched {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("keystone: the new credentials got no token: {e}"),
            Err(_) => anyhow::bail!(
                "keystone: no token for the new credentials within keystone.timeout ({})",
                humantime::format_duration(timeout)
            ),
        }
    }
    Ok(Some((forwarder, client, forwarding::forward_settings(new))))
}
