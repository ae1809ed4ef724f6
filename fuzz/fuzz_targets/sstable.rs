//! SSTable decoders: a data block's plaintext, each metadata block, and a whole table file
//! opened, iterated and verified (under both ciphers) from arbitrary bytes. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealdb_sstable::decode_data_block_for_fuzz(data);
    let _ = sealdb_sstable::decode_meta_block_for_fuzz(data);
    let _ = sealdb_sstable::open_table_bytes_for_fuzz(data);
});
