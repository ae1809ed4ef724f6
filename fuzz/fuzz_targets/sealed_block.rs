//! Sealed-file framing: `BlockSealer::open`, `FileHeader::decode`, and `SealedReader` block
//! iteration over untrusted bytes, for both ciphers. A raw block is opened as it is and again
//! with its prefix crc32 recomputed, so the length, flag and tag checks behind the prefix
//! check are reached; in re-seal mode (first byte 0x3C) the file's blocks are sealed from the
//! input first, so the reader's success paths are reached too. In structure-aware mode (first
//! byte 0xA5) it seals input-chosen blocks into a valid file, damages it at one input-chosen
//! point and checks that reading returns exactly the original blocks (a prefix of them) or an
//! integrity error — never different plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::keys::FileId;
use sealdb_crypto::sealed::{read_file_header, BLOCK_PREFIX_LEN, HEADER_LEN};
use sealdb_crypto::{
    ArtifactKind, Block, BlockHandle, BlockSealer, CipherId, Error, Expected, FileHeader,
    SealedReader, SealedWriter,
};
use sealdb_fuzz::{
    cipher_from, fix_header_crc, fix_prefix_crc, keyring, put_file, reseal, Input, Mutation,
    CIPHERS, DB_ID, MODE_FIXUP, MODE_RESEAL, MODE_STRUCTURED,
};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::Path;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_FIXUP, rest)) => {
            let mut v = rest.to_vec();
            fix_header_crc(&mut v);
            raw(&v);
        }
        Some((&MODE_RESEAL, rest)) => {
            let kind = rest
                .get(10)
                .and_then(|b| ArtifactKind::from_u8(*b))
                .unwrap_or(ArtifactKind::Table);
            raw(&reseal(rest, keyring(), kind));
        }
        _ => raw(data),
    }
});

/// One sealer per cipher for a fixed header (kind `table`, file id all ones).
fn sealers() -> &'static [BlockSealer; 2] {
    static S: OnceLock<[BlockSealer; 2]> = OnceLock::new();
    S.get_or_init(|| {
        CIPHERS.map(|cipher| {
            let header = FileHeader {
                version: sealdb_crypto::sealed::FORMAT_VERSION,
                kind: ArtifactKind::Table,
                cipher,
                data_key_version: 1,
                file_id: FileId([1; 16]),
                database_id: DB_ID,
                extension: Vec::new(),
            };
            BlockSealer::for_header(keyring(), header, "fuzz").expect("sealer")
        })
    })
}

fn raw(data: &[u8]) {
    // 1. One block, at an input-chosen offset.
    let mut inp = Input::new(data);
    let offset = inp.u64();
    let block = inp.rest();
    let mut fixed = block.to_vec();
    fix_prefix_crc(offset, &mut fixed);
    for sealer in sealers() {
        for raw in [block, fixed.as_slice()] {
            if let Ok(b) = sealer.open(offset, raw.to_vec()) {
                // Only the `none` cipher can be forged (crc32); its body is the plaintext.
                let tag = sealer.header().cipher.tag_len();
                assert_eq!(raw.len(), BLOCK_PREFIX_LEN + b.data.len() + tag);
                assert_eq!(
                    u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize,
                    b.data.len()
                );
                assert_eq!(b.is_final, raw[4] == 1);
                if sealer.header().cipher == CipherId::None {
                    assert_eq!(
                        &raw[BLOCK_PREFIX_LEN..BLOCK_PREFIX_LEN + b.data.len()],
                        b.data.as_slice()
                    );
                }
            }
        }
    }

    // 2. The header decoders: a header that decodes re-encodes to the same bytes.
    let _ = FileHeader::decode_fixed(data, "fuzz");
    if let Ok(h) = FileHeader::decode(data, "fuzz") {
        let n = h.encoded_len() as usize;
        assert_eq!(h.encode().as_slice(), &data[..n]);
    }

    // 3. The whole input as a file, read block by block.
    let fs = CrashFs::new();
    let path = Path::new("/f");
    put_file(&fs, path, data);
    let _ = read_file_header(&fs, path);
    let kind = data
        .get(10)
        .and_then(|b| ArtifactKind::from_u8(*b))
        .unwrap_or(ArtifactKind::Table);
    for cipher in CIPHERS {
        let expected = Expected {
            kind,
            database_id: DB_ID,
            cipher: Some(cipher),
        };
        let Ok(reader) = SealedReader::open(&fs, path, keyring(), &expected) else {
            continue;
        };
        drain(&reader, true);
        drain(&reader, false);
        let _ = reader.is_empty();
        // Arbitrary handles inside the file.
        let off = offset % (reader.len() + 1);
        if let Ok(h) = reader.handle_at(off) {
            assert!(h.end() <= reader.len());
            let _ = reader.read_block(h);
        }
        let _ = reader.read_block(BlockHandle {
            offset: off,
            len: (offset >> 40) as u32,
        });
    }
}

/// Reads every block; returns the blocks that verified and the error that stopped it.
fn drain(reader: &SealedReader, finished: bool) -> (Vec<(BlockHandle, Block)>, Option<Error>) {
    let mut ok = Vec::new();
    let iter = if finished {
        reader.blocks()
    } else {
        reader.blocks_unfinished_ok()
    };
    for item in iter {
        match item {
            Ok(x) => ok.push(x),
            Err(e) => return (ok, Some(e)),
        }
    }
    (ok, None)
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let cipher = cipher_from(inp.u8());
    let kind = ArtifactKind::from_u8(1 + inp.u8() % 8).expect("kind");
    // Only the KEYS file may carry a header extension.
    let ext_len = if kind == ArtifactKind::Keys {
        usize::from(inp.u8() % 48)
    } else {
        0
    };
    let nblocks = 1 + usize::from(inp.u8() % 8);
    let finish = inp.u8() & 1 == 1;
    let splits: Vec<usize> = (0..nblocks - 1)
        .map(|_| usize::from(inp.u16() % 300))
        .collect();
    let mut mspec = Input::new(inp.bytes(6));
    let ext = inp.bytes(ext_len).to_vec();
    let mut plain = inp.rest();
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(nblocks);
    for s in splits {
        let (a, b) = plain.split_at(s.min(plain.len()));
        chunks.push(a);
        plain = b;
    }
    chunks.push(plain);

    // Write a valid file.
    let fs = CrashFs::new();
    let path = Path::new("/f");
    let sealer = BlockSealer::for_new_file(keyring(), kind, cipher, ext, "/f").expect("sealer");
    let header_len = sealer.header().encoded_len() as usize;
    let file = fs.create_new(path).expect("create");
    let mut w = SealedWriter::with_file(file, sealer).expect("writer");
    let mut written: Vec<(BlockHandle, &[u8], bool)> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = finish && i + 1 == chunks.len();
        let h = if last {
            w.finish(chunk)
        } else {
            w.append_block(chunk)
        }
        .expect("seal");
        written.push((h, chunk, last));
    }
    w.sync().expect("sync");
    drop(w);
    let mut bytes = fs.contents(path).expect("contents");
    let full_len = bytes.len();
    assert_eq!(
        full_len as u64,
        written.last().map(|w| w.0.end()).unwrap_or(0)
    );
    assert!(header_len >= HEADER_LEN);

    // Damage it.
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let damaged = Path::new("/g");
    put_file(&fs, damaged, &bytes);

    // Read it back.
    let expected = Expected {
        kind,
        database_id: DB_ID,
        cipher: Some(cipher),
    };
    let reader = match SealedReader::open(&fs, damaged, keyring(), &expected) {
        Ok(r) => r,
        Err(e) => {
            assert!(matches!(e, Error::Integrity { .. }), "open: {e:?}");
            match mutation {
                Mutation::None | Mutation::Append { .. } => panic!("intact header refused: {e:?}"),
                Mutation::Truncate { len } => assert!(len < header_len, "cut {len}: {e:?}"),
                Mutation::Flip { pos, .. } => assert!(pos < header_len, "flip {pos}: {e:?}"),
            }
            return;
        }
    };
    let (ok, err) = drain(&reader, finish);
    let _ = drain(&reader, !finish);
    if let Some(e) = &err {
        assert!(matches!(e, Error::Integrity { .. }), "read: {e:?}");
    }

    // Every block returned is the block written at that place (checked for the `none`
    // cipher only where crc32 provably detects the damage: intact, truncated, appended).
    let strict = cipher == CipherId::ChaCha20Poly1305 || !matches!(mutation, Mutation::Flip { .. });
    if strict {
        assert!(ok.len() <= written.len(), "more blocks than written");
        for ((h, b), (wh, wdata, wfinal)) in ok.iter().zip(&written) {
            assert_eq!(h, wh, "block moved");
            assert_eq!(
                b.data.as_slice(),
                *wdata,
                "different plaintext at {}",
                h.offset
            );
            assert_eq!(b.is_final, *wfinal);
        }
    }

    match mutation {
        Mutation::None => {
            assert!(err.is_none(), "intact file: {err:?}");
            assert_eq!(ok.len(), written.len());
        }
        Mutation::Truncate { len } => {
            let whole = written.iter().filter(|w| w.0.end() as usize <= len).count();
            assert_eq!(ok.len(), whole, "cut {len}");
            let clean = if finish {
                // A finished file must end exactly after its final block.
                len == full_len
            } else {
                // An unfinished one ends cleanly exactly at a block boundary.
                len == header_len || written.iter().any(|w| w.0.end() as usize == len)
            };
            assert_eq!(err.is_none(), clean, "cut {len}: {err:?}");
        }
        Mutation::Flip { pos, .. } => {
            assert!(pos >= header_len, "header flip at {pos} accepted");
            if strict {
                assert!(err.is_some(), "flip at {pos} went unnoticed");
                for (h, _) in &ok {
                    assert!(
                        h.end() as usize <= pos,
                        "damaged block at {} returned",
                        h.offset
                    );
                }
            }
        }
        Mutation::Append { .. } => {
            assert!(err.is_some(), "trailing garbage accepted");
            let intact = if finish {
                written.len() - 1
            } else {
                written.len()
            };
            assert_eq!(ok.len(), intact);
        }
    }
}
