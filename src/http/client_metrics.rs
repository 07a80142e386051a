//! Validating Monasca-format metrics POSTed by local clients, one by one, with the rules of
//! monasca-common (and a little stricter: string value_meta values, no booleans), so that
//! each bad metric is named and the good ones still go through.

use crate::metric::Metric;
use crate::validate::{self, Invalid};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::validate::{VALUE_META_MAX_CHARS, VALUE_META_MAX_ENTRIES};

fn why(what: &str, text: &str, e: Invalid) -> String {
    format!("{what} {text:?} {}", e.describe(text))
}

/// One metric, or the reason it is refused.
pub fn validate_metric(v: &Value) -> Result<Metric, String> {
    let obj = v.as_object().ok_or("a metric must be a JSON object")?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or("name is required and must be a string")?;
    validate::name(name).map_err(|e| why("name", name, e))?;

    let mut dimensions = BTreeMap::new();
    match obj.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d)) => {
            for (k, val) in d {
                validate::dimension_key(k).map_err(|e| why("dimension key", k, e))?;
                let s = val
                    .as_str()
                    .ok_or_else(|| format!("dimension {k:?} must be a string"))?;
                validate::dimension_value(s).map_err(|e| why("dimension value", s, e))?;
                dimensions.insert(k.clone(), s.to_owned());
            }
        }
        Some(_) => return Err("dimensions must be an object".into()),
    }

    let timestamp = obj
        .get("timestamp")
        .and_then(Value::as_f64)
        .ok_or("timestamp is required and must be a number")?;
    if !(0.0..=1e16).contains(&timestamp) {
        return Err(format!("timestamp {timestamp} is not epoch milliseconds"));
    }
    let value = match obj.get("value") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or("value must be a finite number")?,
        _ => return Err("value is required and must be a number".into()),
    };

    let value_meta = match obj.get("value_meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if m.len() > VALUE_META_MAX_ENTRIES {
                return Err(format!(
                    "value_meta has {} entries; at most {VALUE_META_MAX_ENTRIES}",
                    m.len()
                ));
            }
            let mut meta = BTreeMap::new();
            for (k, val) in m {
                if k.is_empty() || k.chars().count() > 255 {
                    return Err(format!("value_meta name {k:?} must be 1 to 255 characters"));
                }
                let s = val
                    .as_str()
                    .ok_or_else(|| format!("value_meta {k:?} must be a string"))?;
                meta.insert(k.clone(), s.to_owned());
            }
            let python_len =
                validate::value_meta_len(meta.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if python_len > VALUE_META_MAX_CHARS {
                return Err(format!(
                    "value_meta serializes to {python_len} characters; at most {VALUE_META_MAX_CHARS}"
                ));
            }
            Some(meta)
        }
        Some(_) => return Err("value_meta must be an object".into()),
    };

    Ok(Metric {
        name: name.to_owned(),
        dimensions,
        timestamp: timestamp.round() as u64,
        value,
        value_meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Metric {
        validate_metric(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn refused(v: Value) -> String {
        validate_metric(&v).expect_err(&v.to_string())
    }

    #[test]
    fn the_monasca_shape_passes() {
        let m = ok(
            json!({"name": "cpu.idle_perc", "dimensions": {"hostname": "web-1"}, "timestamp": 1795288860000u64, "value": 97.5, "value_meta": {"source": "x"}}),
        );
        assert_eq!((m.timestamp, m.value), (1_795_288_860_000, 97.5));
        assert_eq!(
            ok(json!({"name": "m", "timestamp": 1, "value": 1}))
                .dimensions
                .len(),
            0
        );
    }

    #[test]
    fn each_rule_names_what_is_wrong() {
        assert!(refused(json!({"timestamp": 1, "value": 1})).contains("name"));
        assert!(refused(json!({"name": "a b", "timestamp": 1, "value": 1})).contains("name"));
        assert!(refused(json!({"name": "m", "value": 1})).contains("timestamp"));
        assert!(refused(json!({"name": "m", "timestamp": 1})).contains("value"));
        assert!(refused(json!({"name": "m", "timestamp": 1, "value": true})).contains("value"));
        assert!(refused(json!({"name": "m", "timestamp": -5, "value": 1})).contains("timestamp"));
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "dimensions": ["a"]}))
                .contains("dimensions")
        );
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "dimensions": {"a": 1}}))
                .contains("\"a\"")
        );
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "dimensions": {"q": "a=b"}}))
                .contains("a=b")
        );
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "dimensions": {"_k": "v"}}))
                .contains("_k")
        );
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "value_meta": {"": "x"}}))
                .contains("value_meta")
        );
        let big: serde_json::Map<String, Value> =
            (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "value_meta": big}))
                .contains("17 entries")
        );
        assert!(refused(json!("hello")).contains("object"));
    }

    #[test]
    fn value_meta_size_is_measured_like_monasca_common() {
        // {"k": "vvv…"} with Python separators: 2 braces + "k" (3) + ": " (2) + quoted value.
        let exactly = "v".repeat(2048 - 2 - 3 - 2 - 2);
        ok(json!({"name": "m", "timestamp": 1, "value": 1, "value_meta": {"k": exactly}}));
        let over = "v".repeat(2048 - 2 - 3 - 2 - 2 + 1);
        assert!(
            refused(json!({"name": "m", "timestamp": 1, "value": 1, "value_meta": {"k": over}}))
                .contains("2049")
        );
    }
}
