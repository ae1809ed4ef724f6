//! Behaviour of an open stream: appends and reads from every start position under every
//! limit, rollover, retention, the trim horizon, live tailing, consumer positions, keyring
//! changes, and that nothing is written in clear.

mod common;

use common::{ID, contains, dir, open, opts, read_all, rec, segment_files, setup};
use sealdb_crypto::{CipherId, SecretKey};
use sealdb_stream::{
    ChangeRecord, ConsumerPositions, Error, POSITIONS_FILE, RecoveryPlan, StartAt, StreamLog,
    StreamOptions,
};
use sealdb_vfs::{FileSystem, RealFs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Appends `seqs` in commit groups of sizes cycling 1, 2, 3; returns the records.
fn append_groups(log: &StreamLog, seqs: &[u64], time: impl Fn(u64) -> u64) -> Vec<ChangeRecord> {
    let all: Vec<ChangeRecord> = seqs.iter().map(|s| rec(*s, time(*s))).collect();
    let mut i = 0;
    let mut g = 1;
    while i < all.len() {
        let end = (i + g).min(all.len());
        log.append(all.get(i..end).unwrap_or_default(), g == 2)
            .expect("append");
        i = end;
        g = g % 3 + 1;
    }
    all
}

/// The model of a read: the first `max_records` records at or after `from`, cut by bytes.
fn model_read(
    all: &[ChangeRecord],
    from: u64,
    max_records: usize,
    max_bytes: usize,
) -> Vec<ChangeRecord> {
    let mut out: Vec<ChangeRecord> = Vec::new();
    let mut bytes = 0;
    for r in all.iter().filter(|r| r.seq >= from) {
        if out.len() >= max_records || (!out.is_empty() && bytes + r.encoded_len() > max_bytes) {
            break;
        }
        bytes += r.encoded_len();
        out.push(r.clone());
    }
    out
}

fn check_reads(log: &StreamLog, all: &[ChangeRecord]) {
    let last = all.last().map_or(0, |r| r.seq);
    let one = all.first().map_or(1, |r| r.encoded_len());
    for (max_records, max_bytes) in [
        (1000, usize::MAX),
        (7, usize::MAX),
        (1000, 1),
        (1000, one * 3),
        (4, one * 2),
    ] {
        for s in 0..=last + 2 {
            let want = model_read(all, s, max_records, max_bytes);
            let got = log
                .read(StartAt::At(s), max_records, max_bytes)
                .expect("read at");
            assert_eq!(
                got.records, want,
                "At({s}) limits {max_records}/{max_bytes}"
            );
            let want_next = want.last().map_or(s, |r| r.seq + 1);
            assert_eq!(got.next, want_next);
            let after = log
                .read(StartAt::After(s), max_records, max_bytes)
                .expect("read after");
            assert_eq!(
                after.records,
                model_read(all, s + 1, max_records, max_bytes)
            );
        }
        // Chained reads from the horizon reconstruct everything.
        let mut got = Vec::new();
        let mut start = StartAt::TrimHorizon;
        loop {
            let b = log.read(start, max_records, max_bytes).expect("read");
            assert!(b.records.len() <= max_records);
            if b.records.is_empty() {
                break;
            }
            got.extend(b.records);
            start = StartAt::At(b.next);
        }
        assert_eq!(got, all);
    }
    let latest = log.read(StartAt::Latest, 10, usize::MAX).expect("latest");
    assert!(latest.records.is_empty());
    assert_eq!(latest.next, last + 1);
}

#[test]
fn append_and_read_round_trip_with_every_start_position_and_limit() {
    let (fs, keyring) = setup();
    let (log, rec0) = open(&fs, &keyring, opts(8 << 20)).expect("open");
    assert_eq!(rec0.last_seq, 0);
    assert_eq!(log.horizon(), 1);
    assert_eq!(log.last_seq(), 0);
    // Empty stream.
    let b = log.read(StartAt::TrimHorizon, 10, 100).expect("read");
    assert!(b.records.is_empty());
    assert_eq!(b.next, 1);
    // Sequence numbers with gaps, as the engine produces them.
    let seqs: Vec<u64> = (1..=40).map(|i| i * 3 + (i % 2)).collect();
    let all = append_groups(&log, &seqs, |s| 1000 + s);
    assert_eq!(log.last_seq(), all.last().map_or(0, |r| r.seq));
    assert_eq!(log.horizon(), seqs.first().copied().unwrap_or(0));
    check_reads(&log, &all);
    assert!(matches!(
        log.read(StartAt::TrimHorizon, 0, 10),
        Err(Error::InvalidArgument { .. })
    ));
    let b = log
        .read(StartAt::After(u64::MAX), 10, 10)
        .expect("after max");
    assert!(b.records.is_empty());
    // Reopen: the index is rebuilt from disk and answers the same.
    drop(log);
    let (log, r) = open(&fs, &keyring, opts(8 << 20)).expect("reopen");
    assert_eq!(r.last_seq, all.last().map_or(0, |r| r.seq));
    assert_eq!(r.records, all.len() as u64);
    assert!(r.torn_tail.is_none());
    check_reads(&log, &all);
}

#[test]
fn out_of_order_and_oversized_appends_are_refused_without_poisoning() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(8 << 20)).expect("open");
    log.append(&[], true).expect("empty append is a no-op");
    log.append(&[rec(5, 0), rec(6, 0)], false).expect("append");
    assert!(matches!(
        log.append(&[rec(6, 0)], false),
        Err(Error::OutOfOrder { last: 6, got: 6 })
    ));
    assert!(matches!(
        log.append(&[rec(4, 0)], false),
        Err(Error::OutOfOrder { last: 6, got: 4 })
    ));
    assert!(matches!(
        log.append(&[rec(8, 0), rec(7, 0)], false),
        Err(Error::OutOfOrder { last: 8, got: 7 })
    ));
    assert!(matches!(
        log.append(&[rec(0, 0)], false),
        Err(Error::OutOfOrder { .. })
    ));
    let mut big = rec(9, 0);
    big.key = vec![b'k'; sealdb_stream::MAX_KEY_LEN + 1];
    assert!(matches!(
        log.append(&[big], false),
        Err(Error::InvalidArgument { .. })
    ));
    log.append(&[rec(9, 0)], true).expect("still writable");
    assert_eq!(read_all(&log, 100), vec![rec(5, 0), rec(6, 0), rec(9, 0)]);
}

#[test]
fn reads_cross_segment_rollovers_and_survive_reopen() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(700)).expect("open");
    let seqs: Vec<u64> = (1..=120).collect();
    let all = append_groups(&log, &seqs, |s| s);
    let paths = log.segment_paths();
    assert!(
        paths.len() > 10,
        "expected many segments, got {}",
        paths.len()
    );
    let on_disk: u64 = paths.iter().map(|p| fs.file_size(p).expect("size")).sum();
    assert_eq!(log.total_bytes(), on_disk);
    check_reads(&log, &all);
    drop(log);
    let (log, r) = open(&fs, &keyring, opts(700)).expect("reopen");
    assert_eq!(r.segments, paths.len());
    check_reads(&log, &all);
    // Appending after reopen continues in a new segment; reads span old and new.
    let more = append_groups(&log, &(121..=140).collect::<Vec<_>>(), |s| s);
    let mut everything = all.clone();
    everything.extend(more);
    assert_eq!(read_all(&log, 9), everything);
}

#[test]
fn reading_below_the_horizon_after_trim_is_a_trimmed_error() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(600)).expect("open");
    let all = append_groups(&log, &(1..=80).collect::<Vec<_>>(), |s| s);
    let before = log.segment_paths().len();
    let total = log.total_bytes();
    let report = log.trim(None, Some(total / 2), 0).expect("trim");
    assert!(report.segments_removed > 0 && log.segment_paths().len() < before);
    let horizon = log.horizon();
    assert_eq!(report.horizon, horizon);
    assert!(horizon > 1);
    for s in [0, 1, horizon - 1] {
        match log.read(StartAt::At(s), 10, usize::MAX) {
            Err(Error::Trimmed {
                requested,
                horizon: h,
            }) => {
                assert_eq!((requested, h), (s, horizon));
            }
            other => panic!("At({s}) below the horizon gave {other:?}"),
        }
    }
    assert!(matches!(
        log.read(StartAt::After(horizon - 2), 10, 10),
        Err(Error::Trimmed { .. })
    ));
    let kept: Vec<ChangeRecord> = all.iter().filter(|r| r.seq >= horizon).cloned().collect();
    assert_eq!(read_all(&log, 7), kept);
    assert_eq!(
        log.read(StartAt::After(horizon - 1), 1, 1)
            .expect("after")
            .records
            .first(),
        kept.first()
    );
    // The same horizon after reopen (the first start frame records what was trimmed).
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(600)).expect("reopen");
    assert_eq!(log.horizon(), horizon);
    assert!(matches!(
        log.read(StartAt::At(horizon - 1), 10, 10),
        Err(Error::Trimmed { .. })
    ));
    assert_eq!(read_all(&log, 100), kept);
}

#[test]
fn trim_by_age_removes_only_whole_closed_segments() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(500)).expect("open");
    // One record per commit, commit time = seq * 1000 ms.
    let all: Vec<ChangeRecord> = (1..=60).map(|s| rec(s, s * 1000)).collect();
    for r in &all {
        log.append(std::slice::from_ref(r), false).expect("append");
    }
    let segments_before = log.segment_paths();
    // Keep 25 s of history as of t = 60 s: records newer than 35 s must all survive.
    let cutoff = 35_000;
    let report = log
        .trim(Some(Duration::from_secs(25)), None, 60_000)
        .expect("trim");
    assert!(report.segments_removed > 0);
    let kept = read_all(&log, 1000);
    let horizon = log.horizon();
    assert_eq!(kept.first().map(|r| r.seq), Some(horizon));
    // Every record at or after the cutoff is kept, and only records before it went.
    assert!(
        all.iter()
            .filter(|r| r.commit_time_ms >= cutoff)
            .all(|r| kept.contains(r))
    );
    assert!((horizon - 1) * 1000 < cutoff);
    assert_eq!(
        kept,
        all.iter()
            .filter(|r| r.seq >= horizon)
            .cloned()
            .collect::<Vec<_>>()
    );
    // Whole segments, oldest first: the removed files are a prefix of the chain, and the
    // oldest kept segment is not expired (trimming again removes nothing).
    let removed: Vec<_> = segments_before.iter().filter(|p| !fs.exists(p)).collect();
    assert_eq!(removed.len(), report.segments_removed);
    assert!(
        segments_before
            .iter()
            .take(removed.len())
            .all(|p| !fs.exists(p))
    );
    let again = log
        .trim(Some(Duration::from_secs(25)), None, 60_000)
        .expect("trim");
    assert_eq!(again.segments_removed, 0);
    // Everything is expired: every closed segment goes, the active one never.
    let active = log.segment_paths().last().cloned().expect("active");
    log.trim(Some(Duration::ZERO), None, u64::MAX)
        .expect("trim all");
    assert_eq!(log.segment_paths(), vec![active.clone()]);
    assert!(fs.exists(&active));
    let left = read_all(&log, 1000);
    assert!(!left.is_empty(), "the active segment's records are kept");
    assert_eq!(
        left,
        all.iter()
            .filter(|r| r.seq >= log.horizon())
            .cloned()
            .collect::<Vec<_>>()
    );
    // A trimmed stream keeps working.
    log.append(&[rec(61, 61_000)], true).expect("append");
    assert_eq!(read_all(&log, 1000).last().map(|r| r.seq), Some(61));
}

#[test]
fn trim_by_size_removes_oldest_closed_segments_until_under_budget() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(400)).expect("open");
    let all = append_groups(&log, &(1..=90).collect::<Vec<_>>(), |s| s);
    let before = log.segment_paths();
    let budget = log.total_bytes() / 3;
    let report = log.trim(None, Some(budget), 0).expect("trim");
    assert!(log.total_bytes() <= budget);
    // Removing one fewer segment would have left the stream over budget.
    let last_removed = before
        .get(report.segments_removed - 1)
        .expect("removed one");
    assert!(!fs.exists(last_removed));
    assert!(log.total_bytes() + report.bytes_removed > budget);
    assert_eq!(
        log.segment_paths(),
        before
            .get(report.segments_removed..)
            .unwrap_or_default()
            .to_vec()
    );
    let h = log.horizon();
    assert_eq!(
        read_all(&log, 50),
        all.iter()
            .filter(|r| r.seq >= h)
            .cloned()
            .collect::<Vec<_>>()
    );
    // A zero budget leaves only the active segment.
    log.trim(None, Some(0), 0).expect("trim");
    assert_eq!(log.segment_paths().len(), 1);
    assert_eq!(log.trim(None, None, 0).expect("no-op").segments_removed, 0);
}

#[test]
fn wait_for_wakes_on_append_and_times_out_otherwise() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    let log = Arc::new(log);
    log.append(&[rec(1, 0)], false).expect("append");
    assert!(log.wait_for(0, Duration::ZERO), "already there");
    let t = Instant::now();
    assert!(!log.wait_for(1, Duration::from_millis(80)));
    assert!(t.elapsed() >= Duration::from_millis(80));
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append(&[rec(2, 0)], false).expect("append");
        })
    };
    let t = Instant::now();
    assert!(log.wait_for(1, Duration::from_secs(30)));
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "woken by the append, not the timeout"
    );
    writer.join().expect("join");
    let b = log.read(StartAt::After(1), 10, usize::MAX).expect("read");
    assert_eq!(b.records, vec![rec(2, 0)]);
}

#[test]
fn a_tailing_reader_sees_every_record_of_a_concurrent_writer() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(2000)).expect("open");
    let log = Arc::new(log);
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for s in 1..=300 {
                log.append(&[rec(s, s)], s % 50 == 0).expect("append");
            }
        })
    };
    let mut got = Vec::new();
    let mut start = StartAt::TrimHorizon;
    while got.len() < 300 {
        let b = log.read(start, 17, usize::MAX).expect("read");
        start = StartAt::At(b.next);
        if b.records.is_empty() {
            assert!(log.wait_for(b.next - 1, Duration::from_secs(10)));
        }
        got.extend(b.records);
    }
    writer.join().expect("join");
    assert_eq!(got, (1..=300).map(|s| rec(s, s)).collect::<Vec<_>>());
}

#[test]
fn segment_files_hold_no_key_or_value_in_clear_with_chacha_and_do_with_none() {
    for (cipher, clear) in [(CipherId::ChaCha20Poly1305, false), (CipherId::None, true)] {
        let (fs, keyring) = setup();
        let o = StreamOptions {
            segment_size: 900,
            cipher,
        };
        let (log, _) = open(&fs, &keyring, o).expect("open");
        append_groups(&log, &(1..=30).collect::<Vec<_>>(), |s| s);
        let mut positions = ConsumerPositions::load(&fs, &dir(), &keyring, ID, None).expect("load");
        positions
            .commit(&fs, &dir(), &keyring, "consumer-name-xyz", 7)
            .expect("commit");
        let files = segment_files(&fs);
        assert!(files.len() > 2);
        for needle in [
            &b"user-key-0000"[..],
            b"secret-new-image",
            b"secret-old-image",
            b"users-keyspace",
        ] {
            let found = files.iter().any(|(_, c)| contains(c, needle));
            assert_eq!(
                found,
                clear,
                "{cipher:?}: {}",
                String::from_utf8_lossy(needle)
            );
        }
        // Consumer positions are always sealed with ChaCha20-Poly1305.
        let pos = fs.contents(&dir().join(POSITIONS_FILE)).expect("positions");
        assert!(!contains(&pos, b"consumer-name-xyz"));
        // And the none-cipher stream reads back like the sealed one.
        assert_eq!(read_all(&log, 8).len(), 30);
    }
}

#[test]
fn consumer_positions_persist_across_reopen() {
    let (fs, keyring) = setup();
    let (_log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    let mut p = ConsumerPositions::load(&fs, &dir(), &keyring, ID, None).expect("load");
    assert!(p.list().is_empty());
    p.commit(&fs, &dir(), &keyring, "billing", 42)
        .expect("commit");
    p.commit(&fs, &dir(), &keyring, "audit", 7).expect("commit");
    p.commit(&fs, &dir(), &keyring, "billing", 43)
        .expect("commit");
    assert!(matches!(
        p.commit(&fs, &dir(), &keyring, "", 1),
        Err(Error::InvalidArgument { .. })
    ));
    fs.crash();
    let mut q = ConsumerPositions::load(&fs, &dir(), &keyring, ID, None).expect("reload");
    assert_eq!(q.get("billing"), Some(43));
    assert_eq!(q.get("audit"), Some(7));
    assert_eq!(q.get("nobody"), None);
    assert_eq!(
        q.list(),
        vec![("audit".to_string(), 7), ("billing".to_string(), 43)]
    );
    assert!(q.remove(&fs, &dir(), &keyring, "audit").expect("remove"));
    assert!(!q.remove(&fs, &dir(), &keyring, "audit").expect("remove"));
    let r = ConsumerPositions::load(&fs, &dir(), &keyring, ID, None).expect("reload");
    assert_eq!(r.list(), vec![("billing".to_string(), 43)]);
    // Under another database's keys, or tampered, the file is refused.
    let other =
        sealdb_crypto::Keyring::generate(sealdb_crypto::DatabaseId([2; 16])).expect("keyring");
    assert!(ConsumerPositions::load(&fs, &dir(), &other, ID, None).is_err());
    let path = dir().join(POSITIONS_FILE);
    let mut bytes = fs.contents(&path).expect("contents");
    let last = bytes.len() - 1;
    if let Some(b) = bytes.get_mut(last - 20) {
        *b ^= 1;
    }
    fs.set_contents(&path, bytes).expect("tamper");
    assert!(matches!(
        ConsumerPositions::load(&fs, &dir(), &keyring, ID, None),
        Err(Error::Crypto(sealdb_crypto::Error::Integrity { .. }))
    ));
}

#[test]
fn new_segments_use_the_new_data_key_version_and_old_ones_stay_readable() {
    let (fs, mut keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(600)).expect("open");
    let first = append_groups(&log, &(1..=20).collect::<Vec<_>>(), |s| s);
    keyring.add_version(2, SecretKey::generate().expect("key"));
    log.set_keyring(keyring.clone());
    let second = append_groups(&log, &(21..=40).collect::<Vec<_>>(), |s| s);
    let versions: Vec<u32> = log
        .segment_paths()
        .iter()
        .map(|p| {
            sealdb_crypto::sealed::read_file_header(&fs, p)
                .expect("header")
                .data_key_version
        })
        .collect();
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&2));
    let mut all = first;
    all.extend(second);
    assert_eq!(read_all(&log, 6), all);
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(600)).expect("reopen");
    assert_eq!(read_all(&log, 6), all);
}

#[test]
fn works_on_the_real_filesystem_while_reading_the_active_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("stream");
    let keyring =
        sealdb_crypto::Keyring::generate(sealdb_crypto::DatabaseId([1; 16])).expect("keyring");
    let (log, _) = StreamLog::open(
        RealFs::shared(),
        &d,
        keyring.clone(),
        opts(4096),
        RecoveryPlan::new(ID),
    )
    .expect("open");
    let mut all = Vec::new();
    for s in 1..=100 {
        let r = rec(s, s);
        log.append(std::slice::from_ref(&r), s % 10 == 0)
            .expect("append");
        all.push(r);
        // Read the newest record back at once: from the active segment, just written.
        let b = log.read(StartAt::At(s), 1, usize::MAX).expect("read");
        assert_eq!(b.records.first().map(|r| r.seq), Some(s));
    }
    assert_eq!(read_all(&log, 13), all);
    drop(log);
    let (log, r) = StreamLog::open(
        RealFs::shared(),
        &d,
        keyring,
        opts(4096),
        RecoveryPlan::new(ID),
    )
    .expect("reopen");
    assert_eq!(r.last_seq, 100);
    assert_eq!(read_all(&log, 100), all);
}
