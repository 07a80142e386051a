//! Upstream HTTP: the one client that talks to Keystone and Monasca, and the bounded reading
//! of their answers.
//!
//! Owns: TLS roots (the system store plus configured PEM bundles), the no-redirect policy,
//! connect and pool timeouts, size caps on answers, and the one-line description of a failed
//! request (the URL and, for TLS, what is wrong with the certificate and which setting fixes
//! it). Must never: follow a redirect (a redirected POST would re-send the password or the
//! token to another origin, and a 302 to a login page would turn a POST into a GET whose 200
//! looks like success), read an answer without a bound, fail for want of CA roots when no
//! endpoint needs them, or print a URL's credentials.

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

/// A reqwest error as one line: [`explain`]'s text, then the URL (which may hold
/// credentials) in its redacted form.
pub fn describe(e: reqwest::Error) -> String {
    let url = e.url().map(|u| redact_url(u.as_str()).into_owned());
    let mut text = explain(&e);
    if let Some(url) = url {
        text.push_str(&format!(" ({url})"));
    }
    text
}

/// A reqwest error as one line without its URL: for a TLS failure, what is wrong and what
/// fixes it first, then rustls' own words in brackets; otherwise the cause chain.
pub fn explain(e: &reqwest::Error) -> String {
    if let Some((problem, detail)) = tls_failure(e) {
        return format!("{} [{detail}]", problem.sentence());
    }
    // reqwest puts the URL in its own Display; `describe` adds the redacted one.
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = if parts.is_empty() {
            strip_url(&s.to_string())
        } else {
            s.to_string()
        };
        // hyper's "client error (Connect)" says nothing the next cause does not.
        if !text.starts_with("client error (") && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// reqwest's Display is "error sending request for url (…)": keep the words, drop the URL.
fn strip_url(text: &str) -> String {
    match text.find(" for url (") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// What went wrong in a TLS handshake with Keystone or Monasca, in the words an operator
/// acts on. Found in a request error's cause chain by [`tls_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// Signed by a CA that neither the system store nor a configured bundle holds.
    UnknownIssuer,
    /// Valid, but for other names than the URL's host.
    WrongHost,
    Expired,
    NotValidYet,
    /// Any other reason the certificate failed verification.
    Certificate,
    /// The answer was not TLS at all: most likely a plain-HTTP server behind an https:// URL.
    NotTls,
    /// The handshake failed for a reason that is not the certificate's.
    Handshake,
}

impl TlsProblem {
    pub fn sentence(self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => {
                "TLS certificate not accepted: its issuer is not a trusted CA; give the CA's PEM \
                 as keystone.ca_file (OS_CACERT) or monasca.ca_file, or add it to the system store"
            }
            TlsProblem::WrongHost => {
                "TLS certificate not accepted: it is not valid for the host name in the URL; use \
                 a name the certificate lists, or have it reissued for this one"
            }
            TlsProblem::Expired => {
                "TLS certificate not accepted: it has expired (or this host's clock is wrong)"
            }
            TlsProblem::NotValidYet => {
                "TLS certificate not accepted: it is not valid yet (check this host's clock)"
            }
            TlsProblem::Certificate => "TLS certificate not accepted",
            TlsProblem::NotTls => {
                "TLS handshake failed: the server does not speak TLS (an http:// server?)"
            }
            TlsProblem::Handshake => "TLS handshake failed",
        }
    }
}

/// The first rustls error in `e`'s cause chain, classified, with rustls' own text. rustls
/// errors travel inside `std::io::Error`s (tokio-rustls wraps them, hyper-rustls wraps that
/// again), whose `source()` skips what they wrap: hence the descent through `get_ref`.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<(TlsProblem, String)> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = rustls_inside(s) {
            return Some((classify_tls(r), r.to_string()));
        }
        source = s.source();
    }
    None
}

/// `e` itself if it is a rustls error, else what the io errors it nests wrap.
fn rustls_inside<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let mut io = e.downcast_ref::<std::io::Error>()?;
    // Bounded by the nesting, which the libraries fix (two levels today).
    loop {
        let inner = io.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
}

fn classify_tls(e: &rustls::Error) -> TlsProblem {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsProblem::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongHost,
            C::Expired | C::ExpiredContext { .. } => TlsProblem::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::NotValidYet,
            _ => TlsProblem::Certificate,
        },
        rustls::Error::InvalidMessage(_) => TlsProblem::NotTls,
        _ => TlsProblem::Handshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_found_inside_io_errors_and_classified() {
        use rustls::CertificateError as C;
        let wrapped = |c: C| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        // As hyper-rustls hands it on: an io error around tokio-rustls' io error.
        let nested = std::io::Error::other(wrapped(C::UnknownIssuer));
        let (problem, detail) = tls_failure(&nested).unwrap();
        assert_eq!(problem, TlsProblem::UnknownIssuer);
        assert_eq!(detail, "invalid peer certificate: UnknownIssuer");
        assert!(problem.sentence().contains("keystone.ca_file"));
        let wrong = C::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec!["DnsName(\"wrong.example\")".into()],
        };
        let (problem, detail) = tls_failure(&wrapped(wrong)).unwrap();
        assert_eq!(problem, TlsProblem::WrongHost);
        assert!(detail.contains("wrong.example"), "{detail}");
        assert_eq!(
            tls_failure(&wrapped(C::Expired)).unwrap().0,
            TlsProblem::Expired
        );
        assert_eq!(
            tls_failure(&wrapped(C::BadSignature)).unwrap().0,
            TlsProblem::Certificate
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(tls_failure(&plain).unwrap().0, TlsProblem::NotTls);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&refused), None);
    }

    #[test]
    fn reqwest_url_is_cut_from_its_display() {
        assert_eq!(
            strip_url("error sending request for url (https://u:p@h/v3)"),
            "error sending request"
        );
        assert_eq!(strip_url("builder error"), "builder error");
    }

    #[test]
    fn builds_without_any_root_for_plain_http() {
        // An explicit empty bundle list and no HTTPS URL: must build whatever the system has.
        assert!(client(&[], &["http://keystone:5000/v3"]).is_ok());
    }
}
