//! The legacy rollback counter (`<keystore>/rollback-<id>-<hash>.ctr`: the manifest position
//! earlier versions recorded outside the data directory; read once when a database is first
//! opened with the head record, then removed): its decoder over raw bytes. A counter that
//! decodes must be exactly the encoding of what it decoded to (mirrored here: magic
//! `SDBRBCK1`, manifest number, edit groups, crc32 of the rest, all little-endian). In
//! structure-aware mode (first byte 0xA5) it encodes an input-chosen position, damages it at
//! one input-chosen point and checks that decoding yields exactly that position or, for any
//! damage, an error (a wrong counter either refuses a good database as rolled back or lets a
//! rolled-back one through).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb::fuzz_entry::decode_legacy_counter;
use sealdb_fuzz::{Input, Mutation, MODE_STRUCTURED};

fn encode(pos: (u64, u64)) -> Vec<u8> {
    let mut b = b"SDBRBCK1".to_vec();
    b.extend_from_slice(&pos.0.to_le_bytes());
    b.extend_from_slice(&pos.1.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fuzz_target!(|data: &[u8]| {
    if let Some((&MODE_STRUCTURED, rest)) = data.split_first() {
        structured(rest);
        return;
    }
    if let Ok(pos) = decode_legacy_counter(data) {
        assert_eq!(encode(pos), data, "re-encoding differs");
    }
});

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let pos = (inp.u64(), inp.u64());
    let mut mspec = Input::new(inp.bytes(6));
    let mut bytes = encode(pos);
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let got = decode_legacy_counter(&bytes);
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    if intact {
        assert_eq!(got.expect("intact counter"), pos);
    } else {
        // A crc32 over all but itself catches any one damaged byte; the length is fixed.
        assert!(got.is_err(), "damaged counter ({mutation:?}) accepted");
    }
}
