//! The OpenStack side of the configuration: the `OS_*` client variables of an openrc file,
//! and the checks on `monasca.*`, `keystone.*` and `buffer.*`.

use super::validate::{Invalid, bad};
use super::{ByteSize, Config, Duration};

/// Each OpenStack client variable and the `keystone.*` key it fills.
pub const OPENRC: &[(&str, &str)] = &[
    ("OS_AUTH_URL", "auth_url"),
    ("OS_USERNAME", "username"),
    ("OS_USER_ID", "user_id"),
    ("OS_PASSWORD", "password"),
    ("OS_USER_DOMAIN_NAME", "user_domain_name"),
    ("OS_USER_DOMAIN_ID", "user_domain_id"),
    ("OS_PROJECT_NAME", "project_name"),
    ("OS_PROJECT_ID", "project_id"),
    ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
    ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
    ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
    (
        "OS_APPLICATION_CREDENTIAL_SECRET",
        "application_credential_secret",
    ),
    ("OS_REGION_NAME", "region_name"),
    ("OS_INTERFACE", "interface"),
    ("OS_CACERT", "ca_file"),
];

/// The `keystone.*` values an openrc environment provides, as (variable, key, value).
/// Used only when the file sets no `keystone.auth_url`: an identity comes whole from the file
/// or whole from the environment, so an unrelated admin openrc in the operator's shell can
/// never replace the least-privilege identity the file names.
pub fn openrc_values(env: &[(String, String)]) -> Vec<(String, &'static str, String)> {
    OPENRC
        .iter()
        .filter_map(|(var, key)| {
            let (_, value) = env.iter().find(|(k, _)| k == var)?;
            Some(((*var).to_owned(), *key, value.clone()))
        })
        .collect()
}

fn http_url(key: &str, value: &str) -> Result<(), Invalid> {
    let ok = (value.starts_with("http://") || value.starts_with("https://"))
        && value
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if ok {
        Ok(())
    } else {
        bad(
            key,
            format!("must be an http:// or https:// URL (got {value:?})"),
        )
    }
}

fn readable(key: &str, path: &str) -> Result<(), Invalid> {
    if !path.is_empty() && std::fs::metadata(path).is_err() {
        return bad(key, format!("cannot read {path:?}"));
    }
    Ok(())
}

/// Consistency of the forwarding settings; the first failure as (key, message).
pub fn validate(c: &Config) -> Result<(), Invalid> {
    let m = &c.monasca;
    if !m.url.is_empty() {
        http_url("monasca.url", &m.url)?;
    }
    if m.max_batch_metrics == 0 {
        bad("monasca.max_batch_metrics", "must be at least 1")?;
    }
    if m.max_batch_bytes < ByteSize::kib(1) {
        bad(
            "monasca.max_batch_bytes",
            format!("must be at least 1KiB (got {})", m.max_batch_bytes),
        )?;
    }
    if !(1..=64).contains(&m.concurrency) {
        bad(
            "monasca.concurrency",
            format!("must be between 1 and 64 (got {})", m.concurrency),
        )?;
    }
    if m.timeout < Duration::millis(100) {
        bad(
            "monasca.timeout",
            format!("must be at least 100ms (got {})", m.timeout),
        )?;
    }
    if m.backoff_initial < Duration::millis(10) {
        bad(
            "monasca.backoff_initial",
            format!("must be at least 10ms (got {})", m.backoff_initial),
        )?;
    }
    if m.backoff_max < m.backoff_initial {
        bad(
            "monasca.backoff_max",
            "must be at least monasca.backoff_initial",
        )?;
    }
    readable("monasca.ca_file", &m.ca_file)?;
    if !m.tenant_id.is_empty() && c.keystone.auth_url.is_empty() {
        bad(
            "monasca.tenant_id",
            "needs keystone.auth_url: only a token can post for another project",
        )?;
    }
    if c.buffer.max_bytes < m.max_batch_bytes {
        bad(
            "buffer.max_bytes",
            "must be at least monasca.max_batch_bytes",
        )?;
    }

    let k = &c.keystone;
    // Checked even without Keystone: a typo here must not wait for the day auth_url is set.
    if !matches!(k.interface.as_str(), "public" | "internal" | "admin") {
        bad(
            "keystone.interface",
            format!("must be public, internal or admin (got {:?})", k.interface),
        )?;
    }
    if k.auth_url.is_empty() {
        return Ok(());
    }
    http_url("keystone.auth_url", &k.auth_url)?;
    readable("keystone.ca_file", &k.ca_file)?;
    if k.timeout < Duration::millis(100) {
        bad(
            "keystone.timeout",
            format!("must be at least 100ms (got {})", k.timeout),
        )?;
    }
    if !k.application_credential_id.is_empty() {
        if k.application_credential_secret.is_empty() {
            bad(
                "keystone.application_credential_secret",
                "is required with keystone.application_credential_id",
            )?;
        }
        return Ok(());
    }
    if k.username.is_empty() && k.user_id.is_empty() {
        bad(
            "keystone.username",
            "set keystone.username or keystone.user_id (or keystone.application_credential_id)",
        )?;
    }
    if k.password.is_empty() {
        bad(
            "keystone.password",
            "is required for password authentication",
        )?;
    }
    if k.project_name.is_empty() && k.project_id.is_empty() {
        bad(
            "keystone.project_name",
            "set keystone.project_name or keystone.project_id: Monasca needs a project-scoped token",
        )?;
    }
    Ok(())
}
