//! The ends of the chain and the stream's role: segments and `CONSUMERS` are bound to their
//! stream, and an anchor kept outside the directory (the engine's head record) turns deleted
//! newest segments, records cut off the end and a deleted or older `CONSUMERS` file into
//! typed errors naming the file, while a stream opened without an anchor behaves as before.

mod common;

use common::{ID, dir, open, open_anchored, open_truncating, opts, read_all, rec, setup};
use sealdb_stream::{
    ChangeRecord, ConsumerPositions, Error, POSITIONS_FILE, RecoveryPlan, StreamAnchor, StreamId,
    StreamLog, segment_file_name,
};
use sealdb_vfs::{CrashFs, FaultKind, FileSystem, SharedFs};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const SEGMENT: u64 = 600;

/// Appends records 1..=n one per group (synced), rolling over every few records.
fn fill(log: &StreamLog, from: u64, to: u64) -> Vec<ChangeRecord> {
    let mut out = Vec::new();
    for s in from..=to {
        let r = rec(s, 1000 + s);
        log.append(std::slice::from_ref(&r), true).expect("append");
        out.push(r);
    }
    out
}

fn snapshot(fs: &CrashFs) -> BTreeMap<String, Vec<u8>> {
    fs.list_dir(&dir())
        .expect("list")
        .into_iter()
        .map(|n| {
            let c = fs.contents(&dir().join(&n)).unwrap_or_default();
            (n, c)
        })
        .collect()
}

fn segment_numbers(fs: &CrashFs) -> Vec<u64> {
    fs.list_dir(&dir())
        .expect("list")
        .into_iter()
        .filter_map(|n| n.strip_suffix(".stream").and_then(|d| d.parse().ok()))
        .collect()
}

/// A closed stream of several segments and its anchor at close.
fn built(fs: &CrashFs, keyring: &sealdb_crypto::Keyring) -> (Vec<ChangeRecord>, StreamAnchor) {
    let (log, _) = open(fs, keyring, opts(SEGMENT)).expect("open");
    let all = fill(&log, 1, 30);
    log.sync().expect("sync");
    let anchor = log.anchor();
    assert_eq!(anchor.last_seq, 30);
    assert_eq!(Some(&anchor.segment), segment_numbers(fs).last());
    assert!(segment_numbers(fs).len() >= 4, "too few segments");
    (all, anchor)
}

fn missing_file(e: &Error) -> &str {
    match e {
        Error::MissingFile { file, .. } => file,
        other => panic!("expected MissingFile, got {other}"),
    }
}

#[test]
fn deleting_the_newest_segments_with_an_anchor_is_an_error_naming_the_file() {
    for deleted in [1usize, 2] {
        let (fs, keyring) = setup();
        let (all, anchor) = built(&fs, &keyring);
        let mut numbers = segment_numbers(&fs);
        let newest = anchor.segment;
        for _ in 0..deleted {
            let n = numbers.pop().expect("segment");
            fs.remove_file(&dir().join(segment_file_name(n)))
                .expect("delete");
        }
        fs.sync_dir(&dir()).expect("sync");
        let before = snapshot(&fs);
        let e = open_anchored(&fs, &keyring, opts(SEGMENT), Some(anchor))
            .expect_err("newest segments deleted");
        assert!(
            missing_file(&e).ends_with(&segment_file_name(newest)),
            "{deleted}: {e}"
        );
        // A failed open changes nothing.
        assert_eq!(snapshot(&fs), before, "{deleted}");
        // Without an anchor: the old behaviour (the rest opens, the deleted records are gone).
        let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open without anchor");
        let got = read_all(&log, 100);
        assert!(got.len() < all.len() || deleted == 1, "{deleted}");
        assert_eq!(got.as_slice(), &all[..got.len()]);
    }
}

#[test]
fn deleting_every_segment_with_an_anchor_is_an_error() {
    let (fs, keyring) = setup();
    let (_, anchor) = built(&fs, &keyring);
    for n in segment_numbers(&fs) {
        fs.remove_file(&dir().join(segment_file_name(n)))
            .expect("delete");
    }
    let e = open_anchored(&fs, &keyring, opts(SEGMENT), Some(anchor)).expect_err("all deleted");
    assert!(missing_file(&e).ends_with(&segment_file_name(anchor.segment)));
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open without anchor");
    assert!(read_all(&log, 100).is_empty());
}

#[test]
fn records_cut_off_the_end_with_an_anchor_are_an_error() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open");
    fill(&log, 1, 4);
    let path = log.segment_paths().last().cloned().expect("active");
    let before_last = fs.contents(&path).expect("contents").len();
    fill(&log, 5, 5);
    let anchor = log.anchor();
    assert_eq!(anchor.last_seq, 5);
    drop(log);
    // Cut the last record's block off at its boundary: what is left authenticates.
    let bytes = fs.contents(&path).expect("contents");
    fs.set_contents(&path, bytes[..before_last].to_vec())
        .expect("cut");
    let e = open_anchored(&fs, &keyring, opts(1 << 20), Some(anchor)).expect_err("cut tail");
    assert!(
        missing_file(&e).ends_with(&segment_file_name(anchor.segment)),
        "{e}"
    );
    assert!(e.to_string().contains("ends at sequence 4"), "{e}");
    let (log, _) = open(&fs, &keyring, opts(1 << 20)).expect("open without anchor");
    assert_eq!(read_all(&log, 100).len(), 4);
}

#[test]
fn the_anchor_follows_syncs_and_rollovers_and_the_observer_sees_each_new_segment() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    let first = log.anchor();
    assert_eq!(first.last_seq, 0);
    let seen: Arc<parking_lot_free::Cell> = Arc::default();
    let s2 = seen.clone();
    log.set_roll_observer(Arc::new(move |a: StreamAnchor| {
        s2.push(a);
        Ok(())
    }));
    // Unsynced appends do not move the anchor's sequence until a sync.
    log.append(&[rec(1, 1)], false).expect("append");
    assert_eq!(log.anchor().last_seq, 0);
    log.sync().expect("sync");
    assert_eq!(log.anchor().last_seq, 1);
    fill(&log, 2, 30);
    let anchors = seen.take();
    assert!(anchors.len() >= 3, "{anchors:?}");
    for w in anchors.windows(2) {
        assert_eq!(w[1].segment, w[0].segment + 1);
        assert!(w[1].last_seq > w[0].last_seq);
    }
    for a in &anchors {
        assert!(fs.exists(&dir().join(segment_file_name(a.segment))));
    }
    assert_eq!(log.anchor().segment, anchors.last().expect("one").segment);
    assert_eq!(log.anchor().last_seq, 30);
    // Each observed anchor is durable: after a power cut, opening with it succeeds.
    let last = *anchors.last().expect("one");
    drop(log);
    fs.crash();
    let (log, _) = open_anchored(&fs, &keyring, opts(SEGMENT), Some(last)).expect("reopen");
    assert!(log.last_seq() >= last.last_seq);
}

#[test]
fn an_observer_error_fails_the_append_and_poisons_the_stream() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    log.set_roll_observer(Arc::new(|_| {
        Err(Error::invalid_argument("head unwritable".into()))
    }));
    let mut failed = None;
    for s in 1..=40 {
        if let Err(e) = log.append(&[rec(s, s)], true) {
            failed = Some(e);
            break;
        }
    }
    assert!(
        matches!(failed, Some(Error::InvalidArgument { .. })),
        "{failed:?}"
    );
    assert!(matches!(
        log.append(&[rec(100, 100)], true),
        Err(Error::Poisoned { .. })
    ));
}

/// Every anchor the stream hands out is durable: a crash at any mutation, then an open with
/// the last anchor the workload was given, succeeds and holds every record it names.
#[test]
fn a_crash_at_every_mutation_never_leaves_the_stream_behind_its_last_anchor() {
    let (_, keyring) = setup();
    let workload = |fs: &CrashFs, pinned: &Arc<parking_lot_free::Cell>| -> Result<(), Error> {
        let mut seq = 1;
        for _session in 0..2 {
            let expected = pinned.last();
            let (log, _) = open_anchored(fs, &keyring, opts(SEGMENT), expected)?;
            pinned.push(log.anchor());
            let p = pinned.clone();
            log.set_roll_observer(Arc::new(move |a| {
                p.push(a);
                Ok(())
            }));
            for i in 0..16u64 {
                let sync = i % 3 == 0;
                log.append(&[rec(seq, seq)], sync)?;
                seq += 1;
                if sync {
                    pinned.push(log.anchor());
                }
            }
            log.sync()?;
            pinned.push(log.anchor());
        }
        Ok(())
    };
    let total = {
        let (fs, _) = setup();
        let base = fs.mutation_count();
        workload(&fs, &Arc::default()).expect("clean run");
        fs.mutation_count() - base
    };
    for n in 0..total {
        let (fs, _) = setup();
        let pinned: Arc<parking_lot_free::Cell> = Arc::default();
        fs.fail_after(n, FaultKind::AnyMutation);
        assert!(workload(&fs, &pinned).is_err(), "fault {n} did not fire");
        fs.crash_keeping_prefix(n + 1);
        let last = pinned.last();
        let (log, _) = open_anchored(&fs, &keyring, opts(SEGMENT), last)
            .unwrap_or_else(|e| panic!("fault {n}: open with the last anchor {last:?}: {e}"));
        if let Some(a) = last {
            assert!(log.last_seq() >= a.last_seq, "fault {n}");
        }
    }
}

#[test]
fn a_truncating_open_is_checked_only_up_to_max_seq() {
    let (fs, keyring) = setup();
    let (_, anchor) = built(&fs, &keyring);
    // The anchor says 30 were durable in the stream, but the WAL recovered only up to 20: the
    // records above are phantoms and are cut, not an error.
    let (log, st) = {
        let shared: SharedFs = Arc::new(fs.clone());
        StreamLog::open(
            shared,
            &dir(),
            keyring.clone(),
            opts(SEGMENT),
            RecoveryPlan::new(ID).anchored(Some(anchor)).truncating(20),
        )
        .expect("truncating open")
    };
    assert_eq!(st.truncated_records, 10);
    assert_eq!(log.last_seq(), 20);
    drop(log);
    // A crash before the caller pins the new anchor: the next truncating open with the old
    // anchor still succeeds (nothing up to max_seq is missing) ...
    let shared: SharedFs = Arc::new(fs.clone());
    let (log, _) = StreamLog::open(
        shared,
        &dir(),
        keyring.clone(),
        opts(SEGMENT),
        RecoveryPlan::new(ID).anchored(Some(anchor)).truncating(20),
    )
    .expect("reopen with the old anchor");
    assert_eq!(log.last_seq(), 20);
    drop(log);
    // ... but an open that requires the cut records (no max_seq) fails.
    let e = open_anchored(&fs, &keyring, opts(SEGMENT), Some(anchor)).expect_err("plain open");
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    // Without anchor, as before.
    open_truncating(&fs, &keyring, opts(SEGMENT), 20).expect("no anchor");
}

#[test]
fn segments_of_another_stream_are_refused() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    fill(&log, 1, 10);
    drop(log);
    for other in [
        StreamId { owner: 2, epoch: 0 },
        StreamId {
            owner: ID.owner,
            epoch: ID.epoch + 1,
        },
    ] {
        let before = snapshot(&fs);
        let shared: SharedFs = Arc::new(fs.clone());
        let e = StreamLog::open(
            shared,
            &dir(),
            keyring.clone(),
            opts(SEGMENT),
            RecoveryPlan::new(other),
        )
        .expect_err("another stream's segments");
        match &e {
            Error::WrongStream {
                file,
                expected,
                found,
            } => {
                assert!(file.ends_with(&segment_file_name(1)), "{file}");
                assert_eq!((*expected, *found), (other, ID));
            }
            e => panic!("expected WrongStream, got {e}"),
        }
        assert_eq!(snapshot(&fs), before);
    }
    // The rightful stream still opens and reads everything.
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("reopen");
    assert_eq!(read_all(&log, 100).len(), 10);
}

#[test]
fn consumers_moved_from_another_stream_are_refused() {
    let (fs, keyring) = setup();
    let other_dir = PathBuf::from("/db/other");
    let other = StreamId { owner: 9, epoch: 4 };
    let mut p = ConsumerPositions::load(&fs, &other_dir, &keyring, other, None).expect("load");
    p.commit(&fs, &other_dir, &keyring, "billing", 77)
        .expect("commit");
    fs.create_dir_all(&dir()).expect("mkdir");
    let bytes = fs.contents(&other_dir.join(POSITIONS_FILE)).expect("read");
    let mut f = fs.create_new(&dir().join(POSITIONS_FILE)).expect("create");
    f.append(&bytes).expect("write");
    drop(f);
    match ConsumerPositions::load(&fs, &dir(), &keyring, ID, None) {
        Err(Error::WrongStream {
            file,
            expected,
            found,
        }) => {
            assert!(file.ends_with(POSITIONS_FILE));
            assert_eq!((expected, found), (ID, other));
        }
        r => panic!("expected WrongStream, got {r:?}"),
    }
}

#[test]
fn a_deleted_or_older_consumers_file_with_an_expected_generation_is_an_error() {
    let (fs, keyring) = setup();
    fs.create_dir_all(&dir()).expect("mkdir");
    let path = dir().join(POSITIONS_FILE);
    let mut p = ConsumerPositions::load(&fs, &dir(), &keyring, ID, Some(0)).expect("load");
    assert_eq!(p.generation(), 0);
    p.commit(&fs, &dir(), &keyring, "a", 1).expect("commit");
    p.commit(&fs, &dir(), &keyring, "a", 2).expect("commit");
    let gen2 = fs.contents(&path).expect("read");
    p.commit(&fs, &dir(), &keyring, "a", 3).expect("commit");
    assert!(p.remove(&fs, &dir(), &keyring, "a").expect("remove"));
    assert_eq!(p.generation(), 4);
    assert_eq!(
        ConsumerPositions::load(&fs, &dir(), &keyring, ID, Some(4))
            .expect("current")
            .generation(),
        4
    );
    // A pin that lags the file is fine.
    ConsumerPositions::load(&fs, &dir(), &keyring, ID, Some(2)).expect("lagging pin");

    // An older copy put back.
    fs.set_contents(&path, gen2.clone()).expect("roll back");
    let e = ConsumerPositions::load(&fs, &dir(), &keyring, ID, Some(4)).expect_err("older");
    assert!(missing_file(&e).ends_with(POSITIONS_FILE), "{e}");
    assert!(e.to_string().contains("found generation 2"), "{e}");
    let old = ConsumerPositions::load(&fs, &dir(), &keyring, ID, None).expect("no pin");
    assert_eq!(old.get("a"), Some(2));

    // Deleted.
    fs.remove_file(&path).expect("delete");
    let e = ConsumerPositions::load(&fs, &dir(), &keyring, ID, Some(4)).expect_err("deleted");
    assert!(missing_file(&e).ends_with(POSITIONS_FILE), "{e}");
    // Without a pin (or with generation 0: nothing was ever written): the old behaviour.
    for pin in [None, Some(0)] {
        let empty = ConsumerPositions::load(&fs, &dir(), &keyring, ID, pin).expect("no file");
        assert!(empty.list().is_empty());
    }
}

/// A tiny thread-safe list of anchors for observers.
mod parking_lot_free {
    use sealdb_stream::StreamAnchor;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Cell(Mutex<Vec<StreamAnchor>>);

    impl Cell {
        pub fn push(&self, a: StreamAnchor) {
            self.0.lock().expect("lock").push(a);
        }
        pub fn take(&self) -> Vec<StreamAnchor> {
            std::mem::take(&mut *self.0.lock().expect("lock"))
        }
        pub fn last(&self) -> Option<StreamAnchor> {
            self.0.lock().expect("lock").last().copied()
        }
    }
}
