//! The acknowledgement state file `spool.state`: what has been acked and what is in flight.
//!
//! Two fixed-size slots, written alternately with one `pwrite` each, every slot carrying a
//! generation and a CRC: a torn write (kill -9, power loss) spoils at most the slot being
//! written, and `load` takes the valid slot with the higher generation. No rename, no
//! directory fsync on the ack path.

use super::RecordId;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "spool.state";
const MAGIC: [u8; 4] = *b"SGST";
const SLOT: usize = 1024;
/// `take` keeps records in flight plus records acked out of order at this (one more while the
/// oldest unacked record is in flight).
pub const MAX_OUTSTANDING: usize = 16;
/// Ids a slot holds, both lists together: room to spare over `MAX_OUTSTANDING + 1`.
const CAPACITY: usize = 2 * MAX_OUTSTANDING;
const FIXED: usize = 36;
const _: () = assert!(FIXED + CAPACITY * 16 <= SLOT);

/// Every id below `acked_below` is acked; `acked` are acked ids above it; `in_flight` were
/// handed out and not yet acked or released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Marks {
    pub acked_below: RecordId,
    pub acked: Vec<RecordId>,
    pub in_flight: Vec<RecordId>,
}

impl Marks {
    pub fn is_acked(&self, id: RecordId) -> bool {
        id < self.acked_below || self.acked.contains(&id)
    }
}

pub struct MarksFile {
    path: PathBuf,
    file: Option<File>,
    generation: u64,
    pub dirty: bool,
}

fn encode(m: &Marks, generation: u64) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[0..4].copy_from_slice(&MAGIC);
    s[8..16].copy_from_slice(&generation.to_le_bytes());
    s[16..24].copy_from_slice(&m.acked_below.segment.to_le_bytes());
    s[24..32].copy_from_slice(&m.acked_below.offset.to_le_bytes());
    // Callers stay far below CAPACITY; if not, losing an ack (a duplicate) beats losing an
    // in-flight mark (an unreported possible duplicate) beats failing.
    let acked = &m.acked[..m.acked.len().min(CAPACITY)];
    let in_flight = &m.in_flight[..m.in_flight.len().min(CAPACITY - acked.len())];
    s[32..34].copy_from_slice(&(acked.len() as u16).to_le_bytes());
    s[34..36].copy_from_slice(&(in_flight.len() as u16).to_le_bytes());
    for (i, id) in acked.iter().chain(in_flight).enumerate() {
        let at = FIXED + i * 16;
        s[at..at + 8].copy_from_slice(&id.segment.to_le_bytes());
        s[at + 8..at + 16].copy_from_slice(&id.offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&s[8..]);
    s[4..8].copy_from_slice(&crc.to_le_bytes());
    s
}

fn decode(s: &[u8]) -> Option<(u64, Marks)> {
    let u64_at = |at: usize| {
        s.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let u16_at = |at: usize| {
        s.get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let crc = s
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)?;
    if s.len() != SLOT || s[0..4] != MAGIC || crc32fast::hash(&s[8..]) != crc {
        return None;
    }
    let id_at = |at: usize| -> Option<RecordId> {
        Some(RecordId {
            segment: u64_at(at)?,
            offset: u64_at(at + 8)?,
        })
    };
    let n_acked = usize::from(u16_at(32)?);
    let n_flight = usize::from(u16_at(34)?);
    if n_acked + n_flight > CAPACITY {
        return None;
    }
    let ids: Option<Vec<RecordId>> = (0..n_acked + n_flight)
        .map(|i| id_at(FIXED + i * 16))
        .collect();
    let mut ids = ids?;
    let in_flight = ids.split_off(n_acked);
    Some((
        u64_at(8)?,
        Marks {
            acked_below: id_at(16)?,
            acked: ids,
            in_flight,
        },
    ))
}

impl MarksFile {
    /// Reads the newest valid slot. A missing or unreadable file means nothing is acked (so
    /// everything is replayed: duplicates, never loss); the file is (re)opened for writing
    /// lazily, so a read-only directory does not prevent recovery.
    pub fn load(dir: &Path) -> (MarksFile, Option<Marks>) {
        let path = dir.join(FILE_NAME);
        let mut best: Option<(u64, Marks)> = None;
        if let Ok(data) = std::fs::read(&path) {
            for slot in data.chunks(SLOT) {
                if let Some((g, m)) = decode(slot)
                    && best.as_ref().is_none_or(|(bg, _)| g > *bg)
                {
                    best = Some((g, m));
                }
            }
        }
        let generation = best.as_ref().map_or(0, |(g, _)| *g);
        let mf = MarksFile {
            path,
            file: None,
            generation,
            dirty: false,
        };
        (mf, best.map(|(_, m)| m))
    }

    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            let f = super::dir::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            self.file = Some(f);
        }
        // Just set above when it was missing.
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("state file"))
    }

    /// Writes `m` over the older slot; `fsync` makes it durable before returning.
    pub fn store(&mut self, m: &Marks, fsync: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = encode(m, generation);
        let offset = (generation % 2) * SLOT as u64;
        let result = (|| {
            let f = self.file()?;
            f.write_all_at(&slot, offset)?;
            if fsync { f.sync_data() } else { Ok(()) }
        })();
        match result {
            Ok(()) => {
                self.generation = generation;
                self.dirty = !fsync;
                Ok(())
            }
            Err(e) => {
                // Reopen next time: the handle may be what is broken.
                self.file = None;
                Err(e)
            }
        }
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let id = |s, o| RecordId {
            segment: s,
            offset: o,
        };
        let (mut f, none) = MarksFile::load(dir.path());
        assert!(none.is_none());
        let a = Marks {
            acked_below: id(1, 0),
            acked: vec![id(1, 50)],
            in_flight: vec![id(1, 10), id(2, 0)],
        };
        let b = Marks {
            acked_below: id(3, 7),
            ..Marks::default()
        };
        f.store(&a, true).unwrap();
        f.store(&b, false).unwrap();
        assert_eq!(MarksFile::load(dir.path()).1, Some(b.clone()));
        // Spoil the newest slot (generation 2 lives in slot 0).
        let path = dir.path().join(FILE_NAME);
        let mut data = std::fs::read(&path).unwrap();
        data[40] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let (mut f, m) = MarksFile::load(dir.path());
        assert_eq!(m, Some(a));
        f.store(&b, false).unwrap();
        assert_eq!(MarksFile::load(dir.path()).1, Some(b));
    }
}
