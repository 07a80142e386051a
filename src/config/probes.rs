//! `probes.*`: the node's own metrics (issue 12, `reference/probes.md`), in Rainbow's shape
//! (a period per group) with the monasca-agent options operators used.
//!
//! Owns: the section's schema, defaults and checks. Must never: read `/proc` (that is
//! `crate::probes`).

use super::Duration;
use super::validate::{Invalid, bad};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `probes.*`. Defaults send what monasca-agent's default setup sends (its five system
/// checks); Rainbow's extras and containers are opt-in.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbesConfig {
    /// Collect host metrics at all. Default `true`.
    pub enabled: bool,
    /// Sampling period of every group without its own, duration; `_sec` rates are over it.
    /// At least `100ms`. Default `30s` (monasca-agent's `check_freq`).
    pub period: Duration,
    /// A period per group (`cpu`, `mem`, `load`, `disk`, `net`, `system`, `container`),
    /// e.g. `{disk: 5m}`. Default empty.
    pub periods: BTreeMap<String, Duration>,
    /// A group still sampling after this is counted (`reason="timeout"`) and skipped until it
    /// returns, duration. Default `10s`.
    pub timeout: Duration,
    /// `statvfs` of one mount is cut after this (a hung NFS mount), duration. Default `2s`.
    pub mount_timeout: Duration,
    /// Groups not collected. Default `[system, container]`.
    pub disabled_groups: Vec<String>,
    /// Rainbow's extra names inside the default groups: `cpu.core.*`, `mem.committed_*`,
    /// `mem.kernel_mb`, `io.busy_perc`, `net.*_utilization_perc`. Default `false`.
    pub extras: bool,
    /// monasca-agent `send_io_stats`: the `io.*` per mounted device. Default `true`.
    pub send_io_stats: bool,
    /// monasca-agent `send_rollup_stats`: `cpu.total_logical_cores`, `disk.total_space_mb`,
    /// `disk.total_used_space_mb`. Default `false`.
    pub send_rollup_stats: bool,
    /// monasca-agent `use_mount`: the `mount_point` dimension on `disk.*` and `io.*`.
    /// Default `true`.
    pub use_mount: bool,
    /// monasca-agent `ignore_filesystem_types`, on top of the nodev types of
    /// `<proc_path>/filesystems`. Default `[iso9660, tmpfs, nsfs]`.
    pub ignore_filesystem_types: Vec<String>,
    /// monasca-agent `device_blacklist_re`: mounts whose device matches are skipped (regex,
    /// anchored at the start like Python's `re.match`). Default `.*freezer_backup_snap.*`.
    pub device_blacklist_re: String,
    /// monasca-agent `excluded_interfaces`: names skipped exactly. Default empty.
    pub excluded_interfaces: Vec<String>,
    /// monasca-agent `excluded_interface_re` (regex, anchored at the start). Default
    /// `lo.*|vnet.*|tun.*|ovs.*|br.*|tap.*|qbr.*|qvb.*|qvo.*`.
    pub excluded_interface_re: String,
    /// monasca-agent `use_bits`: `net.{in,out}_bits_sec` instead of the bytes pair.
    /// Default `false`.
    pub use_bits: bool,
    /// monasca-agent `net_bytes_only`: no packet, error or drop rates. Default `false`.
    pub net_bytes_only: bool,
    /// monasca-agent `cpu_idle_only`: only `cpu.idle_perc` (and rollups). Default `false`.
    pub cpu_idle_only: bool,
    /// procfs to read (a containerised gateway mounts the host's, e.g. `/host/proc`).
    /// Default `/proc`.
    pub proc_path: String,
    /// sysfs to read. Default `/sys`.
    pub sys_path: String,
    /// cgroup v2 root; containers are its leaf groups that hold processes. Default
    /// `/sys/fs/cgroup`.
    pub cgroup_path: String,
    /// Most containers reported per sample; the rest are skipped and counted
    /// (`reason="limit"`). Default `100`.
    pub max_containers: usize,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            enabled: true,
            period: Duration::secs(30),
            periods: BTreeMap::new(),
            timeout: Duration::secs(10),
            mount_timeout: Duration::secs(2),
            disabled_groups: vec!["system".into(), "container".into()],
            extras: false,
            send_io_stats: true,
            send_rollup_stats: false,
            use_mount: true,
            ignore_filesystem_types: vec!["iso9660".into(), "tmpfs".into(), "nsfs".into()],
            device_blacklist_re: ".*freezer_backup_snap.*".into(),
            excluded_interfaces: Vec::new(),
            excluded_interface_re: "lo.*|vnet.*|tun.*|ovs.*|br.*|tap.*|qbr.*|qvb.*|qvo.*".into(),
            use_bits: false,
            net_bytes_only: false,
            cpu_idle_only: false,
            proc_path: "/proc".into(),
            sys_path: "/sys".into(),
            cgroup_path: "/sys/fs/cgroup".into(),
            max_containers: 100,
        }
    }
}

/// The group names `periods` and `disabled_groups` accept.
pub const GROUP_NAMES: [&str; 7] = ["cpu", "mem", "load", "disk", "net", "system", "container"];

/// A Python `re.match` pattern as a Rust regex: anchored at the start only.
pub fn prefix_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})"))
}

pub fn validate(c: &super::Config) -> Result<(), Invalid> {
    let p = &c.probes;
    let min = Duration::millis(100);
    if p.period < min {
        bad(
            "probes.period",
            format!("must be at least 100ms (got {})", p.period),
        )?;
    }
    for (group, period) in &p.periods {
        let key = format!("probes.periods.{group}");
        if !GROUP_NAMES.contains(&group.as_str()) {
            bad(
                &key,
                format!("unknown group; groups are {}", GROUP_NAMES.join(", ")),
            )?;
        }
        if *period < min {
            bad(&key, format!("must be at least 100ms (got {period})"))?;
        }
    }
    for g in &p.disabled_groups {
        if !GROUP_NAMES.contains(&g.as_str()) {
            bad(
                "probes.disabled_groups",
                format!("unknown group {g:?}; groups are {}", GROUP_NAMES.join(", ")),
            )?;
        }
    }
    for (key, d) in [
        ("probes.timeout", p.timeout),
        ("probes.mount_timeout", p.mount_timeout),
    ] {
        if d < Duration::millis(10) || d > Duration::secs(600) {
            bad(key, format!("must be between 10ms and 10m (got {d})"))?;
        }
    }
    for (key, re) in [
        ("probes.device_blacklist_re", &p.device_blacklist_re),
        ("probes.excluded_interface_re", &p.excluded_interface_re),
    ] {
        if let Err(e) = prefix_regex(re) {
            bad(key, format!("is not a valid regex: {e}"))?;
        }
    }
    for (key, path) in [
        ("probes.proc_path", &p.proc_path),
        ("probes.sys_path", &p.sys_path),
        ("probes.cgroup_path", &p.cgroup_path),
    ] {
        if p.enabled && path.is_empty() {
            bad(key, "must not be empty")?;
        }
    }
    if p.max_containers > 10_000 {
        bad(
            "probes.max_containers",
            format!("must be at most 10000 (got {})", p.max_containers),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::load;

    fn refused(yaml: &str, env: &[(&str, &str)]) -> String {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load(Some(f.path()), env).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_stop_start_up_naming_the_key() {
        for (yaml, key) in [
            ("probes:\n  period: 10ms\n", "probes.period"),
            ("probes:\n  periods: {disk: 1ms}\n", "probes.periods.disk"),
            ("probes:\n  periods: {gpu: 1m}\n", "probes.periods.gpu"),
            (
                "probes:\n  disabled_groups: [cpus]\n",
                "probes.disabled_groups",
            ),
            (
                "probes:\n  excluded_interface_re: 'lo(['\n",
                "probes.excluded_interface_re",
            ),
            (
                "probes:\n  device_blacklist_re: '*'\n",
                "probes.device_blacklist_re",
            ),
            ("probes:\n  mount_timeout: 0s\n", "probes.mount_timeout"),
            ("probes:\n  colour: red\n", "colour"),
        ] {
            let e = refused(yaml, &[]);
            assert!(e.contains(key), "{yaml}: {e}");
        }
        let e = refused("", &[("STATSGATE_PROBES__PERIOD", "1ms")]);
        assert!(e.contains("probes.period"), "{e}");
    }

    #[test]
    fn env_overrides_apply() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let env = [
            ("STATSGATE_PROBES__PERIOD".to_string(), "5s".to_string()),
            ("STATSGATE_PROBES__USE_BITS".to_string(), "true".to_string()),
        ];
        let c = load(Some(f.path()), env).unwrap();
        assert_eq!(c.probes.period, super::Duration::secs(5));
        assert!(c.probes.use_bits);
    }
}
