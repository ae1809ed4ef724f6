//! The stream's `CONSUMERS` file (named consumer positions): the block plaintext decoder
//! (`fuzz_entry::decode_positions`; a payload that decodes must re-encode to itself) and
//! `ConsumerPositions::load` of the bytes as a file, raw or (first byte 0x3C) re-sealed from
//! input plaintext. In structure-aware mode (first byte 0xA5) it commits and removes
//! input-chosen consumers through the real API, damages the file at one input-chosen point
//! and checks that loading yields exactly the committed positions or, for any damage, an
//! error (the file is one ChaCha20-Poly1305 block, replaced atomically: nothing may be cut,
//! flipped or appended unnoticed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::ArtifactKind;
use sealdb_fuzz::{keyring, put_file, reseal, Input, Mutation, MODE_RESEAL, MODE_STRUCTURED};
use sealdb_stream::fuzz_entry::{decode_positions, encode_positions};
use sealdb_stream::{ConsumerPositions, StreamId, POSITIONS_FILE};
use sealdb_vfs::CrashFs;
use std::collections::BTreeMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_RESEAL, rest)) => load(&reseal(rest, keyring(), ArtifactKind::Meta)),
        _ => {
            if let Ok((stream, generation, list)) = decode_positions(data) {
                let again =
                    encode_positions(stream, generation, &list).expect("a decoded list encodes");
                assert_eq!(
                    again, data,
                    "consumer positions do not re-encode to themselves"
                );
            }
            load(data);
        }
    }
});

fn load(file: &[u8]) {
    let fs = CrashFs::new();
    let dir = Path::new("/s");
    put_file(&fs, &dir.join(POSITIONS_FILE), file);
    let _ = ConsumerPositions::load(&fs, dir, keyring(), StreamId::default(), None);
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let nops = usize::from(inp.u8() % 8);
    let mut mspec = Input::new(inp.bytes(6));
    let fs = CrashFs::new();
    let dir = Path::new("/s");
    let mut positions = ConsumerPositions::load(&fs, dir, keyring(), StreamId::default(), None)
        .expect("load nothing");
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..nops {
        let op = inp.u8();
        let nlen = usize::from(inp.u8() % 8);
        let name = String::from_utf8_lossy(inp.bytes(nlen)).into_owned();
        if op & 1 == 0 {
            let seq = inp.u64();
            let ok = positions.commit(&fs, dir, keyring(), &name, seq).is_ok();
            // Only an empty name is refused here (the longest is 8 bytes of input, at most
            // 24 bytes of UTF-8 after lossy replacement).
            assert_eq!(ok, !name.is_empty(), "commit of {name:?}");
            if ok {
                model.insert(name, seq);
            }
        } else {
            let known = positions
                .remove(&fs, dir, keyring(), &name)
                .expect("remove");
            assert_eq!(known, model.remove(&name).is_some(), "remove of {name:?}");
        }
    }
    let want: Vec<(String, u64)> = model.into_iter().collect();
    assert_eq!(positions.list(), want);

    let path = dir.join(POSITIONS_FILE);
    let Ok(mut bytes) = fs.contents(&path) else {
        // Nothing was ever committed: no file.
        assert!(want.is_empty());
        return;
    };
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    fs.set_contents(&path, bytes).expect("set contents");
    let got = ConsumerPositions::load(&fs, dir, keyring(), StreamId::default(), None);
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    if intact {
        assert_eq!(got.expect("intact CONSUMERS").list(), want);
    } else {
        assert!(got.is_err(), "damaged CONSUMERS ({mutation:?}) accepted");
    }
}
