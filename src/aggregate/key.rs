//! The series key: name, optional `|T` timestamp and sorted dimensions in one byte string.
//!
//! Layout: `name [0x1D ts-decimal] (0x1F key 0x1E value)*`. Names and dimensions never hold
//! control characters (`validate` refuses them), so the markers are unambiguous and the whole
//! key is UTF-8: decoding checks it once. A line with no dimensions and no timestamp has its
//! plain name as key, so the hot path needs no copy. A map stores a key as a [`Key`]: short
//! ones inline in the entry, long ones in one exact-size allocation.

const TS_MARK: u8 = 0x1D;
const DIM_MARK: u8 = 0x1F;
const VALUE_MARK: u8 = 0x1E;

/// Appends the encoding of `name`, `timestamp` and the already sorted, deduplicated `dims`
/// to `buf` (a batch's keys go back to back in one buffer).
pub fn encode(buf: &mut Vec<u8>, name: &str, timestamp: Option<u64>, dims: &[(&str, &str)]) {
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

/// The name's bytes at the start of `key`, without decoding the rest.
pub fn name_of(key: &[u8]) -> &[u8] {
    let end = key
        .iter()
        .position(|&b| b == TS_MARK || b == DIM_MARK)
        .unwrap_or(key.len());
    key.get(..end).unwrap_or(key)
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

/// Key bytes held in the map entry itself, without a heap allocation: most plain series
/// names (`app.requests.200`) fit, so a lookup compares them without a pointer chase.
const INLINE: usize = 22;

/// A series key as a map stores it: inline up to [`INLINE`] bytes, else one exact-size heap
/// allocation (no spare capacity, unlike a `Vec`). 24 bytes either way. Hashes, compares and
/// borrows as its bytes, so a map of them is looked up by `&[u8]`.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    /// Longest key held in the entry itself.
    pub const INLINE: usize = INLINE;

    pub fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            // At most INLINE (22): fits a byte.
            Key(Repr::Inline {
                len: key.len() as u8,
                bytes,
            })
        } else {
            Key(Repr::Heap(key.into()))
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len).min(INLINE)],
            Repr::Heap(b) => b,
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

/// As `[u8]` hashes: `Borrow<[u8]>` requires it (maps are looked up by `&[u8]`).
impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
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
    fn keys_inline_or_on_the_heap_read_back_as_their_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 200] {
            let bytes: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let k = Key::new(&bytes);
            assert_eq!(k.as_slice(), bytes.as_slice(), "{n}");
            assert_eq!(k.clone(), k);
            // Hashes as its bytes, so a map of keys answers a `&[u8]` lookup.
            let h = foldhash::fast::FixedState::with_seed(7);
            use std::hash::BuildHasher;
            assert_eq!(h.hash_one(&k), h.hash_one(bytes.as_slice()), "{n}");
        }
        assert_ne!(Key::new(b"ab"), Key::new(b"abc"));
    }

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
        assert_eq!(name_of(&buf), b"http.req");
        assert_eq!(k.dims().collect::<Vec<_>>(), vec![("a", "x:y"), ("b", "é")]);

        buf.clear();
        encode(&mut buf, "plain", None, &[]);
        assert_eq!(buf, b"plain");
        let k = SeriesKey::decode(&buf);
        assert_eq!((k.name, k.timestamp, k.dims().count()), ("plain", None, 0));
    }
}
