//! Configuration: one serde tree, each pipeline stage owning its section.
//!
//! Owns: the YAML schema (`deny_unknown_fields` everywhere), built-in defaults, the
//! `STATSGATE_<SECTION>__<KEY>` environment overrides, unit parsing (durations, sizes) and the
//! semantic checks that refuse a bad value at start-up with a message naming the key.
//! Must never: read sockets or touch the pipeline; print a secret.

mod checks;
mod history;
mod ingest;
mod load;
mod openstack;
mod probes;
mod transports;
mod units;
mod validate;

pub use checks::{
    AliveMode, CHECK_KINDS, CheckInstance, CheckKind, ChecksConfig, HostAliveCheck, HttpCheck,
    NAGIOS_PATH, NagiosCheck, ProcessCheck, TcpCheck, executable, split_host_port,
};
pub use history::{DEFAULT_INCLUDE as HISTORY_DEFAULT_INCLUDE, HistoryConfig};
pub use ingest::{ConnectionCaps, connection_caps, fd_limit, networks};
pub use load::{ConfigError, Loaded, load, load_reporting};
pub use openstack::OPENRC;
pub use probes::{GROUP_NAMES as PROBE_GROUPS, ProbesConfig, prefix_regex};
pub use transports::{http_tls, statsd_tls, unix_mode};
pub use units::{ByteSize, Duration};

/// The process environment for [`load_reporting`], at start and on every reload.
/// `std::env::vars()` panics on a non-UTF-8 variable; such variables cannot be ours anyway.
pub fn utf8_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}
// `SpoolFsync` is defined below, next to the buffer section that uses it.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole configuration tree. Every field documents its unit and default; the shipped
/// `config/statsgate.yaml` mirrors this tree and a test parses it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub statsd: StatsdConfig,
    pub flush: FlushConfig,
    pub aggregate: AggregateConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub monasca: MonascaConfig,
    pub keystone: KeystoneConfig,
    pub buffer: BufferConfig,
    pub http: HttpConfig,
    pub heartbeat: HeartbeatConfig,
    pub telemetry: TelemetryConfig,
    pub probes: ProbesConfig,
    pub checks: ChecksConfig,
    pub history: HistoryConfig,
}

impl Config {
    /// A copy safe to print: every secret replaced by `***`.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for s in [
            &mut c.keystone.password,
            &mut c.keystone.application_credential_secret,
            &mut c.http.metrics_token,
        ] {
            if !s.is_empty() {
                *s = Secret::new("***");
            }
        }
        for check in &mut c.checks.instances {
            if let CheckKind::Http(h) = &mut check.kind {
                if !h.password.is_empty() {
                    h.password = Secret::new("***");
                }
                h.url = crate::secret::redact_url(&h.url).into_owned();
            }
        }
        // A Nagios plugin's environment is where its passwords go (PGPASSWORD, …).
        for check in &mut c.checks.instances {
            if let CheckKind::Nagios(n) = &mut check.kind {
                for v in n.env.values_mut().filter(|v| !v.is_empty()) {
                    *v = Secret::new("***");
                }
            }
        }
        for url in [&mut c.keystone.auth_url, &mut c.monasca.url] {
            *url = crate::secret::redact_url(url).into_owned();
        }
        c
    }

    /// Whether flushed metrics go to Monasca (else to the console sink).
    pub fn forwards(&self) -> bool {
        !self.monasca.url.is_empty() || !self.keystone.auth_url.is_empty()
    }
}

/// `statsd.*`: the UDP listener and the per-line limits of the parser.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatsdConfig {
    /// UDP address for statsd lines and heartbeat datagrams. Default `127.0.0.1:8125`.
    /// `[::]:8125` listens on IPv6 and IPv4 (dual stack).
    pub listen: String,
    /// Reader threads, each with its own SO_REUSEPORT socket. `0` = one per core. Default `0`.
    pub readers: usize,
    /// Kernel receive buffer per socket (SO_RCVBUF). Default `8MiB`.
    pub recv_buffer: ByteSize,
    /// Largest datagram accepted; larger ones are dropped and counted. Default `64KiB`, max `64KiB`.
    pub max_datagram: ByteSize,
    /// Longest line accepted; longer lines are rejected (`line_too_long`). Default `8KiB`.
    pub max_line: ByteSize,
    /// Most dimensions on one line, default dimensions not included. Default `32`, max `64`.
    pub max_dimensions: usize,
    /// Source networks allowed to send (CIDRs, e.g. `10.0.0.0/8`, `::1/128`); datagrams from
    /// elsewhere are dropped and counted. Empty: any source. Default empty. Applies to
    /// every statsd transport with a peer address (UDP, TCP, TLS).
    pub allow: Vec<String>,
    /// TCP address for newline-framed statsd lines (and `_hb|` lines). Empty disables it.
    /// Default empty.
    pub tcp_listen: String,
    /// Most statsd stream connections open at once, TCP, TLS and Unix stream together;
    /// more are closed at accept and counted. Default `1024`.
    pub tcp_max_connections: usize,
    /// A statsd stream connection that sends nothing for this long is closed (counted).
    /// Default `5m`.
    pub tcp_idle_timeout: Duration,
    /// TCP address for statsd over TLS (same framing as `tcp_listen`). Empty disables it;
    /// needs `tls_cert` and `tls_key`. Default empty.
    pub tls_listen: String,
    /// PEM certificate chain served on `tls_listen`. Default empty.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`. Default empty.
    pub tls_key: String,
    /// PEM CA bundle: when set, `tls_listen` requires a client certificate it signed
    /// (mutual TLS). Default empty.
    pub tls_client_ca: String,
    /// Path of a Unix datagram socket for statsd (DogStatsD's `unix://` clients). Empty
    /// disables it. Default empty.
    pub unix_listen: String,
    /// Path of a Unix stream socket for newline-framed statsd. Empty disables it.
    /// Default empty.
    pub unix_stream_listen: String,
    /// File mode of the Unix sockets, octal text. Default `"0666"` (as reachable as the
    /// loopback UDP port; restrict access with the directory).
    pub unix_mode: String,
}

/// `flush.*`: when aggregated intervals are emitted.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlushConfig {
    /// Aggregation interval, aligned to wall-clock multiples. Default `10s`, min `100ms`.
    pub interval: Duration,
    /// Gauges (and rate bases) not updated for this long are freed. Default `5m`.
    pub idle_expiry: Duration,
}

/// `aggregate.*`: what is emitted per series.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AggregateConfig {
    /// Emit counters as per-second rates instead of interval sums. Default `false`.
    pub counters_as_rate: bool,
    /// Aggregates emitted for `ms`/`h`/`d`: any of count, sum, min, max, avg, median.
    /// Default all six.
    pub timer_aggregates: Vec<TimerAggregate>,
    /// Percentiles emitted for `ms`/`h`/`d`, each in (0, 1): `0.95` → `name.95percentile`,
    /// `0.999` → `name.99_9percentile`. Default `[0.95]`.
    pub percentiles: Vec<f64>,
    /// HDR histogram precision in significant decimal digits, 1–5. Default `2` (1% error).
    /// Each digit costs about 8× the memory per busy timer series: a precision whose worst
    /// case under `max_series` exceeds the defaults' (~33 GiB) is refused.
    pub histogram_precision: u8,
    /// Largest sample the timer histograms track, in the samples' own unit (ms for `ms`),
    /// 1 to 1e12. Larger samples count in the percentiles as this value (counted,
    /// `timer_samples_clamped_total`); count, sum, min, max and avg stay exact. It sets
    /// the most memory a timer series' histogram can take. Default `1e9`.
    pub histogram_max_value: f64,
    /// Distinct members counted per set series per interval and reader thread; beyond it
    /// members are dropped and counted (`set_member_limit`). Default `10000`.
    pub max_set_members: usize,
    /// Live series per interval, over all readers; new series beyond it are refused and
    /// counted (`series_limit`). Default `1000000`.
    pub max_series: usize,
    /// Live series per metric name, over all readers; new series of a name beyond it are
    /// refused and counted (`name_series_limit`), and the name is listed on
    /// `/api/limits`. Default `100000`.
    pub max_series_per_name: usize,
    /// Hostname dimension added to every metric unless the line brings one. Empty = this
    /// machine's hostname. Default empty.
    pub hostname: String,
    /// Add the `hostname` dimension at all. Default `true`.
    pub add_hostname: bool,
    /// Dimensions added to every metric unless the line brings the same key. Default none.
    pub default_dimensions: BTreeMap<String, String>,
}

/// One of the non-percentile timer aggregates.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TimerAggregate {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Median,
}

/// `admin.*`: the operator's HTTP port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `/healthz` and `/metrics`. Default `127.0.0.1:8126`. Empty string disables it.
    pub listen: String,
    /// Most connections open at once; more are closed at accept and counted
    /// (`http_connections_refused_total{listener="admin",reason="limit"}`). Default `32`.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from the connection's start or
    /// the end of its previous request. Default `30s`.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed. Default `10s`.
    pub idle_timeout: Duration,
}

/// `log.*`: the gateway's own log on stderr.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter (`error`, `warn`, `info`, `debug`, or `statsgate=debug,...`).
    /// `RUST_LOG` wins when set. Default `info`.
    pub level: String,
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `shutdown.*`: SIGTERM/SIGINT handling.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Time from the signal to exit: stop reading, final flush, hand it to the sink.
    /// Default `5s`.
    pub grace: Duration,
}

/// `monasca.*`: where and how batches are POSTed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MonascaConfig {
    /// Monasca API base, ending in `/v2.0`. Empty: from the Keystone catalog (service type
    /// `monitoring`), or the console sink when Keystone is not configured either. Default empty.
    pub url: String,
    /// Post for another project (`?tenant_id=`). Needs one of `delegate_roles`; statsgate
    /// refuses to start when its token lacks them (the API would silently store the metrics
    /// under the token's own project). Default empty.
    pub tenant_id: String,
    /// Roles monasca-api lets use `tenant_id` (its `[security] delegate_authorized_roles`).
    /// Default `[admin]`.
    pub delegate_roles: Vec<String>,
    /// Most metrics in one POST. Default `5000`.
    pub max_batch_metrics: usize,
    /// Most bytes in one POST body. Default `4MiB`.
    pub max_batch_bytes: ByteSize,
    /// POSTs in flight at once. Default `4`.
    pub concurrency: usize,
    /// Time limit for one POST, from connect to answer. Default `30s`.
    pub timeout: Duration,
    /// First retry delay after a 5xx, timeout or connection error; doubles per attempt, with
    /// full jitter, up to `backoff_max`. Default `500ms`.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default `30s`.
    pub backoff_max: Duration,
    /// PEM bundle of extra CAs trusted for HTTPS to Monasca. Empty: `keystone.ca_file`, then
    /// the system's roots. Default empty.
    pub ca_file: String,
}

/// `keystone.*`: the identity statsgate authenticates as. When the file leaves `auth_url`
/// empty, the OpenStack client variables (`OS_AUTH_URL`, `OS_USERNAME`, ..., an openrc file)
/// fill this section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeystoneConfig {
    /// Keystone v3 URL, e.g. `https://keystone.example:5000/v3`. Empty: no authentication.
    /// Default empty. (`OS_AUTH_URL`)
    pub auth_url: String,
    /// User name for password authentication. (`OS_USERNAME`)
    pub username: String,
    /// User id, instead of `username`. (`OS_USER_ID`)
    pub user_id: String,
    /// Password. Never logged. (`OS_PASSWORD`)
    pub password: Secret,
    /// Domain of `username`; `Default` when neither name nor id is set. (`OS_USER_DOMAIN_NAME`)
    pub user_domain_name: String,
    /// (`OS_USER_DOMAIN_ID`)
    pub user_domain_id: String,
    /// Project to scope the token to, by name with its domain... (`OS_PROJECT_NAME`)
    pub project_name: String,
    /// ...or by id. (`OS_PROJECT_ID`)
    pub project_id: String,
    /// Domain of `project_name`; `Default` when neither name nor id is set.
    /// (`OS_PROJECT_DOMAIN_NAME`)
    pub project_domain_name: String,
    /// (`OS_PROJECT_DOMAIN_ID`)
    pub project_domain_id: String,
    /// Application credential id: the preferred least-privilege identity.
    /// (`OS_APPLICATION_CREDENTIAL_ID`)
    pub application_credential_id: String,
    /// Its secret. Never logged. (`OS_APPLICATION_CREDENTIAL_SECRET`)
    pub application_credential_secret: Secret,
    /// Catalog region for discovering Monasca. Empty: any. (`OS_REGION_NAME`)
    pub region_name: String,
    /// Catalog interface for discovering Monasca: public, internal or admin. Default
    /// `public`. (`OS_INTERFACE`)
    pub interface: String,
    /// Renew the token when less than this remains. Default `2m`.
    pub renew_before: Duration,
    /// Time limit for one Keystone request. Default `10s`.
    pub timeout: Duration,
    /// PEM bundle of extra CAs trusted for HTTPS to Keystone (and Monasca, unless
    /// `monasca.ca_file` is set). Default empty. (`OS_CACERT`)
    pub ca_file: String,
}

/// `buffer.*`: batches waiting to be sent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// In-memory queue of unsent batches, in body bytes. A batch that does not fit is
    /// dropped and counted (`buffer_full`). Default `256MiB`.
    pub max_bytes: ByteSize,
    /// Metrics that skip aggregation (heartbeats, metrics POSTed to `/v2.0/metrics`), held
    /// until the next flush, in rendered bytes. When full, HTTP answers 503 and UDP beats
    /// are dropped and counted. Default `64MiB`.
    pub max_pending: ByteSize,
    /// Directory for state that outlives the process: the on-disk spool of unsent batches
    /// and the gauge checkpoint. Created `0700` (files `0600`); an existing one with looser
    /// bits is tightened to `0700` unless it is sticky (shared). Locked (`LOCK`, holding the
    /// pid) while the gateway runs: a second instance on it refuses to start. Checked by
    /// `check-config` (created if missing, not locked). Empty: memory only. Default empty.
    pub spool_dir: String,
    /// Spool bound in bytes; the oldest batches are evicted and counted (`spool_full`).
    /// Default `1GiB`.
    pub spool_max_bytes: ByteSize,
    /// Spooled batches older than this are evicted and counted (`spool_expired`).
    /// Default `24h`.
    pub spool_max_age: Duration,
    /// When spooled data reaches the disk: `always` (fsync every batch), `never` (the OS
    /// decides), or a duration: a timer fsyncs whatever is unsynced every that often, so at
    /// most about that much is lost if the machine, not just the process, dies. Default `1s`.
    pub spool_fsync: SpoolFsync,
    /// Replay pace after an outage, in metrics per second (0: as fast as Monasca takes them).
    /// Replay is one POST at a time beside the live senders. Default `20000`.
    pub replay_rate: u64,
}

/// `buffer.spool_fsync`: `always`, `never`, or a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpoolFsync {
    Always,
    Never,
    Every(Duration),
}

impl std::fmt::Display for SpoolFsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolFsync::Always => f.write_str("always"),
            SpoolFsync::Never => f.write_str("never"),
            SpoolFsync::Every(d) => d.fmt(f),
        }
    }
}

impl std::str::FromStr for SpoolFsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(SpoolFsync::Always),
            "never" => Ok(SpoolFsync::Never),
            other => other
                .parse::<Duration>()
                .map(SpoolFsync::Every)
                .map_err(|_| {
                    format!("must be `always`, `never` or a duration like 1s (got {other:?})")
                }),
        }
    }
}

impl Serialize for SpoolFsync {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpoolFsync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `http.*`: the local-clients HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `POST /beat`, `GET /status`, `POST /v2.0/metrics`. Empty disables it.
    /// Default `127.0.0.1:8080`.
    pub listen: String,
    /// Largest request body accepted (larger: 413). Default `1MiB`.
    pub max_body: ByteSize,
    /// Source networks allowed (CIDRs); connections from elsewhere are closed at accept,
    /// before a byte is read, and counted. Empty: any source. Default empty.
    pub allow: Vec<String>,
    /// Most connections open at once; more are closed at accept and counted
    /// (`reason="limit"`). `0`: derived from the open-files limit at start (RLIMIT_NOFILE
    /// minus the gateway's own reserve and `admin.max_connections`, at most 4096); an explicit
    /// value must leave that reserve. Default `0`.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from the connection's start or
    /// the end of its previous request (hyper's header-read timeout). Default `30s`.
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body once its head is in; then 408.
    /// Default `30s`.
    pub body_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed: a kept-alive
    /// client with nothing to send, a stalled body, an answer nobody reads. Default `10s`.
    pub idle_timeout: Duration,
    /// Request bodies being received or handled at once, all connections together, in
    /// bytes: each request reserves its `Content-Length` (or `max_body` when chunked) before
    /// a byte of its body is buffered; beyond it, 503 (counted). At least `max_body`.
    /// Default `16MiB`.
    pub body_budget: ByteSize,
    /// `POST /v2.0/metrics` (posts anything under the gateway's token): `auto` = on only
    /// when `listen` is a loopback address, `on`, or `off` (404). Default `auto`.
    pub metrics_endpoint: MetricsEndpoint,
    /// When set, `POST /v2.0/metrics` needs `Authorization: Bearer <token>` (or
    /// `X-Auth-Token: <token>`): 401 without, 403 with another. A secret: never logged.
    /// Default empty (no token).
    pub metrics_token: Secret,
    /// liz's API on this listener (`POST /api/perf/<host>/<epoch>` publishes gauges under
    /// the gateway's token, and liz-monitor cannot send a credential; `GET /api/perf/...`
    /// reads the history): `auto` = on only when `listen` is a loopback address, `on`, or
    /// `off` (404). The admin port serves the GETs whatever this says. Default `auto`.
    pub liz_endpoint: MetricsEndpoint,
    /// PEM certificate chain: when set (with `tls_key`), `listen` serves HTTPS only.
    /// Default empty (plain HTTP).
    pub tls_cert: String,
    /// PEM private key of `tls_cert`. Default empty.
    pub tls_key: String,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).
    /// Default empty.
    pub tls_client_ca: String,
}

/// `http.metrics_endpoint`, `http.liz_endpoint`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsEndpoint {
    Auto,
    On,
    Off,
}

/// `heartbeat.*`: GE Heartbeat compatible liveness.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// How often senders beat. An instance is alive up to this age, late up to twice it,
    /// then dead. Default `1m`.
    pub expected_interval: Duration,
    /// Senders not seen for this long leave the liveness table. Default `10m`.
    pub expire_after: Duration,
    /// Most senders tracked; beats from new senders beyond it are still forwarded but not
    /// tracked (counted). Default `100000`.
    pub max_senders: usize,
    /// A sender's timestamp further than this from the gateway's clock is replaced by the
    /// receive time. Default `5m`.
    pub max_skew: Duration,
    /// An empty `ID` takes the sender's IP address instead of being refused (422).
    /// Default `false`.
    pub derive_id: bool,
    /// Emit `heartbeat.alive` (dimensions enabler_id, enabler_version) per flush: the number
    /// of alive instances. Default `true`.
    pub alive_gauges: bool,
}

/// `telemetry.*`: the gateway's own health as Monasca metrics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// At each flush, also send the gateway's own counters to Monasca as `statsgate.*`
    /// metrics (per-interval counts and current gauges, with the `hostname` dimension).
    /// Only when forwarding: the console sink stays as the README shows. Default `true`.
    pub self_metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { self_metrics: true }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body: ByteSize::mib(1),
            allow: Vec::new(),
            max_connections: 0,
            header_timeout: Duration::secs(30),
            body_timeout: Duration::secs(30),
            idle_timeout: Duration::secs(10),
            body_budget: ByteSize::mib(16),
            metrics_endpoint: MetricsEndpoint::Auto,
            metrics_token: Secret::default(),
            liz_endpoint: MetricsEndpoint::Auto,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            expected_interval: Duration::secs(60),
            expire_after: Duration::secs(600),
            max_senders: 100_000,
            max_skew: Duration::secs(300),
            derive_id: false,
            alive_gauges: true,
        }
    }
}

impl Default for MonascaConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            tenant_id: String::new(),
            delegate_roles: vec!["admin".into()],
            max_batch_metrics: 5000,
            max_batch_bytes: ByteSize::mib(4),
            concurrency: 4,
            timeout: Duration::secs(30),
            backoff_initial: Duration::millis(500),
            backoff_max: Duration::secs(30),
            ca_file: String::new(),
        }
    }
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        Self {
            auth_url: String::new(),
            username: String::new(),
            user_id: String::new(),
            password: Secret::default(),
            user_domain_name: String::new(),
            user_domain_id: String::new(),
            project_name: String::new(),
            project_id: String::new(),
            project_domain_name: String::new(),
            project_domain_id: String::new(),
            application_credential_id: String::new(),
            application_credential_secret: Secret::default(),
            region_name: String::new(),
            interface: "public".into(),
            renew_before: Duration::secs(120),
            timeout: Duration::secs(10),
            ca_file: String::new(),
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize::mib(256),
            max_pending: ByteSize::mib(64),
            spool_dir: String::new(),
            spool_max_bytes: ByteSize::gib(1),
            spool_max_age: Duration::secs(24 * 3600),
            spool_fsync: SpoolFsync::Every(Duration::secs(1)),
            replay_rate: 20_000,
        }
    }
}

impl Default for StatsdConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8125".into(),
            readers: 0,
            recv_buffer: ByteSize::mib(8),
            max_datagram: ByteSize::kib(64),
            max_line: ByteSize::kib(8),
            max_dimensions: 32,
            allow: Vec::new(),
            tcp_listen: String::new(),
            tcp_max_connections: 1024,
            tcp_idle_timeout: Duration::secs(300),
            tls_listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            unix_listen: String::new(),
            unix_stream_listen: String::new(),
            unix_mode: "0666".into(),
        }
    }
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            interval: Duration::secs(10),
            idle_expiry: Duration::secs(300),
        }
    }
}

impl Default for AggregateConfig {
    fn default() -> Self {
        use TimerAggregate::*;
        Self {
            counters_as_rate: false,
            timer_aggregates: vec![Count, Sum, Min, Max, Avg, Median],
            percentiles: vec![0.95],
            histogram_precision: 2,
            histogram_max_value: 1e9,
            max_set_members: 10_000,
            max_series: 1_000_000,
            max_series_per_name: 100_000,
            hostname: String::new(),
            add_hostname: true,
            default_dimensions: BTreeMap::new(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8126".into(),
            max_connections: 32,
            header_timeout: Duration::secs(30),
            idle_timeout: Duration::secs(10),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: Duration::secs(5),
        }
    }
}
