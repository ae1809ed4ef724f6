//! Change-stream decoders: record frames, and a whole stream segment recovered from arbitrary
//! bytes (both ciphers) through the real `StreamLog::open`, then read. In re-seal mode (first
//! byte 0x3C) the segment's blocks are sealed from the input first, so the frame and record
//! decoders are reached through the real reader. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::ArtifactKind;
use sealdb_fuzz::{keyring, put_file, reseal, CIPHERS, MODE_RESEAL};
use sealdb_stream::{RecoveryPlan, StartAt, StreamId, StreamLog, StreamOptions};
use sealdb_vfs::CrashFs;
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let resealed;
    let file = match data.split_first() {
        Some((&MODE_RESEAL, rest)) => {
            resealed = reseal(rest, keyring(), ArtifactKind::Stream);
            resealed.as_slice()
        }
        _ => {
            let _ = sealdb_stream::decode_records_for_fuzz(data);
            data
        }
    };
    for cipher in CIPHERS {
        let fs = CrashFs::new();
        let dir = Path::new("/s");
        put_file(&fs, &dir.join(sealdb_stream::segment_file_name(1)), file);
        let opts = StreamOptions {
            cipher,
            ..StreamOptions::default()
        };
        // The stream id the fuzz inputs' start frames should name (all zeros).
        let id = StreamId::default();
        let plan = RecoveryPlan::new(id);
        if let Ok((log, _)) = StreamLog::open(Arc::new(fs), dir, keyring().clone(), opts, plan) {
            let _ = log.read(StartAt::TrimHorizon, 1000, 1 << 20);
        }
    }
});
