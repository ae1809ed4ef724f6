//! Tamper tests for the sealed-file framing: every alteration an attacker with write access to
//! the data directory can make must end in a typed integrity error, never in wrong data.

use proptest::prelude::*;
use sealdb_crypto::{
    ArtifactKind, CipherId, DatabaseId, Error, Expected, IntegrityReason, Keyring, SealedReader,
    SealedWriter,
};
mod common;

use common::{db_fs, read_table, table_expected, write_table};
use sealdb_vfs::CrashFs;
use std::path::{Path, PathBuf};

fn expected(keyring: &Keyring, cipher: CipherId) -> Expected {
    table_expected(keyring, Some(cipher))
}

/// Reads every block in order; `Ok(blocks)` only if the whole file verified.
fn read_all(
    fs: &CrashFs,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<Vec<Vec<u8>>, Error> {
    read_table(fs, path, keyring, Some(cipher))
}

fn assert_integrity(result: Result<Vec<Vec<u8>>, Error>, what: &str) {
    match result {
        Err(Error::Integrity { .. }) => {}
        other => panic!("{what}: expected an integrity error, got {other:?}"),
    }
}

fn ciphers() -> impl Strategy<Value = CipherId> {
    prop_oneof![Just(CipherId::ChaCha20Poly1305), Just(CipherId::None)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn round_trip(blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..8), cipher in ciphers()) {
        let fs = db_fs();
        let keyring = Keyring::generate(DatabaseId([1; 16])).expect("keyring");
        let path = write_table(&fs, "t", &keyring, cipher, &blocks, true);
        prop_assert_eq!(read_all(&fs, &path, &keyring, cipher).expect("read"), blocks);
    }

    #[test]
    fn every_single_byte_change_is_detected(
        blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..4),
        flip in 1u8..=255,
    ) {
        let fs = db_fs();
        let keyring = Keyring::generate(DatabaseId([2; 16])).expect("keyring");
        let cipher = CipherId::ChaCha20Poly1305;
        let path = write_table(&fs, "t", &keyring, cipher, &blocks, true);
        let original = fs.contents(&path).expect("contents");
        for pos in 0..original.len() {
            let mut bytes = original.clone();
            bytes[pos] ^= flip;
            fs.set_contents(&path, bytes).expect("set");
            assert_integrity(read_all(&fs, &path, &keyring, cipher), &format!("byte {pos}"));
        }
    }
}

/// Splits a sealed file into its header and its raw blocks (offset, bytes).
fn raw_blocks(bytes: &[u8], tag_len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut blocks = Vec::new();
    let mut at = 64;
    let header = bytes[..at].to_vec();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let end = at + 9 + len + tag_len;
        blocks.push(bytes[at..end].to_vec());
        at = end;
    }
    (header, blocks)
}

fn three_equal_blocks() -> Vec<Vec<u8>> {
    // Equal lengths, so swapped blocks land exactly on block boundaries.
    vec![vec![b'a'; 100], vec![b'b'; 100], vec![b'c'; 100]]
}

#[test]
fn swapped_blocks_are_detected() {
    for cipher in [CipherId::ChaCha20Poly1305, CipherId::None] {
        let fs = db_fs();
        let keyring = Keyring::generate(DatabaseId([3; 16])).expect("keyring");
        let path = write_table(&fs, "t", &keyring, cipher, &three_equal_blocks(), true);
        let (header, blocks) = raw_blocks(&fs.contents(&path).expect("c"), cipher.tag_len());
        let mut swapped = header.clone();
        swapped.extend_from_slice(&blocks[1]);
        swapped.extend_from_slice(&blocks[0]);
        swapped.extend_from_slice(&blocks[2]);
        fs.set_contents(&path, swapped).expect("set");
        assert_integrity(read_all(&fs, &path, &keyring, cipher), "swap");
    }
}

#[test]
fn truncated_finalized_file_is_detected() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([4; 16])).expect("keyring");
    let cipher = CipherId::ChaCha20Poly1305;
    let path = write_table(&fs, "t", &keyring, cipher, &three_equal_blocks(), true);
    let bytes = fs.contents(&path).expect("c");
    let (header, blocks) = raw_blocks(&bytes, cipher.tag_len());
    // Cut at a block boundary: every remaining block authenticates, but the final one is gone.
    let mut cut = header.clone();
    cut.extend_from_slice(&blocks[0]);
    cut.extend_from_slice(&blocks[1]);
    fs.set_contents(&path, cut).expect("set");
    let err = read_all(&fs, &path, &keyring, cipher).expect_err("must fail");
    assert!(
        matches!(
            err,
            Error::Integrity {
                reason: IntegrityReason::Truncated,
                ..
            }
        ),
        "{err:?}"
    );
    // Cut mid-block.
    for len in [bytes.len() - 1, 64 + 10, 63] {
        fs.set_contents(&path, bytes[..len].to_vec()).expect("set");
        assert_integrity(
            read_all(&fs, &path, &keyring, cipher),
            &format!("cut at {len}"),
        );
    }
}

#[test]
fn a_non_final_block_cannot_pass_as_final() {
    // Dropping the final block and relying on the previous one: it lacks the final flag, and
    // flipping the clear flag byte breaks its tag.
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([5; 16])).expect("keyring");
    let cipher = CipherId::ChaCha20Poly1305;
    let path = write_table(&fs, "t", &keyring, cipher, &three_equal_blocks(), true);
    let (header, blocks) = raw_blocks(&fs.contents(&path).expect("c"), cipher.tag_len());
    let mut forged = header;
    forged.extend_from_slice(&blocks[0]);
    let mut second = blocks[1].clone();
    second[4] |= 1;
    forged.extend_from_slice(&second);
    fs.set_contents(&path, forged).expect("set");
    assert_integrity(read_all(&fs, &path, &keyring, cipher), "forged final flag");
}

#[test]
fn block_moved_between_files_is_detected() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([6; 16])).expect("keyring");
    let cipher = CipherId::ChaCha20Poly1305;
    let a = write_table(&fs, "a", &keyring, cipher, &three_equal_blocks(), true);
    let b = write_table(&fs, "b", &keyring, cipher, &three_equal_blocks(), true);
    let (_, blocks_a) = raw_blocks(&fs.contents(&a).expect("c"), cipher.tag_len());
    let (header_b, blocks_b) = raw_blocks(&fs.contents(&b).expect("c"), cipher.tag_len());
    let mut mixed = header_b;
    mixed.extend_from_slice(&blocks_a[0]); // same position, same plaintext, other file
    mixed.extend_from_slice(&blocks_b[1]);
    mixed.extend_from_slice(&blocks_b[2]);
    fs.set_contents(&b, mixed).expect("set");
    assert_integrity(
        read_all(&fs, &b, &keyring, cipher),
        "block from another file",
    );
}

#[test]
fn file_from_another_database_is_detected() {
    let fs = db_fs();
    let ours = Keyring::generate(DatabaseId([7; 16])).expect("keyring");
    let theirs = Keyring::generate(DatabaseId([8; 16])).expect("keyring");
    let cipher = CipherId::ChaCha20Poly1305;
    let path = write_table(&fs, "t", &theirs, cipher, &three_equal_blocks(), true);
    let err = SealedReader::open(&fs, &path, &ours, &expected(&ours, cipher)).expect_err("foreign");
    assert!(
        matches!(
            err,
            Error::Integrity {
                reason: IntegrityReason::HeaderMismatch("database id"),
                ..
            }
        ),
        "{err:?}"
    );
    // Even with the header's database id rewritten (and its crc fixed), the blocks refuse.
    let mut bytes = fs.contents(&path).expect("c");
    bytes[32..48].copy_from_slice(&[7; 16]);
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    fs.set_contents(&path, bytes).expect("set");
    assert_integrity(read_all(&fs, &path, &ours, cipher), "rewritten database id");
}

#[test]
fn downgrade_to_plaintext_header_is_refused() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([9; 16])).expect("keyring");
    let path = write_table(
        &fs,
        "t",
        &keyring,
        CipherId::None,
        &three_equal_blocks(),
        true,
    );
    let err = SealedReader::open(
        &fs,
        &path,
        &keyring,
        &expected(&keyring, CipherId::ChaCha20Poly1305),
    )
    .expect_err("plaintext file in an encrypted database");
    assert!(matches!(
        err,
        Error::Integrity {
            reason: IntegrityReason::HeaderMismatch("cipher"),
            ..
        }
    ));
}

#[test]
fn wrong_data_key_fails_authentication() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([10; 16])).expect("keyring");
    let other = Keyring::generate(DatabaseId([10; 16])).expect("keyring");
    let cipher = CipherId::ChaCha20Poly1305;
    let path = write_table(&fs, "t", &keyring, cipher, &three_equal_blocks(), true);
    assert_integrity(read_all(&fs, &path, &other, cipher), "other data key");
}

#[test]
fn random_access_by_handle_and_no_write_after_final() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([11; 16])).expect("keyring");
    let path = PathBuf::from("/db/h");
    let mut w = SealedWriter::create(
        &fs,
        &path,
        &keyring,
        ArtifactKind::Table,
        CipherId::ChaCha20Poly1305,
    )
    .expect("create");
    let h1 = w.append_block(b"first").expect("a");
    let h2 = w.append_block(b"second").expect("a");
    let h3 = w.finish(b"footer").expect("f");
    assert!(w.append_block(b"late").is_err());
    let r = SealedReader::open(
        &fs,
        &path,
        &keyring,
        &expected(&keyring, CipherId::ChaCha20Poly1305),
    )
    .expect("open");
    assert_eq!(r.read_block(h2).expect("h2").data, b"second");
    assert_eq!(r.read_block(h1).expect("h1").data, b"first");
    let last = r.read_block(h3).expect("h3");
    assert!(last.is_final);
    // A handle that points into the middle of a block is refused.
    let bogus = sealdb_crypto::BlockHandle {
        offset: h1.offset + 1,
        len: h1.len,
    };
    assert!(matches!(r.read_block(bogus), Err(Error::Integrity { .. })));
    // Creating over an existing file is refused: sealed files are written once.
    assert!(
        SealedWriter::create(
            &fs,
            &path,
            &keyring,
            ArtifactKind::Table,
            CipherId::ChaCha20Poly1305
        )
        .is_err()
    );
}

#[test]
fn ciphertext_does_not_contain_plaintext() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([12; 16])).expect("keyring");
    let secret = b"very-secret-user-key-0123456789".to_vec();
    let sealed = write_table(
        &fs,
        "s",
        &keyring,
        CipherId::ChaCha20Poly1305,
        std::slice::from_ref(&secret),
        true,
    );
    let plain = write_table(
        &fs,
        "p",
        &keyring,
        CipherId::None,
        std::slice::from_ref(&secret),
        true,
    );
    let contains = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret.as_slice());
    assert!(!contains(&fs.contents(&sealed).expect("c")));
    assert!(contains(&fs.contents(&plain).expect("c")));
}
