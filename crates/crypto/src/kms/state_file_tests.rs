//! Tests of the `kms.state` encoding and its refusal of damaged files.

use super::codec::{MAGIC, decode_state, decode_state_for_fuzz, encode_state};
use super::state::{Lifecycle, STATE_FILE};
use super::store::LocalKms;
use super::tests::tmp;
use crate::KeyProvider;
use crate::{Error, IntegrityReason, Result};
fn small_state_bytes() -> Result<Vec<u8>> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("a")?;
    kms.create_key("b")?;
    kms.rotate("b")?;
    kms.schedule_deletion("a", 3)?;
    kms.create_key("c")?;
    kms.disable("c")?;
    kms.create_key("d")?;
    kms.schedule_deletion("d", 1)?;
    kms.destroy("d", true)?;
    std::fs::read(dir.path().join(STATE_FILE)).map_err(|e| Error::io("read", e))
}

#[test]
fn state_encoding_round_trips() -> Result<()> {
    let bytes = small_state_bytes()?;
    assert_eq!(decode_state_for_fuzz(&bytes)?, 4);
    let state = decode_state(&bytes, "t")?;
    assert_eq!(encode_state(&state).as_slice(), bytes.as_slice());
    assert_eq!(bytes.get(..8), Some(MAGIC.as_slice()));
    // Layout check: 4 keys, 1-byte names; versions 1 + 2 + 1 + 0 (destroyed).
    assert_eq!(
        bytes.len(),
        8 + 4 + 4 * (2 + 1 + 8 + 1 + 8 + 4) + 4 * 32 + 4
    );
    let d = state.keys.get("d").expect("d");
    assert_eq!((d.lifecycle, d.version_count), (Lifecycle::Destroyed, 1));
    assert!(d.materials.is_empty());
    Ok(())
}

#[test]
fn every_corruption_is_a_typed_error() -> Result<()> {
    let good = small_state_bytes()?;
    for pos in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            if let Some(b) = bad.get_mut(pos) {
                *b ^= mask;
            }
            match decode_state_for_fuzz(&bad) {
                Err(Error::Integrity {
                    block: None,
                    reason:
                        IntegrityReason::BadMagic
                        | IntegrityReason::HeaderChecksum
                        | IntegrityReason::Malformed(_),
                    ..
                }) => {}
                other => panic!("byte {pos} ^ {mask:#x}: got {other:?}"),
            }
        }
    }
    for len in 0..good.len() {
        assert!(
            matches!(
                decode_state_for_fuzz(good.get(..len).unwrap_or_default()),
                Err(Error::Integrity { .. })
            ),
            "truncated to {len}"
        );
    }
    // And through the file: a corrupted state file makes every call fail cleanly.
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    let path = dir.path().join(STATE_FILE);
    let mut bad = good.clone();
    if let Some(b) = bad.get_mut(20) {
        *b ^= 0x10;
    }
    std::fs::write(&path, &bad).map_err(|e| Error::io(&path, e))?;
    assert!(matches!(kms.list(), Err(Error::Integrity { .. })));
    assert!(matches!(
        kms.provider("b").check(),
        Err(Error::Integrity { .. })
    ));
    Ok(())
}

/// Re-seals `body` (everything after the magic, before the crc) with a valid crc, so the
/// structural checks behind the crc are exercised.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn key_bytes(name: &[u8], state: u8, deletion_at: u64, versions: u32, stored: usize) -> Vec<u8> {
    let mut k = Vec::new();
    k.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
    k.extend_from_slice(name);
    k.extend_from_slice(&5u64.to_le_bytes());
    k.push(state);
    k.extend_from_slice(&deletion_at.to_le_bytes());
    k.extend_from_slice(&versions.to_le_bytes());
    k.extend(std::iter::repeat_n(7u8, 32 * stored));
    k
}

fn with_count(count: u32, keys: &[Vec<u8>]) -> Vec<u8> {
    let mut body = count.to_le_bytes().to_vec();
    for k in keys {
        body.extend_from_slice(k);
    }
    sealed(&body)
}

#[test]
fn structurally_bad_states_behind_a_valid_crc() {
    let ok = key_bytes(b"k", 0, 0, 1, 1);
    let single = std::slice::from_ref(&ok);
    assert_eq!(decode_state_for_fuzz(&with_count(1, single)).ok(), Some(1));
    let mut trailing = ok.clone();
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge key count", with_count(u32::MAX, &[])),
        ("count over limit", with_count(10_001, &[])),
        ("count beyond bytes", with_count(2, single)),
        ("duplicate", with_count(2, &[ok.clone(), ok.clone()])),
        ("trailing", with_count(1, &[trailing])),
        ("empty name", with_count(1, &[key_bytes(b"", 0, 0, 1, 1)])),
        ("bad name", with_count(1, &[key_bytes(b"a/b", 0, 0, 1, 1)])),
        (
            "non-utf8 name",
            with_count(1, &[key_bytes(&[0xff, 0xfe], 0, 0, 1, 1)]),
        ),
        (
            "long name",
            with_count(1, &[key_bytes(&[b'a'; 129], 0, 0, 1, 1)]),
        ),
        (
            "unknown state",
            with_count(1, &[key_bytes(b"k", 4, 0, 1, 1)]),
        ),
        (
            "stray deletion",
            with_count(1, &[key_bytes(b"k", 1, 9, 1, 1)]),
        ),
        ("no versions", with_count(1, &[key_bytes(b"k", 0, 0, 0, 0)])),
        (
            "versions over limit",
            with_count(1, &[key_bytes(b"k", 0, 0, 10_001, 0)]),
        ),
        (
            "huge versions",
            with_count(1, &[key_bytes(b"k", 0, 0, u32::MAX, 0)]),
        ),
        (
            "materials missing",
            with_count(1, &[key_bytes(b"k", 0, 0, 3, 2)]),
        ),
        (
            "destroyed with materials",
            with_count(1, &[key_bytes(b"k", 3, 0, 1, 1)]),
        ),
    ];
    for (what, bytes) in cases {
        match decode_state_for_fuzz(&bytes) {
            Err(Error::Integrity {
                reason: IntegrityReason::Malformed(_),
                ..
            }) => {}
            other => panic!("{what}: got {other:?}"),
        }
    }
    // Destroyed keys store no materials but keep their count; pending keys their date.
    let fine = with_count(
        2,
        &[key_bytes(b"d", 3, 0, 4, 0), key_bytes(b"p", 2, 99, 2, 2)],
    );
    assert_eq!(decode_state_for_fuzz(&fine).ok(), Some(2));
}

proptest::proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_state_for_fuzz(&bytes);
        let _ = decode_state_for_fuzz(&sealed(&bytes));
    }
}
