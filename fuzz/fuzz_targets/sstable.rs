//! SSTable decoders: a data block's plaintext, each metadata block, and a whole table file
//! opened, iterated and verified (under both ciphers) from arbitrary bytes. In re-seal mode
//! (first byte 0x3C) the table's blocks are sealed from the input first (under the sstable
//! crate's fuzz keyring), so the block decoders are reached through the real reader. Must
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::{ArtifactKind, Keyring};
use sealdb_fuzz::{reseal, MODE_RESEAL};
use std::sync::OnceLock;

fn table_keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| sealdb_sstable::fuzz_keyring().expect("sstable fuzz keyring"))
}

fuzz_target!(|data: &[u8]| {
    if let Some((&MODE_RESEAL, rest)) = data.split_first() {
        let _ = sealdb_sstable::open_table_bytes_for_fuzz(&reseal(
            rest,
            table_keyring(),
            ArtifactKind::Table,
        ));
        return;
    }
    let _ = sealdb_sstable::decode_data_block_for_fuzz(data);
    let _ = sealdb_sstable::decode_meta_block_for_fuzz(data);
    let _ = sealdb_sstable::open_table_bytes_for_fuzz(data);
});
