//! The Monasca metric model: what `POST /v2.0/metrics` takes, one JSON object per metric.
//!
//! Owns: the wire shape as a typed value (the flush path renders JSON directly in `batch`; this
//! type reads and writes it elsewhere). Must never: hold a metric that fails Monasca's
//! validation (producers check with `validate` before building one).

use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    /// Sorted, so equal metrics serialize to equal bytes.
    pub dimensions: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    #[serde(serialize_with = "compact_number")]
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_meta: Option<BTreeMap<String, String>>,
}

/// Integral values print as integers (`1000000`, not `1000000.0`): same number to Monasca,
/// easier on the eye in the console sink. Beyond 2^53 integers are not exact, so floats stay.
fn compact_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if v.fract() == 0.0 && v.abs() < EXACT {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let m = Metric {
            name: "cpu.idle_perc".into(),
            dimensions: BTreeMap::from([
                ("hostname".into(), "web-1".into()),
                ("a".into(), "b".into()),
            ]),
            timestamp: 1_795_288_860_000,
            value: 97.5,
            value_meta: None,
        };
        let json = serde_json::to_string(&[m]).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"cpu.idle_perc","dimensions":{"a":"b","hostname":"web-1"},"timestamp":1795288860000,"value":97.5}]"#
        );
    }

    #[test]
    fn integral_values_print_as_integers() {
        let mut m = Metric {
            name: "n".into(),
            dimensions: BTreeMap::new(),
            timestamp: 1,
            value: 1_000_000.0,
            value_meta: None,
        };
        let json = |m: &Metric| serde_json::to_string(std::slice::from_ref(m)).unwrap();
        assert!(json(&m).contains(r#""value":1000000}"#));
        m.value = -0.5;
        assert!(json(&m).contains(r#""value":-0.5}"#));
        m.value = 1e300;
        let back: Vec<Metric> = serde_json::from_str(&json(&m)).unwrap();
        assert_eq!(
            back[0].value, 1e300,
            "large values stay floats and round-trip"
        );
    }
}
