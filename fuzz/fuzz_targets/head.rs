//! The head record (`<keystore>/head-<id>-<hash>.seal`: where every chain of the database must
//! end): the record decoder over raw plaintext (a record that decodes must re-encode to
//! itself) and the engine's reader of the sealed file over raw bytes, in fix-up mode (first
//! byte 0x5A) and in re-seal mode (first byte 0x3C, the block sealed from input plaintext). In
//! structure-aware mode (first byte 0xA5) it builds a valid record from the input (the
//! encoding is mirrored from crates/engine/src/head.rs), seals it with the engine's writer,
//! damages the file at one input-chosen point, and reading must yield exactly the record or,
//! for any damage, an error (a wrong head either refuses a good database or lets a cut chain
//! through).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb::fuzz_entry::{decode_head, head_file, read_head};
use sealdb_crypto::ArtifactKind;
use sealdb_fuzz::{
    fix_header_crc, keyring, reseal, Input, Mutation, MODE_FIXUP, MODE_RESEAL, MODE_STRUCTURED,
};
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_FIXUP, rest)) => {
            let mut v = rest.to_vec();
            fix_header_crc(&mut v);
            let _ = read_head(&v, keyring());
        }
        Some((&MODE_RESEAL, rest)) => {
            let _ = read_head(&reseal(rest, keyring(), ArtifactKind::Meta), keyring());
        }
        _ => {
            if let Ok(again) = decode_head(data) {
                assert_eq!(again, data, "head record does not re-encode to itself");
            }
            let _ = read_head(data, keyring());
        }
    }
});

/// A valid record: tag, manifest position, KEYS generation, WAL segment, durable sequence,
/// clean flag and end, then streams by ascending keyspace.
fn record(inp: &mut Input<'_>) -> Vec<u8> {
    let mut b = b"SDBHEAD1".to_vec();
    for _ in 0..5 {
        b.extend_from_slice(&inp.u64().to_le_bytes());
    }
    let clean = inp.u8() & 1;
    b.push(clean);
    let end = if clean == 1 { inp.u64() } else { 0 };
    b.extend_from_slice(&end.to_le_bytes());
    let n = usize::from(inp.u8() % 4);
    let keyspaces: BTreeSet<u32> = (0..n).map(|_| u32::from(inp.u8())).collect();
    b.extend_from_slice(&(keyspaces.len() as u32).to_le_bytes());
    for ks in keyspaces {
        b.extend_from_slice(&ks.to_le_bytes());
        for _ in 0..3 {
            b.extend_from_slice(&inp.u64().to_le_bytes());
        }
    }
    b
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut mspec = Input::new(inp.bytes(6));
    let want = record(&mut inp);
    assert_eq!(decode_head(&want).expect("a valid record decodes"), want);
    let mut bytes = head_file(keyring(), &want).expect("write head");
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let got = read_head(&bytes, keyring());
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    if intact {
        assert_eq!(got.expect("intact head"), want);
    } else {
        assert!(got.is_err(), "damaged head ({mutation:?}) accepted");
    }
}
