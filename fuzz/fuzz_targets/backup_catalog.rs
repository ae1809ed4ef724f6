//! The backup catalogue decoder (the plaintext of a catalogue's sealed block). Must never
//! panic or allocate from an unchecked count.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealdb::decode_catalog_for_fuzz(data);
});
