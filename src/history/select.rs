//! Which flushed metrics the history keeps (`history.include` / `exclude` name patterns) and
//! the cheap reading of a rendered metric object that lets a flush pay one name match per
//! metric instead of a JSON parse.
//!
//! Owns: the `*` pattern matcher and the byte layout the flusher renders
//! (`{"name":…,"dimensions":{…},"timestamp":…,"value":…[,"value_meta":…]}`, the same for
//! `batch::Rendered::push` and a serialized `metric::Metric`). Must never: allocate for a
//! metric that is neither new nor selected, or trust an object's layout without checking it
//! (a malformed one is skipped, not guessed at).

use std::collections::BTreeMap;

/// `*` matches any run of characters (none included); everything else matches itself; the
/// whole text must match (anchored at both ends).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it was tried at, to backtrack to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// `history.include` and `history.exclude`.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    include: Vec<Box<[u8]>>,
    exclude: Vec<Box<[u8]>>,
}

impl Patterns {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        let bytes = |v: &[String]| v.iter().map(|p| p.as_bytes().into()).collect();
        Patterns {
            include: bytes(include),
            exclude: bytes(exclude),
        }
    }

    /// Kept: some `include` pattern matches and no `exclude` pattern does.
    pub fn selects(&self, name: &[u8]) -> bool {
        self.include.iter().any(|p| glob(p, name)) && !self.exclude.iter().any(|p| glob(p, name))
    }
}

/// What a flush needs from one rendered metric, read without parsing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts<'a> {
    /// `{"name":…,"dimensions":{…}`: the series' identity, byte-equal for equal series
    /// (dimensions are rendered sorted).
    pub key: &'a [u8],
    /// The name as rendered, quotes excluded; `None` when it holds an escape (then read it
    /// with [`head`]).
    pub plain_name: Option<&'a [u8]>,
    pub timestamp_ms: u64,
    pub value: f64,
}

const NAME_OPEN: &[u8] = b"{\"name\":\"";
/// Where the dimensions end: a `"` inside a JSON string is always escaped, so `},"` cannot
/// occur inside the (flat, string-valued) dimensions object, only at its close.
const KEY_END: &[u8] = b"},\"timestamp\":";
const VALUE_OPEN: &[u8] = b",\"value\":";

/// Reads a rendered object's key, name, timestamp and value; `None` if it is not laid out as
/// the flusher renders (never expected; such an object is skipped).
pub fn parts(object: &[u8]) -> Option<Parts<'_>> {
    let rest = object.strip_prefix(NAME_OPEN)?;
    let close = memchr::memchr(b'"', rest)?;
    let name = &rest[..close];
    // A backslash means the name has an escape; its closing quote may be further on.
    let plain_name = (!name.contains(&b'\\')).then_some(name);
    // One searcher for every object: `memmem::find` builds one per call, which was most of
    // its cost on objects this short. The dimensions follow the name.
    static KEY_END_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY_END));
    let from = NAME_OPEN.len() + close;
    let key_end = from + KEY_END_FINDER.find(object.get(from..)?)? + 1;
    let after = &object[key_end + KEY_END.len() - 1..];
    let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
    let timestamp_ms = digits_value(&after[..digits])?;
    let value_text = after[digits..].strip_prefix(VALUE_OPEN)?;
    let end = value_text.iter().position(|&c| c == b',' || c == b'}')?;
    let value: f64 = std::str::from_utf8(&value_text[..end]).ok()?.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    Some(Parts {
        key: &object[..key_end],
        plain_name,
        timestamp_ms,
        value,
    })
}

/// The number the ASCII digits spell, `None` if none or past u64.
fn digits_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A series' name and dimensions, parsed from its key (only for a new series, or for a
/// query's answer).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Head {
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

pub fn head(key: &[u8]) -> Option<Head> {
    let mut object = Vec::with_capacity(key.len() + 1);
    object.extend_from_slice(key);
    object.push(b'}');
    serde_json::from_slice(&object).ok()
}

/// The key `parts` reads from a rendered `name` + sorted `dimensions` (what a checkpoint
/// stores is the key itself; this is for tests and for building one from parts).
#[cfg(test)]
pub fn key_of(name: &str, dimensions: &[(&str, &str)]) -> Vec<u8> {
    let mut r = crate::batch::Rendered::default();
    r.push(name, "", dimensions.iter().copied(), 0, 0.0);
    let object = r.iter().next().map(<[u8]>::to_vec).unwrap_or_default();
    parts(&object).map(|p| p.key.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    #[test]
    fn glob_is_anchored_and_star_matches_any_run() {
        let m = |p: &str, t: &str| glob(p.as_bytes(), t.as_bytes());
        assert!(m("cpu", "cpu"));
        assert!(!m("cpu", "cpu.idle_perc"), "anchored at the end");
        assert!(!m("cpu", "xcpu"), "anchored at the start");
        assert!(m("cpu.*", "cpu.idle_perc"));
        assert!(m("cpu.*", "cpu."), "a star matches nothing too");
        assert!(!m("cpu.*", "cpu"));
        assert!(m("*", ""));
        assert!(!m("", "a"));
        assert!(m("", ""));
        assert!(m("*.count", "a.b.count"));
        assert!(!m("*.count", "a.count.x"));
        assert!(m("a*b*c", "aXbYbZc"), "backtracks over several stars");
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("**x", "abx"));
        assert!(m("statsgate.*", "statsgate.flush_ms"));
        assert!(!m("net.*", "network.tcp.x"));
    }

    #[test]
    fn include_then_exclude() {
        let p = Patterns::new(&["cpu.*".into(), "mem".into()], &["cpu.idle*".into()]);
        assert!(p.selects(b"cpu.user_perc"));
        assert!(!p.selects(b"cpu.idle_perc"), "exclude wins");
        assert!(p.selects(b"mem"));
        assert!(!p.selects(b"disk.x"));
        assert!(!Patterns::new(&[], &[]).selects(b"cpu"), "nothing included");
    }

    #[test]
    fn parts_of_rendered_and_serialized_metrics() {
        let mut r = crate::batch::Rendered::default();
        r.push(
            "cpu",
            ".idle_perc",
            [("hostname", "h"), ("timestamp", "x")].into_iter(),
            1_700_000_000_123,
            97.25,
        );
        let m = Metric {
            name: "mem".into(),
            dimensions: [("a".to_owned(), "},\"timestamp\":1".to_owned())].into(),
            timestamp: 5,
            value: 1e21,
            value_meta: Some([("k".to_owned(), "v".to_owned())].into()),
        };
        r.push_raw(&serde_json::to_vec(&m).unwrap());
        r.push("tab\tname", "", std::iter::empty(), 7, -3.0);
        let all: Vec<_> = r.iter().map(|o| parts(o).unwrap()).collect();
        assert_eq!(all[0].plain_name, Some(&b"cpu.idle_perc"[..]));
        assert_eq!(
            (all[0].timestamp_ms, all[0].value),
            (1_700_000_000_123, 97.25)
        );
        let h = head(all[0].key).unwrap();
        assert_eq!(h.name, "cpu.idle_perc");
        assert_eq!(
            h.dimensions["timestamp"], "x",
            "a dimension named timestamp"
        );
        assert_eq!((all[1].timestamp_ms, all[1].value), (5, 1e21));
        assert_eq!(head(all[1].key).unwrap().dimensions, m.dimensions);
        assert_eq!(all[2].plain_name, None, "escaped name");
        assert_eq!(head(all[2].key).unwrap().name, "tab\tname");
        assert_eq!(all[2].value, -3.0);
        assert_eq!(
            key_of("cpu.idle_perc", &[("hostname", "h"), ("timestamp", "x")]),
            all[0].key
        );
    }

    #[test]
    fn malformed_objects_are_refused() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"name\":\"x\"}",
            b"{\"name\":\"x\",\"dimensions\":{},\"timestamp\":,\"value\":1}",
            b"{\"name\":\"x\",\"dimensions\":{},\"timestamp\":1,\"value\":}",
            b"{\"name\":\"x\",\"dimensions\":{},\"timestamp\":1,\"value\":1",
            b"{\"name\":\"x\",\"dimensions\":{},\"timestamp\":99999999999999999999999,\"value\":1}",
            b"{\"name\":\"x\",\"dimensions\":{},\"timestamp\":1,\"value\":1e999}",
        ] {
            assert_eq!(parts(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
