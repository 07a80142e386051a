//! The statsd transports beyond UDP as one stage: TCP, TLS, the Unix datagram and stream
//! sockets, on a runtime of their own so that neither a flood of connections nor a stalled
//! TLS peer slows the I/O runtime that serves HTTP and forwards to Monasca.
//!
//! Owns: the order (bind all before anything runs; stop accepting before the final flush)
//! and the stream connection limit they share. Must never: hold transport logic (that is
//! `listen::tcp`, `listen::unix`).

use super::Shared;
use crate::aggregate::Shard;
use crate::config::Config;
use crate::listen::{LiveReaders, tcp, unix};
use crate::telemetry::Transport;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Bound, not yet accepting.
pub struct Streams {
    tcp: tcp::Bound,
    unix: unix::Bound,
    runtime: Option<tokio::runtime::Runtime>,
}

fn any_configured(config: &Config) -> bool {
    let s = &config.statsd;
    [
        &s.tcp_listen,
        &s.tls_listen,
        &s.unix_listen,
        &s.unix_stream_listen,
    ]
    .iter()
    .any(|v| !v.is_empty())
}

impl Streams {
    pub fn bind(
        config: &Config,
        shared: &Shared,
        readers: &LiveReaders,
    ) -> anyhow::Result<Streams> {
        // Sockets are registered with the runtime they are bound in.
        let runtime = if any_configured(config) {
            Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("statsgate-streams")
                    .enable_all()
                    .build()
                    .context("starting the statsd streams runtime")?,
            )
        } else {
            None
        };
        let connections = Arc::new(tokio::sync::Semaphore::new(
            config.statsd.tcp_max_connections,
        ));
        let _guard = runtime.as_ref().map(|r| r.enter());
        let tcp = tcp::bind(config, readers, &shared.telemetry, &connections)?;
        let unix = unix::bind(config, readers, &shared.telemetry, &connections)?;
        drop(_guard);
        Ok(Streams { tcp, unix, runtime })
    }

    /// The ingest shards the flusher takes along with the UDP readers'.
    pub fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        let mut shards = self.tcp.shards();
        shards.extend(self.unix.shards());
        shards
    }

    pub fn start(self) -> anyhow::Result<RunningStreams> {
        let Some(runtime) = self.runtime else {
            return Ok(RunningStreams {
                tcp: None,
                unix: None,
                runtime: None,
            });
        };
        let tcp = self.tcp.start(runtime.handle())?;
        let unix = self.unix.start(runtime.handle())?;
        Ok(RunningStreams {
            tcp: Some(tcp),
            unix: Some(unix),
            runtime: Some(runtime),
        })
    }
}

/// Accepting and reading.
pub struct RunningStreams {
    tcp: Option<tcp::Running>,
    unix: Option<unix::Running>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningStreams {
    /// For the start-up log: (tcp, tls) addresses and (unix, unix stream) paths.
    pub fn shown(&self) -> String {
        let (tcp, tls) = self.tcp.as_ref().map_or((None, None), |t| t.addrs());
        let (unix, unix_stream) = self.unix.as_ref().map_or((None, None), |u| u.paths());
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
        let path = |p: Option<PathBuf>| p.map(|p| p.display().to_string());
        let parts: Vec<String> = [
            ("tcp", addr(tcp)),
            ("tls", addr(tls)),
            ("unix", path(unix)),
            ("unix_stream", path(unix_stream)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    }

    /// A socket bound at `statsd.tcp_listen` (or `statsd.tls_listen`) of `config` for
    /// [`RunningStreams::move_to`], when a reload changed that key.
    pub fn bind_new(&self, key: &str, value: &str) -> anyhow::Result<tokio::net::TcpListener> {
        let tcp = self
            .tcp
            .as_ref()
            .with_context(|| format!("{key}: turning a stream listener on needs a restart"))?;
        let addr: SocketAddr = value
            .parse()
            .with_context(|| format!("{key}: {value:?} is not an address"))?;
        tcp.bind_new(addr, key)
    }

    /// Moves the TCP (or TLS) listener to `socket`; the other stream listeners and every
    /// open connection carry on.
    pub fn move_to(
        &mut self,
        transport: Transport,
        socket: tokio::net::TcpListener,
    ) -> anyhow::Result<SocketAddr> {
        match self.tcp.as_mut() {
            Some(tcp) => tcp.move_to(transport, socket),
            None => anyhow::bail!("turning a stream listener on needs a restart"),
        }
    }

    /// A socket bound at the new path of `key` (`statsd.unix_listen`,
    /// `statsd.unix_stream_listen`) in `config`, for [`RunningStreams::move_unix`].
    pub fn bind_new_unix(&self, key: &str, config: &Config) -> anyhow::Result<unix::NewSocket> {
        let (Some(unix), Some(runtime)) = (self.unix.as_ref(), self.runtime.as_ref()) else {
            anyhow::bail!("{key}: turning a listener on needs a restart");
        };
        let s = &config.statsd;
        let path = if key == "statsd.unix_listen" {
            &s.unix_listen
        } else {
            &s.unix_stream_listen
        };
        let _guard = runtime.enter();
        unix::Running::bind_new(
            unix,
            key,
            std::path::Path::new(path),
            crate::config::unix_mode(config),
            s.recv_buffer.bytes() as usize,
        )
    }

    /// Moves a Unix socket to its new path (see [`unix::Running::move_to`]).
    pub fn move_unix(&mut self, socket: unix::NewSocket, deadline: Instant) -> anyhow::Result<()> {
        match self.unix.as_mut() {
            Some(u) => u.move_to(socket, deadline),
            None => anyhow::bail!("turning a listener on needs a restart"),
        }
    }

    /// The TLS listener's certificate holder (`statsd.tls_listen`), for a reload.
    pub fn tls(&self) -> Option<Arc<crate::tls::ServerTls>> {
        self.tcp.as_ref().and_then(|t| t.tls())
    }

    /// Stops accepting and reading; every connection's lines read so far reach the shards
    /// before the final flush. False if something was still running at `deadline`.
    pub fn stop(self, deadline: Instant) -> bool {
        let tcp = self.tcp.is_none_or(|t| t.stop(deadline));
        let unix = self.unix.is_none_or(|u| u.stop(deadline));
        if let Some(rt) = self.runtime {
            rt.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        tcp && unix
    }
}
