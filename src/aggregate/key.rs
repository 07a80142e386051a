//! The series key: name, optional `|T` timestamp and sorted dimensions in one byte string.
//!
//! Layout: `name [0x1D ts-decimal] (0x1F key 0x1E value)*`. Names and dimensions never hold
//! control characters (`validate` refuses them), so the markers are unambiguous and the whole
//! key is UTF-8: decoding checks it once. A line with no dimensions and no timestamp has its
//! plain name as key, so the hot path needs no copy.

const TS_MARK: u8 = 0x1D;
const DIM_MARK: u8 = 0x1F;
const VALUE_MARK: u8 = 0x1E;

/// Appends the encoding of `name`, `timestamp` and the already sorted, deduplicated `dims`.
pub fn encode(buf: &mut Vec<u8>, name: &str, timestamp: Option<u64>, dims: &[(&str, &str)]) {
    buf.clear();
    buf.extend_from_slice(name.as_bytes());
    if let Some(t) = timestamp {
        buf.push(TS_MARK);
        let mut digits = itoa_buf(t);
        buf.extend_from_slice(digits.as_bytes_mut());
    }
    for (k, v) in dims {
        buf.push(DIM_MARK);
        buf.extend_from_slice(k.as_bytes());
        buf.push(VALUE_MARK);
        buf.extend_from_slice(v.as_bytes());
    }
}

/// A decoded key, borrowing from it.
#[derive(Debug, PartialEq, Eq)]
pub struct SeriesKey<'a> {
    pub name: &'a str,
    pub timestamp: Option<u64>,
    /// `(DIM_MARK key VALUE_MARK value)*`.
    dims: &'a str,
}

impl<'a> SeriesKey<'a> {
    pub fn decode(key: &'a [u8]) -> Self {
        // Keys are built only from validated UTF-8 and ASCII markers: the fallback never runs.
        let key = std::str::from_utf8(key).unwrap_or_default();
        let bytes = key.as_bytes();
        let head_end = find(bytes, DIM_MARK).unwrap_or(key.len());
        let (head, dims) = key.split_at(head_end);
        let (name, timestamp) = match find(head.as_bytes(), TS_MARK) {
            Some(i) => (&head[..i], head[i + 1..].parse().ok()),
            None => (head, None),
        };
        SeriesKey {
            name,
            timestamp,
            dims,
        }
    }

    /// The dimensions in key order (sorted by key).
    pub fn dims(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut rest = self.dims;
        std::iter::from_fn(move || {
            // `rest` is empty or starts with DIM_MARK.
            let pair = rest.get(1..)?;
            let end = find(pair.as_bytes(), DIM_MARK).unwrap_or(pair.len());
            let (pair, next) = pair.split_at(end);
            rest = next;
            let split = find(pair.as_bytes(), VALUE_MARK).unwrap_or(pair.len());
            Some((&pair[..split], pair.get(split + 1..).unwrap_or_default()))
        })
    }
}

/// Keys are short: a plain loop beats a vectorised search's set-up.
fn find(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Decimal digits of `n` without allocating.
fn itoa_buf(n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    let mut n = n;
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break d;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            "http.req",
            Some(1_700_000_000),
            &[("a", "x:y"), ("b", "é")],
        );
        let k = SeriesKey::decode(&buf);
        assert_eq!((k.name, k.timestamp), ("http.req", Some(1_700_000_000)));
        assert_eq!(k.dims().collect::<Vec<_>>(), vec![("a", "x:y"), ("b", "é")]);

        encode(&mut buf, "plain", None, &[]);
        assert_eq!(buf, b"plain");
        let k = SeriesKey::decode(&buf);
        assert_eq!((k.name, k.timestamp, k.dims().count()), ("plain", None, 0));
    }
}
