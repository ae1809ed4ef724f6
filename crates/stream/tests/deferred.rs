//! Deferred appends: commit groups accepted by `append_deferred` share one sealed block, are
//! visible to readers and waiters before they are written, keep their order against plain
//! appends, and a block merging several groups that straddles a truncation point is cut
//! whole only when the caller can regenerate every record in it.

mod common;

use common::{ID, dir, open, opts, read_all, rec, segment_files, setup};
use sealdb_stream::{ChangeRecord, Error, RecoveryPlan, StreamLog};
use sealdb_vfs::SharedFs;
use std::sync::Arc;
use std::time::Duration;

const SEGMENT: u64 = 1 << 20;

fn group(first: u64) -> Vec<ChangeRecord> {
    vec![rec(first, 1000 + first), rec(first + 1, 1000 + first)]
}

/// Bytes of every segment file together.
fn stream_bytes(fs: &sealdb_vfs::CrashFs) -> usize {
    segment_files(fs).iter().map(|(_, c)| c.len()).sum()
}

#[test]
fn deferred_groups_are_written_as_one_block_when_read() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    let empty = stream_bytes(&fs);
    let mut all = Vec::new();
    for first in [1, 3, 5] {
        let g = group(first);
        log.append_deferred(g.clone()).expect("defer");
        all.extend(g);
    }
    assert_eq!(stream_bytes(&fs), empty, "nothing written yet");
    assert_eq!(log.last_seq(), 6);
    assert!(
        log.wait_for(5, Duration::ZERO),
        "a waiter sees deferred records"
    );
    assert!(!log.wait_for(6, Duration::ZERO));
    // A read writes them first, as one block.
    assert_eq!(read_all(&log, 100), all);
    let one_block = stream_bytes(&fs) - empty;
    assert!(one_block > 0);
    // The same records appended one group per block take more room (a block each).
    let (fs2, keyring2) = setup();
    let (log2, _) = open(&fs2, &keyring2, opts(SEGMENT)).expect("open");
    let empty2 = stream_bytes(&fs2);
    for first in [1, 3, 5] {
        log2.append(&group(first), false).expect("append");
    }
    assert!(stream_bytes(&fs2) - empty2 > one_block);
    // After a sync they survive a reopen.
    log.sync().expect("sync");
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("reopen");
    assert_eq!(read_all(&log, 100), all);
}

#[test]
fn deferred_and_plain_appends_keep_one_order() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    log.append_deferred(group(1)).expect("defer");
    let e = log
        .append(&group(2), false)
        .expect_err("overlaps a deferred group");
    assert!(matches!(e, Error::OutOfOrder { last: 2, got: 2 }), "{e}");
    let e = log
        .append_deferred(group(1))
        .expect_err("repeats a deferred group");
    assert!(matches!(e, Error::OutOfOrder { .. }), "{e}");
    log.append(&group(3), true).expect("append after deferred");
    log.append_deferred(group(5)).expect("defer");
    log.flush_pending().expect("flush");
    let want: Vec<_> = [1, 3, 5].into_iter().flat_map(group).collect();
    assert_eq!(read_all(&log, 100), want);
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("reopen");
    assert_eq!(read_all(&log, 100), want);
}

#[test]
fn deferred_groups_over_the_block_budget_are_written_without_a_read() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(16 << 20)).expect("open");
    let empty = stream_bytes(&fs);
    let mut seq = 1;
    while stream_bytes(&fs) == empty {
        log.append_deferred(group(seq)).expect("defer");
        seq += 2;
        assert!(seq < 10_000, "never written");
    }
    let written = stream_bytes(&fs) - empty;
    assert!(
        written >= sealdb_stream::DEFER_BLOCK_LEN / 2,
        "{written} bytes"
    );
    assert!(
        written <= sealdb_stream::DEFER_BLOCK_LEN * 2,
        "{written} bytes"
    );
}

fn open_recovering(
    fs: &sealdb_vfs::CrashFs,
    keyring: &sealdb_crypto::Keyring,
    max_seq: u64,
    regenerable_after: u64,
) -> Result<StreamLog, Error> {
    let shared: SharedFs = Arc::new(fs.clone());
    StreamLog::open(
        shared,
        &dir(),
        keyring.clone(),
        opts(SEGMENT),
        RecoveryPlan::new(ID)
            .truncating(max_seq)
            .regenerable_after(regenerable_after),
    )
    .map(|(log, _)| log)
}

#[test]
fn a_merged_block_straddling_max_seq_is_cut_whole_only_when_regenerable() {
    let (fs, keyring) = setup();
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("open");
    log.append(&group(1), true).expect("append");
    for first in [3, 5, 7] {
        log.append_deferred(group(first)).expect("defer");
    }
    log.sync().expect("sync");
    drop(log);
    // The WAL kept up to 6: the block 3..=8 straddles it.
    let e = common::open_truncating(&fs, &keyring, opts(SEGMENT), 6).expect_err("no regen");
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
    let e = open_recovering(&fs, &keyring, 6, 3).expect_err("reaches flushed commits");
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
    let log = open_recovering(&fs, &keyring, 6, 2).expect("cut whole");
    assert_eq!(log.last_seq(), 2, "the block went, the one before stays");
    assert_eq!(read_all(&log, 100), group(1));
    // The caller re-appends what it regenerates, and the chain reopens.
    log.append(&[group(3), group(5)].concat(), true)
        .expect("regenerated");
    drop(log);
    let (log, _) = open(&fs, &keyring, opts(SEGMENT)).expect("reopen");
    assert_eq!(read_all(&log, 100), [group(1), group(3), group(5)].concat());
}
