//! Change-stream decoders: record frames, and a whole stream segment recovered from arbitrary
//! bytes (both ciphers) through the real `StreamLog::open`. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::{CipherId, DatabaseId, Keyring, SecretKey};
use sealdb_stream::{StartAt, StreamLog, StreamOptions};
use sealdb_vfs::{CrashFs, FileSystem};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let _ = sealdb_stream::decode_records_for_fuzz(data);
    let mut versions = BTreeMap::new();
    versions.insert(1, SecretKey::from_bytes([7; 32]));
    let Ok(keyring) = Keyring::new(DatabaseId([0; 16]), versions, 1) else { return };
    for cipher in [CipherId::None, CipherId::ChaCha20Poly1305] {
        let fs = CrashFs::new();
        let dir = Path::new("/s");
        if fs.create_dir_all(dir).is_err() {
            return;
        }
        let Ok(mut f) = fs.create_new(&dir.join(sealdb_stream::segment_file_name(1))) else { return };
        if f.append(data).is_err() {
            return;
        }
        drop(f);
        let opts = StreamOptions { cipher, ..StreamOptions::default() };
        if let Ok((log, _)) = StreamLog::open(Arc::new(fs), dir, keyring.clone(), opts) {
            let _ = log.read(StartAt::TrimHorizon, 1000, 1 << 20);
        }
    }
});
