//! Checks on the ingest-side settings: source allow-lists, the HTTP and admin listeners
//! (timeouts, body budget, connection caps against the open-files limit), heartbeats.

use super::validate::{Invalid, bad};
use super::{ByteSize, Config, Duration};

/// File descriptors the gateway keeps for itself beyond its listeners' connections: stdio,
/// the runtime's epoll and wakers, connections to Keystone and Monasca, spool and checkpoint
/// files, `/proc` reads. One more per statsd reader socket is added to this.
pub const RESERVED_FDS: u64 = 64;

/// The largest connection cap `http.max_connections: 0` derives.
const AUTO_HTTP_CONNECTIONS_MAX: u64 = 4096;

/// Fewest HTTP connections worth running with; an automatic cap below it is refused.
const HTTP_CONNECTIONS_MIN: u64 = 16;

/// The connection caps in force for both listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub http: usize,
    pub admin: usize,
}

/// This process's open-files limit (soft RLIMIT_NOFILE); `u64::MAX` when unlimited.
pub fn fd_limit() -> u64 {
    crate::sys::open_files_limit()
}

/// The caps for `nofile` open files: an explicit `http.max_connections` is checked, `0`
/// derived, so that both listeners at their caps still leave the gateway its reserve (a
/// flood of one listener must never starve the other, or the gateway's own sockets).
pub fn connection_caps(c: &Config, nofile: u64) -> Result<ConnectionCaps, Invalid> {
    let readers = match c.statsd.readers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    } as u64;
    let reserve = RESERVED_FDS + readers;
    let admin = if c.admin.listen.is_empty() {
        0
    } else {
        c.admin.max_connections as u64
    };
    let s = &c.statsd;
    let streams =
        if s.tcp_listen.is_empty() && s.tls_listen.is_empty() && s.unix_stream_listen.is_empty() {
            0
        } else {
            s.tcp_max_connections as u64
        };
    // The statsd stream listeners' connections count as the admin port's do.
    let admin_and_streams = admin + streams;
    let room = nofile
        .saturating_sub(reserve)
        .saturating_sub(admin_and_streams);
    let http = match c.http.max_connections as u64 {
        0 => {
            let derived = room.min(AUTO_HTTP_CONNECTIONS_MAX);
            if derived < HTTP_CONNECTIONS_MIN && !c.http.listen.is_empty() {
                return Err((
                    "http.max_connections".into(),
                    format!(
                        "the open-files limit ({nofile}) leaves {derived} connections after the \
                         gateway's reserve ({reserve}), admin.max_connections ({admin}) and \
                         statsd.tcp_max_connections ({streams}); raise `ulimit -n` or lower \
                         those"
                    ),
                ));
            }
            derived
        }
        n if !c.http.listen.is_empty() && n > room => {
            return Err((
                "http.max_connections".into(),
                format!(
                    "{n} connections with admin.max_connections ({admin}), \
                     statsd.tcp_max_connections ({streams}) and the gateway's reserve \
                     ({reserve}) exceed the open-files limit ({nofile}); lower it or raise \
                     `ulimit -n`"
                ),
            ));
        }
        n => n,
    };
    Ok(ConnectionCaps {
        http: http as usize,
        admin: admin as usize,
    })
}

fn timeout(key: &str, d: Duration) -> Result<(), Invalid> {
    if d < Duration::millis(100) || d > Duration::secs(600) {
        bad(key, format!("must be between 100ms and 10m (got {d})"))?;
    }
    Ok(())
}

/// Parses an allow-list; a bare address is its own /32 or /128 network.
pub fn networks(list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{s:?} is not a network like 10.0.0.0/8 or an address"))
        })
        .collect()
}

pub fn validate(c: &Config) -> Result<(), Invalid> {
    for (key, list) in [
        ("statsd.allow", &c.statsd.allow),
        ("http.allow", &c.http.allow),
    ] {
        if let Err(e) = networks(list) {
            bad(key, e)?;
        }
    }
    if !c.http.listen.is_empty() && c.http.listen.parse::<std::net::SocketAddr>().is_err() {
        bad(
            "http.listen",
            format!(
                "must be an IP address and port, like 127.0.0.1:8080 (got {:?})",
                c.http.listen
            ),
        )?;
    }
    if c.http.max_body < ByteSize::kib(1) || c.http.max_body > ByteSize::mib(64) {
        bad(
            "http.max_body",
            format!("must be between 1KiB and 64MiB (got {})", c.http.max_body),
        )?;
    }
    let http = &c.http;
    timeout("http.header_timeout", http.header_timeout)?;
    timeout("http.body_timeout", http.body_timeout)?;
    timeout("http.idle_timeout", http.idle_timeout)?;
    if http.body_budget < http.max_body || http.body_budget > ByteSize::gib(4) {
        bad(
            "http.body_budget",
            format!(
                "must be between http.max_body ({}) and 4GiB (got {})",
                http.max_body, http.body_budget
            ),
        )?;
    }
    if http.max_connections > 1_000_000 {
        bad(
            "http.max_connections",
            format!("must be at most 1000000 (got {})", http.max_connections),
        )?;
    }
    let admin = &c.admin;
    timeout("admin.header_timeout", admin.header_timeout)?;
    timeout("admin.idle_timeout", admin.idle_timeout)?;
    if !(1..=10_000).contains(&admin.max_connections) {
        bad(
            "admin.max_connections",
            format!(
                "must be between 1 and 10000 (got {})",
                admin.max_connections
            ),
        )?;
    }
    connection_caps(c, fd_limit())?;
    if c.buffer.max_pending < ByteSize::kib(64) {
        bad(
            "buffer.max_pending",
            format!("must be at least 64KiB (got {})", c.buffer.max_pending),
        )?;
    }
    let b = &c.buffer;
    if b.spool_max_bytes < c.monasca.max_batch_bytes {
        bad(
            "buffer.spool_max_bytes",
            format!(
                "must hold at least one batch, monasca.max_batch_bytes = {} (got {})",
                c.monasca.max_batch_bytes, b.spool_max_bytes
            ),
        )?;
    }
    if b.spool_max_age < Duration::secs(1) {
        bad(
            "buffer.spool_max_age",
            format!("must be at least 1s (got {})", b.spool_max_age),
        )?;
    }
    if let super::SpoolFsync::Every(d) = b.spool_fsync
        && d.get().is_zero()
    {
        bad("buffer.spool_fsync", "use `always` rather than 0s")?;
    }
    let h = &c.heartbeat;
    if h.expected_interval < Duration::millis(100) {
        bad(
            "heartbeat.expected_interval",
            format!("must be at least 100ms (got {})", h.expected_interval),
        )?;
    }
    if h.expire_after < h.expected_interval {
        bad(
            "heartbeat.expire_after",
            "must be at least heartbeat.expected_interval",
        )?;
    }
    if h.max_senders == 0 {
        bad("heartbeat.max_senders", "must be at least 1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml_http_max: usize, admin_max: usize, readers: usize) -> Config {
        let mut c = Config::default();
        c.http.max_connections = yaml_http_max;
        c.admin.max_connections = admin_max;
        c.statsd.readers = readers;
        c
    }

    #[test]
    fn automatic_cap_leaves_the_reserve_and_the_admin_port() {
        let caps = connection_caps(&config(0, 32, 2), 256).unwrap();
        assert_eq!(
            caps,
            ConnectionCaps {
                http: 256 - 64 - 2 - 32,
                admin: 32
            }
        );
        let caps = connection_caps(&config(0, 32, 2), 1_048_576).unwrap();
        assert_eq!(caps.http, 4096, "bounded even with a huge limit");
        assert_eq!(
            connection_caps(&config(0, 32, 2), u64::MAX).unwrap().http,
            4096
        );
    }

    #[test]
    fn too_few_files_or_an_explicit_cap_beyond_them_is_refused_naming_the_key() {
        let (key, msg) = connection_caps(&config(0, 32, 2), 100).unwrap_err();
        assert_eq!(key, "http.max_connections");
        assert!(msg.contains("ulimit -n"), "{msg}");
        let (key, _) = connection_caps(&config(200, 32, 2), 256).unwrap_err();
        assert_eq!(key, "http.max_connections");
        assert_eq!(connection_caps(&config(150, 32, 2), 256).unwrap().http, 150);
    }

    #[test]
    fn disabled_listeners_need_no_room() {
        let mut c = config(0, 32, 2);
        c.admin.listen.clear();
        assert_eq!(connection_caps(&c, 256).unwrap().admin, 0);
        c.http.listen.clear();
        assert!(connection_caps(&c, 10).is_ok());
    }
}
