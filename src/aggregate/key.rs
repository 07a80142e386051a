//! The series key: name, optional `|T` timestamp and sorted dimensions in one byte string.
//!
//! Layout: `name [0xFD ts-decimal] (0xFF key 0xFE value)*`. The markers are bytes that never
//! occur in UTF-8, and every part is validated UTF-8, so the encoding is unambiguous. A line with
//! no dimensions and no timestamp has its plain name as key, so the hot path needs no copy.

const TS_MARK: u8 = 0xFD;
const DIM_MARK: u8 = 0xFF;
const VALUE_MARK: u8 = 0xFE;

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
    dims: &'a [u8],
}

impl<'a> SeriesKey<'a> {
    pub fn decode(key: &'a [u8]) -> Self {
        let head_end = memchr::memchr(DIM_MARK, key).unwrap_or(key.len());
        let (head, dims) = key.split_at(head_end);
        let (name, timestamp) = match memchr::memchr(TS_MARK, head) {
            Some(i) => (&head[..i], text(&head[i + 1..]).parse().ok()),
            None => (head, None),
        };
        SeriesKey {
            name: text(name),
            timestamp,
            dims,
        }
    }

    /// The dimensions in key order (sorted by key).
    pub fn dims(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.dims.split(|&b| b == DIM_MARK).skip(1).map(|pair| {
            let i = memchr::memchr(VALUE_MARK, pair).unwrap_or(pair.len());
            (
                text(&pair[..i]),
                text(pair.get(i + 1..).unwrap_or_default()),
            )
        })
    }
}

/// Keys are built only from validated UTF-8, so this never takes the fallback.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
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
