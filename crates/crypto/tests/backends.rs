//! The two ChaCha20-Poly1305 implementations (the `chacha20poly1305` reference and ring) must
//! write the same bytes and open each other's output; AES-256-GCM files must round-trip and
//! refuse tampering; a header naming an unknown or unexpected cipher must be a typed error.

#![cfg(feature = "ring")]

use proptest::prelude::*;
use sealdb_crypto::{
    ArtifactKind, BlockSealer, CipherId, DatabaseId, Error, FileCipher, IntegrityReason, Keyring,
    SealBackend, SecretKey,
};
mod common;

use common::{db_fs, read_table, write_table};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::Path;

fn cipher(backend: SealBackend, key: [u8; 32]) -> FileCipher {
    FileCipher::new(
        CipherId::ChaCha20Poly1305,
        backend,
        &SecretKey::from_bytes(key),
    )
    .expect("cipher")
}

/// Plaintext lengths: the edges, a WAL commit frame, a table block, and anything up to 8 KiB.
fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(0usize),
        Just(1usize),
        Just(170usize),
        Just(4096usize),
        0usize..=8192,
    ]
    .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn reference_and_fast_chacha_are_byte_identical(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        ad in proptest::collection::vec(any::<u8>(), 0..256),
        plain in plaintext(),
        flip in any::<(usize, u8)>(),
        flip_ad in any::<bool>(),
    ) {
        let reference = cipher(SealBackend::Reference, key);
        let fast = cipher(SealBackend::Fast, key);

        let mut by_ref = plain.clone();
        let tag_ref = reference.seal_in_place(&nonce, &ad, &mut by_ref).expect("seal ref");
        let mut by_fast = plain.clone();
        let tag_fast = fast.seal_in_place(&nonce, &ad, &mut by_fast).expect("seal fast");
        prop_assert_eq!(&by_ref, &by_fast, "ciphertexts differ");
        prop_assert_eq!(tag_ref, tag_fast, "tags differ");
        prop_assert!(plain.len() < 16 || by_ref != plain, "not encrypted");

        // Each opens the other's output.
        let mut opened = by_fast.clone();
        reference.open_in_place(&nonce, &ad, &mut opened, &tag_fast).expect("ref opens fast");
        prop_assert_eq!(&opened, &plain);
        let mut opened = by_ref.clone();
        fast.open_in_place(&nonce, &ad, &mut opened, &tag_ref).expect("fast opens ref");
        prop_assert_eq!(&opened, &plain);

        // One flipped bit (in the ciphertext, the tag or the AD) is refused by both.
        let (pos, bit) = flip;
        let mask = 1u8 << (bit % 8);
        let (mut ct, mut tag, mut ad2) = (by_ref.clone(), tag_ref, ad.clone());
        if flip_ad && !ad2.is_empty() {
            let i = pos % ad2.len();
            ad2[i] ^= mask;
        } else {
            let i = pos % (ct.len() + tag.len());
            if i < ct.len() {
                ct[i] ^= mask;
            } else {
                tag[i - ct.len()] ^= mask;
            }
        }
        for c in [&reference, &fast] {
            let mut buf = ct.clone();
            let r = c.open_in_place(&nonce, &ad2, &mut buf, &tag);
            prop_assert!(
                matches!(r, Err(Error::Integrity { reason: IntegrityReason::AuthenticationFailed, .. })),
                "{:?} accepted a tampered block: {:?}", c, r
            );
        }
    }

    #[test]
    fn sealed_blocks_are_identical_under_both_backends(
        plain in plaintext(),
        offset in 64u64..(1 << 40),
        is_final in any::<bool>(),
    ) {
        let mut reference = Keyring::generate(DatabaseId([3; 16])).expect("keyring");
        reference.set_seal_backend(SealBackend::Reference);
        let mut fast = reference.clone();
        fast.set_seal_backend(SealBackend::Fast);
        let a = BlockSealer::for_new_file(
            &reference, ArtifactKind::Wal, CipherId::ChaCha20Poly1305, Vec::new(), "a",
        ).expect("sealer");
        let b = BlockSealer::for_header(&fast, a.header().clone(), "b").expect("sealer");
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let ha = a.seal_into(offset, is_final, &plain, &mut out_a).expect("seal");
        let hb = b.seal_into(offset, is_final, &plain, &mut out_b).expect("seal");
        prop_assert_eq!(ha, hb);
        prop_assert_eq!(&out_a, &out_b);
        let block = b.open(offset, out_a).expect("fast opens reference");
        prop_assert_eq!(&block.data, &plain);
        prop_assert_eq!(block.is_final, is_final);
        let block = a.open(offset, out_b).expect("reference opens fast");
        prop_assert_eq!(&block.data, &plain);
    }
}

/// NIST GCM spec test case 16 (AES-256, 96-bit IV, 20 bytes of AAD): the `Aes256Gcm` cipher id
/// really is standard AES-256-GCM, so its files can be audited with any implementation.
#[test]
fn aes256gcm_matches_the_gcm_spec_test_vector() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
    let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
        .try_into()
        .expect("key");
    let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().expect("nonce");
    let ad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let plain = hex(concat!(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    ));
    let expected_ct = hex(concat!(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa",
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    ));
    let expected_tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
    for backend in [SealBackend::Reference, SealBackend::Fast] {
        let gcm = FileCipher::new(CipherId::Aes256Gcm, backend, &SecretKey::from_bytes(key))
            .expect("gcm");
        let mut buf = plain.clone();
        let tag = gcm.seal_in_place(&nonce, &ad, &mut buf).expect("seal");
        assert_eq!(buf, expected_ct, "{backend:?}");
        assert_eq!(tag.to_vec(), expected_tag, "{backend:?}");
        gcm.open_in_place(&nonce, &ad, &mut buf, &tag)
            .expect("open");
        assert_eq!(buf, plain);
    }
}

fn file_bytes(fs: &CrashFs, path: &Path) -> Vec<u8> {
    let f = fs.open_read(path).expect("open");
    let mut buf = vec![0u8; f.len() as usize];
    f.read_exact_at(&mut buf, 0).expect("read");
    buf
}

fn rewrite(fs: &CrashFs, path: &Path, bytes: &[u8]) {
    fs.remove_file(path).expect("remove");
    let mut f = fs.create_new(path).expect("create");
    f.append(bytes).expect("write");
    f.sync_data().expect("sync");
}

#[test]
fn an_aes256gcm_file_reopens_and_tampering_is_caught() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([5; 16])).expect("keyring");
    let blocks: [&[u8]; 3] = [b"first block of secrets", &[0x42; 4096], b"the final one"];
    let path = write_table(
        &fs,
        &format!("{}.sst", CipherId::Aes256Gcm.name()),
        &keyring,
        CipherId::Aes256Gcm,
        &blocks,
        true,
    );

    let header = sealdb_crypto::sealed::read_file_header(&fs, &path).expect("header");
    assert_eq!(header.cipher, CipherId::Aes256Gcm);
    let bytes = file_bytes(&fs, &path);
    assert_eq!(bytes[11], 2, "cipher byte of AES-256-GCM");
    assert!(
        !bytes.windows(22).any(|w| w == b"first block of secrets"),
        "plaintext on disk"
    );

    let read = read_table(&fs, &path, &keyring, Some(CipherId::Aes256Gcm)).expect("reopen");
    assert_eq!(read, blocks.map(<[u8]>::to_vec));
    // Either ChaCha20-Poly1305 backend in the reader does not matter for a GCM file.
    let mut reference = keyring.clone();
    reference.set_seal_backend(SealBackend::Reference);
    assert_eq!(
        read_table(&fs, &path, &reference, Some(CipherId::Aes256Gcm)).expect("reopen"),
        read
    );

    // A reader expecting the database's ChaCha20-Poly1305 refuses the header outright.
    let err =
        read_table(&fs, &path, &keyring, Some(CipherId::ChaCha20Poly1305)).expect_err("cipher");
    assert!(
        matches!(
            err,
            Error::Integrity {
                reason: IntegrityReason::HeaderMismatch("cipher"),
                ..
            }
        ),
        "{err:?}"
    );

    // A bit flipped in the body of each block, and in each tag, is refused.
    let first = header.encoded_len() as usize;
    let second = first + 9 + blocks[0].len() + 16;
    for at in [
        first + 9,
        first + 9 + blocks[0].len(),
        second + 9 + 100,
        bytes.len() - 1,
    ] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        rewrite(&fs, &path, &bad);
        let err =
            read_table(&fs, &path, &keyring, Some(CipherId::Aes256Gcm)).expect_err("tampered");
        assert!(
            matches!(
                err,
                Error::Integrity {
                    reason: IntegrityReason::AuthenticationFailed,
                    ..
                }
            ),
            "byte {at}: {err:?}"
        );
    }
    // Relabelling the file as ChaCha20-Poly1305 (header crc fixed up) does not open it either.
    let mut relabelled = bytes.clone();
    relabelled[11] = CipherId::ChaCha20Poly1305 as u8;
    let crc = crc32(&relabelled[..60]);
    relabelled[60..64].copy_from_slice(&crc.to_le_bytes());
    rewrite(&fs, &path, &relabelled);
    let err = read_table(&fs, &path, &keyring, None).expect_err("relabelled");
    assert!(
        matches!(
            err,
            Error::Integrity {
                reason: IntegrityReason::AuthenticationFailed,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unknown_cipher_id_is_a_typed_error() {
    let fs = db_fs();
    let keyring = Keyring::generate(DatabaseId([6; 16])).expect("keyring");
    let path = write_table(
        &fs,
        "x.sst",
        &keyring,
        CipherId::ChaCha20Poly1305,
        &[b"x"],
        true,
    );
    let mut bytes = file_bytes(&fs, &path);
    for id in [3u8, 0x7f, 0xff] {
        bytes[11] = id;
        let crc = crc32(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        rewrite(&fs, &path, &bytes);
        let err = read_table(&fs, &path, &keyring, None).expect_err("unknown cipher");
        assert!(
            matches!(
                err,
                Error::Integrity {
                    reason: IntegrityReason::UnknownHeaderField("cipher"),
                    ..
                }
            ),
            "cipher byte {id}: {err:?}"
        );
        assert!(CipherId::from_u8(id).is_none());
    }
    assert_eq!(CipherId::from_u8(2), Some(CipherId::Aes256Gcm));
    assert_eq!(CipherId::parse("aes256gcm"), Some(CipherId::Aes256Gcm));
    assert_eq!(CipherId::parse("aes-256-gcm"), Some(CipherId::Aes256Gcm));
    assert_eq!(CipherId::Aes256Gcm.tag_len(), 16);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// A block is exactly what `docs/format.md` describes, recomputed here from the primitives:
/// the HKDF file key (ChaCha20-Poly1305's info unchanged since before cipher agility, so old
/// files keep their keys; AES-256-GCM's info ends in its cipher byte), the prefix, the 109-byte
/// AD, the offset nonce, then ciphertext and tag.
#[test]
fn blocks_follow_the_documented_construction() {
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use hkdf::Hkdf;
    use sha2::{Digest, Sha256};

    let dek = [0x11u8; 32];
    let database_id = DatabaseId([0x22; 16]);
    let mut versions = std::collections::BTreeMap::new();
    versions.insert(1, SecretKey::from_bytes(dek));
    let keyring = Keyring::new(database_id, versions, 1).expect("keyring");
    let plain = b"a commit frame of a few dozen bytes, sealed by the book".to_vec();

    for cipher in [CipherId::ChaCha20Poly1305, CipherId::Aes256Gcm] {
        for backend in [SealBackend::Reference, SealBackend::Fast] {
            let mut keyring = keyring.clone();
            keyring.set_seal_backend(backend);
            let sealer =
                BlockSealer::for_new_file(&keyring, ArtifactKind::Wal, cipher, Vec::new(), "x")
                    .expect("sealer");
            let header = sealer.header().encode();
            assert_eq!(header.len(), 64);
            let offset = header.len() as u64;
            let mut out = Vec::new();
            sealer
                .seal_into(offset, true, &plain, &mut out)
                .expect("seal");

            let mut info = b"sealdb file key v1\0".to_vec();
            info.push(ArtifactKind::Wal as u8);
            info.extend_from_slice(&database_id.0);
            if cipher == CipherId::Aes256Gcm {
                info.push(2);
            }
            let mut file_key = [0u8; 32];
            Hkdf::<Sha256>::new(Some(&header[16..32]), &dek)
                .expand(&info, &mut file_key)
                .expect("hkdf");

            let mut prefix = (plain.len() as u32).to_le_bytes().to_vec();
            prefix.push(1); // final
            prefix.extend_from_slice(
                &crc32(&[&offset.to_le_bytes()[..], &prefix[..5]].concat()).to_le_bytes(),
            );
            let mut ad = header[..60].to_vec();
            ad.extend_from_slice(&Sha256::digest(b""));
            ad.extend_from_slice(&offset.to_le_bytes());
            ad.extend_from_slice(&prefix);
            assert_eq!(ad.len(), 109);
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&offset.to_le_bytes());

            let mut body = plain.clone();
            let tag: Vec<u8> = match cipher {
                CipherId::ChaCha20Poly1305 => {
                    chacha20poly1305::ChaCha20Poly1305::new(&file_key.into())
                        .encrypt_inout_detached(&nonce.into(), &ad, body.as_mut_slice().into())
                        .expect("chacha")
                        .to_vec()
                }
                _ => ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &file_key).expect("key"),
                )
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::from(&ad),
                    &mut body,
                )
                .expect("gcm")
                .as_ref()
                .to_vec(),
            };
            let expected = [prefix, body, tag].concat();
            assert_eq!(out, expected, "{cipher:?} via {backend:?}");
        }
    }
}
