//! What the two model checks (`tests/model.rs`, `tests/metamorphic.rs`) share: the model of
//! the database's rows, the operations both draw (and the strategies drawing them), and
//! reading the same key range from the engine and from the model.
//!
//! The strategies are the building blocks of each check's own weighted `prop_oneof!`: a
//! check's generation (and so its `*.proptest-regressions` seeds) depends on the order and
//! weights there and on the shapes here, so a change to a shape here replays differently in
//! both.

use proptest::prelude::*;
use sealdb::Keyspace;
use sealdb_vfs::{CrashFs, FileSystem};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, Range, RangeBounds};
use std::path::Path;

/// The model: every live row, by (keyspace slot, key).
pub type Model = BTreeMap<(u8, Vec<u8>), Vec<u8>>;
/// One batch as the model sees it: (keyspace slot, key, value or `None` for a delete).
pub type ModelBatch = Vec<(u8, Vec<u8>, Option<Vec<u8>>)>;
/// A key and its value, as a scan returns them.
pub type Row = (Vec<u8>, Vec<u8>);
/// A drawn batch before its keys and values are spelled out: (keyspace slot, key number,
/// value byte or `None` for a delete).
pub type DrawnBatch = Vec<(u8, u8, Option<u8>)>;

/// An operation both checks draw; `E` holds the operations only one of them draws.
#[derive(Debug, Clone)]
pub enum Op<E> {
    /// One key set to a value derived from `val`.
    Put {
        ks: u8,
        key: u8,
        val: u8,
        sync: bool,
    },
    /// One key deleted.
    Delete { ks: u8, key: u8, sync: bool },
    /// An atomic batch across keyspaces.
    Batch { ops: DrawnBatch, sync: bool },
    /// A point read.
    Get { ks: u8, key: u8 },
    /// A range scan, `lo` included and `hi` excluded, forwards or backwards.
    Scan {
        ks: u8,
        lo: Option<u8>,
        hi: Option<u8>,
        reverse: bool,
    },
    /// A snapshot kept, with the model as of now, for later reads (at most four).
    TakeSnapshot,
    /// A point read and a full scan through snapshot `idx`, if it exists.
    ReadSnapshot { idx: usize, ks: u8, key: u8 },
    /// Every memtable written to level 0.
    Flush,
    /// A full compaction.
    Compact,
    /// A clean close and open.
    Reopen,
    /// A power cut between operations; `seed` picks how much unsynced data reached the disk.
    Crash { seed: u64 },
    /// An operation of one check only.
    Extra(E),
}

/// A put of a key in `key` to a keyspace in `ks`, synced or not.
pub fn put<E: Debug>(ks: Range<u8>, key: Range<u8>) -> impl Strategy<Value = Op<E>> {
    (ks, key, any::<u8>(), any::<bool>()).prop_map(|(ks, key, val, sync)| Op::Put {
        ks,
        key,
        val,
        sync,
    })
}

/// A delete of a key in `key` from a keyspace in `ks`, synced or not.
pub fn delete<E: Debug>(ks: Range<u8>, key: Range<u8>) -> impl Strategy<Value = Op<E>> {
    (ks, key, any::<bool>()).prop_map(|(ks, key, sync)| Op::Delete { ks, key, sync })
}

/// The puts and deletes of one batch, `len` of them, across the keyspaces in `ks`.
pub fn batch_ops(
    ks: Range<u8>,
    key: Range<u8>,
    len: Range<usize>,
) -> impl Strategy<Value = DrawnBatch> {
    prop::collection::vec((ks, key, prop::option::of(any::<u8>())), len)
}

/// An atomic batch (see [`batch_ops`]), synced or not.
pub fn batch<E: Debug>(
    ks: Range<u8>,
    key: Range<u8>,
    len: Range<usize>,
) -> impl Strategy<Value = Op<E>> {
    (batch_ops(ks, key, len), any::<bool>()).prop_map(|(ops, sync)| Op::Batch { ops, sync })
}

/// A point read.
pub fn get<E: Debug>(ks: Range<u8>, key: Range<u8>) -> impl Strategy<Value = Op<E>> {
    (ks, key).prop_map(|(ks, key)| Op::Get { ks, key })
}

/// A range scan with optional bounds (`lo` included, `hi` excluded), either way.
pub fn scan<E: Debug>(ks: Range<u8>, key: Range<u8>) -> impl Strategy<Value = Op<E>> {
    (
        ks,
        prop::option::of(key.clone()),
        prop::option::of(key),
        any::<bool>(),
    )
        .prop_map(|(ks, lo, hi, reverse)| Op::Scan {
            ks,
            lo,
            hi,
            reverse,
        })
}

/// A read through one of the (at most four) snapshots taken so far.
pub fn read_snapshot<E: Debug>(ks: Range<u8>, key: Range<u8>) -> impl Strategy<Value = Op<E>> {
    (0usize..4, ks, key).prop_map(|(idx, ks, key)| Op::ReadSnapshot { idx, ks, key })
}

/// A power cut between operations.
pub fn crash<E: Debug>() -> impl Strategy<Value = Op<E>> {
    any::<u64>().prop_map(|seed| Op::Crash { seed })
}

/// The bytes of key number `k`: long-ish, with shared prefixes, so ordering and prefix
/// compression are exercised.
pub fn key_bytes(k: u8) -> Vec<u8> {
    format!("key/{k:03}").into_bytes()
}

/// Applies one batch to the model.
pub fn apply(m: &mut Model, ops: &ModelBatch) {
    for (ks, k, v) in ops {
        match v {
            Some(v) => {
                m.insert((*ks, k.clone()), v.clone());
            }
            None => {
                m.remove(&(*ks, k.clone()));
            }
        }
    }
}

/// Every row of keyspace slot `ks`, in key order.
pub fn rows_of(m: &Model, ks: u8) -> Vec<Row> {
    m.iter()
        .filter(|((k, _), _)| *k == ks)
        .map(|((_, key), v)| (key.clone(), v.clone()))
        .collect()
}

/// The key range of a scan: from key `lo` (included) to key `hi` (excluded).
pub fn key_range(lo: Option<u8>, hi: Option<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (
        lo.map_or(Bound::Unbounded, |k| Bound::Included(key_bytes(k))),
        hi.map_or(Bound::Unbounded, |k| Bound::Excluded(key_bytes(k))),
    )
}

/// What a scan of keyspace slot `ks` must return, by the model.
pub fn model_scan(m: &Model, ks: u8, lo: Option<u8>, hi: Option<u8>, reverse: bool) -> Vec<Row> {
    let range = key_range(lo, hi);
    let mut rows: Vec<Row> = rows_of(m, ks)
        .into_iter()
        .filter(|(key, _)| range.contains(key))
        .collect();
    if reverse {
        rows.reverse();
    }
    rows
}

/// What a scan of `handle` returns, by the engine.
pub fn engine_scan(handle: &Keyspace, lo: Option<u8>, hi: Option<u8>, reverse: bool) -> Vec<Row> {
    let it = handle.range(key_range(lo, hi)).expect("range");
    if reverse {
        it.rev().collect::<sealdb::Result<_>>().expect("scan")
    } else {
        super::collect(it)
    }
}

/// Every row of `handle`, by the engine.
pub fn engine_rows(handle: &Keyspace) -> Vec<Row> {
    super::collect(handle.iter().expect("iter"))
}

/// An empty crashable filesystem holding a durable directory `/m` for the database.
pub fn crash_fs() -> CrashFs {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/m")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    fs
}
