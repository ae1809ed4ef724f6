//! The database's `CURRENT` file (which manifest is live): the real reader over raw bytes, in
//! fix-up mode (first byte 0x5A, header crc recomputed) and in re-seal mode (first byte 0x3C,
//! the block sealed from input plaintext, so the tag and number decoding is reached). In
//! structure-aware mode (first byte 0xA5) the real writer names an input-chosen manifest, the
//! file is damaged at one input-chosen point, and reading must yield exactly that number or,
//! for any damage, an error (a wrong number opens an older or a missing manifest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb::fuzz_entry::{current_file, read_current};
use sealdb_crypto::ArtifactKind;
use sealdb_fuzz::{
    fix_header_crc, keyring, reseal, Input, Mutation, MODE_FIXUP, MODE_RESEAL, MODE_STRUCTURED,
};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_FIXUP, rest)) => {
            let mut v = rest.to_vec();
            fix_header_crc(&mut v);
            let _ = read_current(&v, keyring());
        }
        Some((&MODE_RESEAL, rest)) => {
            let _ = read_current(&reseal(rest, keyring(), ArtifactKind::Meta), keyring());
        }
        _ => {
            let _ = read_current(data, keyring());
        }
    }
});

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let number = inp.u64();
    let mut mspec = Input::new(inp.bytes(6));
    let mut bytes = current_file(keyring(), number).expect("write CURRENT");
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let got = read_current(&bytes, keyring());
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    if intact {
        assert_eq!(got.expect("intact CURRENT"), number);
    } else {
        assert!(
            got.is_err(),
            "damaged CURRENT ({mutation:?}) accepted: {got:?}"
        );
    }
}
