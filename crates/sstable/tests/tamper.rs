//! Tampering and foreign files: every change to a table's bytes ends in an integrity error
//! (at open, or from `verify` naming the damaged block), never in a panic and never in wrong
//! data; and nothing distinctive of the data is visible in an encrypted file.

mod common;

use common::*;
use sealdb_crypto::{CipherId, Keyring, SealedReader};
use sealdb_sstable::{
    BlockCache, Compression, Entry, Error, MAX_SEQ, Table, TableOptions, ValueKind,
};
use sealdb_vfs::CrashFs;
use std::ops::Bound;
use std::path::Path;

fn small_entries() -> Vec<Entry> {
    let mut v = Vec::new();
    for i in 0..24u32 {
        let k = format!("key-{i:03}");
        v.push(entry(
            k.as_bytes(),
            100 + u64::from(i),
            ValueKind::Put,
            format!("val-{i}").as_bytes(),
        ));
        if i % 5 == 0 {
            v.push(entry(k.as_bytes(), u64::from(i), ValueKind::Delete, b""));
        }
    }
    v
}

fn small_opts(cipher: CipherId) -> TableOptions {
    TableOptions {
        block_size: 96,
        cipher,
        ..TableOptions::default()
    }
}

/// Offsets where each block of the clean file starts and ends.
fn block_ranges(fs: &CrashFs, kr: &Keyring, cipher: CipherId) -> Vec<(u64, u64)> {
    let r = SealedReader::open(fs, Path::new(PATH), kr, &expected(kr, cipher)).expect("reader");
    r.blocks()
        .map(|b| {
            let (h, _) = b.expect("clean block");
            (h.offset, h.end())
        })
        .collect()
}

/// Everything a reader may return from a damaged table must be an error or the truth.
fn reads_are_errors_or_true(table: &std::sync::Arc<Table>, entries: &[Entry]) {
    for e in entries {
        match table.get(&e.key, e.seq) {
            Ok(got) => assert_eq!(
                got,
                model_get(entries, &e.key, e.seq),
                "wrong data from get"
            ),
            Err(err) => assert!(err.is_integrity(), "unexpected error kind: {err}"),
        }
    }
    let mut it = table.iter(Bound::Unbounded, Bound::Unbounded);
    let mut i = 0;
    for r in it.by_ref() {
        match r {
            Ok(e) => {
                assert_eq!(Some(&e), entries.get(i), "wrong data from iter");
                i += 1;
            }
            Err(err) => {
                assert!(err.is_integrity(), "unexpected error kind: {err}");
                break;
            }
        }
    }
    assert!(it.next().is_none(), "iterator goes on after an error");
}

#[test]
fn clean_tables_verify() {
    for cipher in [CipherId::None, CipherId::ChaCha20Poly1305] {
        let fs = CrashFs::new();
        let kr = keyring(1);
        build(&fs, &kr, &small_opts(cipher), &small_entries());
        let t = open(&fs, &kr, cipher, None);
        assert!(t.verify().is_empty());
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let entries = small_entries();
    for cipher in [CipherId::None, CipherId::ChaCha20Poly1305] {
        let fs = CrashFs::new();
        let kr = keyring(1);
        build(&fs, &kr, &small_opts(cipher), &entries);
        let clean = fs.contents(Path::new(PATH)).expect("contents");
        let ranges = block_ranges(&fs, &kr, cipher);
        assert!(ranges.len() >= 6, "several data blocks plus metadata");
        let (mut failed_open, mut failed_verify) = (0, 0);
        for at in 0..clean.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = clean.clone();
                bad[at] ^= mask;
                fs.set_contents(Path::new(PATH), bad).expect("set");
                let cache = Some(BlockCache::new(1 << 20));
                let t = match Table::open(&fs, Path::new(PATH), &kr, &expected(&kr, cipher), cache)
                {
                    Err(e) => {
                        assert!(e.is_integrity(), "byte {at}: open failed with {e}");
                        failed_open += 1;
                        continue;
                    }
                    Ok(t) => t,
                };
                failed_verify += 1;
                let errors = t.verify();
                let (start, _) = ranges
                    .iter()
                    .copied()
                    .find(|(s, e)| (*s..*e).contains(&(at as u64)))
                    .unwrap_or_else(|| panic!("byte {at} opened but lies in no block"));
                assert!(
                    errors
                        .iter()
                        .any(|e| e.is_integrity() && e.block_offset() == Some(start)),
                    "byte {at}: verify did not name block {start}: {errors:?}"
                );
                reads_are_errors_or_true(&t, &entries);
            }
        }
        assert!(failed_open > 0 && failed_verify > 0);
    }
}

#[test]
fn truncated_and_extended_files_do_not_open() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    build(&fs, &kr, &small_opts(cipher), &small_entries());
    let clean = fs.contents(Path::new(PATH)).expect("contents");
    for len in 0..clean.len() {
        fs.set_contents(Path::new(PATH), clean[..len].to_vec())
            .expect("set");
        let r = Table::open(&fs, Path::new(PATH), &kr, &expected(&kr, cipher), None);
        assert!(
            matches!(r, Err(e) if e.is_integrity()),
            "truncated to {len} bytes opened"
        );
    }
    let mut longer = clean.clone();
    longer.extend_from_slice(&[0u8; 70]);
    fs.set_contents(Path::new(PATH), longer).expect("set");
    let r = Table::open(&fs, Path::new(PATH), &kr, &expected(&kr, cipher), None);
    assert!(matches!(r, Err(e) if e.is_integrity()));
}

#[test]
fn tables_of_another_database_or_key_are_refused() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    build(&fs, &kr, &small_opts(cipher), &small_entries());
    // Another database.
    let other = keyring(2);
    let r = Table::open(
        &fs,
        Path::new(PATH),
        &other,
        &expected(&other, cipher),
        None,
    );
    assert!(matches!(r, Err(e) if e.is_integrity()));
    // Same database id, different data key: the footer does not authenticate.
    let impostor = keyring(1);
    let r = Table::open(
        &fs,
        Path::new(PATH),
        &impostor,
        &expected(&impostor, cipher),
        None,
    );
    assert!(matches!(r, Err(e) if e.is_integrity()));
    // A plaintext-mode file where an encrypted one is expected.
    let fs2 = CrashFs::new();
    build(&fs2, &kr, &small_opts(CipherId::None), &small_entries());
    let r = Table::open(&fs2, Path::new(PATH), &kr, &expected(&kr, cipher), None);
    assert!(matches!(r, Err(e) if e.is_integrity()));
}

#[test]
fn blocks_moved_within_or_across_files_fail_authentication() {
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    // Same-size data blocks: fixed-width keys and values.
    let entries: Vec<Entry> = (0..64u32)
        .map(|i| {
            entry(
                format!("k{i:04}").as_bytes(),
                1,
                ValueKind::Put,
                b"vvvvvvvv",
            )
        })
        .collect();
    let opts = TableOptions {
        block_size: 128,
        cipher,
        ..TableOptions::default()
    };
    let a = CrashFs::new();
    build(&a, &kr, &opts, &entries);
    let b = CrashFs::new();
    build(&b, &kr, &opts, &entries);
    let bytes_a = a.contents(Path::new(PATH)).expect("a");
    let bytes_b = b.contents(Path::new(PATH)).expect("b");
    let ranges = block_ranges(&a, &kr, cipher);
    // Two data blocks of equal size (the last four blocks are metadata).
    let data = &ranges[..ranges.len() - 4];
    let (i, j) = (0..data.len())
        .flat_map(|i| (i + 1..data.len()).map(move |j| (i, j)))
        .find(|&(i, j)| data[i].1 - data[i].0 == data[j].1 - data[j].0)
        .expect("two data blocks of equal size");
    let ((s0, e0), (s1, e1)) = (data[i], data[j]);
    let (s0, e0, s1, e1) = (s0 as usize, e0 as usize, s1 as usize, e1 as usize);

    // Swap blocks 0 and 1 within a file.
    let mut swapped = bytes_a.clone();
    swapped[s0..e0].copy_from_slice(&bytes_a[s1..e1]);
    swapped[s1..e1].copy_from_slice(&bytes_a[s0..e0]);
    // Block 0 of file b put into file a.
    let mut foreign = bytes_a.clone();
    foreign[s0..e0].copy_from_slice(&bytes_b[s0..e0]);
    // Footer of file b on file a (a "rolled back" or foreign footer).
    let mut footer_swap = bytes_a.clone();
    let (fs_, fe) = *ranges.last().expect("footer");
    footer_swap[fs_ as usize..fe as usize].copy_from_slice(&bytes_b[fs_ as usize..fe as usize]);

    for (name, bytes) in [("swap", swapped), ("foreign", foreign)] {
        a.set_contents(Path::new(PATH), bytes).expect("set");
        let t = open(&a, &kr, cipher, None);
        let errors = t.verify();
        assert!(
            errors
                .iter()
                .any(|e| e.is_integrity() && e.block_offset() == Some(s0 as u64)),
            "{name}: {errors:?}"
        );
        reads_are_errors_or_true(&t, &entries);
    }
    a.set_contents(Path::new(PATH), footer_swap).expect("set");
    let r = Table::open(&a, Path::new(PATH), &kr, &expected(&kr, cipher), None);
    assert!(matches!(r, Err(e) if e.is_integrity()));
}

#[test]
fn footer_digest_identifies_the_file() {
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    let a = CrashFs::new();
    let meta_a = build(&a, &kr, &small_opts(cipher), &small_entries());
    let b = CrashFs::new();
    let meta_b = build(&b, &kr, &small_opts(cipher), &small_entries());
    // Same contents, different files: different ids and digests.
    assert_ne!(meta_a.file_id, meta_b.file_id);
    assert_ne!(meta_a.footer_digest, meta_b.footer_digest);
    // Reopening recomputes the digest from disk and finds the builder's.
    assert_eq!(
        open(&a, &kr, cipher, None).meta().footer_digest,
        meta_a.footer_digest
    );
    // An older copy put in place of a file shows its own digest, which the engine compares
    // with its manifest.
    a.set_contents(Path::new(PATH), b.contents(Path::new(PATH)).expect("b"))
        .expect("set");
    let t = open(&a, &kr, cipher, None);
    assert_eq!(t.meta().footer_digest, meta_b.footer_digest);
    assert_ne!(t.meta().footer_digest, meta_a.footer_digest);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn keys_and_values_never_appear_in_clear_when_encrypted() {
    let key = b"ZEBRA-DISTINCT-KEY-7781";
    let value = b"SECRET-DISTINCT-VALUE-5532";
    let mut entries = small_entries();
    entries.push(entry(key, 9, ValueKind::Put, value));
    let entries = normalize(entries);
    for (cipher, compression, visible) in [
        (CipherId::ChaCha20Poly1305, Compression::None, false),
        (CipherId::ChaCha20Poly1305, Compression::Lz4, false),
        (CipherId::None, Compression::None, true),
    ] {
        let fs = CrashFs::new();
        let kr = keyring(1);
        let opts = TableOptions {
            cipher,
            compression,
            ..TableOptions::default()
        };
        build(&fs, &kr, &opts, &entries);
        let bytes = fs.contents(Path::new(PATH)).expect("contents");
        assert_eq!(contains(&bytes, key), visible, "{cipher:?}: key");
        assert_eq!(contains(&bytes, value), visible, "{cipher:?}: value");
        // Not even a fragment of the smallest key (in the properties and first block).
        assert_eq!(
            contains(&bytes, b"key-000"),
            visible,
            "{cipher:?}: smallest key"
        );
        let t = open(&fs, &kr, cipher, None);
        assert_eq!(
            t.get(key, MAX_SEQ).expect("get"),
            Some((9, Some(value.to_vec())))
        );
    }
}

#[test]
fn verify_reports_every_damaged_block() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    build(&fs, &kr, &small_opts(cipher), &small_entries());
    let ranges = block_ranges(&fs, &kr, cipher);
    let mut bytes = fs.contents(Path::new(PATH)).expect("contents");
    let damaged = [ranges[0], ranges[2], ranges[3]];
    for (_, end) in damaged {
        bytes[(end - 3) as usize] ^= 0xff;
    }
    fs.set_contents(Path::new(PATH), bytes).expect("set");
    let t = open(&fs, &kr, cipher, None);
    let named: Vec<Option<u64>> = t.verify().iter().map(Error::block_offset).collect();
    let want: Vec<Option<u64>> = damaged.iter().map(|(s, _)| Some(*s)).collect();
    assert_eq!(named, want);
}

#[test]
fn errors_name_the_file_and_block() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let cipher = CipherId::ChaCha20Poly1305;
    build(&fs, &kr, &small_opts(cipher), &small_entries());
    let ranges = block_ranges(&fs, &kr, cipher);
    let mut bytes = fs.contents(Path::new(PATH)).expect("contents");
    let (start, end) = ranges[1];
    bytes[((start + end) / 2) as usize] ^= 0x10;
    fs.set_contents(Path::new(PATH), bytes).expect("set");
    let t = open(&fs, &kr, cipher, None);
    let err = t
        .iter(Bound::Unbounded, Bound::Unbounded)
        .find_map(|r| r.err())
        .expect("an error");
    assert_eq!(err.block_offset(), Some(start));
    let msg = err.to_string();
    assert!(
        msg.contains(PATH) && msg.contains(&start.to_string()),
        "{msg}"
    );
    assert!(matches!(err, Error::Crypto(_)));
}
