//! `kind: http` (monasca-agent `http_check`, `reference/probes.md` §7.2): one request per run
//! (following up to five redirects, answering one Basic challenge, retrying once on a 401 with
//! a fresh Keystone token), reported as `http_status` and `http_response_time`.
//!
//! Owns: the check's own HTTP client (its TLS roots, no automatic redirects), the redirect and
//! challenge handling, the bounded body read, and the `url` dimension's form.
//! Must never: carry the Keystone token or Basic credentials to another origin, read more than
//! `max_body` bytes of a body, put a password or token in value_meta, a log or a dimension.

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::auth::{Auth, Token};
use crate::config::HttpCheck;
use crate::secret::{Secret, redact_url};
use anyhow::Context as _;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// httplib2's default redirect limit.
const MAX_REDIRECTS: usize = 5;
const STATUS: &str = "http_status";
const RESPONSE_TIME: &str = "http_response_time";
const NO_TOKEN: &str = "Unable to get token. Keystone API server may be down.";
const BAD_TOKEN: &str = "unable to get a valid token to connect with";

pub struct HttpProbe {
    client: reqwest::Client,
    /// The configured URL without userinfo (that becomes `basic`).
    url: Url,
    method: Method,
    headers: HeaderMap,
    expected: Vec<u16>,
    /// The compiled `(?s)` regex and the pattern as configured, for the message.
    pattern: Option<(regex::Regex, String)>,
    basic: Option<(String, Secret)>,
    auth: Option<Arc<Auth>>,
    response_time: bool,
    max_body: usize,
    url_dim: String,
}

/// What came back from the server, after redirects and challenges.
struct Answer {
    status: u16,
    body: bytes::Bytes,
}

impl HttpProbe {
    pub fn new(c: &HttpCheck, timeout: Duration, ctx: &Context) -> anyhow::Result<Self> {
        let raw = c.url.trim();
        let mut url = Url::parse(raw).context("url: not a URL")?;
        // Userinfo in the URL is the Basic credential (unless username is set); it is sent
        // only after a challenge, like username/password, and never kept in the URL.
        let from_url = (!url.username().is_empty() || url.password().is_some()).then(|| {
            (
                percent_decode(url.username()),
                Secret::new(percent_decode(url.password().unwrap_or(""))),
            )
        });
        strip_userinfo(&mut url);
        let basic = if c.username.is_empty() {
            from_url
        } else {
            Some((c.username.clone(), c.password.clone()))
        };
        let auth = if c.keystone {
            Some(ctx.auth.clone().context(
                "keystone: true needs statsgate's Keystone identity, and keystone.auth_url is \
                 not configured",
            )?)
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("headers.{k}: not a header name"))?;
            let value =
                HeaderValue::from_str(v).with_context(|| format!("headers.{k}: not a value"))?;
            headers.insert(name, value);
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(
                header::USER_AGENT,
                HeaderValue::from_static(concat!("statsgate/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let pattern = if c.body_pattern.is_empty() {
            None
        } else {
            // Python's re.DOTALL, as monasca-agent searched.
            let re = regex::Regex::new(&format!("(?s){}", c.body_pattern))
                .context("body_pattern: not a regex")?;
            Some((re, c.body_pattern.clone()))
        };
        Ok(HttpProbe {
            client: client(c, timeout)?,
            url,
            method: Method::from_bytes(c.method.as_bytes()).context("method")?,
            headers,
            expected: c.expected_status.clone(),
            pattern,
            basic,
            auth,
            response_time: c.response_time,
            max_body: usize::try_from(c.max_body.bytes()).unwrap_or(usize::MAX),
            url_dim: url_dimension(raw),
        })
    }

    fn status(&self, value: f64) -> Sample {
        Sample::new(STATUS, value).dim("url", &self.url_dim)
    }

    fn down(&self, error: &str) -> Sample {
        self.status(1.0).meta("error", error)
    }

    async fn check(&self) -> Report {
        let start = Instant::now();
        let failed = |reason: &str| {
            let ms = start.elapsed().as_millis();
            Report::failed(vec![
                self.down(&format!("error: {reason}. Connection failed after {ms} ms")),
            ])
        };
        let mut token = None;
        if let Some(auth) = &self.auth {
            match auth.token().await {
                Ok(t) => token = Some(t),
                Err(_) => return Report::failed(vec![self.down(NO_TOKEN)]),
            }
        }
        let mut answer = match self.fetch(token.as_deref()).await {
            Ok(a) => a,
            Err(reason) => return failed(&reason),
        };
        let mut refused_twice = false;
        if let (Some(auth), Some(stale)) = (&self.auth, &token)
            && answer.status == 401
        {
            // The token may have been revoked or expired early: one fresh one, one retry.
            auth.invalidate(stale).await;
            let fresh = match auth.token().await {
                Ok(t) => t,
                Err(_) => return Report::failed(vec![self.down(NO_TOKEN)]),
            };
            answer = match self.fetch(Some(&fresh)).await {
                Ok(a) => a,
                Err(reason) => return failed(&reason),
            };
            refused_twice = answer.status == 401;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let error = if refused_twice {
            Some(BAD_TOKEN.to_owned())
        } else if !self.status_up(answer.status) {
            Some(format!("error code: {}", answer.status))
        } else {
            self.pattern.as_ref().and_then(|(re, text)| {
                let body = String::from_utf8_lossy(&answer.body);
                (!re.is_match(&body))
                    .then(|| format!("Pattern match failed! \"{text}\" not in \"{body}\""))
            })
        };
        let mut samples = vec![match &error {
            Some(e) => self.down(e),
            None => self.status(0.0),
        }];
        if self.response_time {
            samples.push(Sample::new(RESPONSE_TIME, elapsed).dim("url", &self.url_dim));
        }
        match error {
            Some(_) => Report::failed(samples),
            None => Report::ok(samples),
        }
    }

    fn status_up(&self, status: u16) -> bool {
        if self.expected.is_empty() {
            status < 400
        } else {
            self.expected.contains(&status)
        }
    }

    /// One request and what it leads to: redirects followed (never carrying a credential to
    /// another origin), one Basic challenge answered, then at most `max_body` of the body.
    /// `Err` is the reason for `error: <reason>. Connection failed after …`.
    async fn fetch(&self, token: Option<&Token>) -> Result<Answer, String> {
        let origin = self.url.origin();
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut send_basic = false;
        let mut redirects = 0;
        loop {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(self.headers.clone());
            if let Some(t) = token {
                let mut value = HeaderValue::from_str(t.value.expose())
                    .map_err(|_| "the Keystone token is not a valid header value".to_owned())?;
                value.set_sensitive(true);
                request = request.header("X-Auth-Token", value);
            }
            if send_basic && let Some((user, password)) = &self.basic {
                // reqwest marks the header sensitive.
                request = request.basic_auth(user, Some(password.expose()));
            }
            let response = request.send().await.map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && !self.expected.contains(&status)
                && let Some(location) = response.headers().get(header::LOCATION)
            {
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                let mut next = url.join(&location).map_err(|e| {
                    format!(
                        "redirect to an unusable Location {:?}: {e}",
                        short(&redact_url(&location))
                    )
                })?;
                // A Location's own userinfo would be sent as credentials by reqwest.
                strip_userinfo(&mut next);
                if redirects == MAX_REDIRECTS {
                    return Err(format!(
                        "redirect limit ({MAX_REDIRECTS}) reached, next was {}",
                        short(next.as_str())
                    ));
                }
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(format!(
                        "redirect to a non-HTTP URL {}",
                        short(next.as_str())
                    ));
                }
                if next.origin() != origin && (token.is_some() || self.basic.is_some()) {
                    return Err(format!(
                        "redirect to another origin ({}) not followed: the request carries {} \
                         (credentials removed)",
                        next.origin().ascii_serialization(),
                        if token.is_some() {
                            "the Keystone token"
                        } else {
                            "Basic credentials"
                        }
                    ));
                }
                if status == 303 && method != Method::HEAD {
                    method = Method::GET;
                }
                url = next;
                redirects += 1;
                continue;
            }
            if status == 401
                && !send_basic
                && self.basic.is_some()
                && url.origin() == origin
                && challenges_basic(response.headers())
            {
                send_basic = true;
                continue;
            }
            let (body, _more) = crate::upstream::read_capped(response, self.max_body)
                .await
                .map_err(|e| describe(&e))?;
            return Ok(Answer { status, body });
        }
    }
}

impl Check for HttpProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(self.check())
    }

    fn timed_out(&mut self, timeout: Duration) -> Vec<Sample> {
        vec![self.down(&super::connection_timed_out(timeout))]
    }
}

/// The check's client: no automatic redirects (see [`HttpProbe::fetch`]), no pooled
/// connections (each run measures a fresh connect, as monasca-agent's new `Http()` did), and
/// a timeout just past the schedule's, which cuts the run first.
fn client(c: &HttpCheck, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(timeout + Duration::from_secs(1));
    if c.verify_tls {
        let mut roots = Vec::new();
        if !c.ca_file.is_empty() {
            let pem = std::fs::read(&c.ca_file)
                .with_context(|| format!("ca_file: reading {}", c.ca_file))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("ca_file: {} is not a PEM bundle", c.ca_file))?;
            if certs.is_empty() {
                anyhow::bail!("ca_file: {} holds no certificate", c.ca_file);
            }
            roots.extend(certs);
        }
        // The system store (honours SSL_CERT_FILE / SSL_CERT_DIR); none is fine for http://.
        roots.extend(
            rustls_native_certs::load_native_certs()
                .certs
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        );
        builder = builder.tls_certs_only(roots);
    } else {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().context("building the check's HTTP client")
}

/// Whether a 401's `WWW-Authenticate` headers offer Basic.
fn challenges_basic(headers: &HeaderMap) -> bool {
    headers.get_all(header::WWW_AUTHENTICATE).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|part| {
            let part = part.trim_ascii_start();
            part.len() >= 5
                && part[..5].eq_ignore_ascii_case(b"basic")
                && part.get(5).is_none_or(|b| *b == b' ')
        })
    })
}

/// A reqwest error as a readable reason: what went wrong first (connection refused, a TLS
/// certificate problem, a name that does not resolve, a timeout), then the cause chain.
/// Never the URL: the check's dimension already says which.
fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut io_kind = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        let text = s.to_string();
        // hyper's "client error (Connect)" says nothing the next cause does not.
        if !text.starts_with("client error (") && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    let chain = parts.join(": ");
    let lower = chain.to_ascii_lowercase();
    let head = if e.is_timeout() {
        "timed out"
    } else if lower.contains("certificate") {
        if chain.contains("UnknownIssuer") {
            "TLS certificate not accepted: its issuer is not a trusted CA (see ca_file)"
        } else if chain.contains("NotValidForName") {
            "TLS certificate not accepted: not valid for this host"
        } else if chain.contains("Expired") {
            "TLS certificate not accepted: expired"
        } else {
            "TLS certificate not accepted"
        }
    } else if lower.contains("dns error") || lower.contains("lookup address") {
        "cannot resolve the host"
    } else {
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
            Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
            Some(std::io::ErrorKind::TimedOut) => "timed out",
            _ if e.is_body() || e.is_decode() => "reading the body failed",
            _ if e.is_connect() => "connection failed",
            _ => "request failed",
        }
    };
    if chain.is_empty() {
        head.to_owned()
    } else {
        format!("{head} ({chain})")
    }
}

/// At most 200 characters, for URLs inside messages.
fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

fn strip_userinfo(url: &mut Url) {
    // Only fails for URLs without a host, which validation refused.
    let _ = url.set_username("");
    let _ = url.set_password(None);
}

/// `%XX` decoding of URL userinfo (invalid escapes kept as they are).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The `url` dimension: the configured URL without userinfo (always: a password must not
/// become a dimension); if Monasca would still refuse it, without query and fragment; if
/// still refused, the refused characters replaced by `_` and cut to 255 characters.
pub fn url_dimension(raw: &str) -> String {
    let valid = |s: &str| crate::validate::dimension_value(s).is_ok();
    let (authority_start, authority_end) = authority(raw);
    let without_userinfo = match raw[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &raw[..authority_start],
            &raw[authority_start + at + 1..]
        ),
        None => raw.to_owned(),
    };
    if valid(&without_userinfo) {
        return without_userinfo;
    }
    let (_, end) = authority(&without_userinfo);
    let cut = without_userinfo[end..]
        .find(['?', '#'])
        .map_or(without_userinfo.len(), |i| end + i);
    let no_query = &without_userinfo[..cut];
    if valid(no_query) {
        return no_query.to_owned();
    }
    let replaced: String = no_query
        .chars()
        .map(|c| {
            if "<>={},\"\\;&".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(255)
        .collect();
    if replaced.is_empty() {
        "_".to_owned()
    } else {
        replaced
    }
}

/// Byte range of a URL's authority (after `scheme://`, up to `/`, `?` or `#`).
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dimension_keeps_a_valid_url_and_never_userinfo() {
        assert_eq!(
            url_dimension("http://localhost:8774/v2.0"),
            "http://localhost:8774/v2.0"
        );
        assert_eq!(
            url_dimension("https://user:pw@h:1/p?x@y"),
            "https://h:1/p?x@y",
            "userinfo goes even when the rest is valid"
        );
        assert_eq!(url_dimension("http://h/p?a=b&c=d#f"), "http://h/p");
        assert_eq!(url_dimension("http://u:p@h/p?a=b"), "http://h/p");
        assert_eq!(url_dimension("http://h/a;b=c"), "http://h/a_b_c");
        let long = format!("http://h/{}", "x".repeat(400));
        assert_eq!(url_dimension(&long).chars().count(), 255);
        assert_eq!(url_dimension(&long), long[..255]);
    }

    #[test]
    fn only_basic_challenges_are_answered() {
        let mut h = HeaderMap::new();
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        assert!(challenges_basic(&h));
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Keystone uri=\"http://k\""),
        );
        assert!(!challenges_basic(&h));
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Digest realm=\"x\", basic realm=\"y\""),
        );
        assert!(challenges_basic(&h));
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basicx"));
        assert!(!challenges_basic(&h));
    }

    #[test]
    fn userinfo_is_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aw%zz"), "p@ss:w%zz");
    }
}
