//! Tests of the local KMS's operations, provider and audit log.

use super::audit::AUDIT_FILE;
use super::provider::LocalKmsProvider;
use super::state::{Lifecycle, MAX_NAME_LEN, PROVIDER, SECONDS_PER_DAY, STATE_FILE, State};
use super::store::{LOCK_FILE, LocalKms};
use crate::keys::{DatabaseId, SecretKey};
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider, local_wrap_master_version};
use crate::{Error, KeyState, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tempfile::TempDir;

pub(super) fn tmp() -> TempDir {
    TempDir::new().expect("temp dir")
}

fn ctx(id: DatabaseId) -> EncryptionContext {
    EncryptionContext { database_id: id }
}

fn db() -> DatabaseId {
    DatabaseId::generate().expect("random id")
}

fn state_of(err: &Error) -> Option<&KeyState> {
    match err {
        Error::KeyUnavailable {
            provider, state, ..
        } if provider == PROVIDER => Some(state),
        _ => None,
    }
}

/// Every key's material, hex-encoded, read straight from the state file.
fn material_hexes(kms: &LocalKms) -> Vec<String> {
    let (state, _) = kms.read_state().expect("state");
    state
        .keys
        .values()
        .flat_map(|r| r.materials.iter().map(|m| crate::hex::encode(m.expose())))
        .collect()
}

/// A fresh KMS holding key `k`, its provider, and a data key for a fresh database wrapped
/// under it.
fn wrapped_under_k() -> Result<(
    TempDir,
    LocalKms,
    LocalKmsProvider,
    DatabaseId,
    SecretKey,
    Vec<u8>,
)> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    let p = kms.provider("k");
    let id = db();
    let dk = SecretKey::generate()?;
    let w = p.wrap(&dk, &ctx(id))?;
    Ok((dir, kms, p, id, dk, w))
}

/// Changes the state file behind the KMS's back (as a crash, a clock or an attacker might),
/// under its lock.
fn edit_state(kms: &LocalKms, edit: impl FnOnce(&mut State)) -> Result<()> {
    let _lock = kms.acquire_lock()?;
    let (mut state, _) = kms.read_state()?;
    edit(&mut state);
    kms.write_state(&state)
}

/// Asserts that an operation was refused as an invalid argument (a wrong state, a bad value).
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(outcome: Result<T>) {
    assert!(
        matches!(outcome, Err(Error::InvalidArgument { .. })),
        "{outcome:?}"
    );
}

#[test]
fn open_creates_private_layout() -> Result<()> {
    let dir = tmp();
    let root = dir.path().join("kms");
    let kms = LocalKms::open(&root)?;
    assert_eq!(kms.dir(), root);
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .expect("metadata")
    };
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join(STATE_FILE)), 0o600);
    assert_eq!(mode(&root.join(AUDIT_FILE)), 0o600);
    assert_eq!(mode(&root.join(LOCK_FILE)), 0o600);
    assert!(kms.list()?.is_empty());
    // Reopening an existing KMS changes nothing.
    let again = LocalKms::open(&root)?;
    assert!(again.list()?.is_empty());
    Ok(())
}

#[test]
fn create_list_describe() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    let b = kms.create_key("beta")?;
    let a = kms.create_key("alpha.key_1-x")?;
    assert_eq!(a.state, KeyState::Enabled);
    assert_eq!(a.versions, 1);
    assert!(a.created_at > 0);
    let names: Vec<String> = kms.list()?.into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["alpha.key_1-x", "beta"]);
    assert_eq!(kms.describe("beta")?, b);
    assert_eq!(
        kms.describe("nope").map_err(|e| state_of(&e).cloned()),
        Err(Some(KeyState::NotFound))
    );
    assert_invalid(kms.create_key("beta"));
    let long = "x".repeat(MAX_NAME_LEN + 1);
    for bad in ["", "a b", "a/b", "ключ", "x\n", long.as_str()] {
        assert!(
            matches!(kms.create_key(bad), Err(Error::InvalidArgument { .. })),
            "{bad:?}"
        );
    }
    kms.create_key(&"y".repeat(MAX_NAME_LEN))?;
    Ok(())
}

#[test]
fn rotate_keeps_old_versions_unwrappable() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    let p = kms.provider("k");
    assert_eq!(p.descriptor(), KeyDescriptor::new("local-kms", "k"));
    let id = db();
    let dk1 = SecretKey::generate()?;
    let w1 = p.wrap(&dk1, &ctx(id))?;
    assert_eq!(local_wrap_master_version(&w1), Some(1));
    assert_eq!(kms.rotate("k")?, 2);
    let dk2 = SecretKey::generate()?;
    let w2 = p.wrap(&dk2, &ctx(id))?;
    assert_eq!(local_wrap_master_version(&w2), Some(2));
    assert_eq!(p.unwrap(&w1, &ctx(id))?, dk1);
    assert_eq!(p.unwrap(&w2, &ctx(id))?, dk2);
    assert_eq!(kms.describe("k")?.versions, 2);
    assert_eq!(kms.rotate("k")?, 3);
    assert_eq!(p.unwrap(&w1, &ctx(id))?, dk1);
    // Another database's context.
    assert!(matches!(
        p.unwrap(&w1, &ctx(db())),
        Err(Error::WrongMasterKey { .. })
    ));
    // A blob naming a version the key does not have (re-labelled, so it also fails auth).
    let mut w9 = w2.clone();
    if let Some(v) = w9.get_mut(1..5) {
        v.copy_from_slice(&9u32.to_le_bytes());
    }
    assert!(matches!(
        p.unwrap(&w9, &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    assert!(matches!(
        p.unwrap(b"short", &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    let (gk, gw) = p.generate_data_key(&ctx(id))?;
    assert_eq!(p.unwrap(&gw, &ctx(id))?, gk);
    Ok(())
}

#[test]
fn disable_and_enable() -> Result<()> {
    let (_dir, kms, p, id, dk, w) = wrapped_under_k()?;
    assert_eq!(p.check()?, KeyState::Enabled);
    kms.disable("k")?;
    kms.disable("k")?; // idempotent
    assert_eq!(kms.describe("k")?.state, KeyState::Disabled);
    let e = p.unwrap(&w, &ctx(id)).expect_err("disabled");
    assert_eq!(state_of(&e), Some(&KeyState::Disabled));
    assert!(
        matches!(&e, Error::KeyUnavailable { key_id, .. } if key_id == "k"),
        "{e:?}"
    );
    let e = p.check().expect_err("disabled");
    assert_eq!(state_of(&e), Some(&KeyState::Disabled));
    let e = p.wrap(&dk, &ctx(id)).expect_err("disabled");
    assert_eq!(state_of(&e), Some(&KeyState::Disabled));
    assert_invalid(kms.rotate("k"));
    kms.enable("k")?;
    assert_eq!(p.check()?, KeyState::Enabled);
    assert_eq!(p.unwrap(&w, &ctx(id))?, dk);
    Ok(())
}

#[test]
fn deletion_lifecycle() -> Result<()> {
    let (dir, kms, p, id, dk, w) = wrapped_under_k()?;

    for bad_days in [0, 31, u32::MAX] {
        assert_invalid(kms.schedule_deletion("k", bad_days));
    }
    let before = crate::unix_now();
    let at = kms.schedule_deletion("k", 7)?;
    assert!(at >= before + 7 * SECONDS_PER_DAY);
    assert!(at <= crate::unix_now() + 7 * SECONDS_PER_DAY);
    let pending = KeyState::PendingDeletion { deletion_at: at };
    assert_eq!(kms.describe("k")?.state, pending);
    let e = p.unwrap(&w, &ctx(id)).expect_err("pending");
    assert_eq!(state_of(&e), Some(&pending));
    assert_eq!(state_of(&p.check().expect_err("pending")), Some(&pending));
    // Enabling is not how a deletion is cancelled; nor can it be scheduled twice.
    assert_invalid(kms.enable("k"));
    assert_invalid(kms.schedule_deletion("k", 3));
    // Too early without `now`.
    assert_invalid(kms.destroy("k", false));
    assert_eq!(kms.describe("k")?.state, pending);

    kms.cancel_deletion("k")?;
    assert_eq!(kms.describe("k")?.state, KeyState::Disabled);
    assert_invalid(kms.cancel_deletion("k"));
    // Destroy only from pending deletion.
    assert_invalid(kms.destroy("k", true));
    kms.enable("k")?;
    assert_eq!(p.unwrap(&w, &ctx(id))?, dk);

    kms.schedule_deletion("k", 1)?;
    let key_hex = material_hexes(&kms);
    assert_eq!(key_hex.len(), 1);
    kms.destroy("k", true)?;
    let info = kms.describe("k")?;
    assert_eq!(info.state, KeyState::Destroyed);
    assert_eq!(info.versions, 1);
    assert!(material_hexes(&kms).is_empty());
    let e = p.unwrap(&w, &ctx(id)).expect_err("destroyed");
    assert_eq!(state_of(&e), Some(&KeyState::Destroyed));
    assert_eq!(
        state_of(&p.check().expect_err("destroyed")),
        Some(&KeyState::Destroyed)
    );
    // Gone for good; destroying again is a no-op.
    kms.destroy("k", true)?;
    assert_invalid(kms.enable("k"));
    assert_invalid(kms.cancel_deletion("k"));
    assert_invalid(kms.rotate("k"));
    // The material is not anywhere in the state file.
    let raw = std::fs::read(dir.path().join(STATE_FILE)).map_err(|e| Error::io("read", e))?;
    let destroyed_hex = key_hex.first().expect("one material");
    assert!(!crate::hex::encode(&raw).contains(destroyed_hex.as_str()));
    Ok(())
}

#[test]
fn overdue_deletion_happens_lazily_and_is_audited() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    kms.create_key("other")?;
    kms.schedule_deletion("k", 1)?;
    // Move the deadline into the past, as if a day had gone by.
    edit_state(&kms, |state| {
        if let Some(r) = state.keys.get_mut("k") {
            r.lifecycle = Lifecycle::PendingDeletion {
                deletion_at: crate::unix_now() - 1,
            };
        }
    })?;
    // Any access (here, a check of another key) destroys it.
    kms.provider("other").check()?;
    assert_eq!(material_hexes(&kms).len(), 1);
    assert_eq!(kms.describe("k")?.state, KeyState::Destroyed);
    let ops: Vec<String> = kms
        .audit(Some("k"))?
        .into_iter()
        .map(|e| e.operation)
        .collect();
    assert_eq!(ops, ["create", "schedule-deletion", "scheduled-destroy"]);
    Ok(())
}

#[test]
fn keys_do_not_unwrap_each_other() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("a")?;
    kms.create_key("b")?;
    let id = db();
    let dk = SecretKey::generate()?;
    let wa = kms.provider("a").wrap(&dk, &ctx(id))?;
    match kms.provider("b").unwrap(&wa, &ctx(id)) {
        Err(Error::WrongMasterKey { provider, key_id }) => {
            assert_eq!((provider.as_str(), key_id.as_str()), ("local-kms", "b"));
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    // Even with identical material, the descriptor binds the wrap to its key.
    edit_state(&kms, |state| {
        let a_material = state
            .keys
            .get("a")
            .and_then(|r| r.materials.first().cloned())
            .expect("a has v1");
        if let Some(r) = state.keys.get_mut("b") {
            r.materials = vec![a_material];
        }
    })?;
    assert!(matches!(
        kms.provider("b").unwrap(&wa, &ctx(id)),
        Err(Error::WrongMasterKey { .. })
    ));
    assert_eq!(kms.provider("a").unwrap(&wa, &ctx(id))?, dk);
    // Unknown key.
    let e = kms
        .provider("c")
        .unwrap(&wa, &ctx(id))
        .expect_err("unknown");
    assert_eq!(state_of(&e), Some(&KeyState::NotFound));
    Ok(())
}

#[test]
fn second_handle_sees_changes() -> Result<()> {
    let dir = tmp();
    let admin = LocalKms::open(dir.path())?;
    let running = LocalKms::open(dir.path())?;
    admin.create_key("k")?;
    let p = running.provider("k");
    assert_eq!(p.check()?, KeyState::Enabled);
    admin.disable("k")?;
    assert_eq!(
        state_of(&p.check().expect_err("disabled")),
        Some(&KeyState::Disabled)
    );
    admin.enable("k")?;
    assert_eq!(running.rotate("k")?, 2);
    assert_eq!(admin.describe("k")?.versions, 2);
    Ok(())
}

#[test]
fn concurrent_rotations_are_not_lost() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    std::thread::scope(|scope| {
        for _ in 0..3 {
            let kms = LocalKms::open(dir.path()).expect("open");
            scope.spawn(move || {
                for _ in 0..4 {
                    kms.rotate("k").expect("rotate");
                }
            });
        }
    });
    assert_eq!(kms.describe("k")?.versions, 13);
    assert_eq!(material_hexes(&kms).len(), 13);
    Ok(())
}

#[test]
fn audit_log_records_operations_without_key_material() -> Result<()> {
    let (dir, kms, p, id, dk, w) = wrapped_under_k()?;
    p.unwrap(&w, &ctx(id))?;
    kms.rotate("k")?;
    let w2 = p.wrap(&dk, &ctx(id))?;
    kms.disable("k")?;
    assert!(p.unwrap(&w2, &ctx(id)).is_err());
    assert!(p.check().is_err());
    kms.enable("k")?;
    p.check()?;
    kms.schedule_deletion("k", 2)?;
    kms.cancel_deletion("k")?;
    kms.schedule_deletion("k", 2)?;
    let materials = material_hexes(&kms);
    kms.destroy("k", true)?;
    assert!(kms.create_key("bad name").is_err());

    let log = kms.audit(Some("k"))?;
    let summary: Vec<(&str, &str)> = log
        .iter()
        .map(|e| {
            let outcome = if e.outcome == "ok" { "ok" } else { "refused" };
            (e.operation.as_str(), outcome)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("create", "ok"),
            ("wrap", "ok"),
            ("unwrap", "ok"),
            ("rotate", "ok"),
            ("wrap", "ok"),
            ("disable", "ok"),
            ("unwrap", "refused"),
            ("check", "refused"),
            ("enable", "ok"),
            ("check", "ok"),
            ("schedule-deletion", "ok"),
            ("cancel-deletion", "ok"),
            ("schedule-deletion", "ok"),
            ("destroy", "ok"),
        ]
    );
    let refused = log.get(6).expect("unwrap refusal");
    assert!(refused.outcome.starts_with("refused: "));
    assert!(refused.outcome.contains("disabled"));
    assert_eq!(refused.database_id.as_deref(), Some(id.to_hex().as_str()));
    assert!(log.iter().all(|e| e.time > 0));
    assert_eq!(kms.audit(None)?.len(), log.len() + 1);

    let raw =
        std::fs::read_to_string(dir.path().join(AUDIT_FILE)).map_err(|e| Error::io("read", e))?;
    assert_eq!(materials.len(), 2);
    for secret in materials.iter().chain([&crate::hex::encode(dk.expose())]) {
        assert!(!raw.contains(secret.as_str()));
        assert!(!raw.contains(&secret.to_uppercase()));
    }
    Ok(())
}

#[test]
fn audit_tolerates_torn_last_line() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    let path = dir.path().join(AUDIT_FILE);
    let mut f = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(b"{\"time\":12,\"key\":\"k\",\"oper")
        .map_err(|e| Error::io(&path, e))?;
    drop(f);
    assert_eq!(kms.audit(None)?.len(), 1);
    // The next entry starts on its own line, so only the torn one is lost.
    kms.provider("k").check()?;
    let ops: Vec<String> = kms.audit(None)?.into_iter().map(|e| e.operation).collect();
    assert_eq!(ops, ["create", "check"]);
    Ok(())
}

#[test]
fn unauditable_use_is_refused() -> Result<()> {
    let (dir, kms, p, id, dk, w) = wrapped_under_k()?;
    // Make audit.log unwritable by replacing it with a directory.
    let path = dir.path().join(AUDIT_FILE);
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
    assert!(matches!(p.unwrap(&w, &ctx(id)), Err(Error::Io { .. })));
    assert!(matches!(p.wrap(&dk, &ctx(id)), Err(Error::Io { .. })));
    assert!(matches!(kms.rotate("k"), Err(Error::Io { .. })));
    // The refused rotation was not saved either.
    assert_eq!(kms.describe("k")?.versions, 1);
    Ok(())
}

#[test]
fn insecure_state_file_refused() -> Result<()> {
    let dir = tmp();
    let kms = LocalKms::open(dir.path())?;
    kms.create_key("k")?;
    let path = dir.path().join(STATE_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(&path, e))?;
    for result in [
        kms.list().map(|_| ()),
        kms.provider("k").check().map(|_| ()),
        LocalKms::open(dir.path()).map(|_| ()),
    ] {
        match result {
            Err(Error::InsecurePermissions { path: p, mode }) => {
                assert_eq!(p, path);
                assert_eq!(mode & 0o777, 0o644);
            }
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&path, e))?;
    assert_eq!(kms.list()?.len(), 1);
    Ok(())
}
