//! Which configuration keys a reload applies, how, and which it refuses.
//!
//! Owns: the one table that classifies every `section.key` (a unit test fails when a key
//! is added to the configuration without a row here) and the diff of two configurations by
//! key. Must never: look at values beyond comparing them (a secret is compared, never shown).

use crate::config::Config;
use serde_json::Value;

/// How a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// At once: the readers and ingest threads take it before their next batch, listeners
    /// at their next connection, the series budget at the next new series.
    Live,
    /// From the next interval: the open one is flushed as configured when it opened.
    NextInterval,
    /// At the next flush boundary of the running interval.
    NextBoundary,
    /// The listener is bound at the new address, then the old one closed; the others are
    /// untouched.
    Rebind,
    /// A new token is fetched with the new credentials before the old one is dropped; the
    /// next POST goes to the new URL. The queue and the spool are kept.
    Upstream,
    /// The stage is stopped and started again with its new section (probes, checks); its
    /// counters start again from zero.
    RestartStage,
    /// Cannot change while running: the reload is refused with this reason.
    Refused(&'static str),
}

impl Apply {
    /// The README's wording for the "how" column.
    pub fn describe(self) -> &'static str {
        match self {
            Apply::Live => "live",
            Apply::NextInterval => "next interval",
            Apply::NextBoundary => "next flush boundary",
            Apply::Rebind => "re-bound",
            Apply::Upstream => "new token first",
            Apply::RestartStage => "stage restarted",
            Apply::Refused(_) => "refused",
        }
    }
}

const BOUND_AT_START: &str =
    "the sockets and threads it sizes are made at start; restart to change it";
const STREAMS: &str = "the stream listeners' limits and the Unix sockets' mode are set up at start; restart to change them";
const SPOOL: &str = "the spool directory is locked and recovered at start; restart to change it";
const HISTOGRAM: &str =
    "timer histograms of the open interval must merge with the new ones; restart to change it";
const HTTP_SERVER: &str =
    "the HTTP listener's limits are set when it is bound; change http.listen with it, or restart";
const ADMIN_SERVER: &str =
    "the admin listener's limits are set when it is bound; change admin.listen with it, or restart";
const HISTORY: &str =
    "the local history's store is sized and restored at start; restart to change it";
const HEARTBEAT: &str =
    "the liveness table is sized at start and must not be lost; restart to change it";

/// Every key, by `section.key`.
pub const KEYS: &[(&str, Apply)] = &[
    ("statsd.listen", Apply::Rebind),
    ("statsd.readers", Apply::Refused(BOUND_AT_START)),
    ("statsd.recv_buffer", Apply::Refused(BOUND_AT_START)),
    ("statsd.max_datagram", Apply::Live),
    ("statsd.max_line", Apply::Live),
    ("statsd.max_dimensions", Apply::Live),
    ("statsd.allow", Apply::Live),
    ("statsd.tcp_listen", Apply::Rebind),
    ("statsd.tcp_max_connections", Apply::Refused(STREAMS)),
    ("statsd.tcp_idle_timeout", Apply::Refused(STREAMS)),
    ("statsd.tls_listen", Apply::Rebind),
    ("statsd.tls_cert", Apply::Live),
    ("statsd.tls_key", Apply::Live),
    ("statsd.tls_client_ca", Apply::Live),
    ("statsd.unix_listen", Apply::Rebind),
    ("statsd.unix_stream_listen", Apply::Rebind),
    ("statsd.unix_mode", Apply::Refused(STREAMS)),
    ("flush.interval", Apply::NextBoundary),
    ("flush.idle_expiry", Apply::NextInterval),
    ("aggregate.counters_as_rate", Apply::NextInterval),
    ("aggregate.timer_aggregates", Apply::NextInterval),
    ("aggregate.percentiles", Apply::NextInterval),
    ("aggregate.histogram_precision", Apply::Refused(HISTOGRAM)),
    ("aggregate.histogram_max_value", Apply::Refused(HISTOGRAM)),
    ("aggregate.max_set_members", Apply::Live),
    ("aggregate.max_series", Apply::Live),
    ("aggregate.max_series_per_name", Apply::Live),
    ("aggregate.hostname", Apply::Live),
    ("aggregate.add_hostname", Apply::Live),
    ("aggregate.default_dimensions", Apply::Live),
    ("admin.listen", Apply::Rebind),
    ("admin.max_connections", Apply::Refused(ADMIN_SERVER)),
    ("admin.header_timeout", Apply::Refused(ADMIN_SERVER)),
    ("admin.idle_timeout", Apply::Refused(ADMIN_SERVER)),
    ("log.level", Apply::Live),
    (
        "log.format",
        Apply::Refused("the log format is set up once at start; restart to change it"),
    ),
    ("shutdown.grace", Apply::Live),
    ("monasca.url", Apply::Upstream),
    ("monasca.tenant_id", Apply::Upstream),
    ("monasca.delegate_roles", Apply::Upstream),
    (
        "monasca.max_batch_metrics",
        Apply::Refused("batches are packed by the running sink; restart to change it"),
    ),
    (
        "monasca.max_batch_bytes",
        Apply::Refused("batches are packed by the running sink; restart to change it"),
    ),
    (
        "monasca.concurrency",
        Apply::Refused("the senders are started at start; restart to change it"),
    ),
    ("monasca.timeout", Apply::Upstream),
    ("monasca.backoff_initial", Apply::Upstream),
    ("monasca.backoff_max", Apply::Upstream),
    ("monasca.ca_file", Apply::Upstream),
    ("keystone.auth_url", Apply::Upstream),
    ("keystone.username", Apply::Upstream),
    ("keystone.user_id", Apply::Upstream),
    ("keystone.password", Apply::Upstream),
    ("keystone.user_domain_name", Apply::Upstream),
    ("keystone.user_domain_id", Apply::Upstream),
    ("keystone.project_name", Apply::Upstream),
    ("keystone.project_id", Apply::Upstream),
    ("keystone.project_domain_name", Apply::Upstream),
    ("keystone.project_domain_id", Apply::Upstream),
    ("keystone.application_credential_id", Apply::Upstream),
    ("keystone.application_credential_secret", Apply::Upstream),
    ("keystone.region_name", Apply::Upstream),
    ("keystone.interface", Apply::Upstream),
    ("keystone.renew_before", Apply::Upstream),
    ("keystone.timeout", Apply::Upstream),
    ("keystone.ca_file", Apply::Upstream),
    (
        "buffer.max_bytes",
        Apply::Refused("the queue is sized at start; restart to change it"),
    ),
    (
        "buffer.max_pending",
        Apply::Refused("the pending buffer is sized at start; restart to change it"),
    ),
    ("buffer.spool_dir", Apply::Refused(SPOOL)),
    ("buffer.spool_max_bytes", Apply::Refused(SPOOL)),
    ("buffer.spool_max_age", Apply::Refused(SPOOL)),
    ("buffer.spool_fsync", Apply::Refused(SPOOL)),
    ("buffer.replay_rate", Apply::Refused(SPOOL)),
    ("http.listen", Apply::Rebind),
    ("http.max_body", Apply::Refused(HTTP_SERVER)),
    ("http.allow", Apply::Live),
    ("http.max_connections", Apply::Refused(HTTP_SERVER)),
    ("http.header_timeout", Apply::Refused(HTTP_SERVER)),
    ("http.body_timeout", Apply::Refused(HTTP_SERVER)),
    ("http.idle_timeout", Apply::Refused(HTTP_SERVER)),
    ("http.body_budget", Apply::Refused(HTTP_SERVER)),
    ("http.metrics_endpoint", Apply::Refused(HTTP_SERVER)),
    ("http.metrics_token", Apply::Refused(HTTP_SERVER)),
    ("http.liz_endpoint", Apply::Refused(HTTP_SERVER)),
    ("http.tls_cert", Apply::Live),
    ("http.tls_key", Apply::Live),
    ("http.tls_client_ca", Apply::Live),
    ("heartbeat.expected_interval", Apply::Refused(HEARTBEAT)),
    ("heartbeat.expire_after", Apply::Refused(HEARTBEAT)),
    ("heartbeat.max_senders", Apply::Refused(HEARTBEAT)),
    ("heartbeat.max_skew", Apply::Refused(HEARTBEAT)),
    ("heartbeat.derive_id", Apply::Refused(HEARTBEAT)),
    ("heartbeat.alive_gauges", Apply::Refused(HEARTBEAT)),
    (
        "telemetry.self_metrics",
        Apply::Refused("the flusher's outputs are set at start; restart to change it"),
    ),
    ("probes.*", Apply::RestartStage),
    ("checks.*", Apply::RestartStage),
    ("history.*", Apply::Refused(HISTORY)),
];

/// How `key` applies; a key missing from the table is refused (the unit test makes sure
/// none is missing).
pub fn apply_of(key: &str) -> Apply {
    let section = key.split('.').next().unwrap_or(key);
    KEYS.iter()
        .find(|(k, _)| *k == key || k.strip_suffix(".*").is_some_and(|s| s == section))
        .map_or(
            Apply::Refused("not known to the reload; restart to change it"),
            |(_, a)| *a,
        )
}

/// The `section.key`s whose values differ between `old` and `new`, sorted.
pub fn changed(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["(the configuration cannot be compared)".to_owned()];
    };
    let mut out = Vec::new();
    let (Value::Object(o), Value::Object(n)) = (&old, &new) else {
        return out;
    };
    for (section, nv) in n {
        let ov = o.get(section).unwrap_or(&Value::Null);
        match (ov, nv) {
            (Value::Object(os), Value::Object(ns)) => {
                for (key, v) in ns {
                    if os.get(key) != Some(v) {
                        out.push(format!("{section}.{key}"));
                    }
                }
                for key in os.keys().filter(|k| !ns.contains_key(*k)) {
                    out.push(format!("{section}.{key}"));
                }
            }
            (a, b) if a != b => out.push(section.clone()),
            _ => {}
        }
    }
    for section in o.keys().filter(|s| !n.contains_key(*s)) {
        out.push(section.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_key_is_classified() {
        let Ok(Value::Object(sections)) = serde_json::to_value(Config::default()) else {
            panic!("the default configuration is an object");
        };
        let mut missing = Vec::new();
        for (section, keys) in sections {
            let Value::Object(keys) = keys else {
                missing.push(section);
                continue;
            };
            for key in keys.keys() {
                let full = format!("{section}.{key}");
                let wildcard = format!("{section}.*");
                if !KEYS.iter().any(|(k, _)| *k == full || *k == wildcard) {
                    missing.push(full);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys without a reload rule: {missing:?}"
        );
    }

    #[test]
    fn the_table_names_only_keys_that_exist() {
        let Ok(Value::Object(sections)) = serde_json::to_value(Config::default()) else {
            panic!("the default configuration is an object");
        };
        for (key, _) in KEYS {
            let (section, name) = key.split_once('.').unwrap();
            let s = sections.get(section).and_then(Value::as_object);
            assert!(
                s.is_some_and(|s| name == "*" || s.contains_key(name)),
                "{key} is not a configuration key"
            );
        }
    }

    #[test]
    fn a_diff_names_the_changed_keys_and_a_secret_by_key_only() {
        let old = Config::default();
        let mut new = old.clone();
        new.flush.interval = "20s".parse().unwrap();
        new.keystone.password = crate::secret::Secret::new("s3cret-new");
        new.aggregate.percentiles = vec![0.5];
        let diff = changed(&old, &new);
        assert_eq!(
            diff,
            [
                "aggregate.percentiles",
                "flush.interval",
                "keystone.password"
            ]
        );
        assert!(diff.iter().all(|k| !k.contains("s3cret")));
        assert_eq!(apply_of("flush.interval"), Apply::NextBoundary);
        assert_eq!(apply_of("probes.period"), Apply::RestartStage);
        assert!(matches!(apply_of("buffer.spool_dir"), Apply::Refused(_)));
        assert!(changed(&old, &old.clone()).is_empty());
    }
}
