//! The documentation held to the binary: README's `/metrics` table against what a running
//! gateway serves, and the defaults that `config/statsgate.yaml`'s comments state against
//! what `check-config` prints. A renamed counter or a changed default fails here instead of
//! misleading an operator.

mod common;

use common::fake_openstack::Fake;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `a_{b,c}_total{label,other}` → `a_b_total`, `a_c_total`: a trailing group names labels,
/// a group inside the name lists alternatives.
fn expand(name: &str) -> Vec<String> {
    let mut name = name;
    if name.ends_with('}')
        && let Some(open) = name.rfind('{')
    {
        name = &name[..open];
    }
    if let (Some(open), Some(close)) = (name.find('{'), name.find('}')) {
        let (head, alternatives, tail) =
            (&name[..open], &name[open + 1..close], &name[close + 1..]);
        return alternatives
            .split(',')
            .flat_map(|alt| expand(&format!("{head}{alt}{tail}")))
            .collect();
    }
    vec![name.to_owned()]
}

/// The metric names README's `/metrics` table lists (its first column, in backticks).
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let table = readme
        .split("| metric | meaning |")
        .nth(1)
        .expect("README has the /metrics table");
    let mut names = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for quoted in first.split('`').skip(1).step_by(2) {
            names.extend(expand(quoted));
        }
    }
    names
}

/// The sample names a family of `/metrics` text produces, from its `# TYPE` lines (so a
/// labelled counter with no sample yet still counts).
fn served_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE statsgate_"))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect()
}

#[test]
fn readme_lists_exactly_the_metrics_the_admin_port_serves() {
    // Forwarding, a spool, heartbeats and the probes on: every family the gateway can serve
    // is there.
    let fake = Fake::start();
    let spool = tempfile::tempdir().unwrap();
    let yaml = format!(
        "monasca:\n  url: {}\n{}buffer:\n  spool_dir: {}\n",
        fake.monasca_url(),
        fake.password_yaml(),
        spool.path().display()
    );
    let gw = common::start_env(&yaml, &[("STATSGATE_PROBES__ENABLED", "true")]);
    gw.sender().send(b"docs.check:1|c").unwrap();
    gw.wait_for("the line", Duration::from_secs(10), |g| {
        g.lines_counted() >= 1
    });
    let (_, text) = gw.get("/metrics");
    let served = served_metrics(&text);
    let documented = readme_metrics();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "served but not in README's table: {undocumented:?}\nin README but not served: {missing:?}"
    );
}

/// Every `Default X.` in the shipped file's comments, by dotted key.
fn stated_defaults() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{ROOT}/config/statsgate.yaml")).unwrap();
    let (mut section, mut comment, mut out) = (String::new(), String::new(), Vec::new());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(c) = trimmed.strip_prefix('#') {
            comment.push_str(c);
            comment.push(' ');
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some((key, _)) = trimmed.split_once(':') {
            if indent == 0 {
                section = key.to_owned();
            } else if indent == 2
                && let Some(at) = comment.rfind("Default ")
            {
                let rest = &comment[at + "Default ".len()..];
                let value = rest
                    .split_once(". ")
                    .map_or(rest.trim_end().trim_end_matches('.'), |(v, _)| v);
                out.push((format!("{section}.{key}"), value.trim().to_owned()));
            }
        }
        comment.clear();
    }
    out
}

fn lookup<'a>(tree: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(tree, |v, k| v.get(k))
}

#[test]
fn the_shipped_files_stated_defaults_are_what_check_config_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("check-config")
        .env_remove("OS_AUTH_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (key, stated) in stated_defaults() {
        let Some(actual) = lookup(&printed, &key) else {
            wrong.push(format!("{key}: not printed by check-config"));
            continue;
        };
        let matches = match stated.as_str() {
            "empty" | "none" => {
                actual.is_null()
                    || actual.as_str() == Some("")
                    || actual.as_array().is_some_and(Vec::is_empty)
                    || actual.as_object().is_some_and(|m| m.is_empty())
            }
            // Prose defaults ("all six", "this machine's hostname") are not literal values.
            s if s.contains(' ') && !s.starts_with('[') => continue,
            s => match serde_saphyr::from_str::<Value>(s) {
                Ok(v) => {
                    &v == actual
                        || v.to_string().trim_matches('"') == actual.to_string().trim_matches('"')
                }
                Err(_) => continue,
            },
        };
        checked += 1;
        if !matches {
            wrong.push(format!(
                "{key}: the comment says {stated}, check-config prints {actual}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 40, "only {checked} defaults were checkable");
}

/// Every `section.key` of the shipped file.
fn shipped_keys() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/config/statsgate.yaml")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let trimmed = line.trim_start();
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        match line.len() - trimmed.len() {
            0 => section = key.to_owned(),
            2 => keys.push(format!("{section}.{key}")),
            _ => {}
        }
    }
    keys
}

#[test]
fn readme_configuration_table_has_every_key() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let table = readme
        .split("| key | default | meaning |")
        .nth(1)
        .expect("README has the configuration table");
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        // `keystone.username`, `user_id`: later names share the first one's section.
        let mut section = String::new();
        for quoted in first.split('`').skip(1).step_by(2) {
            match quoted.split_once('.') {
                Some((s, _)) => {
                    section = s.to_owned();
                    documented.insert(quoted.to_owned());
                }
                None => {
                    documented.insert(format!("{section}.{quoted}"));
                }
            }
        }
    }
    let missing: Vec<_> = shipped_keys()
        .into_iter()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from README's table: {missing:?}"
    );
}

/// `config/checks.example.yaml`, which README points to for one check of every kind, is a
/// configuration the gateway accepts, and holds every kind.
#[test]
fn the_example_checks_file_is_accepted_and_has_every_kind() {
    let path = format!("{ROOT}/config/checks.example.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(["check-config", "--config", &path])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&path).unwrap();
    for kind in ["http", "tcp", "host_alive", "process", "nagios"] {
        assert!(
            text.contains(&format!("kind: {kind}\n")),
            "no {kind} check in {path}"
        );
    }
}
