//! The local KMS state file decoder (`kms.state`): `decode_state_for_fuzz` over untrusted
//! bytes. In structure-aware mode (first byte 0xA5) the rest is wrapped as
//! `magic ‖ rest ‖ crc32` so the structural checks behind the checksum are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::kms::decode_state_for_fuzz;
use sealdb_fuzz::MODE_STRUCTURED;

/// `kms.state` magic (crates/crypto/src/kms/codec.rs).
const MAGIC: &[u8; 8] = b"SDBKMS01";
/// Smallest encoding of one key record: name length, 1-byte name, created, state, deletion
/// date, version count.
const MIN_ENCODED_KEY_LEN: usize = 2 + 1 + 8 + 1 + 8 + 4;

fuzz_target!(|data: &[u8]| {
    let owned;
    let bytes = match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => {
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(rest);
            let crc = crc32fast::hash(&v);
            v.extend_from_slice(&crc.to_le_bytes());
            owned = v;
            owned.as_slice()
        }
        _ => data,
    };
    if let Ok(keys) = decode_state_for_fuzz(bytes) {
        // Every key takes room in the image: the count cannot outrun the bytes.
        assert!(keys <= sealdb_crypto::kms::MAX_KEYS);
        assert!(keys * MIN_ENCODED_KEY_LEN + MAGIC.len() + 8 <= bytes.len());
    }
});
