//! A fixed workload for instruction-count profiles of the unsynced put path (issue 14):
//! `N` puts of 16-byte keys and 100-byte values into a fresh database, one thread.
//!
//! ```text
//! cargo build --release -p sealdb --example put_profile
//! valgrind --tool=callgrind target/release/examples/put_profile chacha 200000
//! ```
//!
//! The first argument is the cipher (`chacha`, `aes` or `none`), the second the number of puts.

use sealdb::{CipherId, Db, Options};

fn main() -> sealdb::Result<()> {
    let mut args = std::env::args().skip(1);
    let cipher = match args.next().as_deref() {
        None | Some("chacha") => CipherId::ChaCha20Poly1305,
        Some("aes") => CipherId::Aes256Gcm,
        Some("none") => CipherId::None,
        Some(other) => {
            return Err(sealdb::Error::invalid_argument(format!(
                "unknown cipher {other:?} (chacha, aes or none)"
            )));
        }
    };
    let count: u64 = match args.next() {
        None => 200_000,
        Some(n) => n
            .parse()
            .map_err(|e| sealdb::Error::invalid_argument(format!("count {n:?}: {e}")))?,
    };
    let io = |e: std::io::Error| sealdb::Error::invalid_argument(e.to_string());
    let dir = tempfile::tempdir().map_err(io)?;
    let keystore = tempfile::tempdir().map_err(io)?;
    let opts = Options {
        cipher,
        keystore_dir: Some(keystore.path().to_path_buf()),
        // Large enough that the run never flushes: the profile is the foreground put alone.
        memtable_size: 256 << 20,
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts)?;
    let ks = db.default_keyspace();
    let value = [0x5a_u8; 100];
    for i in 0..count {
        // 16-byte keys in a scattered order, as a hash-keyed workload writes them.
        let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut key = [0_u8; 16];
        key[..8].copy_from_slice(&k.to_be_bytes());
        key[8..].copy_from_slice(&i.to_be_bytes());
        ks.put(key, value)?;
    }
    println!("{count} puts, last sequence {}", db.last_sequence());
    Ok(())
}
