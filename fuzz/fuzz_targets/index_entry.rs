//! Secondary-index decoders: entry keys (and their re-encoding, which must round-trip), index
//! values, persisted definitions and continuation tokens. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = sealdb_index::decode_entry_key(data) {
        if let Ok(v) = e.index_value() {
            // A key that decodes re-encodes to exactly itself.
            assert_eq!(
                sealdb_index::entry_key(&e.partition, &v, &e.primary_key),
                data
            );
        }
    }
    let _ = sealdb_index::IndexValue::decode(data);
    let _ = sealdb_index::IndexDefinition::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = sealdb_index::ContinuationToken::parse(s);
        let _ = sealdb_index::IndexValue::parse_cli(s);
    }
    let _ = sealdb::decode_index_entry_for_fuzz(data);
});
