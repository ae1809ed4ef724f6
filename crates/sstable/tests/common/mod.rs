//! Helpers shared by the integration tests: a keyring, a table built from a model, and the
//! model's answers.

#![allow(dead_code)]

use sealdb_crypto::{ArtifactKind, CipherId, DatabaseId, Expected, Keyring};
use sealdb_sstable::{BlockCache, Entry, Table, TableBuilder, TableMeta, TableOptions, ValueKind};
use sealdb_vfs::CrashFs;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

pub const PATH: &str = "/t.sst";

pub fn keyring(db: u8) -> Keyring {
    Keyring::generate(DatabaseId([db; 16])).expect("keyring")
}

pub fn expected(keyring: &Keyring, cipher: CipherId) -> Expected {
    Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    }
}

pub fn entry(key: &[u8], seq: u64, kind: ValueKind, value: &[u8]) -> Entry {
    Entry {
        key: key.to_vec(),
        seq,
        kind,
        value: value.to_vec(),
    }
}

/// Sorts into internal order and drops repeated `(key, seq)` pairs.
pub fn normalize(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
    entries.dedup_by(|a, b| a.key == b.key && a.seq == b.seq);
    entries
}

pub fn build(fs: &CrashFs, keyring: &Keyring, opts: &TableOptions, entries: &[Entry]) -> TableMeta {
    let mut b = TableBuilder::create(fs, Path::new(PATH), keyring, opts).expect("create");
    for e in entries {
        b.add(&e.key, e.seq, e.kind, &e.value).expect("add");
    }
    assert_eq!(b.entries(), entries.len() as u64);
    b.finish().expect("finish")
}

pub fn open(
    fs: &CrashFs,
    keyring: &Keyring,
    cipher: CipherId,
    cache: Option<Arc<BlockCache>>,
) -> Arc<Table> {
    Table::open(
        fs,
        Path::new(PATH),
        keyring,
        &expected(keyring, cipher),
        cache,
    )
    .expect("open")
}

pub fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let lo = match lower {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    };
    let hi = match upper {
        Bound::Unbounded => true,
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
    };
    lo && hi
}

/// The model's answer to `Table::get`.
pub fn model_get(entries: &[Entry], key: &[u8], snapshot: u64) -> Option<(u64, Option<Vec<u8>>)> {
    entries
        .iter()
        .find(|e| e.key == key && e.seq <= snapshot)
        .map(|e| match e.kind {
            ValueKind::Put => (e.seq, Some(e.value.clone())),
            ValueKind::Delete => (e.seq, None),
        })
}
