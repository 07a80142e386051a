//! One record on disk: a fixed 24-byte header, then the body. Encoding, checking, and the
//! recovery scan of a whole segment (with resync past corrupt bytes).

/// `0xF5` never occurs in UTF-8, so a JSON body cannot contain the magic by accident: the
/// resync after a corrupt record finds real headers only.
pub const MAGIC: [u8; 4] = [0xF5, b'S', b'G', 0x01];
pub const HEADER: usize = 24;

/// What the header says about a record (offsets are the caller's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub body_len: u32,
    pub metrics: u32,
    pub created_ms: u64,
}

impl Meta {
    /// Header plus body.
    pub fn size(&self) -> u64 {
        HEADER as u64 + u64::from(self.body_len)
    }
}

/// CRC-32 over the header fields after the CRC (length, metrics, time), then the body.
fn crc(fields: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(fields);
    h.update(body);
    h.finalize()
}

pub fn encode_header(meta: Meta, body: &[u8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&meta.body_len.to_le_bytes());
    h[12..16].copy_from_slice(&meta.metrics.to_le_bytes());
    h[16..24].copy_from_slice(&meta.created_ms.to_le_bytes());
    let c = crc(&h[8..24], body);
    h[4..8].copy_from_slice(&c.to_le_bytes());
    h
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The header's fields if it starts with the magic; the CRC is checked with the body.
pub fn decode_header(h: &[u8; HEADER]) -> Option<Meta> {
    (h[0..4] == MAGIC).then(|| Meta {
        body_len: u32_at(h, 8),
        metrics: u32_at(h, 12),
        created_ms: u64_at(h, 16),
    })
}

pub fn body_ok(h: &[u8; HEADER], body: &[u8]) -> bool {
    crc(&h[8..24], body) == u32_at(h, 4)
}

/// A complete, intact record at `pos` of `data`.
fn parse_at(data: &[u8], pos: usize) -> Option<Meta> {
    let header: &[u8; HEADER] = data.get(pos..pos + HEADER)?.try_into().ok()?;
    let meta = decode_header(header)?;
    let body = data.get(pos + HEADER..pos + HEADER + meta.body_len as usize)?;
    body_ok(header, body).then_some(meta)
}

/// What a segment holds: its intact records and the byte ranges that are not.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<(u64, Meta)>,
    /// Corrupt ranges followed by an intact record (each counts as one corrupt record).
    pub corrupt: Vec<(u64, u64)>,
    /// Where the trailing garbage starts, if any (a torn write): safe to truncate there,
    /// nothing intact follows.
    pub torn_at: Option<u64>,
}

/// Walks `data` record by record; after a bad record, resyncs at the next magic that starts
/// an intact record.
pub fn scan(data: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0usize;
    let mut bad_since: Option<usize> = None;
    while pos < data.len() {
        if let Some(meta) = parse_at(data, pos) {
            if let Some(start) = bad_since.take() {
                out.corrupt.push((start as u64, pos as u64));
            }
            out.records.push((pos as u64, meta));
            pos += meta.size() as usize;
            continue;
        }
        bad_since.get_or_insert(pos);
        match memchr::memmem::find(&data[pos + 1..], &MAGIC) {
            Some(skip) => pos += 1 + skip,
            None => pos = data.len(),
        }
    }
    out.torn_at = bad_since.map(|s| s as u64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8], metrics: u32, created_ms: u64) -> Vec<u8> {
        let meta = Meta {
            body_len: body.len() as u32,
            metrics,
            created_ms,
        };
        let mut v = encode_header(meta, body).to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn scan_resyncs_after_a_corrupt_record_and_reports_a_torn_tail() {
        let mut data = record(b"[1]", 1, 10);
        let second = data.len();
        data.extend(record(b"[2,2]", 2, 20));
        let third = data.len();
        data.extend(record(b"[3]", 3, 30));
        data[second + HEADER + 1] ^= 0x40;
        data.extend_from_slice(&record(b"[4]", 4, 40)[..10]);
        let s = scan(&data);
        let got: Vec<u32> = s.records.iter().map(|(_, m)| m.metrics).collect();
        assert_eq!(got, vec![1, 3]);
        assert_eq!(s.corrupt, vec![(second as u64, third as u64)]);
        assert_eq!(s.torn_at, Some((data.len() - 10) as u64));
    }
}
