//! `checks.*`: active checks (monasca-agent's `http_check`, `tcp_check`, `host_alive`,
//! `process`, `nagios_wrapper`; `reference/probes.md` §7) and Rainbow's user-defined metrics
//! (`reference/seed-apis.md` §2).
//!
//! Owns: the section's schema, each kind's keys and defaults, and the start-up checks that
//! name the key at fault (a duplicate name, a missing URL, a plugin that is not executable).
//! Must never: run a check (that is `crate::checks`).

use super::validate::{Invalid, bad};
use super::{ByteSize, Duration};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// `checks.*`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksConfig {
    /// Most checks running at once; a check due while all slots are busy waits for one,
    /// and is counted `skipped` if none frees within its period. Default `8`.
    pub max_concurrent: usize,
    /// The named checks (monasca-agent's `instances`). Default empty.
    pub instances: Vec<CheckInstance>,
    /// Rainbow's FileUserDefinedMetrics: a directory where applications drop
    /// `*.jsonl` files of SDK records (`rainbow.metrics.jsonl`). Each file is read whole and
    /// removed once its metrics are accepted. Empty: off. Default empty.
    pub files_dir: String,
    /// How often `files_dir` is scanned, duration. Default `10s`.
    pub files_period: Duration,
    /// Largest file read from `files_dir`; a larger one is left in place and counted. Default
    /// `16MiB`.
    pub files_max_bytes: ByteSize,
    /// Path on the HTTP listener (`http.listen`) where Rainbow's `RainbowUtils.store` posts
    /// its records. Empty: off. Default `/rainbow`.
    pub rainbow_path: String,
    /// Whether `rainbow_path` is served: `auto` only when `http.listen` is a loopback address
    /// (the SDK sends no credential, so anyone who reaches the port could post), `on`, `off`.
    /// Default `auto`.
    pub rainbow_endpoint: super::MetricsEndpoint,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            max_concurrent: 8,
            instances: Vec::new(),
            files_dir: String::new(),
            files_period: Duration::secs(10),
            files_max_bytes: ByteSize::mib(16),
            rainbow_path: "/rainbow".into(),
            rainbow_endpoint: super::MetricsEndpoint::Auto,
        }
    }
}

/// One named check: the keys every kind shares, then the kind's own.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CheckInstance {
    /// Unique among the checks; the `check` label on `/metrics` (never a dimension, as in
    /// monasca-agent).
    pub name: String,
    /// How often it runs, duration. Default `30s` (monasca-agent's `check_freq`).
    #[serde(default = "default_period")]
    pub period: Duration,
    /// A run still going after this is cut and reported as failed, duration. Default: the
    /// kind's (http `10s`, tcp `10s`, host_alive `15s`, process `10s`, nagios `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Added after the default dimensions and the kind's own. Default empty.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(flatten)]
    pub kind: CheckKind,
}

fn default_period() -> Duration {
    Duration::secs(30)
}

impl CheckInstance {
    /// The configured timeout, or the kind's default.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(match self.kind {
            CheckKind::HostAlive(_) => Duration::secs(15),
            _ => Duration::secs(10),
        })
    }
}

/// The kind of a check and its keys (`kind: http`, …).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(TcpCheck),
    HostAlive(HostAliveCheck),
    Process(ProcessCheck),
    Nagios(NagiosCheck),
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::HostAlive(_) => "host_alive",
            CheckKind::Process(_) => "process",
            CheckKind::Nagios(_) => "nagios",
        }
    }
}

/// `kind: http` (monasca-agent `http_check`): `http_status` and `http_response_time`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// `http://` or `https://` URL, required (defaulted only so that its absence is refused
    /// naming `url`). Userinfo (`user:password@`) is the Basic credential unless `username`
    /// is set, and never part of the `url` dimension.
    #[serde(default)]
    pub url: String,
    /// Request method. Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Statuses that count as up. Empty: any status below 400 (monasca-agent). Default empty.
    #[serde(default)]
    pub expected_status: Vec<u16>,
    /// A regex that must be found in the body (monasca-agent `match_pattern`, `.` matches
    /// newlines). Empty: no body check. Default empty.
    #[serde(default)]
    pub body_pattern: String,
    /// Request headers. Default: `User-Agent: statsgate/<version>` only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Check the server's certificate (monasca-agent's `disable_ssl_validation`, inverted:
    /// statsgate verifies by default). Default `true`.
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// PEM file of extra CA certificates trusted for this check. Default empty.
    #[serde(default)]
    pub ca_file: String,
    /// Send statsgate's own Keystone token as `X-Auth-Token` (monasca-agent
    /// `use_keystone`). Default `false`.
    #[serde(default)]
    pub keystone: bool,
    /// Basic-auth user, sent only after a `401` challenge (as httplib2 did). Default empty.
    #[serde(default)]
    pub username: String,
    /// Basic-auth password. Default empty.
    #[serde(default)]
    pub password: Secret,
    /// Send `http_response_time` (monasca-agent `collect_response_time`). Default `true`.
    #[serde(default = "yes")]
    pub response_time: bool,
    /// Most body bytes read for `body_pattern`; the rest is not read. Default `1MiB`.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
}

fn default_method() -> String {
    "GET".into()
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(1)
}

fn yes() -> bool {
    true
}

/// `kind: tcp` (monasca-agent `tcp_check`): `network.tcp.response_time` and
/// `network.tcp.status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// `host:port` (a name, an IPv4 address or a bracketed IPv6 one), required (refused by
    /// validation, which names the key, rather than by the parser).
    #[serde(default)]
    pub address: String,
    /// Send `network.tcp.response_time` (monasca-agent `collect_response_time`). Default `true`.
    #[serde(default = "yes")]
    pub response_time: bool,
}

/// `kind: host_alive`: `host_alive_status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostAliveCheck {
    /// The host reported on (monasca-agent `host_name`): the `hostname` dimension, and the
    /// address contacted unless `target` is set. Required.
    #[serde(default)]
    pub host: String,
    /// `ping` (ICMP echo) or `ssh` (connect and expect an `SSH-` banner) (monasca-agent
    /// `alive_test`). Default `ping`.
    #[serde(default = "default_alive_mode")]
    pub mode: AliveMode,
    /// The address actually contacted when it differs from `host` (monasca-agent
    /// `target_hostname`). Default empty.
    #[serde(default)]
    pub target: String,
    /// The SSH port of `mode: ssh` (monasca-agent `ssh_port`). Default `22`.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AliveMode {
    Ping,
    Ssh,
}

impl AliveMode {
    pub fn name(self) -> &'static str {
        match self {
            AliveMode::Ping => "ping",
            AliveMode::Ssh => "ssh",
        }
    }
}

fn default_alive_mode() -> AliveMode {
    AliveMode::Ping
}

fn default_ssh_port() -> u16 {
    22
}

/// `kind: process`: monasca-agent's `process.*`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessCheck {
    /// Process names (or, with `exact: false`, command-line substrings) to match
    /// (monasca-agent `search_string`); `All` matches every process. Either this or `user`.
    #[serde(default)]
    pub search: Vec<String>,
    /// Match the processes of this user (name or uid) instead (monasca-agent `username`).
    #[serde(default)]
    pub user: String,
    /// `search` must equal the process name; `false`: a substring of the command line
    /// (monasca-agent `exact_match`). Default `true`.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Send CPU, memory, threads, descriptors and I/O besides `process.pid_count`
    /// (monasca-agent `detailed`, which its detection plugins set). Default `true`.
    #[serde(default = "yes")]
    pub detailed: bool,
}

/// `kind: nagios` (monasca-agent `nagios_wrapper`): a Nagios-convention plugin.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NagiosCheck {
    /// The plugin and its arguments, one list element each (no shell), required. With
    /// `shell: true`, one element: a `/bin/sh -c` script. (A serde default only so that a
    /// missing `command` is refused by `validate`, naming the key.)
    #[serde(default)]
    pub command: Vec<String>,
    /// Run `command` through `/bin/sh -c`. Default `false`.
    #[serde(default)]
    pub shell: bool,
    /// The metric's name (monasca-agent `metric_name`). Default: the check's `name`.
    #[serde(default)]
    pub metric_name: String,
    /// The `target_host` dimension (monasca-agent `host_name`). Default: this host's name.
    #[serde(default)]
    pub host: String,
    /// The plugin's environment: only these variables, plus `PATH` (default
    /// `/usr/lib/nagios/plugins:/usr/local/bin:/usr/bin:/bin`) unless set here. Values are
    /// secrets (a plugin's password usually comes this way): never logged. Default empty.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// The plugin's working directory. Default `/`.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Most bytes of the plugin's standard output read; the rest is discarded. Default
    /// `64KiB`.
    #[serde(default = "default_max_output")]
    pub max_output: ByteSize,
}

fn default_workdir() -> String {
    "/".into()
}

fn default_max_output() -> ByteSize {
    ByteSize::kib(64)
}

/// The names `kind:` accepts, for messages and docs.
pub const CHECK_KINDS: [&str; 5] = ["http", "tcp", "host_alive", "process", "nagios"];

pub fn validate(c: &super::Config) -> Result<(), Invalid> {
    let s = &c.checks;
    if s.max_concurrent == 0 || s.max_concurrent > 1024 {
        bad(
            "checks.max_concurrent",
            format!("must be 1 to 1024 (got {})", s.max_concurrent),
        )?;
    }
    if s.files_period < Duration::millis(100) {
        bad(
            "checks.files_period",
            format!("must be at least 100ms (got {})", s.files_period),
        )?;
    }
    if !s.rainbow_path.is_empty() && (!s.rainbow_path.starts_with('/') || s.rainbow_path == "/") {
        // "/" would shadow every unknown route's 404 and the listener's own answers.
        bad(
            "checks.rainbow_path",
            format!(
                "must start with / and name a path other than / (got {:?})",
                s.rainbow_path
            ),
        )?;
    }
    if ["/beat", "/status", "/v2.0/metrics", "/api/perf"].contains(&s.rainbow_path.as_str())
        || s.rainbow_path.starts_with("/api/perf/")
    {
        bad(
            "checks.rainbow_path",
            format!("{:?} is already an HTTP listener route", s.rainbow_path),
        )?;
    }
    let mut names = BTreeSet::new();
    for (i, check) in s.instances.iter().enumerate() {
        let key = |k: &str| format!("checks.instances[{i}].{k}");
        if check.name.is_empty() || check.name.len() > 255 {
            bad(key("name"), "must be 1 to 255 characters")?;
        }
        if !names.insert(check.name.as_str()) {
            bad(
                key("name"),
                format!(
                    "{:?} names another check too; names must be unique",
                    check.name
                ),
            )?;
        }
        if check.period < Duration::secs(1) {
            bad(
                key("period"),
                format!("must be at least 1s (got {})", check.period),
            )?;
        }
        let timeout = check.timeout();
        if timeout < Duration::millis(10) {
            bad(
                key("timeout"),
                format!("must be at least 10ms (got {timeout})"),
            )?;
        }
        for (k, v) in &check.dimensions {
            if crate::validate::dimension_key(k).is_err()
                || crate::validate::dimension_value(v).is_err()
            {
                bad(
                    format!("checks.instances[{i}].dimensions.{k}"),
                    format!("{k:?}: {v:?} is not a valid Monasca dimension"),
                )?;
            }
        }
        validate_kind(&check.kind, &check.name, &key)?;
        // The token is statsgate's own: without an identity there is none to send.
        if let CheckKind::Http(h) = &check.kind
            && h.keystone
            && c.keystone.auth_url.is_empty()
        {
            bad(
                key("keystone"),
                "needs keystone.auth_url (the token sent is statsgate's own), which is not \
                 configured",
            )?;
        }
    }
    Ok(())
}

fn validate_kind(
    kind: &CheckKind,
    name: &str,
    key: &dyn Fn(&str) -> String,
) -> Result<(), Invalid> {
    match kind {
        CheckKind::Http(h) => {
            let url = h.url.trim();
            if url.is_empty() {
                bad(key("url"), "is required for kind http")?;
            }
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => bad(key("url"), "must be an http:// or https:// URL with a host")?,
                Err(e) => bad(key("url"), format!("not a URL: {e}"))?,
            }
            if reqwest::Method::from_bytes(h.method.as_bytes()).is_err() {
                bad(
                    key("method"),
                    format!("{:?} is not an HTTP method", h.method),
                )?;
            }
            if let Some(s) = h.expected_status.iter().find(|s| !(100..=599).contains(*s)) {
                bad(key("expected_status"), format!("{s} is not an HTTP status"))?;
            }
            if !h.body_pattern.is_empty()
                && let Err(e) = regex::Regex::new(&format!("(?s){}", h.body_pattern))
            {
                bad(key("body_pattern"), format!("not a regex: {e}"))?;
            }
            for (k, v) in &h.headers {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(v).is_err()
                {
                    bad(format!("{}.{k}", key("headers")), "not a valid HTTP header")?;
                }
            }
            if !h.ca_file.is_empty() && std::fs::metadata(&h.ca_file).is_err() {
                bad(key("ca_file"), format!("{} cannot be read", h.ca_file))?;
            }
            if h.password.is_empty() != h.username.is_empty() {
                bad(key("username"), "username and password go together")?;
            }
            if h.max_body.bytes() > 64 << 20 {
                bad(key("max_body"), "must be at most 64MiB")?;
            }
        }
        CheckKind::Tcp(t) => {
            if t.address.trim().is_empty() {
                bad(key("address"), "is required for kind tcp (host:port)")?;
            }
            if split_host_port(&t.address).is_none() {
                bad(
                    key("address"),
                    format!("{:?} is not host:port (bracket IPv6: [::1]:22)", t.address),
                )?;
            }
        }
        CheckKind::HostAlive(h) => {
            if h.host.trim().is_empty() {
                bad(key("host"), "is required for kind host_alive")?;
            }
            if crate::validate::dimension_value(&h.host).is_err() {
                bad(
                    key("host"),
                    "is the hostname dimension and must be a valid Monasca dimension value",
                )?;
            }
            if !h.target.is_empty() && crate::validate::dimension_value(&h.target).is_err() {
                bad(
                    key("target"),
                    "is the target_hostname dimension and must be a valid Monasca dimension value",
                )?;
            }
            if h.mode == AliveMode::Ssh && h.port == 0 {
                bad(key("port"), "must be 1 to 65535")?;
            }
        }
        CheckKind::Process(p) => {
            if p.search.is_empty() == p.user.is_empty() {
                bad(key("search"), "set exactly one of search and user")?;
            }
            if p.search.iter().any(|s| s.is_empty()) {
                bad(key("search"), "entries must not be empty")?;
            }
            if !p.user.is_empty() && crate::validate::dimension_value(&p.user).is_err() {
                bad(
                    key("user"),
                    "is the process_user dimension and must be a valid Monasca dimension value",
                )?;
            }
        }
        CheckKind::Nagios(n) => {
            let Some(program) = n.command.first() else {
                return bad(
                    key("command"),
                    "is required for kind nagios (the plugin and its arguments)",
                );
            };
            if n.command.iter().any(|a| a.contains('\0')) {
                bad(key("command"), "must not contain a NUL character")?;
            }
            if n.shell {
                if n.command.len() != 1 {
                    bad(key("command"), "with shell: true, one element: the script")?;
                }
            } else {
                executable(program, n.env.get("PATH").map(Secret::expose))
                    .map_err(|why| (key("command"), why))?;
            }
            let metric = if n.metric_name.is_empty() {
                name
            } else {
                &n.metric_name
            };
            if crate::validate::name(metric).is_err() {
                bad(
                    key(if n.metric_name.is_empty() {
                        "name"
                    } else {
                        "metric_name"
                    }),
                    format!("{metric:?} is not a valid Monasca metric name"),
                )?;
            }
            if !n.host.is_empty() && crate::validate::dimension_value(&n.host).is_err() {
                bad(
                    key("host"),
                    "is the target_host dimension and must be a valid Monasca dimension value",
                )?;
            }
            for (k, v) in &n.env {
                if k.is_empty() || k.contains(['=', '\0']) || v.expose().contains('\0') {
                    // Never the value: it may be a password.
                    bad(
                        format!("{}.{k}", key("env")),
                        "names must be non-empty without = or NUL, values without NUL",
                    )?;
                }
            }
            if !std::path::Path::new(&n.workdir).is_dir() {
                bad(key("workdir"), format!("{} is not a directory", n.workdir))?;
            }
            if n.max_output.bytes() > 16 << 20 {
                bad(key("max_output"), "must be at most 16MiB")?;
            }
        }
    }
    Ok(())
}

/// The default `PATH` of a Nagios plugin.
pub const NAGIOS_PATH: &str = "/usr/lib/nagios/plugins:/usr/local/bin:/usr/bin:/bin";

/// Where `program` resolves: itself when it holds a `/`, else the first executable of that
/// name on `path` (or [`NAGIOS_PATH`]). Refused unless it is a regular file with an execute bit.
pub fn executable(program: &str, path: Option<&str>) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    let path = path.unwrap_or(NAGIOS_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| is_exec(p))
        .ok_or_else(|| format!("{program} is not an executable file on PATH {path}"))
}

/// `host:port` or `[v6]:port` → (host, port).
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("db:5432"), Some(("db", 5432)));
        assert_eq!(split_host_port("[::1]:22"), Some(("::1", 22)));
        assert_eq!(split_host_port("::1:22"), None);
        assert_eq!(split_host_port("db"), None);
        assert_eq!(split_host_port("db:0"), None);
        assert_eq!(split_host_port(":80"), None);
    }

    #[test]
    fn plugins_resolve_on_path_only_when_executable() {
        assert!(executable("sh", Some("/bin:/usr/bin")).is_ok());
        assert!(executable("/etc/passwd", None).is_err());
        assert!(executable("no-such-plugin-xyz", None).is_err());
    }
}
