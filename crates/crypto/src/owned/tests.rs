//! Tests of the owned key provider and its key files.

use super::key_file::FILE_LEN;
use super::provider::{OwnedKeyProvider, default_keystore_dir};
use crate::keys::{DatabaseId, SecretKey};
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider};
use crate::{Error, IntegrityReason, KeyState, Result};
use std::os::unix::fs::PermissionsExt;
use tempfile::TempDir;

fn ctx(id: DatabaseId) -> EncryptionContext {
    EncryptionContext { database_id: id }
}

fn db() -> DatabaseId {
    DatabaseId::generate().expect("random id")
}

#[test]
fn create_then_open_round_trip() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let ks = dir.path().join("ks");
    let id = db();
    let created = OwnedKeyProvider::create(&ks, id)?;
    assert_eq!(
        created.path(),
        ks.join(format!("owned-{}.key", id.to_hex()))
    );
    let meta = std::fs::metadata(created.path()).map_err(|e| Error::io("meta", e))?;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), FILE_LEN as u64);
    let ks_mode = std::fs::metadata(&ks)
        .map_err(|e| Error::io("meta", e))?
        .permissions()
        .mode();
    assert_eq!(ks_mode & 0o777, 0o700);

    let opened = OwnedKeyProvider::open(&ks, id)?;
    assert_eq!(opened.master, created.master);
    assert_eq!(
        opened.descriptor(),
        KeyDescriptor::new("owned", format!("owned/{}", id.to_hex()))
    );
    assert_eq!(opened.check()?, KeyState::Enabled);

    // A second create must not overwrite (that would shred the database).
    assert!(matches!(
        OwnedKeyProvider::create(&ks, id),
        Err(Error::InvalidArgument { .. })
    ));
    let again = OwnedKeyProvider::open_or_create(&ks, id)?;
    assert_eq!(again.master, created.master);
    Ok(())
}

#[test]
fn open_or_create_creates_once() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let id = db();
    let a = OwnedKeyProvider::open_or_create(dir.path(), id)?;
    let b = OwnedKeyProvider::open_or_create(dir.path(), id)?;
    assert_eq!(a.master, b.master);
    Ok(())
}

#[test]
fn wrap_unwrap_and_context_binding() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let id = db();
    let p = OwnedKeyProvider::create(dir.path(), id)?;
    let dk = SecretKey::generate()?;
    let wrapped = p.wrap(&dk, &ctx(id))?;
    assert_eq!(p.unwrap(&wrapped, &ctx(id))?, dk);
    let reopened = OwnedKeyProvider::open(dir.path(), id)?;
    assert_eq!(reopened.unwrap(&wrapped, &ctx(id))?, dk);

    let (gen_key, gen_wrapped) = p.generate_data_key(&ctx(id))?;
    assert_eq!(p.unwrap(&gen_wrapped, &ctx(id))?, gen_key);

    // Another database's context.
    assert!(matches!(
        p.unwrap(&wrapped, &ctx(db())),
        Err(Error::WrongMasterKey { ref provider, .. }) if provider == "owned"
    ));
    // Another database's owned key.
    let other_id = db();
    let other = OwnedKeyProvider::create(dir.path(), other_id)?;
    assert!(matches!(
        other.unwrap(&wrapped, &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    // Garbage.
    assert!(matches!(
        p.unwrap(&[1, 2, 3], &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    Ok(())
}

#[test]
fn open_missing_is_not_found_and_creates_nothing() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let ks = dir.path().join("never-created");
    let id = db();
    match OwnedKeyProvider::open(&ks, id) {
        Err(Error::KeyUnavailable {
            provider,
            key_id,
            state: KeyState::NotFound,
        }) => {
            assert_eq!(provider, "owned");
            assert_eq!(key_id, format!("owned/{}", id.to_hex()));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!ks.exists());
    // Existing keystore, missing key: still nothing created.
    match OwnedKeyProvider::open(dir.path(), id) {
        Err(Error::KeyUnavailable {
            state: KeyState::NotFound,
            ..
        }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    let entries = std::fs::read_dir(dir.path())
        .map_err(|e| Error::io("readdir", e))?
        .count();
    assert_eq!(entries, 0);
    Ok(())
}

#[test]
fn insecure_permissions_refused() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let id = db();
    let p = OwnedKeyProvider::create(dir.path(), id)?;
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", e))?;
        match OwnedKeyProvider::open(dir.path(), id) {
            Err(Error::InsecurePermissions { path, mode: got }) => {
                assert_eq!(path, p.path());
                assert_eq!(got & 0o777, mode);
            }
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
    }
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o400))
        .map_err(|e| Error::io("chmod", e))?;
    OwnedKeyProvider::open(dir.path(), id)?;
    Ok(())
}

#[test]
fn corrupted_file_is_integrity_error() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let id = db();
    let p = OwnedKeyProvider::create(dir.path(), id)?;
    let good = std::fs::read(p.path()).map_err(|e| Error::io("read", e))?;
    for pos in 0..good.len() {
        let mut bad = good.clone();
        if let Some(b) = bad.get_mut(pos) {
            *b ^= 0x01;
        }
        std::fs::write(p.path(), &bad).map_err(|e| Error::io("write", e))?;
        match OwnedKeyProvider::open(dir.path(), id) {
            Err(Error::Integrity {
                file, block: None, ..
            }) => {
                assert_eq!(file, p.path().display().to_string());
            }
            other => panic!("byte {pos}: expected Integrity, got {other:?}"),
        }
        // check() on the running provider reports the damage too.
        assert!(matches!(p.check(), Err(Error::Integrity { .. })));
    }
    for len in [0, 1, 8, FILE_LEN - 1, FILE_LEN + 1, 4096] {
        let mut bad = good.clone();
        bad.resize(len, 0);
        std::fs::write(p.path(), &bad).map_err(|e| Error::io("write", e))?;
        assert!(
            matches!(
                OwnedKeyProvider::open(dir.path(), id),
                Err(Error::Integrity { .. })
            ),
            "length {len}"
        );
    }
    Ok(())
}

#[test]
fn key_file_of_another_database_is_refused() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let (a, b) = (db(), db());
    let pa = OwnedKeyProvider::create(dir.path(), a)?;
    // Copy a's (valid, crc-correct) key file under b's name.
    let target = OwnedKeyProvider::key_path(dir.path(), b);
    std::fs::copy(pa.path(), &target).map_err(|e| Error::io("copy", e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", e))?;
    assert!(matches!(
        OwnedKeyProvider::open(dir.path(), b),
        Err(Error::Integrity {
            reason: IntegrityReason::Malformed(_),
            ..
        })
    ));
    Ok(())
}

#[test]
fn destroy_shreds_and_check_notices() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let id = db();
    let p = OwnedKeyProvider::create(dir.path(), id)?;
    let running = OwnedKeyProvider::open(dir.path(), id)?;
    let dk = SecretKey::generate()?;
    let wrapped = p.wrap(&dk, &ctx(id))?;
    p.destroy()?;
    assert!(matches!(
        running.check(),
        Err(Error::KeyUnavailable {
            state: KeyState::NotFound,
            ..
        })
    ));
    assert!(matches!(
        OwnedKeyProvider::open(dir.path(), id),
        Err(Error::KeyUnavailable {
            state: KeyState::NotFound,
            ..
        })
    ));
    // A new key for the same database cannot unwrap the old data keys.
    let fresh = OwnedKeyProvider::create(dir.path(), id)?;
    assert!(matches!(
        fresh.unwrap(&wrapped, &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    // And the running provider sees that its key was replaced.
    assert!(matches!(
        running.check(),
        Err(Error::KeyUnavailable {
            state: KeyState::NotFound,
            ..
        })
    ));
    Ok(())
}

#[test]
fn debug_shows_no_key_bytes() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    let p = OwnedKeyProvider::create(dir.path(), db())?;
    let shown = format!("{p:?} {p:#?}");
    let key_hex = crate::hex::encode(p.master.expose());
    assert!(!shown.contains(&key_hex));
    assert!(!shown.contains(&key_hex.to_uppercase()));
    // Nor as a Rust byte-array listing.
    assert!(!shown.contains(&format!("{:?}", p.master.expose())));
    assert!(shown.contains("redacted"));
    Ok(())
}

#[test]
fn no_temporary_files_left_behind() -> Result<()> {
    let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
    OwnedKeyProvider::create(dir.path(), db())?;
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .map_err(|e| Error::io("readdir", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("owned-") && n.ends_with(".key"))
    );
    Ok(())
}

#[test]
fn default_keystore_dir_is_nonempty() {
    // Only a smoke test: mutating the process environment from a multi-threaded test
    // binary is unsound, so the precedence rules are not exercised here.
    assert!(!default_keystore_dir().as_os_str().is_empty());
}
