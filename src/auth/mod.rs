//! Auth: Keystone v3 tokens, obtained, cached, renewed and shared by every sender.
//!
//! Owns: the token and its lifetime (renewed when less than `keystone.renew_before`, or half
//! its lifetime, remains; one renewal in flight at a time), the catalog lookup for Monasca, and
//! the role checks. Must never: log or return a password, secret or token in an error.

mod keystone;

use crate::config::KeystoneConfig;
use crate::secret::{Secret, redact_url};
use crate::upstream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// Roles that may post metrics (monasca-api's `api:metrics:post`).
pub const POSTING_ROLES: &[&str] = &["monasca-agent", "monasca-user"];
/// Roles that grant more than posting, which statsgate does not need.
pub const BROADER_ROLES: &[&str] = &["admin", "monasca-user"];

/// A project-scoped token and what its body says.
#[derive(Debug)]
pub struct Token {
    pub value: Secret,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub roles: Vec<String>,
    pub project_id: String,
    pub project_name: String,
    /// The Monasca URL from the catalog (type `monitoring`), if listed.
    pub monasca_url: Option<String>,
}

impl Token {
    /// Role names match case-insensitively, as oslo.policy does.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Renew when less than `renew_before` (or half the lifetime, for short tokens) remains.
    fn needs_renewal(&self, renew_before: Duration, now: SystemTime) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        let margin = renew_before.min(lifetime / 2);
        self.expires_at
            .duration_since(now)
            .map_or(true, |left| left <= margin)
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Keystone at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The TLS handshake failed: retrying heals it only once the certificate or the trusted
    /// CAs change. `reason` says what is wrong and which setting fixes it.
    #[error("Keystone at {url}: {reason}")]
    Tls {
        url: String,
        problem: upstream::TlsProblem,
        reason: String,
    },
    /// The URL comes after the status so that the message still starts as README's
    /// troubleshooting table quotes it.
    #[error("Keystone refused the credentials (HTTP {status}) at {url}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("Keystone at {url} answered HTTP {status} without a usable token: {reason}")]
    Malformed {
        url: String,
        status: u16,
        reason: String,
    },
    /// Never followed: the request carries the password or the credential secret.
    #[error(
        "Keystone at {url} answered HTTP {status} redirecting to {location}; statsgate does not \
         follow redirects (set keystone.auth_url to the final URL)"
    )]
    Redirected {
        url: String,
        status: u16,
        location: String,
    },
}

impl AuthError {
    /// Credentials problems do not heal by retrying quickly.
    pub fn is_refusal(&self) -> bool {
        matches!(self, AuthError::Refused { .. })
    }
}

/// The token cache shared by every sender. `Debug` shows no secret (see [`Secret`]).
#[derive(Debug)]
pub struct Auth {
    /// The identity and the token it got, under one lock: a switch replaces both at once, so
    /// a token is never renewed with credentials other than the ones that got it.
    state: tokio::sync::Mutex<State>,
    /// Serializes [`Auth::switch`]es, so that the last one called is the one that stays.
    switching: tokio::sync::Mutex<()>,
    pub renewals: AtomicU64,
    pub failures: AtomicU64,
}

#[derive(Debug)]
struct State {
    keystone: Keystone,
    current: Option<Arc<Token>>,
}

/// Where and as whom to authenticate.
#[derive(Debug)]
struct Keystone {
    client: reqwest::Client,
    config: KeystoneConfig,
    tokens_url: String,
}

impl Auth {
    pub fn new(client: reqwest::Client, config: KeystoneConfig) -> Self {
        Auth {
            state: tokio::sync::Mutex::new(State {
                keystone: Keystone::new(client, config),
                current: None,
            }),
            switching: tokio::sync::Mutex::new(()),
            renewals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// When the cached token expires: `None` before the first token, or while a renewal
    /// holds the lock (only tried, so that the status page never waits on Keystone).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.state
            .try_lock()
            .ok()?
            .current
            .as_ref()
            .map(|t| t.expires_at)
    }

    /// A valid token: the cached one, or a fresh one when it is due. Callers queue on the
    /// lock, so one renewal is in flight however many senders ask.
    pub async fn token(&self) -> Result<Arc<Token>, AuthError> {
        let mut state = self.state.lock().await;
        let now = SystemTime::now();
        if let Some(t) = state.current.as_ref()
            && !t.needs_renewal(state.keystone.config.renew_before.get(), now)
        {
            return Ok(Arc::clone(t));
        }
        match state.keystone.authenticate().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.renewals.fetch_add(1, Relaxed);
                state.current = Some(Arc::clone(&fresh));
                Ok(fresh)
            }
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                // A renewal that fails early is not fatal: the old token still works.
                match state.current.as_ref() {
                    Some(t) if !t.is_expired(now) => {
                        tracing::warn!(error = %e, "token renewal failed; using the current token until it expires");
                        Ok(Arc::clone(t))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Changes the identity (a reload): authenticates with `client` and `config` first, and
    /// only once Keystone issued a token replaces the identity and the cached token together.
    /// Senders keep getting the old token while the new one is fetched (the lock is not held
    /// meanwhile), then get the new one. On failure nothing changes and the error (naming
    /// the URL, never a secret) is returned; either way it counts as a renewal or a failure.
    pub async fn switch(
        &self,
        client: reqwest::Client,
        config: KeystoneConfig,
    ) -> Result<(), AuthError> {
        let _one_at_a_time = self.switching.lock().await;
        let keystone = Keystone::new(client, config);
        match keystone.authenticate().await {
            Ok(fresh) => {
                self.renewals.fetch_add(1, Relaxed);
                let mut state = self.state.lock().await;
                *state = State {
                    keystone,
                    current: Some(Arc::new(fresh)),
                };
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Forgets `stale` (after Monasca answered 401 with it); a newer token is kept.
    pub async fn invalidate(&self, stale: &Token) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|t| t.value == stale.value)
        {
            state.current = None;
        }
    }
}

impl Keystone {
    fn new(client: reqwest::Client, config: KeystoneConfig) -> Self {
        let tokens_url = format!("{}/auth/tokens", config.auth_url.trim_end_matches('/'));
        Keystone {
            client,
            config,
            tokens_url,
        }
    }

    async fn authenticate(&self) -> Result<Token, AuthError> {
        let url = || redact_url(&self.tokens_url).into_owned();
        let unreachable = |e: reqwest::Error| {
            let url = url();
            // reqwest errors carry the URL and the cause, never the request body.
            match upstream::tls_failure(&e) {
                Some((problem, _)) => AuthError::Tls {
                    url,
                    problem,
                    reason: upstream::explain(&e),
                },
                None => AuthError::Unreachable {
                    url,
                    reason: upstream::explain(&e),
                },
            }
        };
        let response = self
            .client
            .post(&self.tokens_url)
            .timeout(self.config.timeout.get())
            .json(&keystone::request_body(&self.config))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let subject = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if (300..400).contains(&status) {
            return Err(AuthError::Redirected {
                url: url(),
                status,
                location: upstream::location(&response),
            });
        }
        let (body, truncated) = upstream::read_capped(response, upstream::KEYSTONE_ANSWER_CAP)
            .await
            .map_err(unreachable)?;
        if truncated && (status == 201 || status == 200) {
            return Err(AuthError::Malformed {
                url: url(),
                status,
                reason: format!(
                    "the token body is larger than {} MiB",
                    upstream::KEYSTONE_ANSWER_CAP >> 20
                ),
            });
        }
        if status == 401 || status == 403 || status == 404 {
            return Err(AuthError::Refused {
                url: url(),
                status,
                message: error_message(&body),
            });
        }
        if status != 201 && status != 200 {
            return Err(AuthError::Malformed {
                url: url(),
                status,
                reason: error_message(&body),
            });
        }
        let malformed = |reason: String| AuthError::Malformed {
            url: url(),
            status,
            reason,
        };
        let value = subject.ok_or_else(|| malformed("no X-Subject-Token header".into()))?;
        let parsed: keystone::TokenBody =
            serde_json::from_slice(&body).map_err(|e| malformed(format!("token body: {e}")))?;
        let info = parsed.token;
        let expires_at = humantime::parse_rfc3339_weak(info.expires_at.trim_end_matches('Z'))
            .map_err(|e| malformed(format!("expires_at {:?}: {e}", info.expires_at)))?;
        let issued_at = info
            .issued_at
            .as_deref()
            .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
            .unwrap_or_else(SystemTime::now);
        let (project_id, project_name) = info.project.map(|p| (p.id, p.name)).unwrap_or_default();
        let monasca_url = keystone::find_endpoint(
            &info.catalog,
            "monitoring",
            &self.config.interface,
            &self.config.region_name,
        );
        Ok(Token {
            value: Secret::new(value),
            issued_at,
            expires_at,
            roles: info.roles.into_iter().map(|r| r.name).collect(),
            project_id,
            project_name,
            monasca_url,
        })
    }
}

/// The message of a Keystone error body (`{"error": {"message": ...}}`), shortened.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["description"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    message.chars().take(300).collect()
}

/// `error: cause: cause`, for one-line logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the token's roles mean for this configuration.
#[derive(Debug, PartialEq, Eq)]
pub struct RoleReport {
    pub may_post: bool,
    pub broader: Vec<String>,
    /// `tenant_id` is configured but the token holds none of the delegate roles.
    pub tenant_refused: bool,
}

pub fn check_roles(token: &Token, tenant_id: &str, delegate_roles: &[String]) -> RoleReport {
    RoleReport {
        may_post: POSTING_ROLES.iter().any(|r| token.has_role(r)),
        broader: BROADER_ROLES
            .iter()
            .filter(|r| token.has_role(r))
            .map(|r| (*r).to_owned())
            .collect(),
        tenant_refused: !tenant_id.is_empty() && !delegate_roles.iter().any(|r| token.has_role(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(roles: &[&str], lifetime_s: u64, left_s: u64) -> Token {
        let now = SystemTime::now();
        Token {
            value: Secret::new("t"),
            issued_at: now - Duration::from_secs(lifetime_s - left_s),
            expires_at: now + Duration::from_secs(left_s),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            project_id: "p".into(),
            project_name: "service".into(),
            monasca_url: None,
        }
    }

    #[test]
    fn renewal_margin_is_capped_by_half_the_lifetime() {
        let two_min = Duration::from_secs(120);
        let now = SystemTime::now();
        assert!(!token(&[], 3600, 600,).needs_renewal(two_min, now));
        assert!(token(&[], 3600, 100).needs_renewal(two_min, now));
        // A 10 s token renews at 5 s left, not on every use.
        assert!(!token(&[], 10, 8).needs_renewal(two_min, now));
        assert!(token(&[], 10, 4).needs_renewal(two_min, now));
    }

    #[test]
    fn roles_are_checked_for_least_privilege_and_delegation() {
        let admin = vec!["admin".to_owned()];
        let agent = token(&["Monasca-Agent"], 3600, 3000);
        assert_eq!(
            check_roles(&agent, "", &admin),
            RoleReport {
                may_post: true,
                broader: vec![],
                tenant_refused: false
            }
        );
        assert!(check_roles(&agent, "other-project", &admin).tenant_refused);
        let operator = token(&["monasca-user", "admin"], 3600, 3000);
        let report = check_roles(&operator, "other-project", &admin);
        assert_eq!(report.broader, vec!["admin", "monasca-user"]);
        assert!(!report.tenant_refused);
        assert!(!check_roles(&token(&["member"], 3600, 3000), "", &admin).may_post);
    }

    #[test]
    fn keystone_timestamps_parse() {
        let t = humantime::parse_rfc3339_weak("2026-11-21T22:27:11.000000").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-11-21T22:27:11Z"
        );
    }
}
