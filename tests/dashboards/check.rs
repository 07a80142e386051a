//! The checker behind tests/dashboards.rs: reads a Grafana dashboard in the Monasca data
//! source plugin's query model and lists every way it disagrees with what statsgate emits.
//! It only reads: it never edits a dashboard, and it knows no metric name of its own (what
//! exists comes from the caller, collected from the real binary).
//!
//! The query model (openstack/monasca-grafana-datasource 1.4.0, commit ab821ad1, `datasource.js`
//! `buildDataQuery`, `autoAlias`, `metricFindQuery`; `query_ctrl.js` `validateTarget`):
//! a target is `{metric, dimensions: [{key, value}], aggregator, period, alias, group}`;
//! a dimension whose value is `$all` or `*` becomes `group_by=<key>`, any other value a
//! `dimensions=<key>:<value>` filter after template substitution; `alias` `@<key>` is replaced
//! by that dimension's value; a templating variable of type `query` asks
//! `GET /v2.0/metrics/dimensions/names/values?dimension_name=<query>`, so its query is a
//! dimension name.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What statsgate sent: metric name → every dimension key seen on it.
pub type Emitted = BTreeMap<String, BTreeSet<String>>;

/// The plugin's aggregator choices (`partials/query.editor.html`).
const AGGREGATORS: &[&str] = &["none", "count", "avg", "sum", "min", "max"];
/// The data source input every panel and query variable must use, so the dashboard imports
/// against whichever Monasca data source the operator picks.
pub const DS_INPUT: &str = "${DS_MONASCA}";

/// One panel target as the plugin reads it.
#[derive(Debug, Clone)]
pub struct Target {
    pub panel: String,
    pub metric: String,
    /// (key, value) pairs as written.
    pub dimensions: Vec<(String, String)>,
    pub aggregator: String,
    pub period: String,
    pub alias: String,
}

impl Target {
    /// Keys that filter (`key:value`) or group (`$all`, `*`) the query.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.dimensions.iter().map(|(k, _)| k.as_str())
    }

    /// Keys the alias substitutes (`@key`).
    pub fn alias_keys(&self) -> Vec<String> {
        let re = regex::Regex::new(r"@([A-Za-z0-9_.\-]+)").unwrap();
        re.captures_iter(&self.alias)
            .map(|c| c[1].trim_end_matches('.').to_owned())
            .collect()
    }
}

/// Every panel (rows' nested panels included), in order.
pub fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every target of every panel.
pub fn targets(dash: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for p in panels(dash) {
        let panel = format!("panel {} {:?}", p["id"], p["title"].as_str().unwrap_or(""));
        for t in p["targets"].as_array().into_iter().flatten() {
            let s = |k: &str| t[k].as_str().unwrap_or("").to_owned();
            out.push(Target {
                panel: panel.clone(),
                metric: s("metric"),
                dimensions: t["dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let f = |k: &str| d[k].as_str().unwrap_or("").to_owned();
                        (f("key"), f("value"))
                    })
                    .collect(),
                aggregator: s("aggregator"),
                period: s("period"),
                alias: s("alias"),
            });
        }
    }
    out
}

/// The templating variables: name → the variable.
pub fn variables(dash: &Value) -> BTreeMap<String, &Value> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v)))
        .collect()
}

/// Template variables a text refers to: `$x`, `${x}`, `${x:fmt}`, `[[x]]`. `$all` is the
/// plugin's group-by keyword and `$__…` are Grafana's globals, so neither counts.
pub fn referenced_variables(text: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]",
    )
    .unwrap();
    re.captures_iter(text)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().to_owned())
        .filter(|n| n != "all" && !n.starts_with("__"))
        .collect()
}

/// Every disagreement between `dash` and `emitted`, each a sentence naming the panel.
/// Empty: every name and key the dashboard queries exists.
pub fn check(file: &str, dash: &Value, emitted: &Emitted) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |s: String| problems.push(format!("{file}: {s}"));

    let inputs = dash["__inputs"].as_array().cloned().unwrap_or_default();
    if !inputs
        .iter()
        .any(|i| i["name"] == "DS_MONASCA" && i["pluginId"] == "monasca-datasource")
    {
        bad("no __inputs entry DS_MONASCA for plugin monasca-datasource".into());
    }
    if !dash["schemaVersion"].is_u64() {
        bad("schemaVersion missing".into());
    }
    if dash["uid"].as_str().is_none_or(str::is_empty) {
        bad("uid missing".into());
    }

    let mut ids = BTreeSet::new();
    for p in panels(dash) {
        match p["id"].as_u64() {
            Some(id) if !ids.insert(id) => bad(format!("panel id {id} is used twice")),
            Some(_) => {}
            None => bad(format!("panel {:?} has no numeric id", p["title"])),
        }
        if p["targets"].as_array().is_some_and(|t| !t.is_empty()) && p["datasource"] != DS_INPUT {
            bad(format!(
                "panel {:?}: datasource {} is not {DS_INPUT}",
                p["title"], p["datasource"]
            ));
        }
    }

    let vars = variables(dash);
    let undefined = |what: &str, text: &str, problems: &mut Vec<String>| {
        for v in referenced_variables(text) {
            if !vars.contains_key(&v) {
                problems.push(format!(
                    "{file}: {what} uses ${v}, which the dashboard's templating does not define"
                ));
            }
        }
    };
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap_or("");
        undefined(&format!("panel title {title:?}"), title, &mut problems);
    }

    let targets = targets(dash);
    let queried: BTreeSet<&str> = targets.iter().map(|t| t.metric.as_str()).collect();
    for t in &targets {
        let at = &t.panel;
        let Some(keys) = emitted.get(&t.metric) else {
            problems.push(format!(
                "{file}: {at}: metric {:?} is not emitted by statsgate",
                t.metric
            ));
            continue;
        };
        if !AGGREGATORS.contains(&t.aggregator.as_str()) {
            problems.push(format!(
                "{file}: {at}: aggregator {:?} is not one of {AGGREGATORS:?}",
                t.aggregator
            ));
        }
        if t.aggregator != "none" && t.period.is_empty() {
            problems.push(format!("{file}: {at}: an aggregator needs a period"));
        }
        for (key, value) in &t.dimensions {
            if !keys.contains(key) {
                problems.push(format!(
                    "{file}: {at}: {} has no dimension {key:?} (it has {keys:?})",
                    t.metric
                ));
            }
            if value.is_empty() {
                problems.push(format!("{file}: {at}: dimension {key:?} has no value"));
            }
            undefined(&format!("{at}: dimension {key}"), value, &mut problems);
        }
        for key in t.alias_keys() {
            if !keys.contains(&key) {
                problems.push(format!(
                    "{file}: {at}: alias {:?} names @{key}, which {} does not carry",
                    t.alias, t.metric
                ));
            }
        }
        undefined(&format!("{at}: alias"), &t.alias, &mut problems);
        undefined(&format!("{at}: period"), &t.period, &mut problems);
    }

    for (name, v) in &vars {
        if v["type"] != "query" {
            continue;
        }
        if v["datasource"] != DS_INPUT {
            problems.push(format!(
                "{file}: variable {name}: datasource {} is not {DS_INPUT}",
                v["datasource"]
            ));
        }
        // The plugin lists the values of one dimension over every metric; it must be a key
        // of at least one metric this dashboard queries, or the list answers nothing useful.
        let dim = v["query"].as_str().unwrap_or("");
        let found = queried
            .iter()
            .any(|m| emitted.get(*m).is_some_and(|k| k.contains(dim)));
        if !found {
            problems.push(format!(
                "{file}: variable {name} queries dimension {dim:?}, which no metric of this dashboard carries"
            ));
        }
    }
    problems
}

/// Builds [`Emitted`] from Monasca metric objects (`{"name", "dimensions": {...}}`).
pub fn emitted_of(metrics: &[Value]) -> Emitted {
    let mut out = Emitted::new();
    for m in metrics {
        let Some(name) = m["name"].as_str() else {
            continue;
        };
        let keys = out.entry(name.to_owned()).or_default();
        for k in m["dimensions"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            keys.insert(k.clone());
        }
    }
    out
}
