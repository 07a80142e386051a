//! `statsgate reload`'s side of `POST /-/reload`: finds the running gateway from the
//! configuration's `admin.listen` and asks it to reload.
//!
//! Must never: follow a redirect or read an unbounded answer (the port may not be ours).

use crate::config::Config;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;

/// A reload reads files and may fetch a Keystone token: give it time.
const TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ANSWER: usize = 64 * 1024;

/// Whether the gateway applied the configuration (or found it unchanged), and its message.
pub fn reload(config: &Config) -> anyhow::Result<(bool, String)> {
    if config.admin.listen.is_empty() {
        bail!(
            "admin.listen is off in this configuration, so the gateway cannot be asked over HTTP; send it SIGHUP (systemctl reload statsgate, or kill -HUP <pid>)"
        );
    }
    let addr: SocketAddr =
        config.admin.listen.parse().with_context(|| {
            format!("admin.listen: {:?} is not an address", config.admin.listen)
        })?;
    let addr = crate::loadgen::reachable(addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let url = format!("http://{addr}/-/reload");
        let response = client
            .post(&url)
            .send()
            .await
            .with_context(|| format!("no gateway answered at {url} (admin.listen)"))?;
        let status = response.status();
        let (body, _) = crate::upstream::read_capped(response, MAX_ANSWER)
            .await
            .unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = answer
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{url} answered {status}"));
        match status.as_u16() {
            200 => Ok((true, message)),
            422 => Ok((false, message)),
            _ => bail!("{url} answered {status}: {message}"),
        }
    })
}
