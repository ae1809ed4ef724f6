//! The fuzzing entry points on valid seeds, mutated seeds and random bytes: they must never
//! panic, and on valid input they must read everything.

mod common;

use common::*;
use proptest::prelude::*;
use sealdb_crypto::{ArtifactKind, BlockSealer, CipherId, Expected, SealedReader};
use sealdb_sstable::{
    Compression, Entry, ValueKind, build_table_bytes_for_fuzz, decode_data_block_for_fuzz,
    decode_meta_block_for_fuzz, open_table_bytes_for_fuzz,
};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::Path;

fn seed_entries() -> Vec<Entry> {
    (0..40u32)
        .map(|i| {
            let kind = if i % 7 == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            entry(
                format!("seed/{i:04}").as_bytes(),
                50 - u64::from(i),
                kind,
                b"value value",
            )
        })
        .collect()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for cipher in [CipherId::None, CipherId::ChaCha20Poly1305] {
        for compression in [Compression::None, Compression::Lz4] {
            out.push(
                build_table_bytes_for_fuzz(&seed_entries(), cipher, compression).expect("seed"),
            );
        }
    }
    out
}

#[test]
fn valid_seeds_open_and_read_everything() {
    for seed in seeds() {
        assert_eq!(open_table_bytes_for_fuzz(&seed).expect("open"), 40);
    }
    let empty = build_table_bytes_for_fuzz(&[], CipherId::None, Compression::None).expect("seed");
    assert_eq!(open_table_bytes_for_fuzz(&empty).expect("open"), 0);
    assert!(open_table_bytes_for_fuzz(&[]).is_err());
}

/// Opens every block of a `none`-cipher table, lets `edit` change block `target`'s
/// plaintext, and seals the blocks again in order: a forged file whose blocks all
/// authenticate, so only the table's own decoders stand between it and a panic.
fn forge(seed: &[u8], target: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let kr = sealdb_sstable::fuzz_keyring().expect("keyring");
    let fs = CrashFs::new();
    let path = Path::new("/seed.sst");
    let mut f = fs.create_new(path).expect("create");
    f.append(seed).expect("append");
    drop(f);
    let exp = Expected {
        kind: ArtifactKind::Table,
        database_id: kr.database_id(),
        cipher: Some(CipherId::None),
    };
    let reader = SealedReader::open(&fs, path, &kr, &exp).expect("reader");
    let mut blocks: Vec<(Vec<u8>, bool)> = reader
        .blocks()
        .map(|b| {
            let (_, b) = b.expect("block");
            (b.data, b.is_final)
        })
        .collect();
    let n = blocks.len();
    edit(&mut blocks[target % n].0);
    let header = reader.header().clone();
    let sealer = BlockSealer::for_header(&kr, header.clone(), "forged").expect("sealer");
    let mut out = header.encode();
    for (data, is_final) in blocks {
        let offset = out.len() as u64;
        let mut sealed = Vec::new();
        sealer
            .seal_into(offset, is_final, &data, &mut sealed)
            .expect("seal");
        out.extend_from_slice(&sealed);
    }
    out
}

#[test]
fn an_authenticated_but_undecodable_data_block_names_the_file_and_its_offset() {
    let seed = build_table_bytes_for_fuzz(&seed_entries(), CipherId::None, Compression::None)
        .expect("seed");
    // Block 0 is the first data block; all-0xFF plaintext is no valid block.
    let forged = forge(&seed, 0, |data| data.fill(0xFF));
    let e = open_table_bytes_for_fuzz(&forged).expect_err("a corrupt data block");
    let sealdb_sstable::Error::Corruption { file, block, .. } = &e else {
        panic!("expected Corruption, got {e:?}");
    };
    assert_eq!(file, "/fuzz.sst");
    // The first block starts right after the header (64 bytes plus its extension).
    let offset = block.unwrap_or_else(|| panic!("no block offset: {e}"));
    assert!((64..forged.len() as u64).contains(&offset), "{e}");
    assert!(e.is_integrity());
    assert_eq!(e.block_offset(), Some(offset));
    assert!(
        e.to_string()
            .contains(&format!("/fuzz.sst at block offset {offset}")),
        "{e}"
    );
}

#[test]
fn forging_identity_round_trips() {
    let seed = build_table_bytes_for_fuzz(&seed_entries(), CipherId::None, Compression::None)
        .expect("seed");
    let same = forge(&seed, 0, |_| {});
    assert_eq!(open_table_bytes_for_fuzz(&same).expect("open"), 40);
}

#[test]
fn forged_footers_with_overflowing_handles_are_errors() {
    let seed = build_table_bytes_for_fuzz(&seed_entries(), CipherId::None, Compression::None)
        .expect("seed");
    let footer = usize::MAX; // `forge` takes the index modulo the block count: the last block.
    for field in [0usize, 12, 24] {
        for len in [0u32, 1, u32::MAX] {
            let forged = forge(&seed, footer, |data| {
                data[field..field + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
                data[field + 8..field + 12].copy_from_slice(&len.to_le_bytes());
            });
            assert!(open_table_bytes_for_fuzz(&forged).is_err());
        }
    }
    // A forged index whose first data block claims an offset near the end of the u64 range.
    let forged = forge(&seed, footer - 3, |data| {
        let key_len = data[0] as usize;
        let at = 1 + key_len + 8;
        data[at..at + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    });
    assert!(open_table_bytes_for_fuzz(&forged).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// Authenticated but malformed plaintext in any block (data, index, filter, properties,
    /// footer): errors, never panics.
    #[test]
    fn forged_blocks_never_panic(
        lz4 in prop::bool::ANY,
        target in 0usize..64,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        resize in prop::option::weighted(0.3, (any::<prop::sample::Index>(), 0usize..40)),
    ) {
        let compression = if lz4 { Compression::Lz4 } else { Compression::None };
        let seed = build_table_bytes_for_fuzz(&seed_entries(), CipherId::None, compression)
            .expect("seed");
        let forged = forge(&seed, target, |data| {
            for (at, b) in edits {
                if !data.is_empty() {
                    let i = at.index(data.len());
                    data[i] = b;
                }
            }
            if let Some((at, grow)) = resize {
                let cut = at.index(data.len() + 1);
                data.truncate(cut);
                data.extend(std::iter::repeat_n(0xa5, grow));
            }
        });
        let _ = open_table_bytes_for_fuzz(&forged);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_seeds_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in prop::bool::weighted(0.2),
    ) {
        let mut bytes = seeds().swap_remove(which);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = open_table_bytes_for_fuzz(&bytes);
    }

    #[test]
    fn random_blocks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_data_block_for_fuzz(&bytes);
        let _ = decode_meta_block_for_fuzz(&bytes);
        let _ = open_table_bytes_for_fuzz(&bytes);
    }
}
