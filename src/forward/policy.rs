//! What to do with each answer from Monasca: retry policy as data, tested without I/O.
//! The statuses and bodies are the ones measured against the real servers (MONASCA.md §1).

use std::time::Duration;

/// The next step for a batch after one POST attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 204, Monasca's one success status: stored.
    Delivered,
    /// 3xx: never followed (the token would go to another origin, and a 302 turns the POST
    /// into a GET). Nothing was stored; retried like a 5xx, with the `Location` logged.
    Redirected,
    /// 401 from keystonemiddleware (`{"error": ...}`): the token is missing, expired or
    /// revoked. Drop it, authenticate again, retry once right away.
    Reauthenticate,
    /// 401 titled "Forbidden": the token's roles may not post metrics. Retrying cannot help.
    Forbidden,
    /// 413 from a proxy in front: split the batch.
    Split,
    /// 400/422 and other 4xx: the request was refused whole; retrying cannot help.
    Refused,
    /// 5xx, 429, timeouts, connection errors, and a 2xx other than 204 (a proxy's page, not
    /// monasca-api: nothing says the metrics were stored): try again after a backoff.
    Retry,
}

/// Classifies an answer (`None` = no answer: timeout, refused or reset connection).
pub fn classify(status: Option<u16>, body: &[u8]) -> Action {
    match status {
        None => Action::Retry,
        Some(204) => Action::Delivered,
        Some(300..=399) => Action::Redirected,
        Some(401) if is_forbidden_body(body) => Action::Forbidden,
        Some(401) => Action::Reauthenticate,
        Some(403) => Action::Forbidden,
        Some(413) => Action::Split,
        Some(408 | 429) => Action::Retry,
        Some(400..=499) => Action::Refused,
        Some(_) => Action::Retry,
    }
}

/// monasca-api answers a role problem with falcon's `{"title": "Forbidden", ...}` (as 401).
/// The body may be cut at the read cap, so a `"title": "Forbidden"` member is also found
/// in text that no longer parses.
fn is_forbidden_body(body: &[u8]) -> bool {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v.get("title").and_then(|t| t.as_str()) == Some("Forbidden");
    }
    let text = String::from_utf8_lossy(body);
    text.match_indices("\"title\"").any(|(at, key)| {
        let rest = text[at + key.len()..].trim_start();
        rest.strip_prefix(':')
            .is_some_and(|r| r.trim_start().starts_with("\"Forbidden\""))
    })
}

/// Exponential backoff with full jitter: attempt n waits a uniform random time in
/// [0, min(max, initial × 2^n)], so many gateways recovering together do not stampede.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt`, given a uniform random number in [0, 1).
    pub fn delay(&self, attempt: u32, unit_random: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit_random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYSTONEMIDDLEWARE_401: &[u8] =
        br#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
    const FALCON_FORBIDDEN_401: &[u8] =
        br#"{"title": "Forbidden", "description": "The request does not have access to this service"}"#;

    #[test]
    fn answers_measured_against_monasca_api() {
        assert_eq!(classify(Some(204), b""), Action::Delivered);
        assert_eq!(
            classify(Some(200), b"<html>login</html>"),
            Action::Retry,
            "only 204 means stored"
        );
        assert_eq!(classify(Some(302), b""), Action::Redirected);
        assert_eq!(classify(Some(307), b""), Action::Redirected);
        assert_eq!(
            classify(Some(401), KEYSTONEMIDDLEWARE_401),
            Action::Reauthenticate
        );
        assert_eq!(classify(Some(401), FALCON_FORBIDDEN_401), Action::Forbidden);
        let cut = &FALCON_FORBIDDEN_401[..40];
        assert_eq!(
            classify(Some(401), cut),
            Action::Forbidden,
            "cut at the cap"
        );
        assert_eq!(
            classify(
                Some(401),
                br#"{"title": "Unauthorized", "x": "\"title\": \"Forbidden\""#
            ),
            Action::Reauthenticate,
            "the lenient scan sees the first title in a parsable body only"
        );
        assert_eq!(
            classify(Some(401), b""),
            Action::Reauthenticate,
            "an empty 401 is a token problem"
        );
        assert_eq!(
            classify(Some(400), br#"{"title": "Bad request"}"#),
            Action::Refused
        );
        assert_eq!(
            classify(Some(422), br#"{"title": "Unprocessable Entity"}"#),
            Action::Refused
        );
        assert_eq!(classify(Some(413), b""), Action::Split);
        assert_eq!(
            classify(Some(500), b"<html>Internal Server Error</html>"),
            Action::Retry
        );
        assert_eq!(classify(Some(503), b""), Action::Retry);
        assert_eq!(classify(Some(429), b""), Action::Retry);
        assert_eq!(classify(None, b""), Action::Retry);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_full_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(3), Duration::from_secs(4));
        assert_eq!(b.ceiling(10), Duration::from_secs(30));
        assert_eq!(b.ceiling(1000), Duration::from_secs(30), "no overflow");
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(2));
        assert!(b.delay(3, 0.999_999) < Duration::from_secs(4));
    }
}
