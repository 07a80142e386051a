//! Checks on the ingest-side settings: source allow-lists, the HTTP listener, heartbeats.

use super::validate::{Invalid, bad};
use super::{ByteSize, Config, Duration};

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
