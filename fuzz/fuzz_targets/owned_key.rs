//! The owned master key file (`<keystore>/owned-<id>.key`): its decoder over raw bytes, for a
//! fixed database id and for the id the bytes themselves name (so the key extraction behind
//! the id check is reached); a file that decodes must re-encode to itself. In structure-aware
//! mode (first byte 0xA5) it encodes an input-chosen key file, damages it at one input-chosen
//! point and checks that decoding yields exactly the key written or, for any damage, an error
//! (a wrong master key would wrap new data keys that nothing can unwrap later).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::fuzz_entry::{decode_owned_key_file, encode_owned_key_file};
use sealdb_crypto::{DatabaseId, SecretKey};
use sealdb_fuzz::{Input, Mutation, DB_ID, MODE_STRUCTURED};

fuzz_target!(|data: &[u8]| {
    if let Some((&MODE_STRUCTURED, rest)) = data.split_first() {
        structured(rest);
        return;
    }
    let named = data
        .get(8..24)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(DatabaseId);
    for id in [Some(DB_ID), named].into_iter().flatten() {
        if let Ok(key) = decode_owned_key_file(data, id) {
            assert_eq!(
                encode_owned_key_file(id, &key).as_slice(),
                data,
                "re-encoding differs"
            );
        }
    }
});

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut id = [0u8; 16];
    for (d, b) in id.iter_mut().zip(inp.bytes(16)) {
        *d = *b;
    }
    let id = DatabaseId(id);
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(inp.bytes(32)) {
        *k = *b;
    }
    let mut mspec = Input::new(inp.bytes(6));
    let mut bytes = encode_owned_key_file(id, &SecretKey::from_bytes(key)).to_vec();
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let got = decode_owned_key_file(&bytes, id);
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    if intact {
        assert_eq!(*got.expect("intact key file").expose(), key);
    } else {
        // A crc32 over all but itself catches any one damaged byte; the length is fixed.
        assert!(got.is_err(), "damaged key file ({mutation:?}) accepted");
    }
}
