//! The frame size limit: the largest batch the builder accepts is logged as one frame and
//! recovered, and a frame over one sealed block is refused before anything is written, leaving
//! the log writable.

use sealdb_crypto::{CipherId, DatabaseId, Keyring};
use sealdb_vfs::{CrashFs, FileSystem, SharedFs};
use sealdb_wal::{
    BatchBuilder, Error, FrameBatch, MAX_BATCH_LEN, MAX_FRAME_LEN, MAX_VALUE_LEN, Wal, WalOptions,
    frame_len,
};
use std::path::Path;
use std::sync::Arc;

type Recovered = Vec<(u64, usize)>;

/// The `none` cipher: the limit is on the plaintext, the same under every cipher, and a debug
/// build seals 64 MiB with ChaCha20 slowly.
fn open(fs: &CrashFs, keyring: &Keyring) -> (Wal, Recovered) {
    let shared: SharedFs = Arc::new(fs.clone());
    let mut got = Vec::new();
    let (wal, _) = Wal::open(
        shared,
        Path::new("/db/wal"),
        keyring.clone(),
        WalOptions {
            segment_size: 256 << 20,
            cipher: CipherId::None,
        },
        0,
        &mut |b: FrameBatch<'_>| {
            got.push((b.first_seq, b.rep.len()));
            Ok(())
        },
    )
    .expect("open");
    (wal, got)
}

fn frame(first_seq: u64, rep: &[u8]) -> FrameBatch<'_> {
    FrameBatch {
        first_seq,
        count: 1,
        rep,
        commit_time_ms: 0,
    }
}

/// A batch of exactly `len` encoded bytes: puts of the largest values, then one to fill up.
fn batch_of(len: usize) -> BatchBuilder {
    let mut b = BatchBuilder::new();
    let mut key = 0u32;
    while b.rep().len() < len {
        let room = len - b.rep().len();
        let k = key.to_be_bytes();
        let value_len = room
            .saturating_sub(BatchBuilder::put_len(k.len(), 0))
            .min(MAX_VALUE_LEN);
        b.put(0, &k, &vec![7u8; value_len]).expect("fits");
        key += 1;
    }
    assert_eq!(b.rep().len(), len);
    b
}

#[test]
fn the_largest_batch_is_one_frame_and_recovers() {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    let keyring = Keyring::generate(DatabaseId([1; 16])).expect("keyring");
    let full = batch_of(MAX_BATCH_LEN);
    assert_eq!(frame_len([full.rep().len()]), MAX_FRAME_LEN);
    // Not one more byte.
    let mut over = full.clone();
    assert!(matches!(
        over.delete(0, b""),
        Err(Error::BatchTooLarge { .. })
    ));
    let (wal, _) = open(&fs, &keyring);
    wal.append(&[frame(1, full.rep())], true)
        .expect("a frame of exactly the limit is written");
    drop(wal);
    let (_, got) = open(&fs, &keyring);
    assert_eq!(got, vec![(1, MAX_BATCH_LEN)]);
}

#[test]
fn an_oversized_frame_is_refused_without_poisoning_the_wal() {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    let keyring = Keyring::generate(DatabaseId([2; 16])).expect("keyring");
    let (wal, _) = open(&fs, &keyring);
    let half = batch_of(MAX_BATCH_LEN / 2 + 1);
    let e = wal
        .append(&[frame(1, half.rep()), frame(2, half.rep())], true)
        .expect_err("two halves and framing exceed one block");
    assert!(
        matches!(e, Error::BatchTooLarge { size, limit }
            if size as usize == frame_len([half.rep().len(); 2]) && limit as usize == MAX_FRAME_LEN),
        "{e:?}"
    );
    // Nothing was written and the log goes on.
    wal.append(&[frame(1, half.rep())], true)
        .expect("the WAL stays writable");
    wal.append(&[frame(2, half.rep())], true).expect("append");
    drop(wal);
    let (_, got) = open(&fs, &keyring);
    let half_len = half.rep().len();
    assert_eq!(got, vec![(1, half_len), (2, half_len)]);
}
