use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn settings(dir: &Path) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
        segment_bytes: 200,
        fsync: Fsync::Never,
    }
}

/// Batch `n`: a 26-byte body (50 bytes on disk), `n % 5 + 1` metrics.
fn batch(n: u64) -> Batch {
    Batch {
        body: Bytes::from(format!("[{{\"n\":{n:>18}}}]").replace(' ', "0")),
        metrics: (n % 5 + 1) as usize,
    }
}

fn metrics_of(ns: impl IntoIterator<Item = u64>) -> u64 {
    ns.into_iter().map(|n| n % 5 + 1).sum()
}

fn number(b: &SpooledBatch) -> u64 {
    let text = std::str::from_utf8(&b.batch.body).unwrap();
    text.trim_start_matches("[{\"n\":")
        .trim_end_matches("}]")
        .parse()
        .unwrap()
}

fn open(s: &SpoolSettings) -> (Spool, Recovery) {
    Spool::open(s.clone()).unwrap()
}

/// Takes and acks everything left, returning the batch numbers in order.
fn drain(spool: &Spool) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(b) = spool.take().unwrap() {
        assert_eq!(b.batch, batch(number(&b)), "body and metrics round-trip");
        out.push(number(&b));
        spool.ack(b.id).unwrap();
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn batch_helper_is_fifty_bytes_on_disk() {
    assert_eq!(batch(7).body.len() + HEADER, 50);
    assert_eq!(batch(999_999_999_999_999_999).body.len() + HEADER, 50);
}

#[test]
fn round_trip_oldest_first_across_segments_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (spool, rec) = open(&s);
    assert_eq!(rec, Recovery::default());
    for n in 0..20 {
        let out = spool.append(&batch(n), 1_000 + n).unwrap();
        assert_eq!(out.evicted_full, Evicted::default());
    }
    // 200-byte segments hold 4 records of 50 bytes.
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert_eq!(spool.pending_batches(), 20);
    assert_eq!(spool.pending_metrics(), metrics_of(0..20));
    assert_eq!(spool.pending_bytes(), 1000);
    assert_eq!(spool.oldest_ms(), Some(1_000));
    for n in 0..6 {
        let b = spool.take().unwrap().unwrap();
        assert_eq!((number(&b), b.created_ms), (n, 1_000 + n));
        spool.ack(b.id).unwrap();
    }
    assert_eq!(
        segment_files(dir.path()).len(),
        4,
        "fully acked segment deleted"
    );
    assert_eq!(spool.oldest_ms(), Some(1_006));
    drop(spool);

    let (spool, rec) = open(&s);
    assert_eq!(
        rec,
        Recovery {
            batches: 14,
            metrics: metrics_of(6..20),
            bytes: 800,
            ..Recovery::default()
        }
    );
    spool.append(&batch(20), 2_000).unwrap();
    assert_eq!(drain(&spool), (6..=20).collect::<Vec<_>>());
    assert_eq!(spool.pending_batches(), 0);
    assert_eq!(spool.pending_bytes(), 0);
    assert_eq!(spool.oldest_ms(), None);
    assert!(segment_files(dir.path()).is_empty());
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!(rec, Recovery::default());
    assert!(spool.take().unwrap().is_none());
}

#[test]
fn acks_survive_reopen_and_in_flight_at_a_crash_is_reported_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (spool, _) = open(&s);
    for n in 0..6 {
        spool.append(&batch(n), n).unwrap();
    }
    let a = spool.take().unwrap().unwrap();
    spool.ack(a.id).unwrap();
    let b = spool.take().unwrap().unwrap();
    let c = spool.take().unwrap().unwrap();
    assert_eq!((number(&b), number(&c)), (1, 2), "two in flight");
    spool.ack(c.id).unwrap();
    // kill -9: nothing more is written.
    drop(spool);

    let (spool, rec) = open(&s);
    assert_eq!(
        rec,
        Recovery {
            batches: 4,
            metrics: metrics_of([1, 3, 4, 5]),
            bytes: 200 + 100,
            in_flight_batches: 1,
            in_flight_metrics: metrics_of([1]),
            ..Recovery::default()
        }
    );
    let b_again = spool.take().unwrap().unwrap();
    assert_eq!(b_again.id, b.id, "replayed first, same id");
    spool.ack(b.id).unwrap();
    spool.ack(c.id).unwrap(); // a stale ack of an acked record is harmless
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!((rec.batches, rec.in_flight_batches), (3, 0));
    assert_eq!(drain(&spool), vec![3, 4, 5]);
}

#[test]
fn release_puts_a_record_back_first_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    for n in 0..3 {
        spool.append(&batch(n), n).unwrap();
    }
    let a = spool.take().unwrap().unwrap();
    let b = spool.take().unwrap().unwrap();
    assert_eq!(spool.release(a.id), Evicted::default());
    assert_eq!(spool.release(a.id), Evicted::default(), "twice is harmless");
    assert_eq!(spool.take().unwrap().unwrap().id, a.id);
    assert_eq!(spool.release(b.id), Evicted::default());
    assert_eq!(spool.pending_batches(), 3, "in flight still pending");
    spool.ack(a.id).unwrap();
    assert_eq!(drain(&spool), vec![1, 2]);
}

#[test]
fn take_stops_at_the_outstanding_limit_but_always_hands_out_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    for n in 0..20 {
        spool.append(&batch(n), n).unwrap();
    }
    let taken: Vec<SpooledBatch> = (0..MAX_OUTSTANDING)
        .map(|_| spool.take().unwrap().unwrap())
        .collect();
    assert!(spool.take().unwrap().is_none(), "16 in flight");
    // Acked out of order behind record 0: still outstanding.
    for b in &taken[1..] {
        spool.ack(b.id).unwrap();
    }
    assert!(
        spool.take().unwrap().is_none(),
        "1 in flight, 15 acked out of order"
    );
    assert_eq!(spool.release(taken[0].id), Evicted::default());
    let zero = spool.take().unwrap().unwrap();
    assert_eq!(zero.id, taken[0].id, "the oldest is handed out regardless");
    drop(spool);
    let (spool, rec) = open(&settings(dir.path()));
    assert_eq!((rec.batches, rec.in_flight_batches), (5, 1));
    let zero = spool.take().unwrap().unwrap();
    assert_eq!(zero.id, taken[0].id);
    spool.ack(zero.id).unwrap();
    assert_eq!(drain(&spool), vec![16, 17, 18, 19]);
}

/// A spool dir holding records `0..n` in one segment; returns the segment's bytes.
fn one_segment(dir: &Path, n: u64) -> (PathBuf, Vec<u8>) {
    let s = SpoolSettings {
        segment_bytes: 1 << 20,
        ..settings(dir)
    };
    let (spool, _) = open(&s);
    for i in 0..n {
        spool.append(&batch(i), i).unwrap();
    }
    drop(spool);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    let data = std::fs::read(&files[0]).unwrap();
    (files[0].clone(), data)
}

#[test]
fn a_torn_tail_of_any_length_is_truncated_counted_and_appends_continue() {
    let src = tempfile::tempdir().unwrap();
    let (path, full) = one_segment(src.path(), 3);
    let name = path.file_name().unwrap();
    for keep in 0..50usize {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(name);
        std::fs::write(&seg, &full[..100 + keep]).unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), b"keep me").unwrap();
        let s = settings(dir.path());
        let (spool, rec) = open(&s);
        let torn = u64::from(keep > 0);
        assert_eq!(
            rec,
            Recovery {
                batches: 2,
                metrics: metrics_of([0, 1]),
                bytes: 100,
                corrupt_records: torn,
                corrupt_bytes: keep as u64,
                ..Recovery::default()
            },
            "keep {keep}"
        );
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), 100, "truncated");
        spool.append(&batch(9), 9).unwrap();
        drop(spool);
        let (spool, rec) = open(&s);
        assert_eq!((rec.batches, rec.corrupt_records), (3, 0), "counted once");
        assert_eq!(drain(&spool), vec![0, 1, 9], "keep {keep}");
        assert!(dir.path().join("unrelated.txt").exists());
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_skipped_and_counted() {
    // Body byte, CRC byte, length byte, magic byte of the second record.
    for at in [50 + 30, 50 + 5, 50 + 9, 50] {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut data) = one_segment(dir.path(), 4);
        data[at] ^= 0x01;
        std::fs::write(&path, &data).unwrap();
        let (spool, rec) = open(&settings(dir.path()));
        assert_eq!(
            rec,
            Recovery {
                batches: 3,
                metrics: metrics_of([0, 2, 3]),
                bytes: 200,
                corrupt_records: 1,
                corrupt_bytes: 50,
                ..Recovery::default()
            },
            "byte {at}"
        );
        assert_eq!(drain(&spool), vec![0, 2, 3]);
    }
}

#[test]
fn corruption_in_an_older_segment_and_the_rest_of_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (spool, _) = open(&s);
    for n in 0..8 {
        spool.append(&batch(n), n).unwrap();
    }
    drop(spool);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    // Garbage from record 2 to the end of the first segment: nothing to resync on.
    let mut data = std::fs::read(&files[0]).unwrap();
    data.truncate(100);
    data.extend_from_slice(&[0xF5; 70]);
    std::fs::write(&files[0], &data).unwrap();
    let (spool, rec) = open(&s);
    assert_eq!(
        (rec.batches, rec.corrupt_records, rec.corrupt_bytes),
        (6, 1, 70)
    );
    assert_eq!(drain(&spool), vec![0, 1, 4, 5, 6, 7]);
}

#[test]
fn a_record_corrupted_after_open_is_dropped_at_take_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut data) = one_segment(dir.path(), 3);
    let (spool, _) = open(&settings(dir.path()));
    data[50 + 30] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    assert_eq!(drain(&spool), vec![0, 2]);
    assert_eq!(
        spool.unreadable(),
        Evicted {
            batches: 1,
            metrics: metrics_of([1])
        }
    );
    assert_eq!(spool.pending_batches(), 0);
}

#[test]
fn max_bytes_evicts_whole_oldest_segments_and_counts_exact_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = SpoolSettings {
        max_bytes: 200,
        segment_bytes: 100,
        ..settings(dir.path())
    };
    let (spool, _) = open(&s);
    for n in 0..4 {
        assert_eq!(
            spool.append(&batch(n), n).unwrap().evicted_full,
            Evicted::default()
        );
    }
    assert_eq!(spool.pending_bytes(), 200);
    let out = spool.append(&batch(4), 4).unwrap();
    assert_eq!(
        out.evicted_full,
        Evicted {
            batches: 2,
            metrics: metrics_of([0, 1])
        }
    );
    assert_eq!(spool.pending_bytes(), 150);
    assert_eq!(spool.pending_batches(), 3);
    assert_eq!(spool.oldest_ms(), Some(2));

    // Record 2 is in flight when its segment goes: the caller holds it, so it is counted only
    // if released; record 3 is counted now.
    let two = spool.take().unwrap().unwrap();
    spool.append(&batch(5), 5).unwrap();
    let out = spool.append(&batch(6), 6).unwrap();
    assert_eq!(
        out.evicted_full,
        Evicted {
            batches: 1,
            metrics: metrics_of([3])
        }
    );
    assert_eq!(
        spool.release(two.id),
        Evicted {
            batches: 1,
            metrics: metrics_of([2])
        }
    );
    assert_eq!(spool.pending_batches(), 3);
    assert_eq!(spool.pending_metrics(), metrics_of([4, 5, 6]));
    assert!(spool.pending_bytes() <= 200);
    let too_big = Batch {
        body: Bytes::from(vec![b'x'; 200]),
        metrics: 1,
    };
    assert_eq!(
        spool.append(&too_big, 7).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!(rec.batches, 3);
    assert_eq!(drain(&spool), vec![4, 5, 6]);
}

#[test]
fn max_age_expires_from_the_head_and_stays_expired() {
    let dir = tempfile::tempdir().unwrap();
    let s = SpoolSettings {
        max_age: Duration::from_millis(1_500),
        ..settings(dir.path())
    };
    let (spool, _) = open(&s);
    for n in 1..=3 {
        spool.append(&batch(n), n * 1_000).unwrap();
    }
    // Ages 2600, 1600, 600.
    assert_eq!(
        spool.expire(3_600),
        Evicted {
            batches: 2,
            metrics: metrics_of([1, 2])
        }
    );
    assert_eq!(spool.oldest_ms(), Some(3_000));
    assert_eq!(spool.expire(3_600), Evicted::default());
    // Stops at a record in flight.
    let three = spool.take().unwrap().unwrap();
    spool.append(&batch(4), 3_500).unwrap();
    assert_eq!(spool.expire(10_000), Evicted::default());
    assert_eq!(spool.release(three.id), Evicted::default());
    assert_eq!(spool.expire(10_000).batches, 2);
    spool.append(&batch(5), 10_000).unwrap();
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!(rec.batches, 1);
    assert_eq!(drain(&spool), vec![5]);
}

#[test]
fn append_errors_when_the_disk_is_unusable_and_recovers_after() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    let s = SpoolSettings {
        segment_bytes: 1, // one record per segment: every append creates a file
        ..settings(&dir)
    };
    let (spool, _) = open(&s);
    spool.append(&batch(0), 0).unwrap();

    // The next segment's path is taken by a directory.
    let next = segment_path(&dir, 1);
    std::fs::create_dir(&next).unwrap();
    assert!(spool.append(&batch(1), 1).is_err());
    assert_eq!((spool.pending_batches(), spool.pending_bytes()), (1, 50));
    spool.append(&batch(2), 2).unwrap();
    assert!(next.is_dir(), "not ours to delete");

    // The directory itself is gone, a regular file in its place.
    let moved = root.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    for n in 3..5 {
        let e = spool.append(&batch(n), n).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::InvalidInput);
    }
    assert_eq!(
        (spool.pending_batches(), spool.pending_metrics()),
        (2, metrics_of([0, 2]))
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    spool.append(&batch(5), 5).unwrap();
    assert_eq!(drain(&spool), vec![0, 2, 5]);
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!((rec.batches, rec.corrupt_records), (0, 0));
    assert!(spool.take().unwrap().is_none());
    assert!(next.is_dir());
}

#[test]
fn open_fails_only_when_the_directory_cannot_be_made() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(Spool::open(settings(&file)).is_err());
    assert!(Spool::open(settings(&file.join("sub"))).is_err());
}

#[test]
fn fsync_modes_write_the_same_data() {
    for fsync in [
        Fsync::Always,
        Fsync::Every(Duration::ZERO),
        Fsync::Every(Duration::from_secs(3600)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = SpoolSettings {
            fsync,
            ..settings(dir.path())
        };
        let (spool, _) = open(&s);
        for n in 0..6 {
            spool.append(&batch(n), n).unwrap();
        }
        let b = spool.take().unwrap().unwrap();
        spool.ack(b.id).unwrap();
        spool.sync().unwrap();
        drop(spool);
        let (spool, _) = open(&s);
        assert_eq!(drain(&spool), vec![1, 2, 3, 4, 5]);
    }
}

/// Guards issue 11 (6): with `Every(d)` nothing synced the tail of a burst until the next
/// append came along; `sync_unsynced` (the gateway's timer calls it every `d`) does, once.
#[test]
fn sync_unsynced_syncs_what_is_pending_once_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let every = Duration::from_secs(3600);
    let s = SpoolSettings {
        fsync: Fsync::Every(every),
        ..settings(dir.path())
    };
    let (spool, _) = open(&s);
    assert_eq!(spool.sync_period(), Some(every));
    assert!(!spool.sync_unsynced().unwrap(), "nothing written yet");
    spool.append(&batch(1), 1).unwrap();
    spool.append(&batch(2), 2).unwrap();
    assert_eq!(spool.syncs(), 0, "within the period appends do not sync");
    assert!(spool.sync_unsynced().unwrap());
    assert_eq!(spool.syncs(), 1);
    assert!(!spool.sync_unsynced().unwrap(), "already synced");
    let b = spool.take().unwrap().unwrap();
    assert!(
        spool.sync_unsynced().unwrap(),
        "the in-flight mark is a state write"
    );
    spool.ack(b.id).unwrap();
    assert!(spool.sync_unsynced().unwrap());
    assert_eq!(spool.syncs(), 3);
    for fsync in [Fsync::Always, Fsync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(&SpoolSettings {
            fsync,
            ..settings(dir.path())
        });
        assert_eq!(spool.sync_period(), None, "no timer for {fsync:?}");
    }
}

/// Guards issue 11 (9): the halves of a replayed batch refused with 413 lived only in memory
/// once the record was acked; `replace` puts them on disk first.
#[test]
fn replace_stores_the_halves_then_acks_the_original_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (spool, _) = open(&s);
    spool.append(&batch(1), 10).unwrap();
    spool.append(&batch(2), 20).unwrap();
    let taken = spool.take().unwrap().unwrap();
    assert_eq!(number(&taken), 1);
    spool
        .replace(taken.id, [&batch(3), &batch(4)], taken.created_ms)
        .unwrap();
    assert_eq!(spool.pending_batches(), 3);
    assert_eq!(spool.pending_metrics(), metrics_of([2, 3, 4]));
    drop(spool);
    let (spool, rec) = open(&s);
    assert_eq!((rec.batches, rec.in_flight_batches), (3, 0));
    let mut seen = Vec::new();
    while let Some(b) = spool.take().unwrap() {
        seen.push((number(&b), b.created_ms));
        spool.ack(b.id).unwrap();
    }
    assert_eq!(
        seen,
        [(2, 20), (3, 10), (4, 10)],
        "halves keep the original's age"
    );
}

/// Guards issue 11 (6): segments and the state file were 0644 in a 0755 directory.
#[test]
fn files_are_private_and_the_directory_is_created_0700() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    let (spool, _) = open(&settings(&dir));
    spool.append(&batch(1), 1).unwrap();
    let b = spool.take().unwrap().unwrap();
    let _ = spool.release(b.id);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "a segment and the state: {files:?}");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[test]
fn spool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Spool>();
}

#[derive(Debug, Clone)]
enum Op {
    Append,
    Take,
    Ack(usize),
    Release(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Append),
        3 => Just(Op::Take),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Against a model: nothing acked comes back, nothing unacked is lost, order is oldest
    /// pending first, and restarts report exactly what was in flight.
    #[test]
    fn random_sequences_match_a_model(ops in proptest::collection::vec(op(), 1..200)) {
        let dir = tempfile::tempdir().unwrap();
        let s = SpoolSettings { segment_bytes: 120, ..settings(dir.path()) };
        let (mut spool, _) = open(&s);
        let mut next = 0u64;
        let mut pending: BTreeSet<u64> = BTreeSet::new();
        let mut in_flight: Vec<(u64, RecordId)> = Vec::new();
        let mut acked: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Append => {
                    spool.append(&batch(next), next).unwrap();
                    pending.insert(next);
                    next += 1;
                }
                Op::Take => {
                    let unacked_min = pending.iter().chain(in_flight.iter().map(|(n, _)| n)).min();
                    let above = unacked_min.map_or(0, |m| acked.range(m..).count());
                    let got = spool.take().unwrap();
                    // The spool may hold fewer out-of-order acks than the model (a segment
                    // fully acked in the middle is deleted at `open`), so it may hand out more.
                    let may_block = in_flight.len() + above >= MAX_OUTSTANDING
                        && pending.first() != unacked_min;
                    if pending.is_empty() || (may_block && got.is_none()) {
                        prop_assert!(got.is_none());
                    } else {
                        prop_assert!(got.is_some(), "blocked below the limit");
                        let b = got.unwrap();
                        let n = number(&b);
                        prop_assert_eq!(Some(n), pending.pop_first());
                        in_flight.push((n, b.id));
                    }
                }
                Op::Ack(i) if !in_flight.is_empty() => {
                    let (n, id) = in_flight.remove(i % in_flight.len());
                    spool.ack(id).unwrap();
                    acked.insert(n);
                }
                Op::Release(i) if !in_flight.is_empty() => {
                    let (n, id) = in_flight.remove(i % in_flight.len());
                    prop_assert_eq!(spool.release(id), Evicted::default());
                    pending.insert(n);
                }
                Op::Ack(_) | Op::Release(_) => {}
                Op::Reopen => {
                    drop(spool);
                    let (again, rec) = open(&s);
                    spool = again;
                    prop_assert_eq!(rec.in_flight_batches, in_flight.len() as u64);
                    prop_assert_eq!(rec.in_flight_metrics, metrics_of(in_flight.iter().map(|(n, _)| *n)));
                    pending.extend(in_flight.drain(..).map(|(n, _)| n));
                    prop_assert_eq!(rec.batches, pending.len() as u64);
                    prop_assert_eq!(rec.corrupt_records, 0);
                }
            }
            let unacked = pending.len() + in_flight.len();
            prop_assert_eq!(spool.pending_batches(), unacked as u64);
            prop_assert_eq!(
                spool.pending_metrics(),
                metrics_of(pending.iter().copied().chain(in_flight.iter().map(|(n, _)| *n)))
            );
        }
        for (n, id) in in_flight.drain(..) {
            let _ = spool.release(id);
            pending.insert(n);
        }
        let rest = drain(&spool);
        prop_assert_eq!(rest, pending.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(spool.pending_bytes(), 0);
    }
}
