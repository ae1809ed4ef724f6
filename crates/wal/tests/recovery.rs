//! Recovery tests: what survives a crash, what is cut as a torn tail, what is an integrity
//! error, and the proof that recovery never reuses a nonce.

use sealdb_crypto::{CipherId, DatabaseId, Keyring};
use sealdb_vfs::{CrashFs, FileSystem, SharedFs};
use sealdb_wal::{
    BatchBuilder, Error, FrameBatch, RecoveryStats, Wal, WalOptions, segment_file_name,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Recovered = Vec<(u64, Vec<u8>)>;

fn dir() -> PathBuf {
    PathBuf::from("/db/wal")
}

fn opts(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        cipher: CipherId::ChaCha20Poly1305,
    }
}

fn open(
    fs: &CrashFs,
    keyring: &Keyring,
    o: WalOptions,
) -> Result<(Wal, RecoveryStats, Recovered), Error> {
    let shared: SharedFs = Arc::new(fs.clone());
    let mut got = Vec::new();
    let (wal, stats) = Wal::open(
        shared,
        &dir(),
        keyring.clone(),
        o,
        0,
        &mut |b: FrameBatch<'_>| {
            got.push((b.first_seq, b.rep.to_vec()));
            Ok(())
        },
    )?;
    Ok((wal, stats, got))
}

fn batch(i: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.put(
        0,
        format!("key{i}").as_bytes(),
        format!("value{i}").as_bytes(),
    )
    .expect("put");
    b.rep().to_vec()
}

fn append(wal: &Wal, seq: u64, sync: bool) {
    let rep = batch(seq);
    wal.append(
        &[FrameBatch {
            first_seq: seq,
            count: 1,
            rep: &rep,
            commit_time_ms: 0,
        }],
        sync,
    )
    .expect("append");
}

fn setup() -> (CrashFs, Keyring) {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    (fs, Keyring::generate(DatabaseId([1; 16])).expect("keyring"))
}

#[test]
fn synced_frames_survive_a_crash_and_unsynced_ones_may_not() {
    let (fs, keyring) = setup();
    let (wal, _, got) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    assert!(got.is_empty());
    for seq in 1..=10 {
        append(&wal, seq, true);
    }
    for seq in 11..=20 {
        append(&wal, seq, false);
    }
    drop(wal);
    fs.crash();
    let (_, stats, got) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(got[3].1, batch(4));
    assert_eq!(stats.last_seq, 10);
}

#[test]
fn torn_tail_is_cut_and_reported() {
    for seed in 1..40u64 {
        let (fs, keyring) = setup();
        let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
        for seq in 1..=5 {
            append(&wal, seq, true);
        }
        for seq in 6..=9 {
            append(&wal, seq, false);
        }
        drop(wal);
        fs.crash_keeping_prefix(seed);
        let (_, stats, got) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
        let n = got.len() as u64;
        assert!((5..=9).contains(&n), "seed {seed}: {n} batches");
        // Whatever survived is a prefix of what was written, in order.
        for (i, (seq, rep)) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(*rep, batch(*seq));
        }
        if let Some(t) = stats.torn_tail {
            assert!(t.dropped_bytes > 0);
        }
    }
}

#[test]
fn recovery_never_appends_to_a_recovered_segment() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    append(&wal, 2, false);
    let first = wal.active_segment();
    drop(wal);
    fs.crash_keeping_prefix(7);
    let first_path = dir().join(segment_file_name(first));
    let before = fs.contents(&first_path).expect("contents");

    let mut file_ids = std::collections::HashSet::new();
    for round in 0..5u64 {
        let (wal, _, got) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
        assert!(wal.active_segment() > first);
        append(&wal, 100 + round, true);
        assert!(got.iter().all(|(s, _)| *s <= 100 + round));
        drop(wal);
        fs.crash();
        // The recovered segment's bytes never change again.
        assert_eq!(fs.contents(&first_path).expect("contents"), before);
    }
    // Every segment on disk has its own file id: no (key, nonce) pair can repeat.
    for name in fs.list_dir(&dir()).expect("ls") {
        let header =
            sealdb_crypto::sealed::read_file_header(&fs, &dir().join(&name)).expect("header");
        assert!(file_ids.insert(header.file_id), "file id reused by {name}");
    }
    assert!(file_ids.len() >= 6);
    let (_, _, got) = open(&fs, &keyring, opts(1 << 20)).expect("final open");
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(&seqs[..1], &[1]);
    assert_eq!(&seqs[seqs.len() - 5..], &[100, 101, 102, 103, 104]);
}

#[test]
fn rollover_and_obsolete_segments() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(600)).expect("open");
    for seq in 1..=50 {
        append(&wal, seq, seq % 5 == 0);
    }
    let segments = wal.segment_numbers();
    assert!(segments.len() > 3, "{segments:?}");
    drop(wal);
    fs.crash();
    let (wal, stats, got) = open(&fs, &keyring, opts(600)).expect("reopen");
    assert_eq!(got.len(), 50);
    assert_eq!(stats.last_seq, 50);
    let removed = wal
        .remove_obsolete(wal.first_needed_segment(25))
        .expect("remove");
    assert!(removed > 0);
    drop(wal);
    // With the old segments gone, recovery needs min_segment to know it is not data loss.
    let shared: SharedFs = Arc::new(fs.clone());
    let first_left = fs
        .list_dir(&dir())
        .expect("ls")
        .first()
        .and_then(|n| n.trim_end_matches(".wal").parse::<u64>().ok())
        .expect("a segment");
    let mut seqs = Vec::new();
    Wal::open(
        shared,
        &dir(),
        keyring.clone(),
        opts(600),
        first_left,
        &mut |b| {
            seqs.push(b.first_seq);
            Ok(())
        },
    )
    .expect("open after removal");
    assert!(seqs.contains(&50) && !seqs.contains(&1));
}

#[test]
fn a_missing_middle_segment_is_an_error() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(600)).expect("open");
    for seq in 1..=40 {
        append(&wal, seq, true);
    }
    let segs = wal.segment_numbers();
    drop(wal);
    let victim = dir().join(segment_file_name(segs[1]));
    fs.remove_file(&victim).expect("rm");
    let err = open(&fs, &keyring, opts(600)).expect_err("must fail");
    assert!(matches!(err, Error::MissingSegment(_)), "{err:?}");
}

#[test]
fn corruption_before_the_tail_is_an_integrity_error() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    for seq in 1..=5 {
        append(&wal, seq, true);
    }
    let seg = dir().join(segment_file_name(wal.active_segment()));
    drop(wal);
    let mut bytes = fs.contents(&seg).expect("c");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs.set_contents(&seg, bytes).expect("set");
    let err = open(&fs, &keyring, opts(1 << 20)).expect_err("must fail");
    assert!(
        matches!(err, Error::Crypto(sealdb_crypto::Error::Integrity { .. })),
        "{err:?}"
    );
}

#[test]
fn truncating_a_closed_segment_is_detected() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(600)).expect("open");
    for seq in 1..=30 {
        append(&wal, seq, true);
    }
    let segs = wal.segment_numbers();
    drop(wal);
    let victim = dir().join(segment_file_name(segs[0]));
    let bytes = fs.contents(&victim).expect("c");
    // Cut the end frame off: the next segment says this one was finished.
    fs.set_contents(&victim, bytes[..bytes.len() - 26].to_vec())
        .expect("set");
    assert!(open(&fs, &keyring, opts(600)).is_err());
}

#[test]
fn wrong_database_key_is_refused() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    drop(wal);
    let other = Keyring::generate(DatabaseId([1; 16])).expect("keyring");
    let err = open(&fs, &other, opts(1 << 20)).expect_err("wrong key");
    assert!(
        matches!(err, Error::Crypto(sealdb_crypto::Error::Integrity { .. })),
        "{err:?}"
    );
}

#[test]
fn crash_during_creation_of_a_segment_is_recovered() {
    // Crash at every mutation of a workload that rolls segments, then recover.
    for point in 0..60u64 {
        let (fs, keyring) = setup();
        let (wal, _, _) = open(&fs, &keyring, opts(400)).expect("open");
        fs.fail_after(point, sealdb_vfs::FaultKind::AnyMutation);
        let mut acked = 0u64;
        for seq in 1..=12 {
            let rep = batch(seq);
            if wal
                .append(
                    &[FrameBatch {
                        first_seq: seq,
                        count: 1,
                        rep: &rep,
                        commit_time_ms: 0,
                    }],
                    true,
                )
                .is_err()
            {
                break;
            }
            acked = seq;
        }
        drop(wal);
        fs.crash();
        let (_, _, got) = open(&fs, &keyring, opts(400))
            .unwrap_or_else(|e| panic!("crash point {point}: reopen failed: {e}"));
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert!(
            seqs.len() as u64 >= acked,
            "point {point}: lost acknowledged writes"
        );
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
}

/// Every file in the WAL directory with its contents, to compare before and after.
fn snapshot(fs: &CrashFs) -> Vec<(String, Vec<u8>)> {
    let mut names = fs.list_dir(&dir()).expect("ls");
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let c = fs.contents(&dir().join(&n)).expect("read");
            (n, c)
        })
        .collect()
}

#[test]
fn recovery_changes_nothing_before_writing_starts() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    append(&wal, 2, false);
    drop(wal);
    // A segment whose header never became durable, and an obsolete segment below the minimum.
    let mut torn = fs
        .create_new(&dir().join(segment_file_name(9)))
        .expect("torn segment");
    torn.append(&[1, 2, 3]).expect("write");
    drop(torn);
    let before = snapshot(&fs);
    let shared: SharedFs = Arc::new(fs.clone());
    let rec = Wal::recover(&shared, &dir(), &keyring, opts(1 << 20), 1, &mut |_| Ok(()))
        .expect("recover");
    assert_eq!(
        snapshot(&fs),
        before,
        "recovery alone must not touch the disk"
    );
    assert_eq!(rec.newest_segment(), Some(1));
    assert_eq!(rec.stats().last_seq, 2);
    // Starting to write removes the torn segment and appends to none of the old ones.
    let wal = Wal::start(shared, keyring.clone(), opts(1 << 20), rec).expect("start");
    let after = snapshot(&fs);
    assert!(!after.iter().any(|(n, _)| *n == segment_file_name(9)));
    assert_eq!(
        after.first(),
        before.first(),
        "the recovered segment is unchanged"
    );
    assert_eq!(wal.active_segment(), 10);
}

#[test]
fn a_read_only_wal_refuses_writes() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    drop(wal);
    let before = snapshot(&fs);
    let shared: SharedFs = Arc::new(fs.clone());
    let rec = Wal::recover(&shared, &dir(), &keyring, opts(1 << 20), 0, &mut |_| Ok(()))
        .expect("recover");
    let wal = Wal::read_only(shared, keyring.clone(), opts(1 << 20), rec);
    let rep = batch(2);
    let r = wal.append(
        &[FrameBatch {
            first_seq: 2,
            count: 1,
            rep: &rep,
            commit_time_ms: 0,
        }],
        true,
    );
    assert!(matches!(r, Err(Error::ReadOnly)), "{r:?}");
    assert!(matches!(wal.rotate(), Err(Error::ReadOnly)));
    assert_eq!(snapshot(&fs), before);
}

fn try_append(wal: &Wal, seq: u64, sync: bool) -> Result<(), Error> {
    let rep = batch(seq);
    wal.append(
        &[FrameBatch {
            first_seq: seq,
            count: 1,
            rep: &rep,
            commit_time_ms: 0,
        }],
        sync,
    )
}

/// Disk full mid-frame, then space freed: the failed frame is not acknowledged and never
/// replayed, the log goes on in a new segment (not after the partial frame), and everything
/// acknowledged survives both a reopen and a crash.
#[test]
fn append_failing_for_lack_of_space_is_retried_in_a_new_segment() {
    for crash in [false, true] {
        let (fs, keyring) = setup();
        let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
        append(&wal, 1, true);
        append(&wal, 2, false);
        let first = wal.active_segment();
        fs.set_space_limit(Some(fs.used_bytes() + 10));
        let e = try_append(&wal, 3, true).expect_err("disk is full");
        assert!(e.is_no_space(), "{e}");
        assert!(!wal.is_poisoned());
        // Still full: the new segment cannot be made; the log stays usable.
        let e = try_append(&wal, 3, true).expect_err("still full");
        assert!(e.is_no_space(), "{e}");
        fs.set_space_limit(None);
        append(&wal, 3, true);
        assert_eq!(wal.active_segment(), first + 1);
        append(&wal, 4, false);
        wal.sync().expect("sync");
        drop(wal);
        if crash {
            fs.crash();
        }
        let (_, stats, got) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4], "crash {crash}");
        assert_eq!(stats.torn_tail, None);
        assert_eq!(got[2].1, batch(3));
    }
}

/// A rollover that runs out of space (end frame or new segment) leaves the log usable too.
#[test]
fn rollover_failing_for_lack_of_space_is_retried() {
    for extra in [0u64, 3, 40, 200] {
        let (fs, keyring) = setup();
        let (wal, _, _) = open(&fs, &keyring, opts(200)).expect("open");
        let mut acked = Vec::new();
        let mut seq = 1;
        while seq < 4 {
            append(&wal, seq, true);
            acked.push(seq);
            seq += 1;
        }
        fs.set_space_limit(Some(fs.used_bytes() + extra));
        let mut failures = 0;
        for _ in 0..6 {
            match try_append(&wal, seq, true) {
                Ok(()) => {
                    acked.push(seq);
                    seq += 1;
                }
                Err(e) => {
                    assert!(e.is_no_space(), "{e}");
                    failures += 1;
                }
            }
        }
        assert!(failures > 0, "extra {extra}: the limit never bit");
        assert!(!wal.is_poisoned());
        fs.set_space_limit(None);
        for _ in 0..6 {
            append(&wal, seq, true);
            acked.push(seq);
            seq += 1;
        }
        drop(wal);
        fs.crash();
        let (_, _, got) = open(&fs, &keyring, opts(200)).expect("reopen");
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, acked, "extra {extra}");
    }
}

/// A failed sync is not retried: the log is poisoned (what reached the disk is unknown).
#[test]
fn failed_sync_still_poisons_the_log() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    fs.inject(
        sealdb_vfs::Fault::no_space()
            .on(&[sealdb_vfs::Op::Sync])
            .times(1),
    );
    assert!(try_append(&wal, 2, true).is_err());
    assert!(wal.is_poisoned());
    assert!(matches!(
        try_append(&wal, 3, true),
        Err(Error::Poisoned { .. })
    ));
}

/// A clean close never vouches for a segment a failed write left a partial frame in: it
/// starts the next segment first, or fails (an unclean close) while the disk is still full.
#[test]
fn close_anchor_after_a_failed_write_is_a_new_segment_or_none() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    fs.set_space_limit(Some(fs.used_bytes() + 10));
    assert!(try_append(&wal, 2, true).expect_err("full").is_no_space());
    let broken = wal.active_segment();
    assert!(wal.sync_for_close().expect_err("still full").is_no_space());
    fs.set_space_limit(None);
    let (segment, end, durable) = wal.sync_for_close().expect("close");
    assert_eq!(segment, broken + 1);
    assert_eq!(durable, 1);
    assert_eq!(
        end,
        fs.file_size(&dir().join(segment_file_name(segment)))
            .expect("size")
    );
}

#[test]
fn a_new_wal_directory_survives_a_crash_with_its_missing_parents() {
    // Found by the wal_segment fuzz target once CrashFs modelled directory durability: the
    // WAL created `/db/wal` *and* `/db` but synced only `/db`, so a power cut forgot `/db`,
    // and with it a synced write.
    let fs = CrashFs::new();
    let keyring = Keyring::generate(DatabaseId([1; 16])).expect("keyring");
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 1, true);
    drop(wal);
    fs.crash();
    let (_, _, got) = open(&fs, &keyring, opts(1 << 20)).expect("reopen");
    assert_eq!(got.len(), 1, "the synced write was lost with its directory");
}

/// Appends synced frames from `seq` on until a spare segment has been created ahead; returns
/// the next sequence number and the spare's number.
fn append_until_spare(wal: &Wal, mut seq: u64) -> (u64, u64) {
    loop {
        append(wal, seq, true);
        seq += 1;
        if let Some(spare) = wal.spare_segment() {
            return (seq, spare);
        }
        assert!(seq < 10_000, "no spare segment was ever created");
    }
}

#[test]
fn a_rollover_takes_the_segment_created_ahead() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(2048)).expect("open");
    let active = wal.active_segment();
    let (mut seq, spare) = append_until_spare(&wal, 1);
    assert_eq!(spare, active + 1);
    // On disk, but not part of the log yet.
    let path = dir().join(segment_file_name(spare));
    let header = fs.contents(&path).expect("the spare is on disk");
    assert!(!header.is_empty());
    assert_eq!(wal.segment_numbers(), vec![active]);
    while wal.active_segment() == active {
        append(&wal, seq, true);
        seq += 1;
    }
    assert_eq!(wal.active_segment(), spare);
    // The same file (same sealed header, so the same file id), now with frames after it.
    let now = fs.contents(&path).expect("segment");
    assert!(now.len() > header.len());
    assert_eq!(&now[..header.len()], &header[..]);
    drop(wal);
    fs.crash();
    let (_, _, got) = open(&fs, &keyring, opts(2048)).expect("reopen");
    assert_eq!(got.len() as u64, seq - 1);
}

#[test]
fn a_spare_segment_left_by_a_crash_is_removed_at_open() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(2048)).expect("open");
    let (seq, spare) = append_until_spare(&wal, 1);
    // The process dies: nothing more reaches the disk (the close would delete the spare).
    fs.fail_after(0, sealdb_vfs::FaultKind::AnyMutation);
    drop(wal);
    fs.crash();
    let spare_name = segment_file_name(spare);
    assert!(fs.list_dir(&dir()).expect("ls").contains(&spare_name));
    let (wal, stats, got) = open(&fs, &keyring, opts(2048)).expect("reopen");
    assert_eq!(got.len() as u64, seq - 1, "every synced frame is recovered");
    assert_eq!(stats.last_seq, seq - 1);
    // Gone, and the log goes on after it.
    assert!(!fs.list_dir(&dir()).expect("ls").contains(&spare_name));
    assert!(wal.active_segment() > spare);
    append(&wal, seq, true);
    drop(wal);
    fs.crash();
    let (_, _, got) = open(&fs, &keyring, opts(2048)).expect("reopen again");
    assert_eq!(got.len() as u64, seq);
}

#[test]
fn a_clean_close_leaves_no_spare_segment() {
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(2048)).expect("open");
    let (_, spare) = append_until_spare(&wal, 1);
    let live = wal.segment_numbers();
    drop(wal);
    fs.crash();
    let names = fs.list_dir(&dir()).expect("ls");
    assert!(!names.contains(&segment_file_name(spare)), "{names:?}");
    assert_eq!(
        names,
        live.iter()
            .map(|n| segment_file_name(*n))
            .collect::<Vec<_>>()
    );
}

#[test]
fn crash_at_any_point_with_segments_created_ahead_loses_no_synced_frame() {
    // Segments are created ahead on another thread, so where each crash point falls varies;
    // every one must recover every acknowledged synced frame.
    for point in (0..160u64).step_by(3) {
        let (fs, keyring) = setup();
        let (wal, _, _) = open(&fs, &keyring, opts(700)).expect("open");
        fs.fail_after(point, sealdb_vfs::FaultKind::AnyMutation);
        let mut acked = 0u64;
        for seq in 1..=40 {
            if try_append(&wal, seq, true).is_err() {
                break;
            }
            acked = seq;
        }
        drop(wal);
        fs.crash();
        let (wal, _, got) = open(&fs, &keyring, opts(700))
            .unwrap_or_else(|e| panic!("crash point {point}: reopen failed: {e}"));
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert!(
            seqs.len() as u64 >= acked,
            "point {point}: lost acknowledged writes"
        );
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        // And the recovered log is writable.
        let next = seqs.len() as u64 + 1;
        try_append(&wal, next, true)
            .unwrap_or_else(|e| panic!("point {point}: append after reopen: {e}"));
    }
}

#[test]
fn out_of_order_frames_are_malformed_naming_the_segment_and_the_frame_offset() {
    // Frames that authenticate but whose sequence numbers go backwards: recovery refuses
    // them with the segment and the offending frame's offset as fields, not just as text.
    let (fs, keyring) = setup();
    let (wal, _, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    append(&wal, 5, true);
    append(&wal, 3, true);
    drop(wal);
    let e = match open(&fs, &keyring, opts(1 << 20)) {
        Err(e) => e,
        Ok(_) => panic!("recovered frames whose sequence numbers go backwards"),
    };
    let Error::Malformed { file, at, .. } = &e else {
        panic!("expected Malformed, got {e:?}");
    };
    let file = file.as_ref().unwrap_or_else(|| panic!("no file: {e}"));
    assert_eq!(file.parent(), Some(dir().as_path()), "{e}");
    let at = at.unwrap_or_else(|| panic!("no offset: {e}"));
    let size = fs.file_size(file).expect("segment size");
    assert!(at > 0 && at < size, "offset {at} of {size}: {e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{} at offset {at}", file.display())) && text.contains("sequence 3"),
        "{text}"
    );
}
