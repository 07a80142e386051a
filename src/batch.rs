//! Batch: metrics rendered once as Monasca JSON objects, then packed into POST bodies
//! bounded by metric count and bytes.
//!
//! Owns: the JSON encoding on the flush path and the packing rules. Must never: build a body
//! larger than the limits (a single metric that cannot fit is refused and counted), or emit
//! anything but a JSON array of metric objects.

use bytes::Bytes;

/// Metrics rendered as JSON objects, back to back in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Rendered {
    /// Room for `metrics` metrics of `bytes` bytes in all, to avoid regrowing while rendering.
    pub fn with_capacity(metrics: usize, bytes: usize) -> Self {
        Rendered {
            buf: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(metrics),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Metrics and bytes it has room for without regrowing.
    pub fn capacity_metrics(&self) -> usize {
        self.ends.capacity()
    }

    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of the objects.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let object = &self.buf[start..end];
            start = end;
            object
        })
    }

    /// Appends one metric: `name` + `suffix`, dimensions already merged and sorted by key.
    pub fn push<'a>(
        &mut self,
        name: &str,
        suffix: &str,
        dimensions: impl Iterator<Item = (&'a str, &'a str)>,
        timestamp_ms: u64,
        value: f64,
    ) {
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"name\":");
        json_string(b, &[name, suffix]);
        b.extend_from_slice(b",\"dimensions\":{");
        for (i, (k, v)) in dimensions.enumerate() {
            if i > 0 {
                b.push(b',');
            }
            json_string(b, &[k]);
            b.push(b':');
            json_string(b, &[v]);
        }
        b.extend_from_slice(b"},\"timestamp\":");
        b.extend_from_slice(itoa::Buffer::new().format(timestamp_ms).as_bytes());
        b.extend_from_slice(b",\"value\":");
        json_number(b, value);
        b.push(b'}');
        self.ends.push(b.len());
    }

    /// Appends one complete JSON object, already validated (a POSTed metric).
    pub fn push_raw(&mut self, object: &[u8]) {
        self.buf.extend_from_slice(object);
        self.ends.push(self.buf.len());
    }

    /// Moves every metric of `other` to the end of `self`.
    pub fn append(&mut self, other: Rendered) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    /// The whole set as one JSON array (the console sink's line).
    pub fn to_array(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + self.len() + 2);
        out.push(b'[');
        for (i, object) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(object);
        }
        out.push(b']');
        out
    }
}

/// A JSON string of the concatenated parts. `validate` refuses `"`, `\` and control
/// characters in names and dimensions, so nothing here ever needs escaping; text that somehow
/// did still gets correct JSON through the slow path.
fn json_string(b: &mut Vec<u8>, parts: &[&str]) {
    let plain = |p: &&str| !p.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
    if !parts.iter().all(plain) {
        let joined: String = parts.concat();
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *b, &joined);
        return;
    }
    b.push(b'"');
    for p in parts {
        b.extend_from_slice(p.as_bytes());
    }
    b.push(b'"');
}

/// Integral values as integers (`1000000`, not `1000000.0`); others in the shortest form
/// that round-trips. Beyond 2^53 integers are inexact, so they stay floats.
fn json_number(b: &mut Vec<u8>, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if v.fract() == 0.0 && v.abs() < EXACT {
        b.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        // Callers only pass finite values, which `ryu` formats as valid JSON numbers.
        b.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// One POST body: a JSON array of `metrics` metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Bytes,
    pub metrics: usize,
}

/// Packing limits, from `monasca.max_batch_metrics` and `monasca.max_batch_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_metrics: usize,
    pub max_bytes: usize,
}

/// Packs every metric into bodies within `limits`, in order. Returns the batches and the
/// number of metrics too large to fit any body on their own.
pub fn pack(rendered: &Rendered, limits: Limits) -> (Vec<Batch>, usize) {
    let mut batches = Vec::new();
    let mut too_large = 0;
    let mut body: Vec<u8> = Vec::new();
    let mut count = 0;
    let mut finish = |body: &mut Vec<u8>, count: &mut usize| {
        if *count > 0 {
            body.push(b']');
            batches.push(Batch {
                body: Bytes::from(std::mem::take(body)),
                metrics: *count,
            });
            *count = 0;
        }
    };
    for object in rendered.iter() {
        // `[` + object + `]` is the smallest body holding it.
        if object.len() + 2 > limits.max_bytes {
            too_large += 1;
            continue;
        }
        if count == limits.max_metrics || body.len() + 1 + object.len() + 1 > limits.max_bytes {
            finish(&mut body, &mut count);
        }
        body.push(if count == 0 { b'[' } else { b',' });
        body.extend_from_slice(object);
        count += 1;
    }
    finish(&mut body, &mut count);
    (batches, too_large)
}

/// Splits a body in two halves of its metrics (for a 413 answer). `None` for one metric.
pub fn split(batch: &Batch) -> Option<(Batch, Batch)> {
    if batch.metrics < 2 {
        return None;
    }
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&batch.body).ok()?;
    let (a, b) = objects.split_at(objects.len() / 2);
    let encode = |part: &[serde_json::Value]| Batch {
        body: Bytes::from(serde_json::to_vec(part).unwrap_or_default()),
        metrics: part.len(),
    };
    Some((encode(a), encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    fn sample(n: usize) -> Rendered {
        let mut r = Rendered::default();
        for i in 0..n {
            let v = format!("{i}");
            r.push(
                "m",
                ".count",
                [("hostname", "gw"), ("i", v.as_str())].into_iter(),
                1_000 + i as u64,
                0.5,
            );
        }
        r
    }

    #[test]
    fn renders_the_monasca_wire_shape() {
        let mut r = Rendered::default();
        r.push(
            "cpu",
            ".95percentile",
            [("a", "b"), ("hostname", "web-1")].into_iter(),
            1_795_288_860_000,
            97.5,
        );
        r.push("n", "", std::iter::empty(), 1, 1_000_000.0);
        r.push("tab\there", "", [("k", "v\u{1}")].into_iter(), 1, 1e300);
        let text = String::from_utf8(r.to_array()).unwrap();
        assert!(text.starts_with(
            r#"[{"name":"cpu.95percentile","dimensions":{"a":"b","hostname":"web-1"},"timestamp":1795288860000,"value":97.5},{"name":"n","dimensions":{},"timestamp":1,"value":1000000}"#
        ));
        let back: Vec<Metric> = serde_json::from_str(&text).unwrap();
        assert_eq!(back[2].name, "tab\there");
        assert_eq!(back[2].dimensions["k"], "v\u{1}");
        assert_eq!(back[2].value, 1e300);
    }

    #[test]
    fn packing_respects_both_limits_and_keeps_order() {
        let r = sample(25);
        let one = r.iter().next().unwrap().len();
        let (batches, too_large) = pack(
            &r,
            Limits {
                max_metrics: 10,
                max_bytes: 1 << 20,
            },
        );
        assert_eq!(
            (
                batches.iter().map(|b| b.metrics).collect::<Vec<_>>(),
                too_large
            ),
            (vec![10, 10, 5], 0)
        );
        let (batches, _) = pack(
            &r,
            Limits {
                max_metrics: 100,
                max_bytes: 3 * one + 4,
            },
        );
        assert!(
            batches
                .iter()
                .all(|b| b.body.len() <= 3 * one + 4 && b.metrics == 3 || b.metrics < 3)
        );
        let all: Vec<Metric> = batches
            .iter()
            .flat_map(|b| serde_json::from_slice::<Vec<Metric>>(&b.body).unwrap())
            .collect();
        assert_eq!(all.len(), 25);
        assert!(
            all.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
            "order kept"
        );
        let (none, too_large) = pack(
            &r,
            Limits {
                max_metrics: 100,
                max_bytes: one,
            },
        );
        assert_eq!((none.len(), too_large), (0, 25));
    }

    #[test]
    fn raw_objects_and_appending_keep_boundaries() {
        let mut a = sample(2);
        let mut b = Rendered::default();
        b.push_raw(
            br#"{"name":"raw","dimensions":{},"timestamp":1,"value":2,"value_meta":{"k":"v"}}"#,
        );
        a.append(b);
        assert_eq!(a.len(), 3);
        let back: Vec<Metric> = serde_json::from_slice(&a.to_array()).unwrap();
        assert_eq!(back[2].name, "raw");
        assert_eq!(back[2].value_meta.as_ref().unwrap()["k"], "v");
    }

    #[test]
    fn split_halves_a_batch() {
        let (batches, _) = pack(
            &sample(5),
            Limits {
                max_metrics: 100,
                max_bytes: 1 << 20,
            },
        );
        let (a, b) = split(&batches[0]).unwrap();
        assert_eq!((a.metrics, b.metrics), (2, 3));
        assert_eq!(
            serde_json::from_slice::<Vec<Metric>>(&b.body)
                .unwrap()
                .len(),
            3
        );
        let (single, _) = pack(
            &sample(1),
            Limits {
                max_metrics: 100,
                max_bytes: 1 << 20,
            },
        );
        assert!(split(&single[0]).is_none());
    }
}
