//! Monasca's metric validation rules (monasca-common 3.8.0, see DESIGN §6 and MONASCA.md §1).
//!
//! Owns: the character and length rules for metric names and dimensions, applied at ingest and
//! again at flush to the names statsgate derives (`name.95percentile`), so that no metric the
//! API would answer 422 ever reaches a batch. Must never: allocate, or be looser than the API.
//!
//! One rule is stricter than the API: control characters (U+0000–U+001F, U+007F) are refused.
//! No statsd client sends them on purpose, and without them series keys can use control bytes
//! as separators and JSON rendering never needs to escape.

/// Longest name, dimension key or dimension value, in characters (Python `len()`).
pub const MAX_CHARS: usize = 255;

const fn forbidden_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[0x7F] = true;
    let common = b"<>={},\"\\;&";
    let mut i = 0;
    while i < common.len() {
        table[common[i] as usize] = true;
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        table[extra[j] as usize] = true;
        j += 1;
    }
    table
}

/// Forbidden in dimension keys and values: `< > = { } , " \ ; &`.
static DIMENSION_FORBIDDEN: [bool; 256] = forbidden_table(b"");
/// Forbidden in names: the dimension set plus `(`, `)` and space.
static NAME_FORBIDDEN: [bool; 256] = forbidden_table(b"() ");

/// Why a name or dimension fails the rules; each maps to a drop-counter label upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Empty,
    TooLong,
    ForbiddenChar,
    LeadingUnderscore,
}

impl Invalid {
    /// The broken rule in words, for `text` (the string that failed with `self`).
    pub fn describe(self, text: &str) -> &'static str {
        match self {
            Invalid::Empty => "must not be empty",
            Invalid::TooLong => "must be at most 255 characters",
            Invalid::ForbiddenChar if text.bytes().any(|b| b < 0x20 || b == 0x7F) => {
                "must not contain control characters"
            }
            Invalid::ForbiddenChar if text.bytes().any(|b| DIMENSION_FORBIDDEN[b as usize]) => {
                r#"must not contain any of < > = { } , " \ ; &"#
            }
            // Only names refuse these beyond the dimension set.
            Invalid::ForbiddenChar => "must not contain ( ) or space",
            Invalid::LeadingUnderscore => "must not start with '_'",
        }
    }
}

/// Length in characters, cheaply: a string of at most `MAX_CHARS` bytes cannot have more chars.
pub fn within_max_chars(s: &str) -> bool {
    s.len() <= MAX_CHARS || s.chars().count() <= MAX_CHARS
}

fn check(s: &str, forbidden: &[bool; 256]) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::Empty);
    }
    if !within_max_chars(s) {
        return Err(Invalid::TooLong);
    }
    // Every forbidden character is ASCII, so a byte scan is exact on UTF-8.
    if s.bytes().any(|b| forbidden[b as usize]) {
        return Err(Invalid::ForbiddenChar);
    }
    Ok(())
}

/// A metric name: 1–255 chars, none of `< > = { } , " \ ; & ( )` or space.
pub fn name(s: &str) -> Result<(), Invalid> {
    check(s, &NAME_FORBIDDEN)
}

/// A dimension key: 1–255 chars, none of `< > = { } , " \ ; &`, not starting with `_`.
pub fn dimension_key(s: &str) -> Result<(), Invalid> {
    check(s, &DIMENSION_FORBIDDEN)?;
    if s.starts_with('_') {
        return Err(Invalid::LeadingUnderscore);
    }
    Ok(())
}

/// A dimension value: 1–255 chars, none of `< > = { } , " \ ; &`.
pub fn dimension_value(s: &str) -> Result<(), Invalid> {
    check(s, &DIMENSION_FORBIDDEN)
}

/// Most value_meta entries, and the most characters of Python's `json.dumps(value_meta)`
/// (monasca-common's limits).
pub const VALUE_META_MAX_ENTRIES: usize = 16;
pub const VALUE_META_MAX_CHARS: usize = 2048;

/// Characters `c` costs inside a string written by Python's `json.dumps` (what monasca-api
/// measures): short escapes, `\u00XX` for other control characters, and non-ASCII as
/// `\uXXXX` (a surrogate pair beyond the BMP).
pub fn python_json_cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c if c.is_ascii() => 1,
        c => 6 * c.len_utf16(),
    }
}

/// The longest prefix of `s` costing at most `room` characters in `json.dumps`, and its cost.
pub fn cut_to_python_json(s: &str, room: usize) -> (&str, usize) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let cost = python_json_cost(c);
        if used + cost > room {
            return (&s[..i], used);
        }
        used += cost;
    }
    (s, used)
}

/// Length of Python's `json.dumps(meta)`: `{"k": "v", "k2": "v2"}`.
pub fn value_meta_len<'a>(meta: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    let quoted = |s: &str| 2 + s.chars().map(python_json_cost).sum::<usize>();
    let (mut len, mut n) = (2, 0usize);
    for (k, v) in meta {
        len += quoted(k) + 2 + quoted(v);
        n += 1;
    }
    len + 2 * n.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_monasca_common() {
        assert_eq!(name("cpu.idle_perc"), Ok(()));
        assert_eq!(name("it's"), Ok(()), "the API accepts quotes");
        assert_eq!(name("disk./dev/sda"), Ok(()));
        assert_eq!(name("a:b|c"), Ok(()));
        assert_eq!(name(""), Err(Invalid::Empty));
        for bad in [
            "a b", "a(b", "a)b", "a<b", "a>b", "a=b", "a{b", "a}b", "a,b", "a\"b", "a\\b", "a;b",
            "a&b",
        ] {
            assert_eq!(name(bad), Err(Invalid::ForbiddenChar), "{bad}");
        }
        assert_eq!(name(&"n".repeat(255)), Ok(()));
        assert_eq!(name(&"n".repeat(256)), Err(Invalid::TooLong));
        // 255 two-byte characters are 510 bytes but still 255 characters.
        assert_eq!(name(&"é".repeat(255)), Ok(()));
        assert_eq!(name(&"é".repeat(256)), Err(Invalid::TooLong));
    }

    #[test]
    fn dimensions_follow_monasca_common() {
        assert_eq!(dimension_key("service"), Ok(()));
        assert_eq!(dimension_key("_private"), Err(Invalid::LeadingUnderscore));
        assert_eq!(dimension_key(""), Err(Invalid::Empty));
        assert_eq!(dimension_value("http://x:80/a|b"), Ok(()));
        assert_eq!(
            dimension_value("a b(c)"),
            Ok(()),
            "space and parens are fine in dimensions"
        );
        assert_eq!(dimension_value("a=b"), Err(Invalid::ForbiddenChar));
        assert_eq!(dimension_value(""), Err(Invalid::Empty));
        assert_eq!(
            dimension_value("tab\there"),
            Err(Invalid::ForbiddenChar),
            "stricter than the API"
        );
        assert_eq!(dimension_value(&"v".repeat(256)), Err(Invalid::TooLong));
    }

    #[test]
    fn each_broken_rule_is_described() {
        let d = |s: &str| dimension_value(s).err().map(|e| e.describe(s));
        assert_eq!(d(""), Some("must not be empty"));
        assert_eq!(d(&"v".repeat(256)), Some("must be at most 255 characters"));
        assert_eq!(d("a\u{1}"), Some("must not contain control characters"));
        assert_eq!(
            d("a=b"),
            Some(r#"must not contain any of < > = { } , " \ ; &"#)
        );
        assert_eq!(
            name("a b").err().map(|e| e.describe("a b")),
            Some("must not contain ( ) or space")
        );
        assert_eq!(
            dimension_key("_k").err().map(|e| e.describe("_k")),
            Some("must not start with '_'")
        );
    }

    #[test]
    fn value_meta_is_measured_as_pythons_json_dumps_writes_it() {
        // json.dumps({"a": "b", "c": "d"}) is 20 characters; {"e": "é\n"} is 17.
        assert_eq!(value_meta_len([("a", "b")]), r#"{"a": "b"}"#.len());
        assert_eq!(value_meta_len([("a", "b"), ("c", "d")]), 20);
        assert_eq!(value_meta_len([("e", "é\n")]), 17);
        assert_eq!(value_meta_len([("x", "🦀")]), 10 + 12 - 1);
        assert_eq!(cut_to_python_json("aé\"b", 7), ("aé", 7));
    }
}
