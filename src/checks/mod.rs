//! Checks: active checks of other things (an HTTP URL, a TCP port, a host, processes, a
//! Nagios plugin) under monasca-agent's names (`reference/probes.md` §7), and Rainbow's
//! user-defined metrics (`rainbow`), delivered through the passthrough like probe metrics.
//!
//! Owns: the [`Check`] contract (one run gives a [`Report`]: an outcome and samples), turning
//! samples into validated metrics (dimension order, value_meta limits), and the schedule
//! ([`schedule`]: its own thread and runtime, a period per check, a bound on concurrent runs,
//! a timeout that cuts a run and reports it as failed).
//! Must never: run on the ingest threads or the I/O runtime, let one check delay another
//! beyond the concurrency bound, block a runtime thread (blocking reads go to
//! `spawn_blocking`), or send a metric Monasca would refuse.

pub mod host_alive;
pub mod http;
pub mod nagios;
pub mod process;
pub mod rainbow;
pub mod schedule;
pub mod tcp;

pub use schedule::{CheckStats, ChecksHandle, OUTCOMES, start};

use crate::config::{CheckInstance, CheckKind};
use crate::metric::Metric;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use crate::validate::VALUE_META_MAX_CHARS;

/// One measurement of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// The kind's own dimensions, applied after the default dimensions and before the
    /// instance's `dimensions` (monasca-agent's order, `probes.md` §1).
    pub dims: Vec<(String, String)>,
    /// Applied after the instance's `dimensions`, so they cannot be overridden
    /// (`tcp_check`'s `url`, `host_alive`'s `test_type`, `nagios_wrapper`'s `target_host`).
    pub last_dims: Vec<(String, String)>,
    pub value: f64,
    pub value_meta: Option<BTreeMap<String, String>>,
}

impl Sample {
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Sample {
            name: name.into(),
            dims: Vec::new(),
            last_dims: Vec::new(),
            value,
            value_meta: None,
        }
    }
    pub fn dim(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.dims.push((k.into(), v.into()));
        self
    }
    pub fn last_dim(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.last_dims.push((k.into(), v.into()));
        self
    }
    /// value_meta `{key: text}`, `text` cut (on a character boundary) so that the JSON
    /// object stays within Monasca's 2048 characters.
    pub fn meta(mut self, key: &str, text: &str) -> Self {
        self.value_meta = Some(BTreeMap::from([(key.to_owned(), fit_meta(key, text))]));
        self
    }
}

/// `text` shortened (on a character boundary) until `{"key": "text"}`, as Python's
/// `json.dumps` writes it (which is what monasca-api measures), fits [`VALUE_META_MAX_CHARS`].
pub fn fit_meta(key: &str, text: &str) -> String {
    let room = VALUE_META_MAX_CHARS.saturating_sub(crate::validate::value_meta_len([(key, "")]));
    crate::validate::cut_to_python_json(text, room).0.to_owned()
}

/// The `error` text of an http or tcp run cut at its timeout, in monasca-agent's connection
/// failure form (`error: <reason>. Connection failed after <ms> ms`).
pub fn connection_timed_out(timeout: Duration) -> String {
    let ms = timeout.as_millis();
    format!("error: timed out after {ms} ms. Connection failed after {ms} ms")
}

/// How a run ended, as the check saw it (the schedule adds `timeout` and `skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The thing checked is up (or, for process and nagios, the run completed).
    Ok,
    /// The thing checked is down; the samples say why.
    Failed,
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub outcome: Outcome,
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn ok(samples: Vec<Sample>) -> Self {
        Report {
            outcome: Outcome::Ok,
            samples,
        }
    }
    pub fn failed(samples: Vec<Sample>) -> Self {
        Report {
            outcome: Outcome::Failed,
            samples,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configured check. The schedule calls `run` once per period, never twice at once, and
/// drops the future at the timeout (so a run must release what it holds on drop: a child
/// process is killed, a socket closed).
pub trait Check: Send + 'static {
    /// One run. It measures and reports; it never sleeps beyond what it measures.
    fn run(&mut self) -> BoxFuture<'_, Report>;
    /// What to report when a run was cut after `timeout` (e.g. `http_status` 1 with the
    /// reason, a Nagios UNKNOWN). Empty: the run's metrics are simply missing.
    fn timed_out(&mut self, timeout: Duration) -> Vec<Sample>;
}

/// What checks may use of the gateway.
#[derive(Clone)]
pub struct Context {
    /// This host's name: monasca-agent's `observer_host` and Nagios' default `target_host`.
    pub hostname: String,
    /// statsgate's Keystone identity, for `http` checks with `keystone: true`.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// `probes.proc_path`, for `process` checks.
    pub proc_path: PathBuf,
}

/// Builds the check `instance` describes; fails on what validation could not see (a CA
/// file that does not parse).
pub fn build(instance: &CheckInstance, ctx: &Context) -> anyhow::Result<Box<dyn Check>> {
    let timeout = instance.timeout().get();
    Ok(match &instance.kind {
        CheckKind::Http(c) => Box::new(http::HttpProbe::new(c, timeout, ctx)?),
        CheckKind::Tcp(c) => Box::new(tcp::TcpProbe::new(c, timeout)?),
        CheckKind::HostAlive(c) => Box::new(host_alive::HostAliveProbe::new(c, timeout, ctx)?),
        CheckKind::Process(c) => Box::new(process::ProcessProbe::new(c, &instance.name, ctx)?),
        CheckKind::Nagios(c) => Box::new(nagios::NagiosProbe::new(c, &instance.name, ctx)?),
    })
}

/// Why a sample did not become a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// A sample as a Monasca metric: default dimensions, the kind's, the instance's, then the
/// kind's last ones; later entries win. Refused if any part fails Monasca's validation.
pub fn to_metric(
    sample: &Sample,
    defaults: &[(String, String)],
    instance_dims: &BTreeMap<String, String>,
    timestamp: u64,
) -> Result<Metric, Invalid> {
    let mut dimensions: BTreeMap<String, String> = defaults.iter().cloned().collect();
    dimensions.extend(sample.dims.iter().cloned());
    dimensions.extend(instance_dims.iter().map(|(k, v)| (k.clone(), v.clone())));
    dimensions.extend(sample.last_dims.iter().cloned());
    let ok = sample.value.is_finite()
        && crate::validate::name(&sample.name).is_ok()
        && dimensions.len() <= 16
        && dimensions.iter().all(|(k, v)| {
            crate::validate::dimension_key(k).is_ok() && crate::validate::dimension_value(v).is_ok()
        });
    if !ok {
        return Err(Invalid);
    }
    Ok(Metric {
        name: sample.name.clone(),
        dimensions,
        timestamp,
        value: sample.value,
        value_meta: sample.value_meta.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_meta_is_cut_to_monascas_limit_on_a_character_boundary() {
        let long = "é\"".repeat(3000);
        let cut = fit_meta("error", &long);
        // As monasca-api measures it: é is \u00e9 (6 characters), the quote \" (2).
        let len = crate::validate::value_meta_len([("error", cut.as_str())]);
        assert!(len <= VALUE_META_MAX_CHARS, "{len}");
        assert!(len > VALUE_META_MAX_CHARS - 8, "{len}");
        assert_eq!(fit_meta("error", "short"), "short");
    }

    #[test]
    fn dimensions_apply_in_monasca_agents_order() {
        let s = Sample::new("host_alive_status", 0.0)
            .dim("hostname", "target-1")
            .dim("observer_host", "me")
            .last_dim("test_type", "ping");
        let defaults = vec![
            ("hostname".to_owned(), "me".to_owned()),
            ("region".to_owned(), "r1".to_owned()),
        ];
        let instance = BTreeMap::from([
            ("test_type".to_owned(), "overridden?".to_owned()),
            ("region".to_owned(), "r2".to_owned()),
        ]);
        let m = to_metric(&s, &defaults, &instance, 1).unwrap();
        assert_eq!(m.dimensions["hostname"], "target-1");
        assert_eq!(m.dimensions["region"], "r2");
        assert_eq!(m.dimensions["test_type"], "ping");
        let bad = Sample::new("x", 0.0).dim("url", "http://h/?a=b");
        assert_eq!(to_metric(&bad, &defaults, &instance, 1), Err(Invalid));
    }
}
