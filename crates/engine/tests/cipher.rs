//! Cipher agility end to end: a database created with AES-256-GCM seals every data file with
//! it, keeps it across reopen whatever `Options::cipher` says then, and writes nothing in clear.

mod common;

use common::{TestDb, tree};
use sealdb::{CipherId, Db, Options, WriteOptions};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_aes256gcm_database_round_trips_and_reopens() {
    let t = TestDb::new();
    let secret = b"gcm-distinctive-value-5150";
    {
        let db = Db::open(
            t.path(),
            Options {
                cipher: CipherId::Aes256Gcm,
                ..t.options()
            },
        )
        .expect("create");
        assert_eq!(db.cipher(), CipherId::Aes256Gcm);
        for i in 0..500u32 {
            db.put(format!("k{i:04}").as_bytes(), secret).expect("put");
        }
        db.flush().expect("flush");
        // Some in tables, some only in the WAL.
        let ks = db.default_keyspace();
        for i in 500..600u32 {
            ks.put_opt(format!("k{i:04}").as_bytes(), secret, WriteOptions::SYNC)
                .expect("put");
        }
    }

    // Data files (tables, WAL) say cipher 2; only the always-ChaCha roots (KEYS, CURRENT,
    // metadata) say 1; nothing says `none`, and the value is nowhere in clear.
    let files = tree(&t.path());
    let mut gcm_files = 0;
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, secret),
            "{} holds the value in clear",
            path.display()
        );
        if bytes.starts_with(b"SEALDBSF") {
            match bytes[11] {
                2 => gcm_files += 1,
                1 => {}
                other => panic!("{}: cipher byte {other}", path.display()),
            }
        }
    }
    assert!(
        gcm_files >= 2,
        "expected a table and a WAL segment under GCM: {gcm_files}"
    );

    // Reopened with the default options (ChaCha20-Poly1305): the KEYS file's cipher wins.
    let db = t.open();
    assert_eq!(db.cipher(), CipherId::Aes256Gcm);
    for i in 0..600u32 {
        assert_eq!(
            db.get(format!("k{i:04}").as_bytes())
                .expect("get")
                .as_deref(),
            Some(&secret[..]),
            "k{i:04}"
        );
    }
    // New files after reopen (a flush, a compaction) stay under GCM and still read back.
    db.put(b"after-reopen", b"v").expect("put");
    db.flush().expect("flush");
    db.compact().expect("compact");
    assert_eq!(db.get(b"after-reopen").expect("get"), Some(b"v".to_vec()));
    assert_eq!(db.get(b"k0599").expect("get").as_deref(), Some(&secret[..]));
}
