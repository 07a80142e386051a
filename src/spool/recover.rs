//! Recovery: opening the spool over what an earlier run left (segments scanned record by
//! record, torn tails truncated, corrupt ranges counted, the ack state applied). Must never:
//! fail on damaged data (only on a directory that cannot be created or listed), or reuse a
//! sequence number the state file may still refer to.

use super::marks::{Marks, MarksFile};
use super::record;
use super::{
    Evicted, Inner, Rec, RecordId, Recovery, Segment, Spool, SpoolSettings, State, dir,
    segment_path,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::Mutex;
use std::time::Instant;

fn segment_seq(name: &std::ffi::OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn open(settings: SpoolSettings) -> io::Result<(Spool, Recovery)> {
    dir::create(&settings.dir)?;
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(&settings.dir)? {
        let entry = entry?;
        if let Some(seq) = segment_seq(&entry.file_name())
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let (marks_file, marks) = MarksFile::load(&settings.dir);
    if marks.is_none() && !seqs.is_empty() {
        tracing::warn!(dir = %settings.dir.display(), "spool state missing or unreadable: every spooled batch will be replayed");
    }
    let marks = marks.unwrap_or_default();
    let mut inner = Inner {
        dir: settings.dir,
        max_bytes: settings.max_bytes,
        max_age_ms: u64::try_from(settings.max_age.as_millis()).unwrap_or(u64::MAX),
        segment_bytes: settings.segment_bytes,
        fsync: settings.fsync,
        segments: VecDeque::new(),
        active: None,
        next_seq: 0,
        in_flight: BTreeMap::new(),
        acked_above: BTreeSet::new(),
        marks: marks_file,
        pending_batches: 0,
        pending_metrics: 0,
        bytes: 0,
        last_sync: Instant::now(),
        unsynced_segment: false,
        unsynced_dir: false,
        read_failures: (RecordId::default(), 0),
        unreadable: Evicted::default(),
        syncs: 0,
    };
    let mut rec = Recovery::default();
    for &seq in &seqs {
        inner.recover_segment(seq, &marks, &mut rec);
    }
    // Never reuse a sequence number the state may refer to: new ids must sort after it.
    let below = marks.acked_below;
    inner.next_seq = marks
        .acked
        .iter()
        .chain(&marks.in_flight)
        .map(|id| id.segment + 1)
        .chain(seqs.last().map(|s| s + 1))
        .chain([below.segment + u64::from(below.offset > 0)])
        .max()
        .unwrap_or(0);
    inner.advance();
    let frontier = inner.frontier();
    inner.acked_above = inner
        .segments
        .iter()
        .flat_map(|s| {
            s.records
                .iter()
                .filter(|r| r.state == State::Acked)
                .map(|r| RecordId {
                    segment: s.seq,
                    offset: r.off,
                })
        })
        .filter(|id| *id > frontier)
        .collect();
    // Reported once: they are pending again, not in flight.
    if !marks.in_flight.is_empty()
        && let Err(e) = inner.persist()
    {
        tracing::warn!(error = %e, "spool state write failed");
    }
    rec.batches = inner.pending_batches;
    rec.metrics = inner.pending_metrics;
    rec.bytes = inner.bytes;
    Ok((
        Spool {
            inner: Mutex::new(inner),
        },
        rec,
    ))
}

impl Inner {
    fn recover_segment(&mut self, seq: u64, marks: &Marks, rec: &mut Recovery) {
        let path = segment_path(&self.dir, seq);
        let id = |offset| RecordId {
            segment: seq,
            offset,
        };
        if id(u64::MAX) < marks.acked_below {
            self.remove_file(seq);
            return;
        }
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "spool segment unreadable: skipped");
                rec.corrupt_records += 1;
                return;
            }
        };
        let scan = record::scan(&data);
        let mut len = data.len() as u64;
        // A range entirely below the frontier was counted at an earlier open already.
        let mut count = |start: u64, end: u64| {
            if id(end) > marks.acked_below {
                rec.corrupt_records += 1;
                rec.corrupt_bytes += end - start;
            }
        };
        for &(start, end) in &scan.corrupt {
            count(start, end);
        }
        if let Some(torn) = scan.torn_at {
            count(torn, len);
            match dir::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(torn))
            {
                Ok(()) => len = torn,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "spool segment: cannot truncate a torn tail")
                }
            }
        }
        let mut records = Vec::with_capacity(scan.records.len());
        for (off, meta) in scan.records {
            let state = if marks.is_acked(id(off)) {
                State::Acked
            } else {
                if marks.in_flight.contains(&id(off)) {
                    rec.in_flight_batches += 1;
                    rec.in_flight_metrics += u64::from(meta.metrics);
                }
                self.pending_batches += 1;
                self.pending_metrics += u64::from(meta.metrics);
                State::Pending
            };
            records.push(Rec { off, meta, state });
        }
        if records.iter().all(|r| r.state == State::Acked) {
            self.remove_file(seq);
            return;
        }
        self.bytes += len;
        self.segments.push_back(Segment {
            seq,
            len,
            records,
            head: 0,
        });
    }
}
