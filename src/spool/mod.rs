//! Spool: the on-disk store of batches that could not be sent (Monasca or Keystone down, or
//! the in-memory queue full), replayed oldest first by one stream once Monasca is back.
//!
//! Owns: the segment files and the ack state file in `dir`, and the in-memory index of what
//! they hold. Must never: fail the gateway (corrupt or torn data is skipped and counted, a disk
//! error is returned for the caller to count and the next call retries), hand out a record that
//! was acked (even across restarts), lose an unacked record except by a counted eviction or
//! expiry, exceed `max_bytes` on disk, or touch files in `dir` that are not its own.
//!
//! On disk:
//! - `NNNNNNNNNNNNNNNNNNNN.seg` (20-digit sequence number, never reused): records back to back,
//!   one per batch. A record is a 24-byte little-endian header (magic `F5 'S' 'G' 01`, CRC-32
//!   over the rest of the header and the body, body length u32, metrics u32, created_ms u64)
//!   and the body. Segments roll over at `segment_bytes` (a larger record gets a segment of its
//!   own); after `open`, appends always start a new segment.
//! - `spool.state` (see `marks`): every record below a frontier id is acked, plus up to
//!   `MAX_OUTSTANDING` acked-out-of-order ids and the ids in flight. Two slots with CRC and
//!   generation, overwritten alternately in place.
//!
//! Recovery (`open`, in `recover`): each segment is read and checked record by record. After
//! a bad record the scan resyncs at the next magic starting an intact record (the magic byte
//! `F5` never occurs in JSON); a bad range followed by an intact record counts as one corrupt
//! record. Trailing garbage (a torn write) counts as one corrupt record and is truncated away,
//! in any segment, since nothing intact follows it. Corrupt ranges in the middle stay, and are
//! counted again at each `open` until their segment is deleted. Segments with nothing unacked
//! are deleted.
//!
//! Ack and in flight: `take` hands out the oldest pending record and durably marks it in
//! flight (a state write) before returning it; `ack` marks it done (a state write); `release`
//! makes it pending again, first in line. Records in flight at a crash are pending again at the
//! next `open` and reported in `Recovery::in_flight_*` (they may have been delivered: a replay
//! is a possible duplicate). A fully acked segment is deleted, the newest one included.
//!
//! Bounds: `pending_bytes` is the size of the segment files not yet deleted. An append that
//! takes it over `max_bytes` evicts whole oldest segments, after the record is written (a
//! failed append evicts nothing); their unacked records are returned in
//! `AppendOutcome::evicted_full`, except records in flight, which the caller still holds: an
//! `ack` of one is a delivery, a `release` of one returns it as evicted. `expire` drops pending
//! records older than `max_age` from the head, stopping at a record in flight.
//!
//! Durability: every write reaches the OS before the call returns, which survives kill -9.
//! `Fsync::Always` also fsyncs each append (and a new segment's directory entry) and each
//! state write; `Every(d)` fsyncs on whichever call comes first once `d` has passed since the
//! last fsync, and the owner calls `sync_unsynced` every `d` (see `sync_period`), so nothing
//! written stays unsynced for much longer than `d` even when no call follows it (the tail of
//! a burst); `Never` leaves it to the OS.
//!
//! Files: created `0600` through `dir::options` (never through a symlink) in a `0700`
//! directory; `dir` also holds the `LOCK` a running gateway keeps (`SpoolDir`), which `open`
//! does not take: the gateway holds it for the whole process, the checkpoint included.

pub mod dir;
mod marks;
mod record;
mod recover;
#[cfg(test)]
mod tests;

use crate::batch::Batch;
use bytes::Bytes;
pub use dir::SpoolDir;
use marks::{MAX_OUTSTANDING, Marks, MarksFile};
use record::{HEADER, Meta};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When written data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Every(Duration),
    Never,
}

#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub segment_bytes: u64,
    pub fsync: Fsync,
}

/// Where a record lives: ordered by segment, then offset, which is append order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpooledBatch {
    pub id: RecordId,
    pub batch: Batch,
    pub created_ms: u64,
}

/// What `open` found. `batches`/`metrics`/`bytes`: what is pending now (in flight at the crash
/// included).
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub batches: u64,
    pub metrics: u64,
    pub bytes: u64,
    pub corrupt_records: u64,
    pub corrupt_bytes: u64,
    pub in_flight_batches: u64,
    pub in_flight_metrics: u64,
}

/// Records dropped unsent, for the caller to count.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub batches: u64,
    pub metrics: u64,
}

impl Evicted {
    fn add(&mut self, metrics: u32) {
        self.batches += 1;
        self.metrics += u64::from(metrics);
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Oldest records evicted to make room under `max_bytes`.
    pub evicted_full: Evicted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    InFlight,
    Acked,
}

#[derive(Debug)]
struct Rec {
    off: u64,
    meta: Meta,
    state: State,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes of the file as far as we know it (counted against `max_bytes`).
    len: u64,
    records: Vec<Rec>,
    /// Records before this are acked (meaningful for the front segment).
    head: usize,
}

/// A handed-out record's metrics, and whether its segment was evicted meanwhile.
struct Taken {
    metrics: u32,
    evicted: bool,
}

/// A record at the head that failed to read this many times in a row is dropped as unreadable,
/// so a bad sector cannot stall the replay forever.
const READ_ATTEMPTS: u32 = 3;

pub struct Spool {
    inner: Mutex<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    max_age_ms: u64,
    segment_bytes: u64,
    fsync: Fsync,
    segments: VecDeque<Segment>,
    /// Open for appends: always the last of `segments`.
    active: Option<File>,
    next_seq: u64,
    in_flight: BTreeMap<RecordId, Taken>,
    acked_above: BTreeSet<RecordId>,
    marks: MarksFile,
    pending_batches: u64,
    pending_metrics: u64,
    bytes: u64,
    last_sync: Instant,
    unsynced_segment: bool,
    unsynced_dir: bool,
    read_failures: (RecordId, u32),
    unreadable: Evicted,
    /// `sync` calls that forced something to disk (cumulative).
    syncs: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

enum ReadError {
    /// The record is not what the index says (corrupt, truncated, file gone): drop it.
    Bad,
    Io(io::Error),
}

fn read_record(dir: &Path, id: RecordId, meta: Meta) -> Result<Vec<u8>, ReadError> {
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof => ReadError::Bad,
        _ => ReadError::Io(e),
    };
    let f = File::open(segment_path(dir, id.segment)).map_err(io)?;
    let mut h = [0u8; HEADER];
    f.read_exact_at(&mut h, id.offset).map_err(io)?;
    if record::decode_header(&h) != Some(meta) {
        return Err(ReadError::Bad);
    }
    let mut body = vec![0u8; meta.body_len as usize];
    f.read_exact_at(&mut body, id.offset + HEADER as u64)
        .map_err(io)?;
    if !record::body_ok(&h, &body) {
        return Err(ReadError::Bad);
    }
    Ok(body)
}

impl Spool {
    /// Creates the dir if needed (`0700`), scans existing segments (recovery), truncates
    /// torn tails, counts corrupt records. Err only if the directory cannot be created or
    /// listed.
    pub fn open(settings: SpoolSettings) -> io::Result<(Spool, Recovery)> {
        recover::open(settings)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` at the end. Err: nothing was stored (the caller counts a drop), nothing
    /// was evicted; a batch bigger than `max_bytes` is refused with `InvalidInput`.
    pub fn append(&self, batch: &Batch, now_ms: u64) -> io::Result<AppendOutcome> {
        self.lock().append(batch, now_ms)
    }

    /// The oldest pending record, read from disk and durably marked in flight. `None` when
    /// nothing is pending, or when 16 records are in flight or acked out of order and the
    /// oldest unacked one is among them (in flight): the state file stays small and bounded. Records found corrupt on the way are dropped and counted in
    /// `unreadable`. Err: a read or state write failed; the record stays pending.
    pub fn take(&self) -> io::Result<Option<SpooledBatch>> {
        self.lock().take()
    }

    /// A taken record `id` replaced by `parts` (the halves of a batch Monasca refused as too
    /// large): both are appended, keeping `created_ms` for `max_age`, then `id` is acked, so
    /// the data is on disk at every moment (a crash in between replays both: duplicates, never
    /// loss). Err: nothing changed, `id` is still in flight. The halves go to the end of the
    /// spool (after newer records).
    pub fn replace(
        &self,
        id: RecordId,
        parts: [&Batch; 2],
        created_ms: u64,
    ) -> io::Result<AppendOutcome> {
        self.lock().replace(id, parts, created_ms)
    }

    /// Delivered (or dropped by the caller for a counted reason): never returned again, even
    /// after restart. Err: the state write failed; the record is acked in memory but may be
    /// replayed after a restart. Unknown or already-dropped ids are accepted.
    pub fn ack(&self, id: RecordId) -> io::Result<()> {
        self.lock().ack(id)
    }

    /// A taken record could not be sent: it is again the next one `take` returns. Non-zero
    /// only if its segment was evicted while in flight: then it is gone, for the caller to
    /// count as dropped.
    #[must_use]
    pub fn release(&self, id: RecordId) -> Evicted {
        self.lock().release(id)
    }

    /// Drops pending records older than `max_age` from the head (stopping at one in flight).
    pub fn expire(&self, now_ms: u64) -> Evicted {
        self.lock().expire(now_ms)
    }

    /// Forces appends and the ack state to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        self.lock().sync()
    }

    /// With `Fsync::Every(d)`: `d`, how often the owner should call `sync_unsynced`.
    pub fn sync_period(&self) -> Option<Duration> {
        match self.lock().fsync {
            Fsync::Every(d) => Some(d),
            _ => None,
        }
    }

    /// Syncs if anything written is not yet on stable storage; Ok(true) if it synced.
    pub fn sync_unsynced(&self) -> io::Result<bool> {
        let mut g = self.lock();
        if !g.unsynced() {
            return Ok(false);
        }
        g.sync()?;
        Ok(true)
    }

    /// `sync` calls that forced something to disk since `open` (cumulative, like a counter).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Unacked records, in flight included.
    pub fn pending_batches(&self) -> u64 {
        self.lock().pending_batches
    }

    pub fn pending_metrics(&self) -> u64 {
        self.lock().pending_metrics
    }

    /// Bytes of the segment files not yet deleted (what `max_bytes` bounds).
    pub fn pending_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Creation time of the oldest unacked record.
    pub fn oldest_ms(&self) -> Option<u64> {
        let g = self.lock();
        let front = g.segments.front()?;
        front.records.get(front.head).map(|r| r.meta.created_ms)
    }

    /// Records dropped since `open` because they could not be read back intact at `take`
    /// (cumulative, like a counter).
    pub fn unreadable(&self) -> Evicted {
        self.lock().unreadable
    }
}

impl Inner {
    fn remove_file(&self, seq: u64) {
        let path = segment_path(&self.dir, seq);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a spool segment");
        }
    }

    /// Drops the front segment from the index and the disk; returns it for counting.
    fn pop_front(&mut self) -> Option<Segment> {
        let seg = self.segments.pop_front()?;
        if self.segments.is_empty() {
            self.active = None;
        }
        self.bytes -= seg.len;
        self.remove_file(seg.seq);
        Some(seg)
    }

    /// The first unacked record; everything before it is acked.
    fn frontier(&self) -> RecordId {
        self.segments
            .front()
            .and_then(|s| {
                s.records.get(s.head).map(|r| RecordId {
                    segment: s.seq,
                    offset: r.off,
                })
            })
            .unwrap_or(RecordId {
                segment: self.next_seq,
                offset: 0,
            })
    }

    /// Moves the frontier past acked records, deleting fully acked segments.
    fn advance(&mut self) {
        while let Some(front) = self.segments.front_mut() {
            while front
                .records
                .get(front.head)
                .is_some_and(|r| r.state == State::Acked)
            {
                front.head += 1;
            }
            if front.head < front.records.len() {
                break;
            }
            self.pop_front();
        }
        let frontier = self.frontier();
        self.acked_above.retain(|id| *id > frontier);
    }

    fn current_marks(&self) -> Marks {
        Marks {
            acked_below: self.frontier(),
            acked: self.acked_above.iter().copied().collect(),
            in_flight: self
                .in_flight
                .iter()
                .filter(|(_, t)| !t.evicted)
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    fn persist(&mut self) -> io::Result<()> {
        let m = self.current_marks();
        self.marks.store(&m, self.fsync == Fsync::Always)?;
        self.maybe_sync();
        Ok(())
    }

    /// `Fsync::Every`: syncs when the interval has passed; a failure is logged, not returned
    /// (the call it rides on succeeded).
    fn maybe_sync(&mut self) {
        if let Fsync::Every(d) = self.fsync
            && self.last_sync.elapsed() >= d
            && let Err(e) = self.sync()
        {
            tracing::warn!(error = %e, "spool fsync failed");
        }
    }

    fn unsynced(&self) -> bool {
        (self.unsynced_segment && self.active.is_some()) || self.unsynced_dir || self.marks.dirty
    }

    fn sync(&mut self) -> io::Result<()> {
        let had_unsynced = self.unsynced();
        if self.unsynced_segment
            && let Some(f) = &self.active
        {
            f.sync_data()?;
        }
        self.unsynced_segment = false;
        if self.unsynced_dir {
            File::open(&self.dir)?.sync_all()?;
            self.unsynced_dir = false;
        }
        self.marks.sync()?;
        self.last_sync = Instant::now();
        self.syncs += u64::from(had_unsynced);
        Ok(())
    }

    /// Stops appending to the current segment (syncing what it holds unless `Never`).
    fn seal(&mut self) {
        if let Some(f) = self.active.take()
            && self.unsynced_segment
            && self.fsync != Fsync::Never
            && let Err(e) = f.sync_data()
        {
            tracing::warn!(error = %e, "spool fsync failed");
        }
        self.unsynced_segment = false;
    }

    fn create_segment(&mut self) -> io::Result<()> {
        // Consumed even on failure: a retry never trips over a half-created file.
        let seq = self.next_seq;
        self.next_seq += 1;
        let file = dir::options()
            .write(true)
            .create_new(true)
            .open(segment_path(&self.dir, seq))?;
        if self.fsync == Fsync::Always
            && let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all())
        {
            self.remove_file(seq);
            return Err(e);
        }
        self.unsynced_dir = self.fsync != Fsync::Always;
        self.segments.push_back(Segment {
            seq,
            len: 0,
            records: Vec::new(),
            head: 0,
        });
        self.active = Some(file);
        Ok(())
    }

    fn append(&mut self, batch: &Batch, now_ms: u64) -> io::Result<AppendOutcome> {
        self.append_record(batch, now_ms)
            .map(|(outcome, _)| outcome)
    }

    fn append_record(
        &mut self,
        batch: &Batch,
        now_ms: u64,
    ) -> io::Result<(AppendOutcome, RecordId)> {
        let meta = Meta {
            body_len: u32::try_from(batch.body.len()).map_err(|_| invalid("batch too large"))?,
            metrics: u32::try_from(batch.metrics).map_err(|_| invalid("too many metrics"))?,
            created_ms: now_ms,
        };
        let size = meta.size();
        if size > self.max_bytes {
            return Err(invalid("batch larger than the spool's max_bytes"));
        }
        if let Some(last) = self.segments.back()
            && self.active.is_some()
            && last.len > 0
            && (last.len + size > self.segment_bytes || last.len + size > self.max_bytes)
        {
            self.seal();
        }
        if self.active.is_none() {
            self.create_segment()?;
        }
        let (Some(file), Some(seg)) = (&self.active, self.segments.back_mut()) else {
            return Err(io::Error::other("spool: no active segment"));
        };
        let off = seg.len;
        let header = record::encode_header(meta, &batch.body);
        let written = file
            .write_all_at(&header, off)
            .and_then(|()| file.write_all_at(&batch.body, off + HEADER as u64))
            .and_then(|()| match self.fsync {
                Fsync::Always => file.sync_data(),
                _ => Ok(()),
            });
        if let Err(e) = written {
            // Nothing partial may stay where the next append writes: cut it off, or leave
            // this segment for a new one (recovery then counts the garbage as a torn tail).
            if file.set_len(off).is_err() {
                self.active = None;
                if seg.records.is_empty() {
                    let seq = seg.seq;
                    self.segments.pop_back();
                    self.remove_file(seq);
                }
            }
            return Err(e);
        }
        seg.records.push(Rec {
            off,
            meta,
            state: State::Pending,
        });
        let id = RecordId {
            segment: seg.seq,
            offset: off,
        };
        seg.len += size;
        self.bytes += size;
        self.pending_batches += 1;
        self.pending_metrics += u64::from(meta.metrics);
        self.unsynced_segment = self.fsync != Fsync::Always;
        let evicted_full = self.evict_to_fit();
        self.maybe_sync();
        Ok((AppendOutcome { evicted_full }, id))
    }

    fn replace(
        &mut self,
        id: RecordId,
        parts: [&Batch; 2],
        created_ms: u64,
    ) -> io::Result<AppendOutcome> {
        let (mut first, a) = self.append_record(parts[0], created_ms)?;
        let second = match self.append_record(parts[1], created_ms) {
            Ok((outcome, _)) => outcome,
            Err(e) => {
                // The original stays: the first half must not be sent besides it.
                if let Some((si, ri)) = self.locate(a)
                    && self.segments[si].records[ri].state == State::Pending
                {
                    self.drop_pending(si, ri);
                    self.advance();
                }
                if let Err(e) = self.persist() {
                    tracing::warn!(error = %e, "spool state write failed");
                }
                return Err(e);
            }
        };
        first.evicted_full.batches += second.evicted_full.batches;
        first.evicted_full.metrics += second.evicted_full.metrics;
        if let Err(e) = self.ack(id) {
            // Both halves are stored; the original may come back after a restart (a duplicate).
            tracing::warn!(error = %e, "spool state write failed: a split batch may be sent twice after a restart");
        }
        Ok(first)
    }

    /// Evicts whole oldest segments while over `max_bytes`, never the one just written.
    fn evict_to_fit(&mut self) -> Evicted {
        let mut evicted = Evicted::default();
        let mut popped = false;
        while self.bytes > self.max_bytes && self.segments.len() > 1 {
            let Some(seg) = self.pop_front() else { break };
            popped = true;
            for r in seg.records.iter().skip(seg.head) {
                let id = RecordId {
                    segment: seg.seq,
                    offset: r.off,
                };
                match r.state {
                    State::Acked => continue,
                    State::Pending => evicted.add(r.meta.metrics),
                    // The caller holds it: counted at `release`, or delivered at `ack`.
                    State::InFlight => {
                        if let Some(t) = self.in_flight.get_mut(&id) {
                            t.evicted = true;
                        }
                    }
                }
                self.pending_batches -= 1;
                self.pending_metrics -= u64::from(r.meta.metrics);
            }
        }
        if popped {
            self.advance();
            // Best effort: if a deleted segment file somehow stays, it must not come back.
            if let Err(e) = self.persist() {
                tracing::warn!(error = %e, "spool state write failed");
            }
        }
        evicted
    }

    fn locate(&self, id: RecordId) -> Option<(usize, usize)> {
        let si = self
            .segments
            .binary_search_by_key(&id.segment, |s| s.seq)
            .ok()?;
        let ri = self.segments[si]
            .records
            .binary_search_by_key(&id.offset, |r| r.off)
            .ok()?;
        Some((si, ri))
    }

    fn next_pending(&self) -> Option<(usize, usize)> {
        self.segments.iter().enumerate().find_map(|(si, s)| {
            let start = if si == 0 { s.head } else { 0 };
            (start..s.records.len())
                .find(|&ri| s.records[ri].state == State::Pending)
                .map(|ri| (si, ri))
        })
    }

    /// Marks a pending record acked without delivery (unreadable or expired).
    fn drop_pending(&mut self, si: usize, ri: usize) -> u32 {
        let seg = &mut self.segments[si];
        let r = &mut seg.records[ri];
        r.state = State::Acked;
        let id = RecordId {
            segment: seg.seq,
            offset: r.off,
        };
        let metrics = r.meta.metrics;
        self.pending_batches -= 1;
        self.pending_metrics -= u64::from(metrics);
        self.acked_above.insert(id);
        metrics
    }

    fn take(&mut self) -> io::Result<Option<SpooledBatch>> {
        loop {
            let Some((si, ri)) = self.next_pending() else {
                return Ok(None);
            };
            let seq = self.segments[si].seq;
            let r = &self.segments[si].records[ri];
            let (id, meta) = (
                RecordId {
                    segment: seq,
                    offset: r.off,
                },
                r.meta,
            );
            // Bounds what the state file must hold. The frontier record is always handed out:
            // acking it is what shrinks the out-of-order list.
            if self.in_flight.len() + self.acked_above.len() >= MAX_OUTSTANDING
                && id != self.frontier()
            {
                return Ok(None);
            }
            let body = match read_record(&self.dir, id, meta) {
                Ok(body) => body,
                Err(ReadError::Io(e)) => {
                    let failures = if self.read_failures.0 == id {
                        self.read_failures.1 + 1
                    } else {
                        1
                    };
                    self.read_failures = (id, failures);
                    if failures < READ_ATTEMPTS {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "spooled batch unreadable: dropped");
                    self.drop_unreadable(si, ri);
                    continue;
                }
                Err(ReadError::Bad) => {
                    tracing::warn!(
                        segment = seq,
                        offset = id.offset,
                        "spooled batch corrupt: dropped"
                    );
                    self.drop_unreadable(si, ri);
                    continue;
                }
            };
            self.read_failures = (RecordId::default(), 0);
            self.segments[si].records[ri].state = State::InFlight;
            self.in_flight.insert(
                id,
                Taken {
                    metrics: meta.metrics,
                    evicted: false,
                },
            );
            if let Err(e) = self.persist() {
                self.segments[si].records[ri].state = State::Pending;
                self.in_flight.remove(&id);
                return Err(e);
            }
            return Ok(Some(SpooledBatch {
                id,
                batch: Batch {
                    body: Bytes::from(body),
                    metrics: meta.metrics as usize,
                },
                created_ms: meta.created_ms,
            }));
        }
    }

    fn drop_unreadable(&mut self, si: usize, ri: usize) {
        let metrics = self.drop_pending(si, ri);
        self.unreadable.add(metrics);
        self.advance();
        if let Err(e) = self.persist() {
            tracing::warn!(error = %e, "spool state write failed");
        }
    }

    fn ack(&mut self, id: RecordId) -> io::Result<()> {
        if let Some(t) = self.in_flight.remove(&id)
            && t.evicted
        {
            return Ok(());
        }
        let Some((si, ri)) = self.locate(id) else {
            return Ok(());
        };
        let r = &mut self.segments[si].records[ri];
        if r.state == State::Acked {
            return Ok(());
        }
        r.state = State::Acked;
        self.pending_batches -= 1;
        self.pending_metrics -= u64::from(r.meta.metrics);
        self.acked_above.insert(id);
        self.advance();
        self.persist()
    }

    fn release(&mut self, id: RecordId) -> Evicted {
        let mut gone = Evicted::default();
        let Some(t) = self.in_flight.remove(&id) else {
            return gone;
        };
        if t.evicted {
            gone.add(t.metrics);
            return gone;
        }
        if let Some((si, ri)) = self.locate(id) {
            let r = &mut self.segments[si].records[ri];
            if r.state == State::InFlight {
                r.state = State::Pending;
            }
        }
        // Best effort: a stale in-flight mark only overstates possible duplicates.
        if let Err(e) = self.persist() {
            tracing::warn!(error = %e, "spool state write failed");
        }
        gone
    }

    fn expire(&mut self, now_ms: u64) -> Evicted {
        let mut expired = Evicted::default();
        while let Some(front) = self.segments.front() {
            let Some(r) = front.records.get(front.head) else {
                break;
            };
            if r.state != State::Pending
                || now_ms.saturating_sub(r.meta.created_ms) <= self.max_age_ms
            {
                break;
            }
            let head = front.head;
            expired.add(self.drop_pending(0, head));
            self.advance();
        }
        if expired.batches > 0
            && let Err(e) = self.persist()
        {
            tracing::warn!(error = %e, "spool state write failed");
        }
        expired
    }
}
