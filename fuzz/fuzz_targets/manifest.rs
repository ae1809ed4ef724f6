//! Manifest replay: `replay_manifest_for_fuzz` over untrusted bytes for both ciphers (in
//! re-seal mode, first byte 0x3C, over blocks sealed from input plaintext, so the edit decoder
//! is reached). In structure-aware mode (first byte 0xA5) it seals input-chosen, valid edit
//! groups into a manifest (the edit encoding is mirrored from crates/engine/src/manifest.rs),
//! damages it at one input-chosen point, and checks the replayed keyspace count against a
//! model: exact for intact and truncated files and for a torn (shorter than a block prefix)
//! tail; an error for any flipped byte and for longer trailing garbage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb::manifest::replay_manifest_for_fuzz;
use sealdb_crypto::sealed::BLOCK_PREFIX_LEN;
use sealdb_crypto::sealed::HEADER_LEN;
use sealdb_crypto::{ArtifactKind, SealedWriter};
use sealdb_fuzz::{
    cipher_from, fix_header_crc, keyring, reseal, Input, Mutation, CIPHERS, MODE_FIXUP,
    MODE_RESEAL, MODE_STRUCTURED,
};
use sealdb_vfs::CrashFs;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_FIXUP, rest)) => {
            let mut v = rest.to_vec();
            fix_header_crc(&mut v);
            raw(&v);
        }
        Some((&MODE_RESEAL, rest)) => raw(&reseal(rest, keyring(), ArtifactKind::Manifest)),
        _ => raw(data),
    }
});

fn raw(data: &[u8]) {
    for cipher in CIPHERS {
        let _ = replay_manifest_for_fuzz(data, keyring(), cipher);
    }
}

/// Mirror of the engine's little-endian edit encoding.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// The part of the manifest state the model tracks.
#[derive(Default)]
struct Model {
    keyspaces: BTreeSet<u32>,
    /// (keyspace, level) -> file numbers.
    files: BTreeMap<(u32, u8), BTreeSet<u64>>,
}

const NUM_LEVELS: u8 = 7;

/// Appends one valid edit chosen by the input to `w`, applying it to the model; returns
/// whether an edit was written.
fn edit(inp: &mut Input<'_>, m: &mut Model, w: &mut W) -> bool {
    let tag = inp.u8();
    match tag % 8 {
        0 => {
            let id = u32::from(inp.u8() % 6);
            let nlen = usize::from(inp.u8() % 12);
            let name: Vec<u8> = inp.bytes(nlen).iter().map(|b| b'a' + b % 26).collect();
            w.u8(1).u32(id).bytes(&name);
            m.keyspaces.insert(id);
        }
        1 => {
            // Never the default keyspace: replay requires it.
            let id = 1 + u32::from(inp.u8() % 5);
            w.u8(2).u32(id);
            m.keyspaces.remove(&id);
            m.files.retain(|(ks, _), _| *ks != id);
        }
        2 => {
            w.u8(3).u64(inp.u64());
        }
        3 => {
            w.u8(4).u64(inp.u64());
        }
        4 => {
            w.u8(5).u64(inp.u64());
        }
        5 => {
            let list: Vec<u32> = m.keyspaces.iter().copied().collect();
            let Some(&ks) = list.get(usize::from(inp.u8()) % list.len().max(1)) else {
                return false;
            };
            let level = inp.u8() % NUM_LEVELS;
            let number = u64::from(inp.u16());
            let slen = usize::from(inp.u8() % 16);
            let smallest = inp.bytes(slen).to_vec();
            let llen = usize::from(inp.u8() % 16);
            let largest = inp.bytes(llen).to_vec();
            w.u8(6).u32(ks).u8(level);
            w.u64(number)
                .u64(inp.u32().into())
                .u64(inp.u32().into())
                .bytes(&smallest)
                .bytes(&largest)
                .u64(inp.u64())
                .u64(inp.u64())
                .u32(1)
                .raw(&[inp.u8(); 16])
                .raw(&[inp.u8(); 32]);
            m.files.entry((ks, level)).or_default().insert(number);
        }
        6 => {
            let all: Vec<(u32, u8, u64)> = m
                .files
                .iter()
                .flat_map(|((ks, l), set)| set.iter().map(move |n| (*ks, *l, *n)))
                .collect();
            let Some(&(ks, level, number)) = all.get(usize::from(inp.u8()) % all.len().max(1))
            else {
                return false;
            };
            w.u8(7).u32(ks).u8(level).u64(number);
            if let Some(set) = m.files.get_mut(&(ks, level)) {
                set.remove(&number);
            }
        }
        _ => {
            w.u8(8).u32(inp.u32());
        }
    }
    true
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let cipher = cipher_from(inp.u8());
    let ngroups = 1 + usize::from(inp.u8() % 8);
    let mut mspec = Input::new(inp.bytes(6));

    let mut model = Model::default();
    let mut groups: Vec<Vec<u8>> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for g in 0..ngroups {
        let mut body = W::default();
        let mut n = 0u32;
        if g == 0 {
            body.u8(1).u32(0).bytes(b"default");
            model.keyspaces.insert(0);
            n += 1;
        }
        for _ in 0..inp.u8() % 5 {
            if edit(&mut inp, &mut model, &mut body) {
                n += 1;
            }
        }
        let mut group = W::default();
        group.u32(n).raw(&body.0);
        groups.push(group.0);
        counts.push(model.keyspaces.len());
    }

    let fs = CrashFs::new();
    let path = Path::new("/MANIFEST");
    let mut w =
        SealedWriter::create(&fs, path, keyring(), ArtifactKind::Manifest, cipher).expect("create");
    let mut ends = Vec::new();
    for g in &groups {
        ends.push(w.append_block(g).expect("append").end() as usize);
    }
    drop(w);
    let mut bytes = fs.contents(path).expect("contents");
    let full_len = bytes.len();
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    let got = replay_manifest_for_fuzz(&bytes, keyring(), cipher);

    // The replayed count after the first k groups (k >= 1; none: no default keyspace).
    let after =
        |k: usize| -> Option<usize> { k.checked_sub(1).and_then(|i| counts.get(i).copied()) };
    match mutation {
        Mutation::None => {
            assert_eq!(got.ok(), after(groups.len()), "intact manifest");
        }
        Mutation::Truncate { len } => {
            let whole = ends.iter().filter(|e| **e <= len).count();
            let want = if len < HEADER_LEN { None } else { after(whole) };
            assert_eq!(got.ok(), want, "manifest cut to {len}");
        }
        Mutation::Append { n, .. } => {
            // Fewer bytes than a block prefix are a torn last edit group (never acknowledged);
            // a whole prefix that does not check out is damage.
            if n < BLOCK_PREFIX_LEN {
                assert_eq!(got.ok(), after(groups.len()), "{n} trailing bytes");
            } else {
                assert!(got.is_err(), "{n} trailing bytes accepted: {got:?}");
            }
        }
        Mutation::Flip { pos, .. } => {
            // Every byte is covered: the header by its crc32, a block prefix by its own crc32,
            // a body by its tag (a crc32 for `none`, which catches any one damaged byte).
            assert!(
                got.is_err(),
                "flip at {pos} of {full_len} silently accepted: {got:?}"
            );
        }
    }
}
