//! Recovery tests: what survives a crash at every mutation, what is cut as a torn tail, what
//! is an integrity error, and that recovery never reuses a nonce (a fresh file id for every
//! segment; recovered segments are never written again).

mod common;

use common::{dir, open, opts, read_all, rec, segment_files, setup};
use sealdb_crypto::{DatabaseId, IntegrityReason, Keyring};
use sealdb_stream::{ChangeRecord, Error, StreamOptions, segment_file_name};
use sealdb_vfs::{CrashFs, FaultKind, FileSystem};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SEGMENT: u64 = 700;

/// What the workload was told succeeded.
#[derive(Default)]
struct Acked {
    /// Every record whose append returned Ok, in order.
    records: Vec<ChangeRecord>,
    /// How many of them are durable (appended before a successful synced append or sync).
    durable: usize,
}

/// A scripted workload: appends in groups (some synced), an explicit sync, clean reopens
/// (one of a session without appends), rollovers throughout. Stops at the first error (the injected fault).
fn workload(
    fs: &CrashFs,
    keyring: &Keyring,
    o: StreamOptions,
    acked: &mut Acked,
) -> Result<(), Error> {
    let mut seq = 1u64;
    // The middle session appends nothing: the next open drops its empty segment.
    for (phase, groups) in [14u64, 0, 14].into_iter().enumerate() {
        let (log, _) = open(fs, keyring, o)?;
        for i in 0..groups {
            let n = (i % 3 + 1) as usize;
            let group: Vec<ChangeRecord> = (0..n as u64).map(|k| rec(seq + k * 2, seq)).collect();
            let sync = i % 4 == 1;
            log.append(&group, sync)?;
            seq += n as u64 * 2 + 1;
            acked.records.extend(group);
            if sync {
                acked.durable = acked.records.len();
            }
            if phase == 0 && i == 9 {
                log.sync()?;
                acked.durable = acked.records.len();
            }
        }
    }
    Ok(())
}

fn file_id(fs: &CrashFs, p: &Path) -> [u8; 16] {
    sealdb_crypto::sealed::read_file_header(fs, p)
        .expect("header")
        .file_id
        .0
}

#[test]
fn crash_at_every_mutation_keeps_a_prefix_with_every_synced_record() {
    let (_, keyring) = setup();
    let o = opts(SEGMENT);
    // Size the loop: how many mutations the whole workload performs.
    let (total, script) = {
        let (fs, _) = setup();
        let base = fs.mutation_count();
        let mut acked = Acked::default();
        workload(&fs, &keyring, o, &mut acked).expect("clean run");
        assert_eq!(acked.durable, acked.records.len());
        (fs.mutation_count() - base, acked.records)
    };
    assert!(total > 50, "workload too small: {total}");
    let (mut torn_tails, mut beyond_durable) = (0, 0);
    for n in 0..total {
        let (fs, _) = setup();
        fs.fail_after(n, FaultKind::AnyMutation);
        let mut acked = Acked::default();
        let result = workload(&fs, &keyring, o, &mut acked);
        assert!(result.is_err(), "fault {n} did not fire");
        if n % 2 == 0 {
            fs.crash();
        } else {
            fs.crash_keeping_prefix(n * 7919 + 1);
        }

        // Recovery: a prefix of what was appended, including every synced record.
        let (log, stats) =
            open(&fs, &keyring, o).unwrap_or_else(|e| panic!("fault {n}: reopen: {e}"));
        let got = read_all(&log, 16);
        assert!(
            got.len() >= acked.durable && got.len() <= acked.records.len() + 3,
            "fault {n}: recovered {} records, {} durable, {} acked",
            got.len(),
            acked.durable,
            acked.records.len()
        );
        torn_tails += usize::from(stats.torn_tail.is_some());
        beyond_durable += usize::from(got.len() > acked.durable);
        // A crash may also keep records of the append that failed (it was never acked):
        // compare against the workload's deterministic record sequence.
        assert_eq!(
            got.as_slice(),
            script.get(..got.len()).unwrap_or_default(),
            "fault {n}: not a prefix"
        );
        assert_eq!(stats.last_seq, got.last().map_or(stats.last_seq, |r| r.seq));

        // A power cut right after recovery loses nothing recovery made readable: it made the
        // replayed tail durable before the new segment's start frame relied on it.
        drop(log);
        fs.crash();
        let (log, again) = open(&fs, &keyring, o)
            .unwrap_or_else(|e| panic!("fault {n}: reopen after recovery: {e}"));
        assert_eq!(
            read_all(&log, 16),
            got,
            "fault {n}: recovery did not make its result durable"
        );
        assert!(
            again.torn_tail.is_none() || stats.torn_tail.is_some(),
            "fault {n}"
        );

        // No nonce reuse: recovered files never change again, every file has its own id.
        let active = log.segment_paths().last().cloned().expect("active");
        let ids_before: BTreeMap<PathBuf, [u8; 16]> = segment_files(&fs)
            .into_iter()
            .map(|(p, _)| {
                let id = file_id(&fs, &p);
                (p, id)
            })
            .collect();
        let distinct: BTreeSet<[u8; 16]> = ids_before.values().copied().collect();
        assert_eq!(
            distinct.len(),
            ids_before.len(),
            "fault {n}: duplicate file id"
        );
        let recovered: BTreeMap<PathBuf, Vec<u8>> = segment_files(&fs)
            .into_iter()
            .filter(|(p, _)| *p != active)
            .collect();
        let next = got.last().map_or(1, |r| r.seq + 1).max(stats.last_seq + 1);
        let extra: Vec<ChangeRecord> = (next..next + 6).map(|s| rec(s, s)).collect();
        for r in &extra {
            log.append(std::slice::from_ref(r), false)
                .expect("append after recovery");
        }
        log.sync().expect("sync");
        drop(log);
        let (log, _) = open(&fs, &keyring, o).expect("second reopen");
        let mut want = got.clone();
        want.extend(extra);
        assert_eq!(
            read_all(&log, 5),
            want,
            "fault {n}: after a second recovery"
        );
        for (p, bytes) in &recovered {
            if fs.exists(p) {
                assert_eq!(
                    &fs.contents(p).expect("contents"),
                    bytes,
                    "fault {n}: {} rewritten",
                    p.display()
                );
            }
        }
        let mut ids_after = BTreeSet::new();
        for (p, _) in segment_files(&fs) {
            let id = file_id(&fs, &p);
            assert!(ids_after.insert(id), "fault {n}: duplicate file id");
            match ids_before.get(&p) {
                Some(old) => assert_eq!(*old, id, "fault {n}: {} replaced", p.display()),
                None => assert!(
                    !distinct.contains(&id),
                    "fault {n}: file id reused by {}",
                    p.display()
                ),
            }
        }
    }
    // The workload exercised both kinds of survival.
    eprintln!(
        "{total} crash points, {torn_tails} torn tails, {beyond_durable} kept unsynced records"
    );
    assert!(torn_tails > 0 && beyond_durable > 0);
}

#[test]
fn a_torn_tail_of_the_last_segment_is_cut_and_reported() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    log.append(&[rec(1, 1), rec(2, 2)], true).expect("append");
    log.append(&[rec(3, 3)], true).expect("append");
    let active = log.segment_paths().last().cloned().expect("active");
    drop(log);
    let bytes = fs.contents(&active).expect("contents");
    let cut = bytes.len() - 7;
    fs.set_contents(&active, bytes.get(..cut).unwrap_or_default().to_vec())
        .expect("cut");
    let (log, stats) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
    let torn = stats.torn_tail.expect("torn tail reported");
    assert_eq!(torn.offset + torn.dropped_bytes, cut as u64);
    assert_eq!(read_all(&log, 10), vec![rec(1, 1), rec(2, 2)]);
    assert_eq!(log.last_seq(), 2);
    // The cut segment's bytes are left as they are; a new segment takes the appends, and the
    // chain records where the cut segment validly ended.
    assert_eq!(fs.contents(&active).expect("contents").len(), cut);
    log.append(&[rec(3, 30)], true).expect("append");
    drop(log);
    let (log, stats) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
    assert!(stats.torn_tail.is_none());
    assert_eq!(read_all(&log, 10), vec![rec(1, 1), rec(2, 2), rec(3, 30)]);
}

/// A stream of several segments, closed; returns its segment paths.
fn build(fs: &CrashFs, keyring: &Keyring) -> Vec<PathBuf> {
    let (log, _) = open(fs, keyring, opts(SEGMENT)).expect("open");
    for s in 1..=40 {
        log.append(&[rec(s, s)], s % 5 == 0).expect("append");
    }
    log.sync().expect("sync");
    let paths = log.segment_paths();
    assert!(paths.len() >= 4);
    paths
}

fn integrity_reason(e: &Error) -> Option<&IntegrityReason> {
    match e {
        Error::Crypto(sealdb_crypto::Error::Integrity { reason, .. }) => Some(reason),
        _ => None,
    }
}

#[test]
fn a_flipped_byte_anywhere_is_an_integrity_error() {
    let (fs0, keyring) = setup();
    let paths = build(&fs0, &keyring);
    let first = paths.first().cloned().expect("first");
    let last = paths.last().cloned().expect("last");
    let len_first = fs0.contents(&first).expect("c").len();
    let len_last = fs0.contents(&last).expect("c").len();
    // Offsets: in the header, in the start frame, in a records block, in the end block, and
    // in the last block of the last (active) segment, which must not pass for a torn tail.
    let cases = [
        (first.clone(), 20),
        (first.clone(), 70),
        (first.clone(), 200),
        (first.clone(), len_first - 3),
        (last.clone(), len_last - 2),
        (last.clone(), len_last - 25),
    ];
    for (path, at) in cases {
        let (fs, _) = setup();
        for (p, c) in segment_files(&fs0) {
            fs.create_dir_all(&dir()).expect("mkdir");
            let mut f = fs.create_new(&p).expect("create");
            f.append(&c).expect("copy");
            f.sync_data().expect("sync");
        }
        fs.sync_dir(&dir()).expect("sync");
        let mut bytes = fs.contents(&path).expect("contents");
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x10;
        }
        fs.set_contents(&path, bytes).expect("tamper");
        match open(&fs, &keyring, opts(SEGMENT)) {
            Err(e) => assert!(
                integrity_reason(&e).is_some(),
                "{} byte {at}: expected an integrity error, got {e}",
                path.display()
            ),
            Ok(_) => panic!("{} byte {at}: tampering went unnoticed", path.display()),
        }
    }
}

#[test]
fn tampering_under_an_open_stream_fails_reads_with_an_integrity_error() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    for s in 1..=40 {
        log.append(&[rec(s, s)], false).expect("append");
    }
    let first = log.segment_paths().first().cloned().expect("first");
    let mut bytes = fs.contents(&first).expect("contents");
    let at = bytes.len() - 40;
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 1;
    }
    fs.set_contents(&first, bytes).expect("tamper");
    let e = log
        .read(sealdb_stream::StartAt::TrimHorizon, 1000, usize::MAX)
        .expect_err("tampered block must not read");
    assert_eq!(
        integrity_reason(&e),
        Some(&IntegrityReason::AuthenticationFailed),
        "{e}"
    );
    match e {
        Error::Crypto(sealdb_crypto::Error::Integrity { file, block, .. }) => {
            assert!(file.ends_with(&segment_file_name(1)), "{file}");
            assert!(block.is_some());
        }
        other => panic!("{other}"),
    }
}

#[test]
fn structural_damage_is_refused() {
    // A segment missing from the middle of the chain.
    let (fs, keyring) = setup();
    let paths = build(&fs, &keyring);
    let middle = paths.get(2).expect("middle");
    fs.remove_file(middle).expect("remove");
    assert!(matches!(
        open(&fs, &keyring, opts(SEGMENT)),
        Err(Error::MissingSegment(_))
    ));

    // A closed segment cut short (only the last segment may have a torn tail).
    let (fs, keyring) = setup();
    let paths = build(&fs, &keyring);
    let p = paths.get(1).expect("second");
    let bytes = fs.contents(p).expect("contents");
    fs.set_contents(
        p,
        bytes.get(..bytes.len() - 10).unwrap_or_default().to_vec(),
    )
    .expect("cut");
    let e = open(&fs, &keyring, opts(SEGMENT)).expect_err("cut closed segment");
    assert!(integrity_reason(&e).is_some(), "{e}");

    // Two segments swapped by name: each start frame names its own number.
    let (fs, keyring) = setup();
    let paths = build(&fs, &keyring);
    let (a, b) = (paths.first().expect("a"), paths.get(1).expect("b"));
    let (ca, cb) = (fs.contents(a).expect("a"), fs.contents(b).expect("b"));
    fs.set_contents(a, cb).expect("swap");
    fs.set_contents(b, ca).expect("swap");
    assert!(matches!(
        open(&fs, &keyring, opts(SEGMENT)),
        Err(Error::Malformed { .. })
    ));

    // Segments of another database.
    let (fs, keyring) = setup();
    build(&fs, &keyring);
    let other = Keyring::generate(DatabaseId([2; 16])).expect("keyring");
    let e = open(&fs, &other, opts(SEGMENT)).expect_err("foreign database");
    assert_eq!(
        integrity_reason(&e),
        Some(&IntegrityReason::HeaderMismatch("database id"))
    );

    // The same database under a different cipher setting: refused, not downgraded.
    let (fs, keyring) = setup();
    build(&fs, &keyring);
    let o = StreamOptions {
        segment_size: SEGMENT,
        cipher: sealdb_crypto::CipherId::None,
    };
    let e = open(&fs, &keyring, o).expect_err("cipher downgrade");
    assert_eq!(
        integrity_reason(&e),
        Some(&IntegrityReason::HeaderMismatch("cipher"))
    );
}

#[test]
fn reopening_many_times_never_reuses_a_file_id_or_piles_up_empty_segments() {
    let (fs, keyring) = setup();
    let mut seen: BTreeMap<[u8; 16], Vec<u8>> = BTreeMap::new();
    let mut seq = 1;
    for round in 0..12 {
        let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
        // Every other round appends nothing: its segment is dropped at the next open.
        if round % 2 == 0 {
            for _ in 0..5 {
                log.append(&[rec(seq, seq)], round % 4 == 0)
                    .expect("append");
                seq += 1;
            }
        }
        drop(log);
        if round % 3 == 2 {
            fs.crash_keeping_prefix(round);
        }
        for (p, c) in segment_files(&fs) {
            let id = file_id(&fs, &p);
            match seen.get(&id) {
                // A file, once seen, never changes (its id is never reused by another).
                Some(old) => assert!(
                    c.starts_with(old) || old.starts_with(&c),
                    "{} changed",
                    p.display()
                ),
                None => {
                    seen.insert(id, c);
                }
            }
        }
    }
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    let got = read_all(&log, 100);
    assert!(
        got.iter()
            .zip(got.iter().skip(1))
            .all(|(a, b)| a.seq < b.seq)
    );
    drop(log);
    // Empty segments of appendless opens do not accumulate.
    let files = segment_files(&fs).len();
    for _ in 0..5 {
        let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
        assert_eq!(log.segment_paths().len(), files);
    }
    assert_eq!(segment_files(&fs).len(), files);
}

#[test]
fn a_crash_at_every_mutation_of_a_trim_leaves_a_contiguous_suffix() {
    let (_, keyring) = setup();
    let all: Vec<ChangeRecord> = (1..=40).map(|s| rec(s, s)).collect();
    let build = |fs: &CrashFs| {
        let (log, _) = open(fs, &keyring, opts(SEGMENT)).expect("open");
        for r in &all {
            log.append(std::slice::from_ref(r), true).expect("append");
        }
        log
    };
    let total = {
        let (fs, _) = setup();
        let log = build(&fs);
        let before = fs.mutation_count();
        let report = log
            .trim(None, Some(log.total_bytes() / 4), 0)
            .expect("trim");
        assert!(report.segments_removed >= 3);
        fs.mutation_count() - before
    };
    for n in 0..total {
        let (fs, _) = setup();
        let log = build(&fs);
        fs.fail_after(n, FaultKind::AnyMutation);
        assert!(log.trim(None, Some(log.total_bytes() / 4), 0).is_err());
        drop(log);
        fs.crash();
        let (log, _) =
            open(&fs, &keyring, opts(SEGMENT)).unwrap_or_else(|e| panic!("fault {n}: {e}"));
        let got = read_all(&log, 7);
        let h = log.horizon();
        assert_eq!(
            got,
            all.iter()
                .filter(|r| r.seq >= h)
                .cloned()
                .collect::<Vec<_>>(),
            "fault {n}"
        );
        assert_eq!(got.last(), all.last(), "fault {n}");
    }
}

#[test]
fn recovery_makes_the_unsynced_tail_it_replayed_durable() {
    // The process dies (the page cache survives), recovery replays unsynced records, then the
    // power fails: what recovery served must still be there.
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    log.append(&[rec(1, 1)], true).expect("append");
    log.append(&[rec(2, 2), rec(3, 3)], false).expect("append");
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("recover");
    let served = read_all(&log, 10);
    assert_eq!(served.len(), 3);
    drop(log);
    fs.crash();
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("after power cut");
    assert_eq!(read_all(&log, 10), served);
}
