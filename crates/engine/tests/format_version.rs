//! The format ratchet (docs/format.md, "Format versions"): a database written before format
//! versions existed (the fixture `fixtures/format-v1`, written by commit 60c28ad) opens as
//! version 1 and stays there until ratcheted; new databases start at the newest version; a
//! manifest claiming a version this build does not know is refused without changing anything.

mod common;

use common::{TestDb, collect, failed_open};
use sealdb::{CipherId, Db, Error, FormatVersion, Options};
use sealdb_crypto::sealed::write_small_sealed_file;
use sealdb_crypto::{ArtifactKind, KeysFile, OwnedKeyProvider, SealedWriter, SharedProvider};
use sealdb_vfs::RealFs;
use std::path::Path;
use std::sync::Arc;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");

/// Copies the fixture's `db` and `keystore` into a fresh [`TestDb`] (a new path, so the
/// head record is absent: the first open on a machine).
fn fixture() -> TestDb {
    let t = TestDb::new();
    copy_dir(&Path::new(FIXTURE).join("db"), &t.path());
    copy_dir(&Path::new(FIXTURE).join("keystore"), t.keystore.path());
    // Git does not keep a file's mode; the owned key must be private to be used.
    for e in std::fs::read_dir(t.keystore.path()).expect("keystore") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    t
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Key/value pairs in key order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Every pair the fixture's generator wrote, as it must read back: in the default keyspace
/// `key-000..099` = `value-<i>-v1` (flushed to a table), then (only in the WAL) `key-000..009`
/// overwritten with `value-<i>-v2` and `key-010..014` deleted; in keyspace `second`,
/// `s-0..9` = `second-<i>`.
fn fixture_contents() -> (Pairs, Pairs) {
    let mut default = Vec::new();
    for i in 0..100u32 {
        let value = match i {
            0..10 => format!("value-{i}-v2"),
            10..15 => continue,
            _ => format!("value-{i}-v1"),
        };
        default.push((format!("key-{i:03}").into_bytes(), value.into_bytes()));
    }
    let second = (0..10u32)
        .map(|i| {
            (
                format!("s-{i}").into_bytes(),
                format!("second-{i}").into_bytes(),
            )
        })
        .collect();
    (default, second)
}

fn assert_fixture_contents(db: &Db) {
    let (default, second) = fixture_contents();
    assert_eq!(
        collect(db.default_keyspace().iter().expect("scan")),
        default
    );
    for i in 10..15u32 {
        assert_eq!(db.get(format!("key-{i:03}")).expect("get"), None);
    }
    let ks = db.keyspace("second").expect("keyspace second");
    assert_eq!(collect(ks.iter().expect("scan")), second);
}

#[test]
fn a_v1_database_from_before_the_ratchet_opens_and_stays_v1() {
    let t = fixture();
    {
        let db = t.open();
        assert_eq!(db.format_version(), FormatVersion::V1);
        assert_fixture_contents(&db);
        db.put("after", "the ratchet").expect("put");
        db.flush().expect("flush");
        db.put("unflushed", "too").expect("put");
    }
    // Opening never upgrades: the reopened manifest (rewritten at every open) still has no
    // version edit, so builds that only know version 1 can still open it.
    let db = t.open();
    assert_eq!(db.format_version(), FormatVersion::V1);
    assert_eq!(
        db.get("after").expect("get").as_deref(),
        Some(&b"the ratchet"[..])
    );
    assert_eq!(
        db.get("unflushed").expect("get").as_deref(),
        Some(&b"too"[..])
    );
    assert_eq!(
        db.get("key-050").expect("get").as_deref(),
        Some(&b"value-50-v1"[..])
    );
    let edits = manifest_edit_kinds(&t);
    assert!(!edits.contains(&"format-version"), "{edits:?}");
}

#[test]
fn ratchet_raises_the_version_durably_and_never_lowers_it() {
    let t = fixture();
    {
        let db = t.open();
        assert!(db.ratchet_format(FormatVersion::V2).expect("ratchet"));
        assert_eq!(db.format_version(), FormatVersion::V2);
        // Again: nothing to do.
        assert!(!db.ratchet_format(FormatVersion::V2).expect("ratchet again"));
        // Down: refused, and the refusal does not poison the database.
        let err = db.ratchet_format(FormatVersion::V1).expect_err("lowered");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        db.create_keyspace("third")
            .and_then(|ks| ks.put("still", "writable"))
            .expect("write after a refused ratchet");
    }
    let db = t.open();
    assert_eq!(db.format_version(), FormatVersion::V2);
    assert_fixture_contents(&db);
    let third = db.keyspace("third").expect("keyspace third");
    assert_eq!(
        third.get("still").expect("get").as_deref(),
        Some(&b"writable"[..])
    );
    // The version is the first edit of the snapshot the reopen wrote.
    assert_eq!(manifest_edit_kinds(&t).first(), Some(&"format-version"));
}

#[test]
fn a_new_database_starts_at_the_newest_version_or_the_one_asked_for() {
    let t = TestDb::new();
    assert_eq!(t.open().format_version(), FormatVersion::NEWEST);
    assert_eq!(t.open().format_version(), FormatVersion::NEWEST);

    let old = TestDb::new();
    let opts = Options {
        format_version: Some(FormatVersion::V1),
        ..old.options()
    };
    assert_eq!(
        Db::open(old.path(), opts.clone())
            .expect("open")
            .format_version(),
        FormatVersion::V1
    );
    // The option only shapes a new database: reopening with another keeps the version.
    let newest = Options {
        format_version: Some(FormatVersion::V2),
        ..old.options()
    };
    assert_eq!(
        Db::open(old.path(), newest)
            .expect("reopen")
            .format_version(),
        FormatVersion::V1
    );

    // Version 1 builds cannot read AES-256-GCM files: such a database is refused before
    // anything is created.
    let aes = TestDb::new();
    let opts = Options {
        cipher: CipherId::Aes256Gcm,
        format_version: Some(FormatVersion::V1),
        ..aes.options()
    };
    let err = Db::open(aes.path(), opts).expect_err("aes at v1");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(
        !aes.path().exists(),
        "the refused open created the directory"
    );
}

#[test]
fn format_version_parses_known_numbers_only() {
    assert_eq!("1".parse::<FormatVersion>().expect("1"), FormatVersion::V1);
    assert_eq!("2".parse::<FormatVersion>().expect("2"), FormatVersion::V2);
    for bad in ["0", "3", "x", ""] {
        assert!(
            matches!(
                bad.parse::<FormatVersion>(),
                Err(Error::InvalidArgument { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(FormatVersion::new(3), None);
    assert_eq!(FormatVersion::NEWEST.number(), 2);
}

/// A manifest written by a newer sealdb: its snapshot starts with format version 3, then an
/// edit this build has never heard of.
#[test]
fn a_newer_format_is_refused_by_name_and_nothing_changes() {
    for start in [FormatVersion::V1, FormatVersion::V2] {
        let t = fixture();
        {
            let db = t.open();
            db.ratchet_format(start).expect("ratchet");
        }
        let keyring = keyring(&t);
        let number = current_manifest(&t) + 1;
        let path = t.path().join(format!("MANIFEST-{number:016}"));
        let mut w = SealedWriter::create(
            &RealFs,
            &path,
            &keyring,
            ArtifactKind::Manifest,
            CipherId::ChaCha20Poly1305,
        )
        .expect("create manifest");
        // One edit group (docs/format.md): edit count u32, then the edits. Tag 13 = format
        // version u32; tag 200 is unknown (a newer edit), with bytes that decode as nothing.
        let mut group = Vec::new();
        group.extend_from_slice(&2u32.to_le_bytes());
        group.push(13);
        group.extend_from_slice(&3u32.to_le_bytes());
        group.extend_from_slice(&[200, 0xff, 0xff]);
        w.append_block(&group).expect("append");
        w.sync().expect("sync");
        drop(w);
        let mut current = b"SDBCURR1".to_vec();
        current.extend_from_slice(&number.to_le_bytes());
        write_small_sealed_file(
            &RealFs,
            &t.path().join("CURRENT"),
            &keyring,
            ArtifactKind::Meta,
            &current,
        )
        .expect("write CURRENT");

        let err = failed_open(&t, "a version-3 manifest");
        assert!(
            matches!(
                err,
                Error::FormatTooNew {
                    found: 3,
                    supported: 2
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("written by a newer sealdb"), "{msg}");
        assert!(msg.contains('3') && msg.contains('2'), "{msg}");
        // A read-only open says the same.
        let ro = Options {
            read_only: true,
            ..t.options()
        };
        let err = Db::open(t.path(), ro).expect_err("read-only open");
        assert!(
            matches!(err, Error::FormatTooNew { found: 3, .. }),
            "{err:?}"
        );
    }
}

/// The data keys of `t`'s database, read from its KEYS file with the owned key.
fn keyring(t: &TestDb) -> sealdb_crypto::Keyring {
    let summary = KeysFile::peek(&RealFs, &t.path()).expect("peek KEYS");
    let keystore = t.keystore.path().to_path_buf();
    let (keys, _) = KeysFile::open(&RealFs, &t.path(), |_| {
        Ok(Arc::new(OwnedKeyProvider::open(&keystore, summary.database_id)?) as SharedProvider)
    })
    .expect("open KEYS");
    keys.keyring().clone()
}

/// The number of the manifest `CURRENT` names (the highest `MANIFEST-*`: older ones are
/// deleted at every switch).
fn current_manifest(t: &TestDb) -> u64 {
    std::fs::read_dir(t.path())
        .expect("db dir")
        .filter_map(|e| {
            e.expect("entry")
                .file_name()
                .to_str()?
                .strip_prefix("MANIFEST-")?
                .parse()
                .ok()
        })
        .max()
        .expect("a manifest")
}

/// The kinds of the live manifest's edits, in order.
fn manifest_edit_kinds(t: &TestDb) -> Vec<&'static str> {
    let path = t
        .path()
        .join(format!("MANIFEST-{:016}", current_manifest(t)));
    sealdb::read_manifest_edits(
        &RealFs,
        &path,
        &keyring(t),
        sealdb::CipherId::ChaCha20Poly1305,
    )
    .expect("read manifest")
    .into_iter()
    .map(|e| e.kind)
    .collect()
}

/// A manifest whose header claims the `none` cipher (crc32 only: anyone who reads the clear
/// header's database id can forge one) is not authentic in a ChaCha20-Poly1305 database:
/// `read_manifest_edits`, which `sealdb inspect --manifest` uses, refuses it instead of
/// reporting its edits (it accepted any header cipher before).
#[test]
fn read_manifest_edits_refuses_a_forged_none_cipher_manifest() {
    let t = fixture();
    drop(t.open());
    let keyring = keyring(&t);
    let path = t.path().join("MANIFEST-forged");
    let mut w = SealedWriter::create(
        &RealFs,
        &path,
        &keyring,
        ArtifactKind::Manifest,
        CipherId::None,
    )
    .expect("create forged manifest");
    let mut group = Vec::new();
    group.extend_from_slice(&1u32.to_le_bytes());
    group.push(13);
    group.extend_from_slice(&2u32.to_le_bytes());
    w.append_block(&group).expect("append");
    w.sync().expect("sync");
    drop(w);
    let read = sealdb::read_manifest_edits(&RealFs, &path, &keyring, CipherId::ChaCha20Poly1305);
    assert!(
        matches!(read, Err(Error::Integrity { .. })),
        "a forged none-cipher manifest must be refused, got {read:?}"
    );
    // The genuine one still reads.
    assert!(!manifest_edit_kinds(&t).is_empty());
}
