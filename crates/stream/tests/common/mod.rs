//! Helpers shared by the integration tests.

#![allow(dead_code)]

use sealdb_crypto::{CipherId, DatabaseId, Keyring};
use sealdb_stream::{
    ChangeRecord, Error, Event, ReadBatch, RecoveryPlan, StartAt, StreamAnchor, StreamId,
    StreamLog, StreamOptions, StreamRecovery,
};
use sealdb_vfs::{CrashFs, FileSystem, SharedFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The stream the tests open (unless a test is about another one).
pub const ID: StreamId = StreamId { owner: 1, epoch: 0 };

pub fn dir() -> PathBuf {
    PathBuf::from("/db/stream")
}

pub fn setup() -> (CrashFs, Keyring) {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    (fs, Keyring::generate(DatabaseId([1; 16])).expect("keyring"))
}

pub fn opts(segment_size: u64) -> StreamOptions {
    StreamOptions {
        segment_size,
        cipher: CipherId::ChaCha20Poly1305,
    }
}

pub fn open(
    fs: &CrashFs,
    keyring: &Keyring,
    o: StreamOptions,
) -> Result<(StreamLog, StreamRecovery), Error> {
    open_anchored(fs, keyring, o, None)
}

pub fn open_anchored(
    fs: &CrashFs,
    keyring: &Keyring,
    o: StreamOptions,
    expected: Option<StreamAnchor>,
) -> Result<(StreamLog, StreamRecovery), Error> {
    let shared: SharedFs = Arc::new(fs.clone());
    StreamLog::open(
        shared,
        &dir(),
        keyring.clone(),
        o,
        RecoveryPlan::new(ID).anchored(expected),
    )
}

pub fn open_truncating(
    fs: &CrashFs,
    keyring: &Keyring,
    o: StreamOptions,
    max_seq: u64,
) -> Result<(StreamLog, StreamRecovery), Error> {
    let shared: SharedFs = Arc::new(fs.clone());
    StreamLog::open(
        shared,
        &dir(),
        keyring.clone(),
        o,
        RecoveryPlan::new(ID).truncating(max_seq),
    )
}

/// A record whose key, keyspace and images are recognisable in a byte dump.
pub fn rec(seq: u64, time: u64) -> ChangeRecord {
    ChangeRecord {
        seq,
        commit_time_ms: time,
        event: match seq % 3 {
            0 => Event::Insert,
            1 => Event::Modify,
            _ => Event::Remove,
        },
        keyspace: "users-keyspace".into(),
        key: format!("user-key-{seq:06}").into_bytes(),
        new_image: (seq % 3 != 2).then(|| format!("secret-new-image-{seq:06}").into_bytes()),
        old_image: seq
            .is_multiple_of(2)
            .then(|| format!("secret-old-image-{seq:06}").into_bytes()),
    }
}

/// Every retained record, read in batches of `batch` from the trim horizon.
pub fn read_all(log: &StreamLog, batch: usize) -> Vec<ChangeRecord> {
    let mut out = Vec::new();
    let mut start = StartAt::TrimHorizon;
    loop {
        let ReadBatch { records, next } = log.read(start, batch, usize::MAX).expect("read");
        if records.is_empty() {
            return out;
        }
        out.extend(records);
        start = StartAt::At(next);
    }
}

/// Every segment file in the stream directory with its contents.
pub fn segment_files(fs: &CrashFs) -> Vec<(PathBuf, Vec<u8>)> {
    fs.list_dir(&dir())
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".stream"))
        .map(|n| {
            let p = dir().join(n);
            let c = fs.contents(&p).expect("contents");
            (p, c)
        })
        .collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
