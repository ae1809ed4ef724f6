//! The KEYS file and key providers together: creation, opening, switching master keys,
//! data-key versions, and the typed errors of wrong, disabled and destroyed keys.

use sealdb_crypto::keysfile::KEYS_FILE_NAME;
use sealdb_crypto::{
    CipherId, DatabaseId, Error, KeyState, KeysFile, LocalKms, OwnedKeyProvider, SharedProvider,
};
mod common;

use common::{db_fs, resolver};
use sealdb_vfs::{CrashFs, FaultKind};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

/// Creates a ChaCha20-Poly1305 KEYS file in `/db` whose data keys `master` wraps.
fn create_keys(fs: &CrashFs, master: &SharedProvider, id: DatabaseId) -> KeysFile {
    KeysFile::create(
        fs,
        Path::new("/db"),
        master.as_ref(),
        id,
        CipherId::ChaCha20Poly1305,
    )
    .expect("create")
}

/// A fresh database id and two master keys for it, an owned key and a local-KMS key, with
/// the keystore and KMS directories holding them (deleted when dropped).
fn owned_and_local_keys() -> ([TempDir; 2], DatabaseId, SharedProvider, SharedProvider) {
    let ks = tempfile::tempdir().expect("tmp");
    let kms_dir = tempfile::tempdir().expect("tmp");
    let kms = LocalKms::open(kms_dir.path()).expect("kms");
    kms.create_key("k").expect("k");
    let id = DatabaseId::generate().expect("id");
    let owned: SharedProvider = Arc::new(OwnedKeyProvider::create(ks.path(), id).expect("owned"));
    let local: SharedProvider = Arc::new(kms.provider("k"));
    ([ks, kms_dir], id, owned, local)
}

#[test]
fn create_open_and_data_keys_match() {
    let fs = db_fs();
    let ks = tempfile::tempdir().expect("tmp");
    let id = DatabaseId::generate().expect("id");
    let owned: SharedProvider = Arc::new(OwnedKeyProvider::create(ks.path(), id).expect("owned"));
    let created = create_keys(&fs, &owned, id);
    let (opened, _) =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![owned.clone()])).expect("open");
    assert_eq!(opened.database_id(), id);
    assert_eq!(opened.data_cipher(), CipherId::ChaCha20Poly1305);
    assert_eq!(
        opened.keyring().data_key(1).expect("v1"),
        created.keyring().data_key(1).expect("v1")
    );
    // Never replaced by a fresh key; the refusal names the file.
    let refused = KeysFile::create(
        &fs,
        Path::new("/db"),
        owned.as_ref(),
        id,
        CipherId::ChaCha20Poly1305,
    )
    .expect_err("a second KEYS file");
    let keys_path = Path::new("/db").join(KEYS_FILE_NAME);
    assert!(
        matches!(&refused, Error::InvalidArgument { file: Some(f), .. } if *f == keys_path),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains(&keys_path.display().to_string()),
        "{refused}"
    );
    // Nothing readable about the data key in the file.
    let bytes = fs
        .contents(&Path::new("/db").join(KEYS_FILE_NAME))
        .expect("bytes");
    let dk = opened.keyring().data_key(1).expect("v1").expose().to_vec();
    assert!(!bytes.windows(32).any(|w| w == dk.as_slice()));
}

#[test]
fn wrong_disabled_and_destroyed_keys_have_their_own_errors() {
    let fs = db_fs();
    let kms_dir = tempfile::tempdir().expect("tmp");
    let kms = LocalKms::open(kms_dir.path()).expect("kms");
    kms.create_key("a").expect("a");
    kms.create_key("b").expect("b");
    let id = DatabaseId::generate().expect("id");
    let a: SharedProvider = Arc::new(kms.provider("a"));
    create_keys(&fs, &a, id);

    // Wrong key: a provider that claims to be key "a" but holds other material.
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = LocalKms::open(other_dir.path()).expect("kms");
    other.create_key("a").expect("a");
    let impostor: SharedProvider = Arc::new(other.provider("a"));
    let err =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![impostor])).expect_err("wrong key");
    assert!(matches!(err, Error::WrongMasterKey { .. }), "{err:?}");

    kms.disable("a").expect("disable");
    let err =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![a.clone()])).expect_err("disabled");
    assert!(
        matches!(&err, Error::KeyUnavailable { state: KeyState::Disabled, key_id, .. } if key_id == "a"),
        "{err:?}"
    );
    kms.enable("a").expect("enable");
    KeysFile::open(&fs, Path::new("/db"), resolver(vec![a.clone()])).expect("enabled again");

    kms.schedule_deletion("a", 7).expect("schedule");
    let err =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![a.clone()])).expect_err("pending");
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::PendingDeletion { .. },
                ..
            }
        ),
        "{err:?}"
    );
    kms.destroy("a", true).expect("destroy");
    let err = KeysFile::open(&fs, Path::new("/db"), resolver(vec![a])).expect_err("destroyed");
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::Destroyed,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn switching_master_keys_rewraps_without_changing_data_keys() {
    let fs = db_fs();
    let (_dirs, id, owned, local) = owned_and_local_keys();
    let mut keys = create_keys(&fs, &owned, id);
    let v2 = keys.add_data_key_version(&fs, owned.as_ref()).expect("v2");
    assert_eq!(v2, 2);
    let before: Vec<Vec<u8>> = [1, 2]
        .iter()
        .map(|v| keys.keyring().data_key(*v).expect("dk").expose().to_vec())
        .collect();
    keys.switch_master_key(&fs, local.as_ref()).expect("switch");
    // The owned key alone no longer opens it; the KMS key does, with the same data keys.
    assert!(KeysFile::open(&fs, Path::new("/db"), resolver(vec![owned.clone()])).is_err());
    let (opened, _) =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![local.clone()])).expect("open");
    assert_eq!(opened.master(), &local.descriptor());
    for (i, v) in [1u32, 2].iter().enumerate() {
        assert_eq!(
            opened.keyring().data_key(*v).expect("dk").expose().to_vec(),
            before[i]
        );
    }
    assert_eq!(opened.keyring().current_version(), 2);
    // And back.
    let mut opened = opened;
    opened
        .switch_master_key(&fs, owned.as_ref())
        .expect("switch back");
    KeysFile::open(&fs, Path::new("/db"), resolver(vec![owned])).expect("owned again");
}

#[test]
fn a_crash_during_a_switch_leaves_exactly_one_key_working() {
    let (_dirs, id, owned, local) = owned_and_local_keys();
    for point in 0..8u64 {
        let fs = db_fs();
        let mut keys = create_keys(&fs, &owned, id);
        fs.fail_after(point, FaultKind::AnyMutation);
        let switched = keys.switch_master_key(&fs, local.as_ref()).is_ok();
        fs.crash();
        let by_owned = KeysFile::open(&fs, Path::new("/db"), resolver(vec![owned.clone()])).is_ok();
        let by_local = KeysFile::open(&fs, Path::new("/db"), resolver(vec![local.clone()])).is_ok();
        assert!(
            by_owned ^ by_local,
            "point {point}: owned {by_owned}, local {by_local}"
        );
        if switched {
            assert!(by_local, "point {point}: acknowledged switch lost");
        }
    }
}

#[test]
fn tampered_envelope_or_payload_is_an_integrity_error() {
    let fs = db_fs();
    let ks = tempfile::tempdir().expect("tmp");
    let id = DatabaseId::generate().expect("id");
    let owned: SharedProvider = Arc::new(OwnedKeyProvider::create(ks.path(), id).expect("owned"));
    KeysFile::create(&fs, Path::new("/db"), owned.as_ref(), id, CipherId::None).expect("create");
    let path = Path::new("/db").join(KEYS_FILE_NAME);
    let original = fs.contents(&path).expect("bytes");
    for pos in 0..original.len() {
        let mut bytes = original.clone();
        bytes[pos] ^= 0x01;
        fs.set_contents(&path, bytes).expect("set");
        match KeysFile::open(&fs, Path::new("/db"), resolver(vec![owned.clone()])) {
            Err(
                Error::Integrity { .. }
                | Error::WrongMasterKey { .. }
                | Error::KeyUnavailable { .. },
            ) => {}
            Err(e) => panic!("byte {pos}: unexpected error kind {e:?}"),
            Ok(_) => panic!("byte {pos}: tampered KEYS file opened"),
        }
    }
}
