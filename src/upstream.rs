//! Upstream HTTP: the one client that talks to Keystone and Monasca, and the bounded reading
//! of their answers.
//!
//! Owns: TLS roots (the system store plus configured PEM bundles), the no-redirect policy,
//! connect and pool timeouts, and size caps on answers. Must never: follow a redirect (a
//! redirected POST would re-send the password or the token to another origin, and a 302 to a
//! login page would turn a POST into a GET whose 200 looks like success), read an answer
//! without a bound, or fail for want of CA roots when no endpoint needs them.

use crate::secret::redact_url;
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// Monasca answers 204 with no body; errors carry a short JSON or HTML page. More is noise.
pub const MONASCA_ANSWER_CAP: usize = 64 * 1024;
/// A token body carries the catalog, which is large in big clouds (hundreds of KiB).
pub const KEYSTONE_ANSWER_CAP: usize = 4 * 1024 * 1024;

/// An HTTP client trusting the system roots plus the PEM bundles given (empty paths skipped),
/// never following redirects. With no root at all it still builds, so plain-`http://`
/// deployments and minimal images work; it refuses only when one of `https_urls` (the
/// configured Keystone and Monasca URLs) would then be unverifiable.
pub fn client(ca_files: &[&str], https_urls: &[&str]) -> anyhow::Result<reqwest::Client> {
    let mut roots = Vec::new();
    let mut bundles = 0;
    for path in ca_files.iter().filter(|p| !p.is_empty()) {
        let pem = std::fs::read(path).with_context(|| format!("reading CA bundle {path}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("parsing CA bundle {path}"))?;
        bundles += certs.len();
        roots.extend(certs);
    }
    // The system store (honours SSL_CERT_FILE / SSL_CERT_DIR). A missing store is not an
    // error here: it matters only for HTTPS endpoints, checked below.
    let system = rustls_native_certs::load_native_certs();
    let system_count = system.certs.len();
    roots.extend(
        system
            .certs
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
    );
    if let Some(url) = https_urls
        .iter()
        .find(|u| u.trim_start().to_ascii_lowercase().starts_with("https:"))
        && bundles == 0
        && system_count == 0
    {
        anyhow::bail!(
            "{}: HTTPS needs CA certificates, and this system has none (install the \
             ca-certificates package, or set keystone.ca_file / monasca.ca_file / OS_CACERT)",
            redact_url(url)
        );
    }
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        // monasca-api's gunicorn closes idle connections after 2 s; drop ours first.
        .pool_idle_timeout(Duration::from_secs(1))
        .user_agent(concat!("statsgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Reads at most `cap` bytes of an answer's body; the flag says whether more was left unread
/// (the connection is then dropped rather than drained).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

/// The `Location` of a redirect, printable: credentials removed, at most 200 characters.
pub fn location(response: &reqwest::Response) -> String {
    let raw = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "(no Location header)".to_owned());
    redact_url(&raw).chars().take(200).collect()
}

/// A reqwest error as one line: the cause chain, with the URL (which may hold credentials)
/// replaced by its redacted form.
pub fn describe(e: reqwest::Error) -> String {
    let url = e.url().map(|u| redact_url(u.as_str()).into_owned());
    let mut text = crate::auth::error_chain(&e.without_url());
    if let Some(url) = url {
        text.push_str(&format!(" ({url})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_any_root_for_plain_http() {
        // An explicit empty bundle list and no HTTPS URL: must build whatever the system has.
        assert!(client(&[], &["http://keystone:5000/v3"]).is_ok());
    }
}
