//! The HTTP servers as stages: the admin port and the HTTP ingest listener, each bound from
//! its config section and stopped within a short bound.
//!
//! Owns: binding them, the handles a reload swaps (allow-list, TLS certificate), and how they
//! are told to stop. Must never: hold routes or request handling (that is `admin`, `http`).

use super::{Shared, optional_addr};
use crate::allow::AllowList;
use crate::config::Config;
use crate::live::Live;
use crate::{admin, http};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopped HTTP server may take to finish its connections.
const SERVER_STOP: Duration = Duration::from_millis(500);

/// A served HTTP listener (admin or ingest), or none when its address is empty.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn stop(self, shared: &Shared) {
        let _ = self.stop.send(());
        shared.runtime.block_on(async {
            let _ = tokio::time::timeout(SERVER_STOP, self.task).await;
        });
    }
}

/// The channel that tells a server to stop, and the future it waits on.
fn stop_channel() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async {
        let _ = rx.await;
    })
}

/// The admin port: `/healthz`, `/metrics`, `/api/...`.
pub struct Admin(Option<Server>);

impl Admin {
    pub fn start(
        config: &Config,
        shared: &Shared,
        cap: usize,
        reload: Option<admin::ReloadTrigger>,
    ) -> anyhow::Result<Admin> {
        let Some(addr) = optional_addr("admin.listen", &config.admin.listen)? else {
            return Ok(Admin(None));
        };
        let (stop, stopped) = stop_channel();
        let settings =
            admin::Settings::from_config(&config.admin, cap, config.flush.interval.get());
        let (addr, task) = shared
            .runtime
            .block_on(admin::serve(
                addr,
                Arc::clone(&shared.telemetry),
                Some(Arc::clone(&shared.heartbeats)),
                settings,
                reload,
                stopped,
            ))
            .with_context(|| format!("admin.listen: cannot bind TCP {addr}"))?;
        Ok(Admin(Some(Server { addr, stop, task })))
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.0.as_ref().map(|s| s.addr)
    }

    pub fn stop(self, shared: &Shared) {
        if let Some(s) = self.0 {
            s.stop(shared);
        }
    }
}

/// The HTTP ingest listener: `/beat`, `/status`, `/v2.0/metrics`; and its TLS config holder
/// when it serves HTTPS.
pub struct HttpIngest {
    server: Option<Server>,
    tls: Option<Arc<crate::tls::ServerTls>>,
    allow: Option<Arc<Live<AllowList>>>,
}

impl HttpIngest {
    pub fn start(config: &Config, shared: &Shared, cap: usize) -> anyhow::Result<HttpIngest> {
        let Some(addr) = optional_addr("http.listen", &config.http.listen)? else {
            return Ok(HttpIngest {
                server: None,
                tls: None,
                allow: None,
            });
        };
        let allow = Live::new(http_allow(config)?);
        let state = http::HttpState {
            beats: Arc::clone(&shared.heartbeats),
            passthrough: Arc::clone(&shared.passthrough),
            allow: Arc::clone(&allow),
            stats: Arc::clone(&shared.telemetry.http),
            rainbow: Arc::clone(&shared.rainbow),
            history: shared.telemetry.history.get().cloned(),
        };
        let (stop, stopped) = stop_channel();
        let mut settings = http::Settings::from_config(&config.http, addr, cap);
        settings.liz_dimensions = shared.defaults.clone();
        settings.liz_max_skew = config.heartbeat.max_skew.get();
        settings.tls = crate::config::http_tls(config)
            .map(|files| http::tls::load(&files))
            .transpose()?;
        let tls = settings.tls.clone();
        let c = &config.checks;
        if !c.rainbow_path.is_empty() && http::metrics_endpoint_on(c.rainbow_endpoint, addr) {
            settings.rainbow_path = Some(c.rainbow_path.clone());
            settings.rainbow_dimensions = shared.defaults.clone();
        }
        let (addr, task) = shared
            .runtime
            .block_on(http::serve(addr, state, settings, stopped))
            .with_context(|| format!("http.listen: cannot bind TCP {addr}"))?;
        Ok(HttpIngest {
            server: Some(Server { addr, stop, task }),
            tls,
            allow: Some(allow),
        })
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// Where the HTTPS listener takes each new connection's certificate: a reload calls
    /// `replace(http::tls::config(&files)?)` on it. `None` when it serves plain HTTP.
    pub fn tls(&self) -> Option<Arc<crate::tls::ServerTls>> {
        self.tls.clone()
    }

    /// `http.allow` as the listener checks it at each accept; `None` when it is off.
    pub fn allow(&self) -> Option<&Arc<Live<AllowList>>> {
        self.allow.as_ref()
    }

    pub fn stop(self, shared: &Shared) {
        if let Some(s) = self.server {
            s.stop(shared);
        }
    }
}

/// `http.allow` from `config`.
pub fn http_allow(config: &Config) -> anyhow::Result<AllowList> {
    Ok(AllowList::new(
        crate::config::networks(&config.http.allow)
            .map_err(|e| anyhow::anyhow!("http.allow: {e}"))?,
    ))
}
