//! The KEYS file: `KeysFile::decode_untrusted`, `decode_payload_untrusted`, and `peek`/`open`
//! of the bytes as `/db/KEYS` in a `CrashFs` with a test key provider. In structure-aware mode
//! (first byte 0xA5) it creates a real KEYS file (input-chosen database id, cipher, master
//! keys, data-key additions/drops and master switches), damages it at one input-chosen point
//! and checks that opening fails or yields exactly the keys written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::keys::DatabaseId;
use sealdb_crypto::{CipherId, KeyDescriptor, KeysFile, SharedProvider};
use sealdb_fuzz::{
    cipher_from, fix_header_crc, put_file, Input, Mutation, TestProvider, MODE_FIXUP,
    MODE_STRUCTURED,
};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::Path;
use std::sync::Arc;

const MASTER_A: [u8; 32] = [1; 32];
const MASTER_B: [u8; 32] = [2; 32];
/// What the resolver hands out for a key it does not know: a key that wraps nothing here.
const MASTER_OTHER: [u8; 32] = [3; 32];

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&MODE_STRUCTURED, rest)) => structured(rest),
        Some((&MODE_FIXUP, rest)) => {
            let mut v = rest.to_vec();
            fix_header_crc(&mut v);
            raw(&v);
        }
        _ => raw(data),
    }
});

fn desc_a() -> KeyDescriptor {
    KeyDescriptor::new("fuzz", "a")
}

fn desc_b() -> KeyDescriptor {
    KeyDescriptor::new("fuzz-b", "b")
}

/// Resolves the two test master keys by descriptor; any other descriptor gets a provider of
/// that name whose key wrapped nothing (so unwrapping fails as with a wrong master key).
fn resolve(desc: &KeyDescriptor) -> sealdb_crypto::Result<SharedProvider> {
    let master = if *desc == desc_a() {
        MASTER_A
    } else if *desc == desc_b() {
        MASTER_B
    } else {
        MASTER_OTHER
    };
    Ok(Arc::new(TestProvider::new(desc.clone(), master)))
}

fn raw(data: &[u8]) {
    let _ = KeysFile::decode_untrusted(data);
    let _ = KeysFile::decode_payload_untrusted(data);
    let fs = CrashFs::new();
    let dir = Path::new("/db");
    put_file(&fs, &dir.join("KEYS"), data);
    let _ = KeysFile::peek(&fs, dir);
    let _ = KeysFile::open(&fs, dir, resolve);
}

/// What an opened KEYS file says, for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    database_id: DatabaseId,
    master: KeyDescriptor,
    versions: Vec<(u32, [u8; 32])>,
    current: u32,
    data_cipher: CipherId,
    generation: u64,
    created_at: u64,
    version_created: Vec<(u32, u64)>,
}

fn snapshot(k: &KeysFile) -> Snapshot {
    let ring = k.keyring();
    Snapshot {
        database_id: k.database_id(),
        master: k.master().clone(),
        versions: ring
            .versions()
            .into_iter()
            .map(|v| (v, *ring.data_key(v).expect("listed version").expose()))
            .collect(),
        current: ring.current_version(),
        data_cipher: k.data_cipher(),
        generation: k.generation(),
        created_at: k.created_at(),
        version_created: k.version_created().iter().map(|(a, b)| (*a, *b)).collect(),
    }
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let database_id = DatabaseId([inp.u8(); 16]);
    let data_cipher = cipher_from(inp.u8());
    let nops = usize::from(inp.u8() % 6);
    let ops: Vec<(u8, u8)> = (0..nops).map(|_| (inp.u8(), inp.u8())).collect();
    let mut mspec = Input::new(inp.bytes(6));

    let fs = CrashFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).expect("mkdir");
    let a = TestProvider::new(desc_a(), MASTER_A);
    let b = TestProvider::new(desc_b(), MASTER_B);
    let mut keys = KeysFile::create(&fs, dir, &a, database_id, data_cipher).expect("create");
    // A second create must refuse to replace key material.
    assert!(KeysFile::create(&fs, dir, &a, database_id, data_cipher).is_err());
    for (op, arg) in ops {
        let master: &TestProvider = if *keys.master() == desc_a() { &a } else { &b };
        let other: &TestProvider = if *keys.master() == desc_a() { &b } else { &a };
        let _ = match op % 4 {
            0 => keys.add_data_key_version(&fs, master).map(|_| ()),
            1 => keys.drop_data_key_version(&fs, master, u32::from(arg % 4)),
            2 => keys.switch_master_key(&fs, other),
            // The wrong master key must be refused.
            _ => {
                assert!(keys.add_data_key_version(&fs, other).is_err());
                Ok(())
            }
        };
    }
    let want = snapshot(&keys);
    drop(keys);

    let path = dir.join("KEYS");
    let mut bytes = fs.contents(&path).expect("contents");
    let full_len = bytes.len();
    assert_eq!(
        KeysFile::decode_untrusted(&bytes).expect("intact envelope"),
        want.versions.len()
    );
    let mutation = Mutation::draw(&mut mspec, full_len);
    mutation.apply(&mut bytes);
    fs.set_contents(&path, bytes.clone()).expect("set contents");
    let _ = KeysFile::decode_untrusted(&bytes);

    let peeked = KeysFile::peek(&fs, dir);
    let opened = KeysFile::open(&fs, dir, resolve);
    let intact = match mutation {
        Mutation::None => true,
        Mutation::Truncate { len } => len == full_len,
        _ => false,
    };
    match mutation {
        _ if intact => {
            let s = peeked.expect("peek intact");
            assert_eq!(s.database_id, want.database_id);
            assert_eq!(s.master, want.master);
            assert_eq!(s.current_version, want.current);
            let vs: Vec<u32> = want.versions.iter().map(|v| v.0).collect();
            assert_eq!(s.versions, vs);
            let (k, provider) = opened.expect("open intact");
            assert_eq!(provider.descriptor(), want.master);
            assert_eq!(snapshot(&k), want);
        }
        // Every byte of a KEYS file is covered by the header crc, the envelope digest in the
        // block's associated data, the wrap tags or the block tag: any damage is refused.
        Mutation::Flip { pos, mask } => {
            assert!(opened.is_err(), "KEYS byte {pos} ^ {mask:#x} accepted");
        }
        Mutation::None => unreachable!(),
        Mutation::Truncate { len } => {
            assert!(opened.is_err(), "KEYS cut to {len} of {full_len} accepted");
        }
        Mutation::Append { n, .. } => {
            assert!(opened.is_err(), "KEYS with {n} trailing bytes accepted");
        }
    }
}
