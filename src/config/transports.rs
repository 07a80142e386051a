//! Checks on the statsd transports beyond UDP (TCP, TLS, Unix sockets) and on TLS for the
//! HTTP listener. Certificates and keys are parsed here, at load, so a bad file stops
//! start-up (or a reload) naming its key rather than failing the first handshake.

use super::validate::{Invalid, bad};
use super::{Config, Duration};
use crate::tls::{TlsFile, TlsFiles};
use std::net::SocketAddr;
use std::path::Path;

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// The statsd TLS listener's files as configured.
pub fn statsd_tls(c: &Config) -> TlsFiles {
    TlsFiles {
        cert: c.statsd.tls_cert.clone(),
        key: c.statsd.tls_key.clone(),
        client_ca: c.statsd.tls_client_ca.clone(),
    }
}

/// The HTTP listener's TLS files, or `None` when it serves plain HTTP.
pub fn http_tls(c: &Config) -> Option<TlsFiles> {
    (!c.http.tls_cert.is_empty()).then(|| TlsFiles {
        cert: c.http.tls_cert.clone(),
        key: c.http.tls_key.clone(),
        client_ca: c.http.tls_client_ca.clone(),
    })
}

/// `statsd.unix_mode` as a mode (validated at load).
pub fn unix_mode(c: &Config) -> u32 {
    parse_mode(&c.statsd.unix_mode).unwrap_or(0o666)
}

fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

fn address(key: &str, value: &str) -> Result<(), Invalid> {
    if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
        bad(
            key,
            format!("must be an IP address and port, like 127.0.0.1:8125 (got {value:?})"),
        )?;
    }
    Ok(())
}

fn socket_path(key: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > SUN_PATH_MAX {
        bad(
            key,
            format!(
                "a Unix socket path holds at most {SUN_PATH_MAX} bytes (got {})",
                value.len()
            ),
        )?;
    }
    let path = Path::new(value);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bad(
            key,
            format!("the directory {} does not exist", parent.display()),
        )?;
    }
    Ok(())
}

/// A TLS listener's files: both of cert and key, each parsed; the keys are named
/// `<prefix>.tls_cert`, `<prefix>.tls_key`, `<prefix>.tls_client_ca`.
fn tls_files(prefix: &str, files: &TlsFiles) -> Result<(), Invalid> {
    if files.cert.is_empty() || files.key.is_empty() {
        let missing = if files.cert.is_empty() {
            "tls_cert"
        } else {
            "tls_key"
        };
        bad(
            format!("{prefix}.{missing}"),
            "TLS needs both tls_cert and tls_key".to_owned(),
        )?;
    }
    if let Err(e) = crate::tls::server_config(files, &[]) {
        let key = match e.file {
            TlsFile::Cert => "tls_cert",
            TlsFile::Key => "tls_key",
            TlsFile::ClientCa => "tls_client_ca",
        };
        bad(format!("{prefix}.{key}"), e.message)?;
    }
    Ok(())
}

pub fn validate(c: &Config) -> Result<(), Invalid> {
    let s = &c.statsd;
    address("statsd.tcp_listen", &s.tcp_listen)?;
    address("statsd.tls_listen", &s.tls_listen)?;
    if !s.tcp_listen.is_empty() && s.tcp_listen == s.tls_listen && !s.tls_listen.ends_with(":0") {
        bad(
            "statsd.tls_listen",
            "must differ from statsd.tcp_listen".to_owned(),
        )?;
    }
    if !(1..=1_000_000).contains(&s.tcp_max_connections) {
        bad(
            "statsd.tcp_max_connections",
            format!(
                "must be between 1 and 1000000 (got {})",
                s.tcp_max_connections
            ),
        )?;
    }
    if s.tcp_idle_timeout < Duration::secs(1) || s.tcp_idle_timeout > Duration::secs(86_400) {
        bad(
            "statsd.tcp_idle_timeout",
            format!("must be between 1s and 24h (got {})", s.tcp_idle_timeout),
        )?;
    }
    if s.tls_listen.is_empty() {
        for (key, value) in [
            ("statsd.tls_cert", &s.tls_cert),
            ("statsd.tls_key", &s.tls_key),
            ("statsd.tls_client_ca", &s.tls_client_ca),
        ] {
            if !value.is_empty() {
                bad(key, "is set but statsd.tls_listen is empty".to_owned())?;
            }
        }
    } else {
        tls_files("statsd", &statsd_tls(c))?;
    }
    socket_path("statsd.unix_listen", &s.unix_listen)?;
    socket_path("statsd.unix_stream_listen", &s.unix_stream_listen)?;
    if !s.unix_listen.is_empty() && s.unix_listen == s.unix_stream_listen {
        bad(
            "statsd.unix_stream_listen",
            "must differ from statsd.unix_listen".to_owned(),
        )?;
    }
    if parse_mode(&s.unix_mode).is_none() {
        bad(
            "statsd.unix_mode",
            format!(
                "must be an octal file mode up to 0777, like \"0660\" (got {:?})",
                s.unix_mode
            ),
        )?;
    }
    let h = &c.http;
    if h.tls_cert.is_empty() && h.tls_key.is_empty() {
        if !h.tls_client_ca.is_empty() {
            bad(
                "http.tls_client_ca",
                "is set but http.tls_cert is empty".to_owned(),
            )?;
        }
    } else {
        tls_files(
            "http",
            &TlsFiles {
                cert: h.tls_cert.clone(),
                key: h.tls_key.clone(),
                client_ca: h.tls_client_ca.clone(),
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_text() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("666"), Some(0o666));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("1777"), None);
        assert_eq!(parse_mode(""), None);
    }
}
