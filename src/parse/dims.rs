//! Dimension dialects: DogStatsD `|#k:v,bare`, the Monasca dict literal `|#{'k': 'v'}`,
//! InfluxDB `name,k=v` and Graphite `name;k=v`.
//!
//! Each dialect is scanned twice: once at parse time, which checks syntax and Monasca's rules
//! and counts dimensions, and again when the aggregator asks for the pairs. The second scan
//! cannot fail, so the hot path carries borrowed slices instead of an allocated list.

use crate::reason::Reject;
use crate::validate;

/// Where a line's `|#` block came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagBlock<'a> {
    #[default]
    None,
    /// `k:v,k2:v2,bare` (the text after `#`).
    DogStatsd(&'a str),
    /// `{'k': 'v', "k2": "v2"}` including the braces.
    MonascaDict(&'a str),
}

/// All dimensions a line carries, borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dims<'a> {
    /// `k=v,k2=v2` after the name (InfluxDB) or `k=v;k2=v2` (Graphite).
    pub name_tags: &'a str,
    /// `,` for InfluxDB, `;` for Graphite; meaningless when `name_tags` is empty.
    pub name_tag_separator: u8,
    pub tags: TagBlock<'a>,
    /// `h:` of a service check: becomes the `hostname` dimension.
    pub host: Option<&'a str>,
}

/// The value DogStatsD bare tags get (monasca-agent's documented semantics).
pub const BARE_TAG_VALUE: &str = "True";

impl<'a> Dims<'a> {
    pub fn is_empty(&self) -> bool {
        self.name_tags.is_empty() && self.tags == TagBlock::None && self.host.is_none()
    }

    /// Calls `f` with every (key, value) pair, in line order; duplicates are left to the caller.
    pub fn for_each(&self, mut f: impl FnMut(&'a str, &'a str)) {
        if !self.name_tags.is_empty() {
            for pair in split_ascii(self.name_tags, self.name_tag_separator) {
                if let Some((k, v)) = split_once_ascii(pair, b'=') {
                    f(k, v);
                }
            }
        }
        match self.tags {
            TagBlock::None => {}
            TagBlock::DogStatsd(s) => {
                for tag in split_ascii(s, b',').filter(|t| !t.is_empty()) {
                    let (k, v) = split_dogstatsd_tag(tag);
                    f(k, v);
                }
            }
            TagBlock::MonascaDict(s) => {
                let _ = scan_dict(s, &mut f);
            }
        }
        if let Some(h) = self.host {
            f("hostname", h);
        }
    }

    /// Checks syntax and Monasca's rules; returns the number of pairs.
    pub fn validate(&self, max: usize) -> Result<usize, Reject> {
        let mut n = 0usize;
        let mut check = |k: &str, v: &str| -> Result<(), Reject> {
            n += 1;
            if n > max {
                return Err(Reject::TooManyDimensions);
            }
            validate::dimension_key(k).map_err(|_| Reject::BadDimension)?;
            validate::dimension_value(v).map_err(|_| Reject::BadDimension)
        };
        if !self.name_tags.is_empty() {
            for pair in split_ascii(self.name_tags, self.name_tag_separator) {
                let (k, v) = split_once_ascii(pair, b'=').ok_or(Reject::BadDimension)?;
                check(k, v)?;
            }
        }
        match self.tags {
            TagBlock::None => {}
            TagBlock::DogStatsd(s) => {
                for tag in split_ascii(s, b',').filter(|t| !t.is_empty()) {
                    let (k, v) = split_dogstatsd_tag(tag);
                    check(k, v)?;
                }
            }
            TagBlock::MonascaDict(s) => {
                let mut result = Ok(());
                scan_dict(s, &mut |k, v| {
                    if result.is_ok() {
                        result = check(k, v);
                    }
                })?;
                result?;
            }
        }
        if let Some(h) = self.host {
            check("hostname", h)?;
        }
        Ok(n)
    }
}

/// `key:value` splits at the first `:` (values may hold more); a bare tag is `tag:True`.
fn split_dogstatsd_tag(tag: &str) -> (&str, &str) {
    split_once_ascii(tag, b':').unwrap_or((tag, BARE_TAG_VALUE))
}

/// `str::split` on an ASCII byte with a plain loop: tags are a few bytes long, and a `char`
/// pattern's searcher costs more to set up than the search (it was 8 % of a reader's time
/// with two tags a line).
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match split_once_ascii(r, sep) {
            Some((head, tail)) => {
                rest = Some(tail);
                Some(head)
            }
            None => rest.take(),
        }
    })
}

/// `str::split_once` on an ASCII byte (so both sides stay on char boundaries).
fn split_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == sep)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// Length of a Monasca dict literal at the start of `s` (`{` .. matching `}`), honouring
/// quotes so that a `|` or `}` inside a quoted value does not end it.
pub fn dict_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'}' => return Some(i + 1),
            None => {}
        }
    }
    None
}

/// Scans a Python dict literal of strings, `{'k': 'v', "k2": "v2",}`; values may also be bare
/// tokens (`5`, `True`). It is parsed, never evaluated; escapes are refused (a backslash is
/// forbidden in Monasca dimensions anyway).
fn scan_dict<'a>(s: &'a str, f: &mut impl FnMut(&'a str, &'a str)) -> Result<(), Reject> {
    let mut cur = Cursor { s, pos: 0 };
    cur.expect(b'{')?;
    loop {
        cur.skip_ws();
        if cur.eat(b'}') {
            break;
        }
        let key = cur.quoted()?;
        cur.skip_ws();
        cur.expect(b':')?;
        cur.skip_ws();
        let value = match cur.peek() {
            Some(b'\'' | b'"') => cur.quoted()?,
            _ => cur.bare_token()?,
        };
        f(key, value);
        cur.skip_ws();
        if cur.eat(b',') {
            continue;
        }
        cur.skip_ws();
        cur.expect(b'}')?;
        break;
    }
    cur.skip_ws();
    if cur.pos == s.len() {
        Ok(())
    } else {
        Err(Reject::BadDimension)
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), Reject> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Reject::BadDimension)
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn quoted(&mut self) -> Result<&'a str, Reject> {
        let q = self
            .peek()
            .filter(|c| *c == b'\'' || *c == b'"')
            .ok_or(Reject::BadDimension)?;
        let start = self.pos + 1;
        let rest = &self.s.as_bytes()[start..];
        let len = memchr::memchr(q, rest).ok_or(Reject::BadDimension)?;
        let text = &self.s[start..start + len];
        if text.contains('\\') {
            return Err(Reject::BadDimension);
        }
        self.pos = start + len + 1;
        Ok(text)
    }
    fn bare_token(&mut self) -> Result<&'a str, Reject> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-'))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(Reject::BadDimension);
        }
        Ok(&self.s[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_splits_agree_with_str_split() {
        for s in ["", ",", "a", "a,b", ",a,,b,", "é,ü:ß", "k:v:w", ":", "a:"] {
            let ours: Vec<&str> = split_ascii(s, b',').collect();
            assert_eq!(ours, s.split(',').collect::<Vec<_>>(), "{s:?}");
            assert_eq!(split_once_ascii(s, b':'), s.split_once(':'), "{s:?}");
        }
    }

    fn pairs(d: &Dims<'_>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        d.for_each(|k, val| v.push((k.to_owned(), val.to_owned())));
        v
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn dict_literal_with_both_quote_styles_and_bare_values() {
        let d = Dims {
            tags: TagBlock::MonascaDict("{'service': 'api', \"zone\": \"a|b\", 'n': 5,}"),
            ..Dims::default()
        };
        assert_eq!(d.validate(32), Ok(3));
        assert_eq!(
            pairs(&d),
            owned(&[("service", "api"), ("zone", "a|b"), ("n", "5")])
        );
    }

    #[test]
    fn dict_literal_is_never_evaluated() {
        for bad in [
            "{'a': __import__('os')}",
            "{'a' 'b'}",
            "{'a': 'b'",
            "{'a': 'b\\'c'}",
            "{a: 'b'}",
            "{'a': 'b'} x",
        ] {
            let d = Dims {
                tags: TagBlock::MonascaDict(bad),
                ..Dims::default()
            };
            assert_eq!(d.validate(32), Err(Reject::BadDimension), "{bad}");
        }
        assert_eq!(dict_len("{'a': '}'}|c"), Some(10));
        assert_eq!(dict_len("{'a': 'b'"), None);
    }

    #[test]
    fn too_many_dimensions_is_its_own_reason() {
        let d = Dims {
            tags: TagBlock::DogStatsd("a:1,b:2,c:3"),
            ..Dims::default()
        };
        assert_eq!(d.validate(2), Err(Reject::TooManyDimensions));
        assert_eq!(d.validate(3), Ok(3));
    }
}
