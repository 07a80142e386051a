//! Secret: a password, application-credential secret or token that never prints.
//!
//! Owns: redaction. `Debug` and `Display` show `***`; only [`Secret::expose`] gives the text,
//! and only code that sends it to Keystone or Monasca calls it. Serialization keeps the real
//! value because the configuration overlay round-trips through serde; `check-config` prints
//! [`crate::config::Config::redacted`] instead.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret text, for the one request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` is this secret, in time that depends only on the lengths, so a
    /// caller guessing a shared token learns nothing from how fast it is refused.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        if secret.len() != candidate.len() {
            return false;
        }
        let diff = secret
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keep the comparison from being turned into an early exit.
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// `url` with any `user:password@` in its authority replaced by `***@`, for logs, errors and
/// `check-config`. Text that is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return url.into();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        )
        .into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {s:#?}"), "*** *** ***");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("http://user:pw@keystone:5000/v3"),
            "http://***@keystone:5000/v3"
        );
        assert_eq!(
            redact_url("https://tok@m/v2.0?x=a@b"),
            "https://***@m/v2.0?x=a@b"
        );
        assert_eq!(
            redact_url("https://m:8070/v2.0?x=a@b"),
            "https://m:8070/v2.0?x=a@b"
        );
        assert_eq!(redact_url("http://a:b@c@host"), "http://***@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn matches_only_the_same_bytes() {
        let s = Secret::new("hunter2");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.matches(b""));
    }
}
