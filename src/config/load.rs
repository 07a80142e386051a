//! Loading: built-in defaults < YAML file < `STATSGATE_<SECTION>__<KEY>` environment, then the
//! semantic checks. Every error names the file, the key or the variable that caused it.
//!
//! The file is read straight into [`Config`], so YAML errors keep their line and column and
//! scalars are read as the field's type (`hostname: 1234` is the string `"1234"`). The
//! environment is then applied to the config serialized as a JSON tree and read back.
//!
//! Environment value rule: a value is read as the type the key already holds in that tree.
//! Keys holding strings (addresses, names, durations, sizes, enums) take the value verbatim,
//! so `[::]:8125`, `10s` and `64MiB` never need quoting; booleans and numbers are parsed
//! (`true`, `10`, `0.5`); lists and maps are parsed as YAML flow collections (`[0.5, 0.99]`,
//! `{service: api}`). A key the tree does not hold yet (a new `default_dimensions` entry, or an
//! unknown key that is about to be refused) takes the verbatim string.

use super::Config;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const ENV_PREFIX: &str = "STATSGATE_";

/// Why the configuration was refused. The message always names the file, the key or the
/// environment variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML or does not fit the schema (unknown key, wrong type).
    #[error("config file {}{}: {message}", path.display(), where_in_file(*line, *column, key.as_deref()))]
    Parse {
        path: PathBuf,
        key: Option<String>,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    /// A `STATSGATE_..__..` variable with an empty segment (`STATSGATE_STATSD__`).
    #[error(
        "{var}: not a config override; write STATSGATE_<SECTION>__<KEY>, like STATSGATE_STATSD__LISTEN"
    )]
    EnvName { var: String },
    /// Two variables that name the same key once lowercased.
    #[error("{var} and {other} both set {key}")]
    EnvConflict {
        var: String,
        other: String,
        key: String,
    },
    /// An override names an unknown key or holds a value its key cannot take.
    #[error("{var}: {key}: {message}")]
    Env {
        var: String,
        key: String,
        message: String,
    },
    /// A value that parses but is out of range or inconsistent with another key.
    #[error("{key}: {message}{}", var.as_ref().map(|v| format!(" (set by {v})")).unwrap_or_default())]
    Invalid {
        key: String,
        message: String,
        /// The environment variable that set the key, when one did.
        var: Option<String>,
    },
}

impl ConfigError {
    /// The dotted key at fault (`flush.interval`), when the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Read { .. } | Self::EnvName { .. } => None,
            Self::Parse { key, .. } => key.as_deref(),
            Self::EnvConflict { key, .. } | Self::Env { key, .. } | Self::Invalid { key, .. } => {
                Some(key)
            }
        }
    }
}

fn where_in_file(line: Option<u64>, column: Option<u64>, key: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(line) = line {
        let _ = write!(out, ":{line}");
        if let Some(column) = column {
            let _ = write!(out, ":{column}");
        }
    }
    if let Some(key) = key {
        let _ = write!(out, ": {key}");
    }
    out
}

/// Loads the configuration: defaults, then the YAML file at `path` when given (an empty file
/// means all defaults), then every `STATSGATE_<SECTION>__<KEY>[__<SUBKEY>...]` variable in
/// `env` (segments lowercased: `STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS__SERVICE=api` sets
/// `aggregate.default_dimensions.service`), then the semantic checks.
///
/// Pass `std::env::vars()` as `env`. Every variable starting with `STATSGATE_` and holding a
/// `__` is taken as an override (one naming no key is refused), so a caller using such a name
/// for itself removes it first; `STATSGATE_` names without `__` are not ours and are skipped.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_reporting(path, env).map(|loaded| loaded.config)
}

/// A loaded configuration and the `STATSGATE_` variables that were not overrides.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Names (never values) of `STATSGATE_` variables without a `__`, left alone: Kubernetes
    /// sets `STATSGATE_PORT`, `STATSGATE_SERVICE_HOST`, … in every pod of a namespace with a
    /// Service named `statsgate`. The caller warns once, listing them.
    pub ignored_env: Vec<String>,
}

/// [`load`], also reporting the variables it ignored.
pub fn load_reporting(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let (mut overrides, ignored_env) = env_overrides(env.iter().cloned())?;
    let mut config = match path {
        Some(path) => read_file(path)?,
        None => Config::default(),
    };
    if config.keystone.auth_url.is_empty() {
        // openrc values go first so that a STATSGATE_KEYSTONE__* variable still wins.
        let openrc = super::openstack::openrc_values(&env)
            .into_iter()
            .map(|(var, key, raw)| Override {
                var,
                path: vec!["keystone".to_owned(), key.to_owned()],
                raw,
            });
        overrides = openrc.chain(overrides).collect();
    }
    if !overrides.is_empty() {
        // The overlay goes through JSON, which has no NaN or infinity: refuse those first
        // so the error names the file's key rather than a puzzling null.
        if let Some(p) = config.aggregate.percentiles.iter().find(|p| !p.is_finite()) {
            return Err(ConfigError::Invalid {
                key: "aggregate.percentiles".into(),
                message: format!("each must be strictly between 0 and 1 (got {p})"),
                var: None,
            });
        }
        config = apply_env(&config, &overrides)?;
    }
    super::validate::validate(&config).map_err(|(key, message)| {
        let var = blame(&overrides, &key).map(str::to_owned);
        ConfigError::Invalid { key, message, var }
    })?;
    Ok(Loaded {
        config,
        ignored_env,
    })
}

fn read_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut key = None;
    let parsed =
        serde_saphyr::with_deserializer_from_str_with_options(&text, yaml_options(), |de| {
            let mut track = serde_path_to_error::Track::new();
            // `Option` so that an empty file (or one with only comments) means all defaults.
            let result = Option::<Config>::deserialize(serde_path_to_error::Deserializer::new(
                de, &mut track,
            ));
            if result.is_err() {
                key = dotted(&track.path());
            }
            result
        });
    match parsed {
        Ok(config) => Ok(config.unwrap_or_default()),
        Err(e) => {
            use serde_saphyr::MessageFormatter as _;
            let location = e.location();
            let message = serde_saphyr::DefaultMessageFormatter
                .format_message(e.without_snippet())
                .into_owned();
            Err(ConfigError::Parse {
                path: path.to_owned(),
                key,
                line: location.map(|l| l.line()),
                column: location.map(|l| l.column()),
                message: printable(&message),
            })
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.1 `yes`/`no`/`on`/`off` as booleans surprise operators (`level: off`).
    options.strict_booleans = true;
    // Errors are reported on one line with file, line and key; no source snippet.
    options.with_snippet = false;
    options
}

/// `statsd.listen`, `aggregate.percentiles[1]`; `None` at the root.
fn dotted(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            // Past an unknown segment the rest of the path means nothing.
            Segment::Unknown => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Error text may quote file or env content: keep it on one line.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One `STATSGATE_` override: the variable, its key path and its raw value.
struct Override {
    var: String,
    path: Vec<String>,
    raw: String,
}

impl Override {
    fn key(&self) -> String {
        self.path.join(".")
    }
}

/// Picks the `STATSGATE_<SECTION>__<KEY>` variables, sorted by key so that a whole map
/// (`..._DEFAULT_DIMENSIONS={a: b}`) is applied before its entries (`..._DEFAULT_DIMENSIONS__C=d`),
/// and lists the other `STATSGATE_` names (no `__`), which are not ours.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Vec<Override>, Vec<String>), ConfigError> {
    let mut by_key: BTreeMap<String, Override> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            ignored.push(var);
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::EnvName { var });
        }
        let item = Override { var, path, raw };
        let key = item.key();
        if let Some(other) = by_key.get(&key) {
            let (var, other) = sorted_pair(&item.var, &other.var);
            return Err(ConfigError::EnvConflict { var, other, key });
        }
        by_key.insert(key, item);
    }
    let mut list: Vec<Override> = by_key.into_values().collect();
    list.sort_by(|a, b| a.path.cmp(&b.path));
    ignored.sort();
    Ok((list, ignored))
}

fn sorted_pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn apply_env(config: &Config, overrides: &[Override]) -> Result<Config, ConfigError> {
    let all_vars = || {
        let names: Vec<&str> = overrides.iter().map(|o| o.var.as_str()).collect();
        names.join(", ")
    };
    let mut tree = serde_json::to_value(config).map_err(|e| ConfigError::Env {
        var: all_vars(),
        key: "config".into(),
        message: format!("cannot apply overrides: {e}"),
    })?;
    for item in overrides {
        set(&mut tree, item)?;
    }
    serde_path_to_error::deserialize::<_, Config>(tree).map_err(|e| {
        let key = dotted(e.path()).unwrap_or_default();
        let message = printable(&e.inner().to_string());
        let var = blame(overrides, &key)
            .map(str::to_owned)
            // Only an override can fail here: the file was already read into `Config`.
            .unwrap_or_else(all_vars);
        ConfigError::Env { var, key, message }
    })
}

/// Writes one override into the tree, creating intermediate maps as needed; a non-map in the
/// way is replaced so that deserialization reports the type mismatch against that variable.
fn set(tree: &mut Value, item: &Override) -> Result<(), ConfigError> {
    let mut node = tree;
    for segment in &item.path {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Some(map) = node.as_object_mut() else {
            return Ok(()); // cannot happen: made an object just above
        };
        node = map.entry(segment.clone()).or_insert(Value::Null);
    }
    *node = typed(node, item)?;
    Ok(())
}

/// Reads the raw env text as the type that the key holds now (see the module docs).
fn typed(current: &Value, item: &Override) -> Result<Value, ConfigError> {
    let raw = item.raw.as_str();
    let verbatim = || Value::String(raw.to_owned());
    Ok(match current {
        Value::Bool(_) => match raw.trim() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            // Left a string: deserialization refuses it, naming the variable.
            _ => verbatim(),
        },
        Value::Number(_) => {
            let t = raw.trim();
            if let Ok(n) = t.parse::<u64>() {
                Value::from(n)
            } else if let Ok(n) = t.parse::<i64>() {
                Value::from(n)
            } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Value::Number(n)
            } else {
                verbatim()
            }
        }
        Value::Array(_) | Value::Object(_) => {
            serde_saphyr::from_str_with_options::<Value>(raw, yaml_options()).map_err(|e| {
                use serde_saphyr::MessageFormatter as _;
                let what = if current.is_array() {
                    "a YAML flow list, like [0.5, 0.99]"
                } else {
                    "a YAML flow map, like {service: api}"
                };
                let why = serde_saphyr::DefaultMessageFormatter
                    .format_message(e.without_snippet())
                    .into_owned();
                ConfigError::Env {
                    var: item.var.clone(),
                    key: item.key(),
                    message: printable(&format!("expected {what}: {why}")),
                }
            })?
        }
        Value::String(_) | Value::Null => verbatim(),
    })
}

/// The variable responsible for an error at `key`: one whose key is `key`, lies under it
/// (an unknown section), or contains it (a bad list entry, `aggregate.percentiles[1]`).
fn blame<'a>(overrides: &'a [Override], key: &str) -> Option<&'a str> {
    let within = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    overrides
        .iter()
        .filter(|o| {
            let k = o.key();
            within(&k, key) || within(key, &k)
        })
        // The deepest match is the most specific culprit.
        .max_by_key(|o| o.path.len())
        .map(|o| o.var.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Duration, LogFormat, TimerAggregate};
    use std::collections::BTreeSet;
    use std::io::Write as _;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/statsgate.yaml");

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let f = file(text);
        load(Some(f.path()), env(&[]))
    }

    fn from_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load(None, env(vars))
    }

    /// Asserts that `yaml` is refused at `key` and returns the message.
    fn refused(yaml: &str, key: &str) -> String {
        let err = from_yaml(yaml).expect_err(yaml);
        assert_eq!(err.key(), Some(key), "{yaml}: {err}");
        let text = err.to_string();
        assert!(text.contains(key), "{text}");
        text
    }

    #[test]
    fn no_file_no_env_gives_defaults() {
        assert_eq!(load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn empty_or_comment_only_file_gives_defaults() {
        assert_eq!(from_yaml("").unwrap(), Config::default());
        assert_eq!(from_yaml("# nothing\n\n").unwrap(), Config::default());
    }

    #[test]
    fn unrelated_env_is_ignored() {
        let c = from_env(&[("PATH", "/bin"), ("STATSGATEX", "1"), ("OS_CLOUD", "x")]);
        assert_eq!(c.unwrap(), Config::default());
    }

    const OPENRC_ENV: &[(&str, &str)] = &[
        ("OS_AUTH_URL", "http://keystone:5000/v3"),
        ("OS_USERNAME", "statsgate"),
        ("OS_PASSWORD", "s3cret"),
        ("OS_PROJECT_NAME", "service"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_INTERFACE", "internal"),
    ];

    #[test]
    fn an_openrc_environment_fills_keystone() {
        let c = from_env(OPENRC_ENV).unwrap();
        let k = &c.keystone;
        assert_eq!(k.auth_url, "http://keystone:5000/v3");
        assert_eq!(
            (k.username.as_str(), k.password.expose()),
            ("statsgate", "s3cret")
        );
        assert_eq!(
            (k.project_name.as_str(), k.region_name.as_str()),
            ("service", "RegionOne")
        );
        assert_eq!(k.interface, "internal");
        assert!(c.forwards());
        let printed = format!(
            "{:?} {}",
            c,
            serde_saphyr::to_string(&c.redacted()).unwrap()
        );
        assert!(!printed.contains("s3cret"), "a secret leaked: {printed}");
    }

    #[test]
    fn statsgate_variables_win_over_openrc() {
        let mut vars = OPENRC_ENV.to_vec();
        vars.push(("STATSGATE_KEYSTONE__USERNAME", "other"));
        assert_eq!(from_env(&vars).unwrap().keystone.username, "other");
    }

    #[test]
    fn a_file_identity_is_never_mixed_with_openrc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "keystone:\n  auth_url: http://ks/v3\n  application_credential_id: app\n  application_credential_secret: x\n",
        )
        .unwrap();
        let c = load(Some(&path), env(OPENRC_ENV)).unwrap();
        assert_eq!(c.keystone.auth_url, "http://ks/v3");
        assert_eq!(
            c.keystone.username, "",
            "OS_USERNAME ignored when the file names an identity"
        );
    }

    #[test]
    fn incomplete_identities_name_the_missing_key() {
        let err = from_env(&[("OS_AUTH_URL", "http://ks/v3"), ("OS_USERNAME", "u")]).unwrap_err();
        assert!(err.to_string().contains("keystone.password"), "{err}");
        let err = from_env(&[
            ("OS_AUTH_URL", "http://ks/v3"),
            ("OS_USERNAME", "u"),
            ("OS_PASSWORD", "p"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("keystone.project_name"), "{err}");
        let err = from_env(&[
            ("OS_AUTH_URL", "http://ks/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "a"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("keystone.application_credential_secret"),
            "{err}"
        );
        let err = from_env(&[("OS_AUTH_URL", "ks:5000")]).unwrap_err();
        assert!(
            err.to_string().contains("keystone.auth_url")
                && err.to_string().contains("OS_AUTH_URL"),
            "{err}"
        );
        let err = from_env(&[("STATSGATE_MONASCA__TENANT_ID", "abc")]).unwrap_err();
        assert!(err.to_string().contains("monasca.tenant_id"), "{err}");
    }

    #[test]
    fn shipped_file_equals_defaults() {
        let c = load(Some(Path::new(SHIPPED)), env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    /// Every key of the tree appears in the shipped file, so it documents all of them.
    #[test]
    fn shipped_file_lists_every_key() {
        fn keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
            if let Value::Object(map) = v {
                for (k, v) in map {
                    let path = format!("{prefix}{k}");
                    keys(v, &format!("{path}."), out);
                    out.insert(path);
                }
            }
        }
        let text = std::fs::read_to_string(SHIPPED).unwrap();
        let shipped: Value = serde_saphyr::from_str(&text).unwrap();
        let (mut want, mut got) = (BTreeSet::new(), BTreeSet::new());
        keys(
            &serde_json::to_value(Config::default()).unwrap(),
            "",
            &mut want,
        );
        keys(&shipped, "", &mut got);
        assert_eq!(got, want);
    }

    #[test]
    fn file_values_override_defaults() {
        let c = from_yaml(
            "statsd:\n  listen: '[::]:9125'\n  recv_buffer: 16MiB\n  max_line: 4096\n\
             flush:\n  interval: 1m\n  idle_expiry: 1h30m\n\
             aggregate:\n  percentiles: [0.5, 0.999]\n  timer_aggregates: [count]\n  \
             hostname: 1234\n  default_dimensions:\n    version: 1.10\n    canary: yes\n\
             log:\n  level: 'off'\n  format: json\n",
        )
        .unwrap();
        assert_eq!(c.statsd.listen, "[::]:9125");
        assert_eq!(c.statsd.recv_buffer, ByteSize::mib(16));
        assert_eq!(c.statsd.max_line, ByteSize::kib(4));
        assert_eq!(c.flush.interval, Duration::secs(60));
        assert_eq!(c.flush.idle_expiry, Duration::secs(5400));
        assert_eq!(c.aggregate.percentiles, vec![0.5, 0.999]);
        assert_eq!(c.aggregate.timer_aggregates, vec![TimerAggregate::Count]);
        // Read as the field's type: no float or boolean detour for string fields.
        assert_eq!(c.aggregate.hostname, "1234");
        assert_eq!(c.aggregate.default_dimensions["version"], "1.10");
        assert_eq!(c.aggregate.default_dimensions["canary"], "yes");
        assert_eq!(c.log.level, "off");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.shutdown, Config::default().shutdown);
    }

    #[test]
    fn missing_file_names_it() {
        let err = load(Some(Path::new("/nonexistent/statsgate.yaml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/statsgate.yaml"),
            "{err}"
        );
    }

    #[test]
    fn yaml_syntax_error_names_file_and_line() {
        let f = file("statsd:\n  listen: [1, 2\n");
        let err = load(Some(f.path()), env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&f.path().display().to_string()), "{text}");
        assert!(
            matches!(err, ConfigError::Parse { line: Some(2), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let text = refused(
            "statsd:\n  listen: 127.0.0.1:1\n  bogus: 1\n",
            "statsd.bogus",
        );
        assert!(text.contains(":3:"), "{text}");
        refused("bogus:\n  x: 1\n", "bogus");
    }

    #[test]
    fn wrong_types_in_file_are_named() {
        let text = refused("flush:\n  interval: 10\n", "flush.interval");
        assert!(text.contains("like \"10s\""), "{text}");
        refused("flush:\n  interval: soon\n", "flush.interval");
        refused("statsd:\n  readers: -1\n", "statsd.readers");
        refused("statsd:\n  recv_buffer: 8M\n", "statsd.recv_buffer");
        refused(
            "aggregate:\n  add_hostname: yes\n",
            "aggregate.add_hostname",
        );
        refused(
            "aggregate:\n  timer_aggregates: [count, p99]\n",
            "aggregate.timer_aggregates[1]",
        );
        refused("log:\n  format: xml\n", "log.format");
        refused("statsd:\n  listen: a\n  listen: b\n", "statsd");
    }

    #[test]
    fn env_overrides_every_kind_of_value() {
        let c = from_env(&[
            ("STATSGATE_STATSD__LISTEN", "[::]:8125"),
            ("STATSGATE_STATSD__READERS", "4"),
            ("STATSGATE_STATSD__MAX_LINE", "512"),
            ("STATSGATE_STATSD__RECV_BUFFER", "32MiB"),
            ("STATSGATE_FLUSH__INTERVAL", "1m"),
            ("STATSGATE_AGGREGATE__COUNTERS_AS_RATE", "true"),
            ("STATSGATE_AGGREGATE__PERCENTILES", "[0.5, 0.99]"),
            ("STATSGATE_AGGREGATE__TIMER_AGGREGATES", "[count, max]"),
            ("STATSGATE_AGGREGATE__HOSTNAME", "1234"),
            ("STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS__SERVICE", "api"),
            ("STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS__VERSION", "2"),
            ("STATSGATE_ADMIN__LISTEN", ""),
            ("STATSGATE_LOG__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(c.statsd.listen, "[::]:8125");
        assert_eq!(c.statsd.readers, 4);
        assert_eq!(c.statsd.max_line, ByteSize::b(512));
        assert_eq!(c.statsd.recv_buffer, ByteSize::mib(32));
        assert_eq!(c.flush.interval, Duration::secs(60));
        assert!(c.aggregate.counters_as_rate);
        assert_eq!(c.aggregate.percentiles, vec![0.5, 0.99]);
        use TimerAggregate::{Count, Max};
        assert_eq!(c.aggregate.timer_aggregates, vec![Count, Max]);
        assert_eq!(c.aggregate.hostname, "1234");
        let dims = &c.aggregate.default_dimensions;
        assert_eq!(dims.get("service").map(String::as_str), Some("api"));
        assert_eq!(dims.get("version").map(String::as_str), Some("2"));
        assert_eq!(c.admin.listen, "");
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn env_wins_over_file_and_merges_maps() {
        let f = file(
            "statsd:\n  listen: 10.0.0.1:8125\n  readers: 2\n\
             aggregate:\n  default_dimensions:\n    region: east\n",
        );
        let c = load(
            Some(f.path()),
            env(&[
                ("STATSGATE_STATSD__LISTEN", "0.0.0.0:8125"),
                ("STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS__SERVICE", "api"),
            ]),
        )
        .unwrap();
        assert_eq!(c.statsd.listen, "0.0.0.0:8125");
        assert_eq!(c.statsd.readers, 2);
        let dims: Vec<_> = c.aggregate.default_dimensions.keys().collect();
        assert_eq!(dims, ["region", "service"]);

        // A whole map from env replaces the file's; its own entries then merge into it.
        let c = load(
            Some(f.path()),
            env(&[
                ("STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS__ZONE", "b"),
                ("STATSGATE_AGGREGATE__DEFAULT_DIMENSIONS", "{Service: api}"),
            ]),
        )
        .unwrap();
        let dims: Vec<_> = c.aggregate.default_dimensions.keys().collect();
        assert_eq!(dims, ["Service", "zone"]);
    }

    #[test]
    fn kubernetes_service_variables_are_ignored_and_listed() {
        // What the kubelet injects for a Service named `statsgate` (docker-link style too).
        let vars = env(&[
            ("STATSGATE_PORT", "udp://10.96.0.12:8125"),
            ("STATSGATE_PORT_8125_UDP_ADDR", "10.96.0.12"),
            ("STATSGATE_SERVICE_HOST", "10.96.0.12"),
            ("STATSGATE_SERVICE_PORT", "8125"),
            ("STATSGATE_FLUSH__INTERVAL", "2s"),
        ]);
        let loaded = load_reporting(None, vars).unwrap();
        assert_eq!(loaded.config.flush.interval, Duration::secs(2));
        assert_eq!(
            loaded.ignored_env,
            [
                "STATSGATE_PORT",
                "STATSGATE_PORT_8125_UDP_ADDR",
                "STATSGATE_SERVICE_HOST",
                "STATSGATE_SERVICE_PORT"
            ]
        );
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = from_env(&[("STATSGATE_STATSD__BOGUS", "1")]).unwrap_err();
        assert!(err.to_string().contains("STATSGATE_STATSD__BOGUS"), "{err}");
        assert_eq!(err.key(), Some("statsd.bogus"));

        let err = from_env(&[("STATSGATE_NOPE__X", "1")]).unwrap_err();
        assert!(err.to_string().contains("STATSGATE_NOPE__X"), "{err}");

        let err = from_env(&[("STATSGATE_STATSD__", "1")]).unwrap_err();
        assert!(matches!(err, ConfigError::EnvName { .. }));
        assert!(err.to_string().contains("STATSGATE_STATSD__"), "{err}");

        let cases = [
            ("STATSGATE_FLUSH__INTERVAL", "10", "flush.interval"),
            ("STATSGATE_STATSD__READERS", "many", "statsd.readers"),
            (
                "STATSGATE_AGGREGATE__ADD_HOSTNAME",
                "yes",
                "aggregate.add_hostname",
            ),
            (
                "STATSGATE_AGGREGATE__PERCENTILES",
                "[0.5, x]",
                "aggregate.percentiles[1]",
            ),
            (
                "STATSGATE_AGGREGATE__PERCENTILES",
                "[0.5",
                "aggregate.percentiles",
            ),
            ("STATSGATE_FLUSH__INTERVAL__X", "1s", "flush.interval"),
        ];
        for (var, value, key) in cases {
            let err = from_env(&[(var, value)]).expect_err(var);
            assert_eq!(err.key(), Some(key), "{err}");
            assert!(err.to_string().contains(var), "{err}");
        }

        let err = from_env(&[("STATSGATE_LOG__LEVEL", "a"), ("STATSGATE_log__level", "b")]);
        assert!(matches!(err, Err(ConfigError::EnvConflict { .. })));
    }

    #[test]
    fn semantic_errors_name_key_and_env_source() {
        let err = from_env(&[("STATSGATE_FLUSH__INTERVAL", "10ms")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flush.interval: must be at least 100ms (got 10ms) (set by STATSGATE_FLUSH__INTERVAL)"
        );
        // A non-finite percentile cannot cross the overlay: named as the file's key.
        let f = file("aggregate:\n  percentiles: [.nan]\n");
        let err = load(Some(f.path()), env(&[("STATSGATE_LOG__LEVEL", "warn")])).unwrap_err();
        assert_eq!(err.key(), Some("aggregate.percentiles"), "{err}");
        // A file value fixed by the environment is fine.
        let f = file("flush:\n  interval: 10ms\n");
        let c = load(Some(f.path()), env(&[("STATSGATE_FLUSH__INTERVAL", "1s")])).unwrap();
        assert_eq!(c.flush.interval, Duration::secs(1));
    }

    #[test]
    fn each_semantic_rule_is_enforced() {
        let cases: &[(&str, &str)] = &[
            ("statsd:\n  listen: localhost\n", "statsd.listen"),
            ("statsd:\n  listen: ''\n", "statsd.listen"),
            ("statsd:\n  readers: 257\n", "statsd.readers"),
            ("statsd:\n  recv_buffer: 2GiB\n", "statsd.recv_buffer"),
            ("statsd:\n  max_datagram: 511B\n", "statsd.max_datagram"),
            ("statsd:\n  max_datagram: 65537\n", "statsd.max_datagram"),
            ("statsd:\n  max_line: 63\n", "statsd.max_line"),
            ("statsd:\n  max_line: 65KiB\n", "statsd.max_line"),
            (
                "statsd:\n  max_datagram: 1KiB\n  max_line: 2KiB\n",
                "statsd.max_line",
            ),
            ("statsd:\n  max_dimensions: 0\n", "statsd.max_dimensions"),
            ("statsd:\n  max_dimensions: 65\n", "statsd.max_dimensions"),
            ("flush:\n  interval: 99ms\n", "flush.interval"),
            (
                "flush:\n  interval: 2h\n  idle_expiry: 3h\n",
                "flush.interval",
            ),
            (
                "flush:\n  interval: 1m\n  idle_expiry: 30s\n",
                "flush.idle_expiry",
            ),
            ("aggregate:\n  percentiles: [0]\n", "aggregate.percentiles"),
            (
                "aggregate:\n  percentiles: [1.0]\n",
                "aggregate.percentiles",
            ),
            (
                "aggregate:\n  percentiles: [.nan]\n",
                "aggregate.percentiles",
            ),
            (
                "aggregate:\n  percentiles: [0.9, 0.90]\n",
                "aggregate.percentiles",
            ),
            (
                "aggregate:\n  timer_aggregates: [max, max]\n",
                "aggregate.timer_aggregates",
            ),
            (
                "aggregate:\n  timer_aggregates: []\n  percentiles: []\n",
                "aggregate.timer_aggregates",
            ),
            (
                "aggregate:\n  histogram_precision: 0\n",
                "aggregate.histogram_precision",
            ),
            (
                "aggregate:\n  histogram_precision: 6\n",
                "aggregate.histogram_precision",
            ),
            (
                "aggregate:\n  histogram_max_value: 0.5\n",
                "aggregate.histogram_max_value",
            ),
            (
                "aggregate:\n  histogram_max_value: 1e13\n",
                "aggregate.histogram_max_value",
            ),
            (
                "aggregate:\n  histogram_max_value: .nan\n",
                "aggregate.histogram_max_value",
            ),
            (
                "aggregate:\n  max_set_members: 0\n",
                "aggregate.max_set_members",
            ),
            ("aggregate:\n  max_series: 0\n", "aggregate.max_series"),
            ("aggregate:\n  hostname: 'a=b'\n", "aggregate.hostname"),
            (
                "aggregate:\n  default_dimensions:\n    _private: x\n",
                "aggregate.default_dimensions._private",
            ),
            (
                "aggregate:\n  default_dimensions:\n    env: 'a;b'\n",
                "aggregate.default_dimensions.env",
            ),
            (
                "aggregate:\n  default_dimensions:\n    env: ''\n",
                "aggregate.default_dimensions.env",
            ),
            ("admin:\n  listen: 'localhost:8126'\n", "admin.listen"),
            ("log:\n  level: ''\n", "log.level"),
            ("log:\n  level: debgu\n", "log.level"),
            ("log:\n  level: 'statsgate=loud'\n", "log.level"),
            ("shutdown:\n  grace: 50ms\n", "shutdown.grace"),
            ("shutdown:\n  grace: 11m\n", "shutdown.grace"),
        ];
        for (yaml, key) in cases {
            refused(yaml, key);
        }
        let long = "x".repeat(256);
        refused(
            &format!("aggregate:\n  hostname: {long}\n"),
            "aggregate.hostname",
        );
    }

    /// Guards: precision 5 under the default `max_series` let timers take 24 TiB (24 MiB
    /// per series); a precision or range must not allow more than the defaults' worst case.
    #[test]
    fn unaffordable_histograms_are_refused() {
        let text = refused(
            "aggregate:\n  histogram_precision: 5\n",
            "aggregate.histogram_precision",
        );
        assert!(
            text.contains("aggregate.max_series to 1383 or less"),
            "{text}"
        );
        refused(
            "aggregate:\n  histogram_precision: 3\n",
            "aggregate.histogram_precision",
        );
        refused(
            "aggregate:\n  histogram_max_value: 1e12\n",
            "aggregate.histogram_precision",
        );
        for yaml in [
            "aggregate:\n  histogram_precision: 5\n  max_series: 1383\n",
            "aggregate:\n  histogram_precision: 3\n  max_series: 100000\n",
            "aggregate:\n  histogram_precision: 3\n  histogram_max_value: 1000\n  max_series: 300000\n",
            "aggregate:\n  histogram_precision: 1\n  histogram_max_value: 1e12\n",
        ] {
            from_yaml(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
    }

    #[test]
    fn edge_values_are_accepted() {
        let c = from_yaml(
            "statsd:\n  max_datagram: 512B\n  max_line: 64B\n  max_dimensions: 64\n  \
             readers: 256\n  recv_buffer: 1GiB\n\
             flush:\n  interval: 100ms\n  idle_expiry: 100ms\n\
             aggregate:\n  timer_aggregates: []\n  histogram_precision: 5\n  max_series: 1000\n  \
             histogram_max_value: 1\n  \
             hostname: web-01.example.org\n\
             admin:\n  listen: ''\n\
             log:\n  level: 'statsgate=debug,warn'\n\
             shutdown:\n  grace: 10m\n",
        );
        let c = c.unwrap();
        assert_eq!(c.admin.listen, "");
        assert_eq!(c.shutdown.grace, Duration::secs(600));
    }

    /// The env overlay re-reads the whole config from its serialized form: that must be lossless.
    #[test]
    fn serialized_config_round_trips() {
        let mut c = Config::default();
        c.flush.interval = Duration::millis(1500);
        c.statsd.recv_buffer = ByteSize::b(1000);
        c.aggregate.percentiles = vec![0.1, 0.999, 0.123_456_789];
        c.aggregate
            .default_dimensions
            .insert("k".into(), "v".into());
        let back: Config = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let yaml = serde_saphyr::to_string(&c).unwrap();
        assert_eq!(serde_saphyr::from_str::<Config>(&yaml).unwrap(), c);
    }
}
