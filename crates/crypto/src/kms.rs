//! A local, file-backed key-management service: named master keys with versions, states and
//! an audit log, shared by any number of databases and processes on one machine.
//!
//! It behaves like a small AWS KMS: a key is created enabled; it can be rotated (a new version
//! is appended; wraps use the newest, unwraps the version named in the wrapped blob), disabled
//! and enabled again, scheduled for deletion 1 to 30 days ahead (cancelling returns it to
//! disabled), and finally destroyed, which erases its key material: everything wrapped under it
//! becomes unrecoverable (crypto-shredding). Every create, rotation, state change, wrap, unwrap
//! and check, and every refusal, is appended to an audit log.
//!
//! # Directory layout
//!
//! - `kms.state`: the keys, in the binary format below; mode 0600. Replaced atomically
//!   (temporary file, fsync, rename, directory fsync). A state file that group or others can
//!   access is refused with [`Error::InsecurePermissions`].
//! - `audit.log`: one JSON [`AuditEntry`] per line, append-only, mode 0600. Never contains key
//!   material.
//! - `kms.lock`: held with an exclusive [`std::fs::File::lock`] around every access, so that
//!   several processes (databases, the CLI) can share one KMS.
//!
//! The directory is created with mode 0700. Every call re-reads `kms.state` under the lock, so
//! a running database sees a key disabled by the CLI at its next check. A key pending deletion
//! whose date has passed is destroyed (and that is audited) by the next access of any kind.
//!
//! # `kms.state` format
//!
//! All integers are little-endian.
//!
//! | size            | field                                                            |
//! |-----------------|------------------------------------------------------------------|
//! | 8               | magic `SDBKMS01`                                                 |
//! | 4               | `u32` key count (at most 10 000)                                 |
//! | *per key*       | (keys in ascending byte order of their names; names are unique)  |
//! | 2               | `u16` name length, 1..=128                                       |
//! | name length     | name, ASCII `[A-Za-z0-9._-]`                                     |
//! | 8               | `u64` created at, Unix seconds                                   |
//! | 1               | `u8` state: 0 enabled, 1 disabled, 2 pending deletion, 3 destroyed |
//! | 8               | `u64` deletion at, Unix seconds; 0 unless the state is 2         |
//! | 4               | `u32` version count (1..=10 000; 0..=10 000 when destroyed)      |
//! | 32 × count      | key material of versions 1, 2, …, count; **absent when destroyed** (the count is kept as a record of how many versions existed) |
//! | 4               | `u32` crc32 (crc32fast) of every preceding byte of the file      |
//!
//! Decoding is total: the magic (`BadMagic`), then the crc (`HeaderChecksum`), then every
//! length against both its limit and the bytes remaining, before anything is allocated; any
//! other inconsistency (bad name, unknown state, deletion date on a key not pending deletion,
//! duplicate name, trailing bytes) is `Malformed`. The file is at most 64 MiB.

use crate::keys::{DatabaseId, SecretKey};
use crate::owned::{
    Replace, check_private_mode, create_private_dir, read_limited, sync_dir,
    write_private_file_atomically,
};
use crate::provider::{
    EncryptionContext, KeyDescriptor, KeyProvider, local_unwrap, local_wrap,
    local_wrap_master_version,
};
use crate::{Error, IntegrityReason, KeyState, Result};
use sealdb_base::{PutBytes, Reader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Provider kind string of local-KMS keys, as stored in key descriptors.
const PROVIDER: &str = "local-kms";
const STATE_FILE: &str = "kms.state";
const AUDIT_FILE: &str = "audit.log";
const LOCK_FILE: &str = "kms.lock";
const MAGIC: &[u8; 8] = b"SDBKMS01";

/// Most keys one KMS holds.
pub const MAX_KEYS: usize = 10_000;
/// Most versions one key may have.
pub const MAX_VERSIONS: u32 = 10_000;
/// Longest key name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Shortest deletion waiting period, in days (as AWS KMS, minus its 7-day floor: a local KMS
/// is often used for tests and demos).
pub const MIN_DELETION_DAYS: u32 = 1;
/// Longest deletion waiting period, in days (as AWS KMS).
pub const MAX_DELETION_DAYS: u32 = 30;
/// Largest state file read. Far above any realistic use, low enough that a corrupt or hostile
/// file cannot make us allocate gigabytes.
const MAX_STATE_FILE_LEN: u64 = 64 << 20;
/// Smallest encoding of one key (1-byte name, destroyed, no materials), used to reject a key
/// count the remaining bytes cannot hold before allocating anything for it.
const MIN_ENCODED_KEY_LEN: usize = 2 + 1 + 8 + 1 + 8 + 4;
const SECONDS_PER_DAY: u64 = 86_400;

/// What [`LocalKms::list`] and [`LocalKms::describe`] report about a key. No key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyInfo {
    /// The key's name (its key id in descriptors).
    pub name: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// Enabled, disabled, pending deletion or destroyed.
    pub state: KeyState,
    /// How many versions it has (or had, once destroyed); the newest is this number.
    pub versions: u32,
}

/// One line of `audit.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub time: u64,
    /// The key concerned (as requested, for refusals of unknown or invalid names; cut to
    /// [`MAX_NAME_LEN`] characters).
    pub key: String,
    /// `create`, `rotate`, `disable`, `enable`, `schedule-deletion`, `cancel-deletion`,
    /// `destroy`, `scheduled-destroy` (a deletion date passed), `wrap`, `unwrap` or `check`.
    pub operation: String,
    /// The database on whose behalf (hex), for `wrap` and `unwrap`.
    pub database_id: Option<String>,
    /// `ok`, or `refused: <reason>`. An operation recorded as `ok` whose state change then
    /// could not be saved gets a second entry `refused: state not saved: <error>`.
    pub outcome: String,
}

/// A local KMS rooted at a directory. Cheap to clone; holds no key material itself (every call
/// reads the state file under the lock and forgets it afterwards).
#[derive(Debug, Clone)]
pub struct LocalKms {
    dir: PathBuf,
}

/// A [`KeyProvider`] for one named key of a [`LocalKms`]. Cheap; whether the key exists and is
/// usable is decided at each use, under the KMS lock.
#[derive(Debug, Clone)]
pub struct LocalKmsProvider {
    kms: LocalKms,
    name: String,
}

impl LocalKms {
    /// Opens the KMS in `dir`, creating the directory (mode 0700) and an empty state file if
    /// missing. Fails if an existing state file is unreadable, damaged or accessible by others.
    pub fn open(dir: &Path) -> Result<LocalKms> {
        create_private_dir(dir)?;
        let kms = LocalKms {
            dir: dir.to_path_buf(),
        };
        let _lock = kms.acquire_lock()?;
        kms.remove_stale_temporaries();
        let audit_path = kms.audit_path();
        let audit_existed = audit_path.exists();
        open_audit_log(&audit_path)?;
        let (state, missing) = kms.read_state()?;
        if missing {
            kms.write_state(&state)?;
        } else if !audit_existed {
            sync_dir(&kms.dir)?;
        }
        Ok(kms)
    }

    /// The KMS directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates an enabled key named `name` with one fresh random version.
    ///
    /// Names are 1 to 128 bytes of `[A-Za-z0-9._-]`. Fails with [`Error::InvalidArgument`] if
    /// the name is invalid or taken, or the KMS already holds [`MAX_KEYS`] keys.
    pub fn create_key(&self, name: &str) -> Result<KmsKeyInfo> {
        self.with_lock(|s| {
            let outcome = (|| {
                validate_name(name)?;
                if s.state.keys.contains_key(name) {
                    return Err(Error::invalid_argument(format!(
                        "local KMS key {name:?} already exists"
                    )));
                }
                if s.state.keys.len() >= MAX_KEYS {
                    return Err(Error::invalid_argument(format!(
                        "the local KMS already holds {MAX_KEYS} keys"
                    )));
                }
                let record = KeyRecord {
                    created_at: s.now,
                    lifecycle: Lifecycle::Enabled,
                    version_count: 1,
                    materials: vec![SecretKey::generate()?],
                };
                let info = record.info(name);
                s.state.keys.insert(name.to_owned(), record);
                s.dirty = true;
                Ok(info)
            })();
            s.finish(name, "create", None, true, outcome)
        })
    }

    /// Every key, sorted by name.
    pub fn list(&self) -> Result<Vec<KmsKeyInfo>> {
        self.with_lock(|s| {
            Ok(s.state
                .keys
                .iter()
                .map(|(name, record)| record.info(name))
                .collect())
        })
    }

    /// One key; [`Error::KeyUnavailable`] with [`KeyState::NotFound`] if there is none.
    pub fn describe(&self, name: &str) -> Result<KmsKeyInfo> {
        self.with_lock(|s| {
            s.state
                .keys
                .get(name)
                .map(|record| record.info(name))
                .ok_or_else(|| unavailable(name, KeyState::NotFound))
        })
    }

    /// Adds a new version to an enabled key and returns its number; new wraps use it, and data
    /// keys wrapped under older versions still unwrap.
    pub fn rotate(&self, name: &str) -> Result<u32> {
        self.with_lock(|s| {
            let outcome = (|| {
                let record = s.record_mut(name)?;
                if record.lifecycle != Lifecycle::Enabled {
                    return Err(wrong_state(name, record.lifecycle, "rotate"));
                }
                if record.version_count >= MAX_VERSIONS {
                    return Err(Error::invalid_argument(format!(
                        "local KMS key {name:?} already has {MAX_VERSIONS} versions"
                    )));
                }
                record.materials.push(SecretKey::generate()?);
                record.version_count += 1;
                let version = record.version_count;
                s.dirty = true;
                Ok(version)
            })();
            s.finish(name, "rotate", None, true, outcome)
        })
    }

    /// Disables an enabled key: wraps, unwraps and checks are refused with
    /// [`KeyState::Disabled`] until it is enabled again. Disabling a disabled key is a no-op.
    pub fn disable(&self, name: &str) -> Result<()> {
        self.transition(name, "disable", |name, from, _| match from {
            Lifecycle::Enabled | Lifecycle::Disabled => Ok(Lifecycle::Disabled),
            other => Err(wrong_state(name, other, "disable")),
        })
    }

    /// Enables a disabled key. Enabling an enabled key is a no-op; a key pending deletion must
    /// be [cancelled](Self::cancel_deletion) first, and a destroyed key is gone for good.
    pub fn enable(&self, name: &str) -> Result<()> {
        self.transition(name, "enable", |name, from, _| match from {
            Lifecycle::Enabled | Lifecycle::Disabled => Ok(Lifecycle::Enabled),
            other => Err(wrong_state(name, other, "enable")),
        })
    }

    /// Schedules an enabled or disabled key for destruction `days` (1..=30) days from now and
    /// returns that time (Unix seconds). Until then it is unusable but can be cancelled.
    pub fn schedule_deletion(&self, name: &str, days: u32) -> Result<u64> {
        let mut deletion_at = 0;
        self.transition(name, "schedule-deletion", |name, from, now| {
            if !(MIN_DELETION_DAYS..=MAX_DELETION_DAYS).contains(&days) {
                return Err(Error::invalid_argument(format!(
                    "deletion waiting period must be {MIN_DELETION_DAYS} to \
                     {MAX_DELETION_DAYS} days, not {days}"
                )));
            }
            match from {
                Lifecycle::Enabled | Lifecycle::Disabled => {
                    deletion_at = now.saturating_add(u64::from(days) * SECONDS_PER_DAY);
                    Ok(Lifecycle::PendingDeletion { deletion_at })
                }
                other => Err(wrong_state(name, other, "schedule the deletion of")),
            }
        })?;
        Ok(deletion_at)
    }

    /// Cancels a scheduled deletion; the key becomes disabled (as in AWS KMS), so enabling it
    /// again is a separate, deliberate step.
    pub fn cancel_deletion(&self, name: &str) -> Result<()> {
        self.transition(name, "cancel-deletion", |name, from, _| match from {
            Lifecycle::PendingDeletion { .. } => Ok(Lifecycle::Disabled),
            other => Err(wrong_state(name, other, "cancel the deletion of")),
        })
    }

    /// Destroys a key pending deletion, erasing its key material: everything wrapped under it
    /// becomes unrecoverable. Allowed once its deletion date has passed, or at once if `now`.
    /// Destroying a destroyed key is a no-op. The entry (name, dates, version count) is kept.
    pub fn destroy(&self, name: &str, now: bool) -> Result<()> {
        self.transition(name, "destroy", |name, from, time| match from {
            Lifecycle::PendingDeletion { deletion_at } if now || deletion_at <= time => {
                Ok(Lifecycle::Destroyed)
            }
            Lifecycle::PendingDeletion { deletion_at } => Err(Error::invalid_argument(format!(
                "local KMS key {name:?} is scheduled for deletion at unix time {deletion_at}; \
                 destroy it before then only with `now`"
            ))),
            Lifecycle::Destroyed => Ok(Lifecycle::Destroyed),
            other => Err(wrong_state(name, other, "destroy")),
        })
    }

    /// The audit log, oldest first; only entries about key `name` if given. Lines that do not
    /// parse (a write torn by a crash) are skipped.
    pub fn audit(&self, name: Option<&str>) -> Result<Vec<AuditEntry>> {
        let path = self.audit_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(parse_audit_log(&bytes, name))
    }

    /// A provider for key `name`. Does not check that the key exists: that is decided, and
    /// audited, at each use.
    pub fn provider(&self, name: &str) -> LocalKmsProvider {
        LocalKmsProvider {
            kms: self.clone(),
            name: name.to_owned(),
        }
    }

    // ---- internals ----

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// A state change of one existing key, decided by `next(name, current, now)`.
    fn transition(
        &self,
        name: &str,
        operation: &str,
        next: impl FnOnce(&str, Lifecycle, u64) -> Result<Lifecycle>,
    ) -> Result<()> {
        self.with_lock(|s| {
            let now = s.now;
            let outcome = (|| {
                let record = s.record_mut(name)?;
                let target = next(name, record.lifecycle, now)?;
                if target != record.lifecycle {
                    record.set_lifecycle(target);
                    s.dirty = true;
                }
                Ok(())
            })();
            s.finish(name, operation, None, true, outcome)
        })
    }

    /// Runs `f` on the current state under the exclusive lock, then appends what `f` audited
    /// and saves the state if `f` (or the lazy destruction of overdue keys) changed it.
    ///
    /// The audit entries are written *before* the state: a change is never saved unaudited,
    /// and if the audit cannot be written a successful result is turned into that error (an
    /// unaudited wrap or unwrap is refused).
    fn with_lock<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let _lock = self.acquire_lock()?;
        let (state, missing) = self.read_state()?;
        let mut session = Session {
            state,
            dirty: missing,
            now: crate::unix_now(),
            audit: Vec::new(),
        };
        session.destroy_overdue();
        let result = f(&mut session);
        let entries: Vec<AuditEntry> = session.audit.iter().map(|p| p.entry.clone()).collect();
        if let Err(audit_error) = self.append_audit(&entries) {
            return match result {
                // Refused anyway: the refusal is the more useful error.
                Err(e) => Err(e),
                Ok(_) => Err(audit_error),
            };
        }
        if session.dirty
            && let Err(save_error) = self.write_state(&session.state)
        {
            let followups: Vec<AuditEntry> = session
                .audit
                .iter()
                .filter(|p| p.mutation && p.entry.outcome == "ok")
                .map(|p| AuditEntry {
                    outcome: format!("refused: state not saved: {save_error}"),
                    ..p.entry.clone()
                })
                .collect();
            // Best effort: the save error is what the caller must see.
            let _ = self.append_audit(&followups);
            return Err(save_error);
        }
        result
    }

    fn acquire_lock(&self) -> Result<File> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Released when the handle is dropped (also if the process dies).
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// The state and whether the file was missing (then the state is empty).
    fn read_state(&self) -> Result<(State, bool)> {
        let path = self.state_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((State::default(), true)),
            Err(e) => return Err(Error::io(&path, e)),
        };
        check_private_mode(&file, &path)?;
        let bytes = read_limited(file, &path, MAX_STATE_FILE_LEN + 1)?;
        let label = path.display().to_string();
        if bytes.len() as u64 > MAX_STATE_FILE_LEN {
            return Err(Error::integrity(
                label,
                None,
                IntegrityReason::Malformed(format!(
                    "state file is larger than {MAX_STATE_FILE_LEN} bytes"
                )),
            ));
        }
        Ok((decode_state(&bytes, &label)?, false))
    }

    fn write_state(&self, state: &State) -> Result<()> {
        let bytes = encode_state(state);
        write_private_file_atomically(&self.dir, &self.state_path(), &bytes, Replace::Allowed)
    }

    /// Removes temporary state files left by a crash mid-write (they may hold key material).
    /// Called under the lock, so no live writer owns them.
    fn remove_stale_temporaries(&self) {
        let prefix = format!(".{STATE_FILE}.tmp-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.audit_path();
        let io_err = |e| Error::io(&path, e);
        let file = open_audit_log(&path)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut text = String::new();
        if len > 0 {
            // A crash may have torn the last line; start on a fresh line so that only the torn
            // one is lost, not ours too.
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1).map_err(io_err)?;
            if last != *b"\n" {
                text.push('\n');
            }
        }
        for entry in entries {
            let line =
                serde_json::to_string(entry).map_err(|e| Error::io(&path, io::Error::other(e)))?;
            text.push_str(&line);
            text.push('\n');
        }
        (&file).write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_data().map_err(io_err)
    }
}

/// The entries of an audit log's bytes, oldest first; only those about key `name` if given.
/// Lines that do not parse (a write torn by a crash) are skipped.
pub(crate) fn parse_audit_log(bytes: &[u8], name: Option<&str>) -> Vec<AuditEntry> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<AuditEntry>(line).ok())
        .filter(|entry| name.is_none_or(|n| entry.key == n))
        .collect()
}

fn open_audit_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

impl LocalKmsProvider {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The KMS holding the key.
    pub fn kms(&self) -> &LocalKms {
        &self.kms
    }
}

impl KeyProvider for LocalKmsProvider {
    fn descriptor(&self) -> KeyDescriptor {
        KeyDescriptor::new(PROVIDER, self.name.clone())
    }

    /// Wraps under the newest version of the key, which must be enabled.
    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        let desc = self.descriptor();
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).and_then(|record| {
                let newest = record
                    .materials
                    .last()
                    .ok_or_else(|| missing_material(&self.name))?;
                local_wrap(newest, record.version_count, &desc, data_key, context)
            });
            s.finish(
                &self.name,
                "wrap",
                Some(context.database_id),
                false,
                outcome,
            )
        })
    }

    /// Unwraps with the version the blob names. The key must be enabled; a blob naming a
    /// version the key does not have, or failing authentication, is [`Error::WrongMasterKey`].
    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<SecretKey> {
        let desc = self.descriptor();
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).and_then(|record| {
                let wrong = || Error::WrongMasterKey {
                    provider: PROVIDER.into(),
                    key_id: self.name.clone(),
                };
                let version = local_wrap_master_version(wrapped).ok_or_else(wrong)?;
                let material = usize::try_from(version)
                    .ok()
                    .and_then(|v| v.checked_sub(1))
                    .and_then(|index| record.materials.get(index))
                    .ok_or_else(wrong)?;
                local_unwrap(material, &desc, wrapped, context)
            });
            s.finish(
                &self.name,
                "unwrap",
                Some(context.database_id),
                false,
                outcome,
            )
        })
    }

    fn check(&self) -> Result<KeyState> {
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).map(|_| KeyState::Enabled);
            s.finish(&self.name, "check", None, false, outcome)
        })
    }
}

// ---- in-memory state ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Enabled,
    Disabled,
    PendingDeletion { deletion_at: u64 },
    Destroyed,
}

impl Lifecycle {
    fn key_state(self) -> KeyState {
        match self {
            Self::Enabled => KeyState::Enabled,
            Self::Disabled => KeyState::Disabled,
            Self::PendingDeletion { deletion_at } => KeyState::PendingDeletion { deletion_at },
            Self::Destroyed => KeyState::Destroyed,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Enabled => 0,
            Self::Disabled => 1,
            Self::PendingDeletion { .. } => 2,
            Self::Destroyed => 3,
        }
    }

    fn deletion_at(self) -> u64 {
        match self {
            Self::PendingDeletion { deletion_at } => deletion_at,
            _ => 0,
        }
    }
}

/// One key. Invariant: `materials.len() == version_count` unless destroyed, when `materials`
/// is empty.
#[derive(Debug)]
struct KeyRecord {
    created_at: u64,
    lifecycle: Lifecycle,
    version_count: u32,
    materials: Vec<SecretKey>,
}

impl KeyRecord {
    fn info(&self, name: &str) -> KmsKeyInfo {
        KmsKeyInfo {
            name: name.to_owned(),
            created_at: self.created_at,
            state: self.lifecycle.key_state(),
            versions: self.version_count,
        }
    }

    fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.lifecycle = lifecycle;
        if lifecycle == Lifecycle::Destroyed {
            // Dropping each SecretKey zeroizes it.
            self.materials.clear();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    keys: BTreeMap<String, KeyRecord>,
}

struct PendingAudit {
    entry: AuditEntry,
    /// Whether the entry records a state change (gets a follow-up if the save fails).
    mutation: bool,
}

/// One locked access: the state as read, and what to audit and save when done.
struct Session {
    state: State,
    dirty: bool,
    now: u64,
    audit: Vec<PendingAudit>,
}

impl Session {
    fn record_mut(&mut self, name: &str) -> Result<&mut KeyRecord> {
        self.state
            .keys
            .get_mut(name)
            .ok_or_else(|| unavailable(name, KeyState::NotFound))
    }

    /// Audits `outcome` of `operation` on `key` and passes it through.
    fn finish<T>(
        &mut self,
        key: &str,
        operation: &str,
        database_id: Option<DatabaseId>,
        mutation: bool,
        outcome: Result<T>,
    ) -> Result<T> {
        let text = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("refused: {e}"),
        };
        self.audit.push(PendingAudit {
            entry: AuditEntry {
                time: self.now,
                key: key.chars().take(MAX_NAME_LEN).collect(),
                operation: operation.to_owned(),
                database_id: database_id.map(|id| id.to_hex()),
                outcome: text,
            },
            mutation,
        });
        outcome
    }

    /// Destroys every key whose deletion date has passed, before anything else looks at the
    /// state, so an overdue key is never used even if saving the change then fails.
    fn destroy_overdue(&mut self) {
        let now = self.now;
        let overdue: Vec<String> = self
            .state
            .keys
            .iter()
            .filter(|(_, r)| {
                matches!(r.lifecycle, Lifecycle::PendingDeletion { deletion_at } if deletion_at <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in overdue {
            if let Some(record) = self.state.keys.get_mut(&name) {
                record.set_lifecycle(Lifecycle::Destroyed);
                self.dirty = true;
                let _ = self.finish(&name, "scheduled-destroy", None, true, Ok(()));
            }
        }
    }
}

fn unavailable(name: &str, state: KeyState) -> Error {
    Error::KeyUnavailable {
        provider: PROVIDER.into(),
        key_id: name.to_owned(),
        state,
    }
}

fn wrong_state(name: &str, state: Lifecycle, action: &str) -> Error {
    let hint = match state {
        Lifecycle::PendingDeletion { .. } => "; cancel the deletion first",
        Lifecycle::Destroyed => "; destruction is permanent",
        Lifecycle::Enabled | Lifecycle::Disabled if action == "destroy" => {
            "; schedule its deletion first"
        }
        Lifecycle::Enabled | Lifecycle::Disabled => "",
    };
    Error::invalid_argument(format!(
        "cannot {action} local KMS key {name:?}: it is {}{hint}",
        state.key_state()
    ))
}

fn missing_material(name: &str) -> Error {
    Error::integrity(
        STATE_FILE,
        None,
        IntegrityReason::Malformed(format!("key {name:?} has no key material")),
    )
}

/// The key if it exists and is enabled, else the [`Error::KeyUnavailable`] naming its state.
fn usable_key<'a>(state: &'a State, name: &str) -> Result<&'a KeyRecord> {
    match state.keys.get(name) {
        None => Err(unavailable(name, KeyState::NotFound)),
        Some(record) if record.lifecycle == Lifecycle::Enabled => Ok(record),
        Some(record) => Err(unavailable(name, record.lifecycle.key_state())),
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(format!("must be 1 to {MAX_NAME_LEN} bytes long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may contain only A-Z, a-z, 0-9, '.', '_' and '-'".to_owned());
    }
    None
}

fn validate_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(why) => Err(Error::invalid_argument(format!(
            "invalid local KMS key name {:?}: {why}",
            name.chars().take(MAX_NAME_LEN).collect::<String>()
        ))),
    }
}

// ---- state file encoding ----

fn encode_state(state: &State) -> Zeroizing<Vec<u8>> {
    let size = 8
        + 4
        + state
            .keys
            .iter()
            .map(|(name, r)| 2 + name.len() + 8 + 1 + 8 + 4 + 32 * r.materials.len())
            .sum::<usize>()
        + 4;
    // Exact capacity: growing would leave unwiped copies of key material behind.
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    // Counts and lengths were bounded on the way in (MAX_KEYS, MAX_NAME_LEN, MAX_VERSIONS).
    out.put_raw(MAGIC)
        .put_u32(u32::try_from(state.keys.len()).unwrap_or(u32::MAX));
    for (name, record) in &state.keys {
        out.put_bytes_u16(name.as_bytes())
            .put_u64(record.created_at)
            .put_u8(record.lifecycle.code())
            .put_u64(record.lifecycle.deletion_at())
            .put_u32(record.version_count);
        for material in &record.materials {
            out.put_raw(material.expose());
        }
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

fn decode_state(bytes: &[u8], file: &str) -> Result<State> {
    let fail = |reason| Error::integrity(file, None, reason);
    let malformed = |why: String| fail(IntegrityReason::Malformed(why));
    match bytes.get(..MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(_) => return Err(fail(IntegrityReason::BadMagic)),
        None => {
            return Err(malformed(format!(
                "state file is {} bytes, too short for its header",
                bytes.len()
            )));
        }
    }
    let Some(body_len) = bytes.len().checked_sub(4).filter(|&n| n >= MAGIC.len() + 4) else {
        return Err(malformed(format!(
            "state file is {} bytes, too short for its header",
            bytes.len()
        )));
    };
    let (body, crc) = bytes.split_at(body_len);
    let crc: [u8; 4] = crc
        .try_into()
        .map_err(|_| fail(IntegrityReason::BadLength))?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(fail(IntegrityReason::HeaderChecksum));
    }
    decode_body(body.get(MAGIC.len()..).unwrap_or_default()).map_err(malformed)
}

/// Decodes what follows the magic, up to the crc.
fn decode_body(bytes: &[u8]) -> std::result::Result<State, String> {
    let mut r = Reader::new(bytes);
    let count = r.u32("key count")?;
    let count = usize::try_from(count).map_err(|_| "key count overflows".to_owned())?;
    if count > MAX_KEYS {
        return Err(format!("{count} keys, more than the limit of {MAX_KEYS}"));
    }
    if count.saturating_mul(MIN_ENCODED_KEY_LEN) > r.remaining() {
        return Err(format!(
            "{count} keys cannot fit in {} bytes",
            r.remaining()
        ));
    }
    let mut state = State::default();
    for index in 0..count {
        let (name, record) = decode_key(&mut r).map_err(|why| format!("key #{index}: {why}"))?;
        if state.keys.contains_key(&name) {
            return Err(format!("key #{index}: duplicate name {name:?}"));
        }
        state.keys.insert(name, record);
    }
    if !r.is_empty() {
        return Err(format!("{} unexpected bytes after the keys", r.remaining()));
    }
    Ok(state)
}

fn decode_key(r: &mut Reader<'_>) -> std::result::Result<(String, KeyRecord), String> {
    let name_len = usize::from(r.u16("name length")?);
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(format!("name length {name_len} is not 1 to {MAX_NAME_LEN}"));
    }
    let name = std::str::from_utf8(r.take(name_len, "name")?)
        .map_err(|_| "name is not UTF-8".to_owned())?
        .to_owned();
    if let Some(why) = name_problem(&name) {
        return Err(format!("invalid name: {why}"));
    }
    let created_at = r.u64("created at")?;
    let code = r.u8("state")?;
    let deletion_at = r.u64("deletion at")?;
    let lifecycle = match code {
        0 => Lifecycle::Enabled,
        1 => Lifecycle::Disabled,
        2 => Lifecycle::PendingDeletion { deletion_at },
        3 => Lifecycle::Destroyed,
        other => return Err(format!("unknown state {other}")),
    };
    if code != 2 && deletion_at != 0 {
        return Err("deletion date set on a key not pending deletion".to_owned());
    }
    let version_count = r.u32("version count")?;
    if version_count > MAX_VERSIONS {
        return Err(format!(
            "{version_count} versions, more than the limit of {MAX_VERSIONS}"
        ));
    }
    let stored = if lifecycle == Lifecycle::Destroyed {
        0
    } else if version_count == 0 {
        return Err("a live key with no versions".to_owned());
    } else {
        usize::try_from(version_count).map_err(|_| "version count overflows".to_owned())?
    };
    let material_len = stored
        .checked_mul(crate::keys::KEY_LEN)
        .ok_or_else(|| "version count overflows".to_owned())?;
    let mut material_bytes = Reader::new(r.take(material_len, "key material")?);
    let mut materials = Vec::with_capacity(stored);
    for _ in 0..stored {
        let bytes = material_bytes.take(crate::keys::KEY_LEN, "key material")?;
        materials.push(SecretKey::from_slice(bytes).map_err(|_| "key material".to_owned())?);
    }
    Ok((
        name,
        KeyRecord {
            created_at,
            lifecycle,
            version_count,
            materials,
        },
    ))
}

/// Decodes a `kms.state` image and returns how many keys it holds; for the fuzz target,
/// which checks that no input panics or over-allocates. Decoded key material is held in
/// zeroizing [`SecretKey`]s and dropped.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn decode_state_for_fuzz(bytes: &[u8]) -> Result<usize> {
    decode_state(bytes, STATE_FILE).map(|state| state.keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tempfile::TempDir;

    fn tmp() -> TempDir {
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
        assert!(matches!(
            kms.create_key("beta"),
            Err(Error::InvalidArgument { .. })
        ));
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
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        kms.create_key("k")?;
        let p = kms.provider("k");
        let id = db();
        let dk = SecretKey::generate()?;
        let w = p.wrap(&dk, &ctx(id))?;
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
        assert!(matches!(
            kms.rotate("k"),
            Err(Error::InvalidArgument { .. })
        ));
        kms.enable("k")?;
        assert_eq!(p.check()?, KeyState::Enabled);
        assert_eq!(p.unwrap(&w, &ctx(id))?, dk);
        Ok(())
    }

    #[test]
    fn deletion_lifecycle() -> Result<()> {
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        kms.create_key("k")?;
        let p = kms.provider("k");
        let id = db();
        let dk = SecretKey::generate()?;
        let w = p.wrap(&dk, &ctx(id))?;

        for bad_days in [0, 31, u32::MAX] {
            assert!(matches!(
                kms.schedule_deletion("k", bad_days),
                Err(Error::InvalidArgument { .. })
            ));
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
        assert!(matches!(
            kms.enable("k"),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            kms.schedule_deletion("k", 3),
            Err(Error::InvalidArgument { .. })
        ));
        // Too early without `now`.
        assert!(matches!(
            kms.destroy("k", false),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(kms.describe("k")?.state, pending);

        kms.cancel_deletion("k")?;
        assert_eq!(kms.describe("k")?.state, KeyState::Disabled);
        assert!(matches!(
            kms.cancel_deletion("k"),
            Err(Error::InvalidArgument { .. })
        ));
        // Destroy only from pending deletion.
        assert!(matches!(
            kms.destroy("k", true),
            Err(Error::InvalidArgument { .. })
        ));
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
        assert!(matches!(
            kms.enable("k"),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            kms.cancel_deletion("k"),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            kms.rotate("k"),
            Err(Error::InvalidArgument { .. })
        ));
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
        {
            let _lock = kms.acquire_lock()?;
            let (mut state, _) = kms.read_state()?;
            if let Some(r) = state.keys.get_mut("k") {
                r.lifecycle = Lifecycle::PendingDeletion {
                    deletion_at: crate::unix_now() - 1,
                };
            }
            kms.write_state(&state)?;
        }
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
        {
            let _lock = kms.acquire_lock()?;
            let (mut state, _) = kms.read_state()?;
            let a_material = state
                .keys
                .get("a")
                .and_then(|r| r.materials.first().cloned())
                .expect("a has v1");
            if let Some(r) = state.keys.get_mut("b") {
                r.materials = vec![a_material];
            }
            kms.write_state(&state)?;
        }
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
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        kms.create_key("k")?;
        let p = kms.provider("k");
        let id = db();
        let dk = SecretKey::generate()?;
        let w = p.wrap(&dk, &ctx(id))?;
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

        let raw = std::fs::read_to_string(dir.path().join(AUDIT_FILE))
            .map_err(|e| Error::io("read", e))?;
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
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        kms.create_key("k")?;
        let p = kms.provider("k");
        let id = db();
        let dk = SecretKey::generate()?;
        let w = p.wrap(&dk, &ctx(id))?;
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

    fn small_state_bytes() -> Result<Vec<u8>> {
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        kms.create_key("a")?;
        kms.create_key("b")?;
        kms.rotate("b")?;
        kms.schedule_deletion("a", 3)?;
        kms.create_key("c")?;
        kms.disable("c")?;
        kms.create_key("d")?;
        kms.schedule_deletion("d", 1)?;
        kms.destroy("d", true)?;
        std::fs::read(dir.path().join(STATE_FILE)).map_err(|e| Error::io("read", e))
    }

    #[test]
    fn state_encoding_round_trips() -> Result<()> {
        let bytes = small_state_bytes()?;
        assert_eq!(decode_state_for_fuzz(&bytes)?, 4);
        let state = decode_state(&bytes, "t")?;
        assert_eq!(encode_state(&state).as_slice(), bytes.as_slice());
        assert_eq!(bytes.get(..8), Some(MAGIC.as_slice()));
        // Layout check: 4 keys, 1-byte names; versions 1 + 2 + 1 + 0 (destroyed).
        assert_eq!(
            bytes.len(),
            8 + 4 + 4 * (2 + 1 + 8 + 1 + 8 + 4) + 4 * 32 + 4
        );
        let d = state.keys.get("d").expect("d");
        assert_eq!((d.lifecycle, d.version_count), (Lifecycle::Destroyed, 1));
        assert!(d.materials.is_empty());
        Ok(())
    }

    #[test]
    fn every_corruption_is_a_typed_error() -> Result<()> {
        let good = small_state_bytes()?;
        for pos in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                if let Some(b) = bad.get_mut(pos) {
                    *b ^= mask;
                }
                match decode_state_for_fuzz(&bad) {
                    Err(Error::Integrity {
                        block: None,
                        reason:
                            IntegrityReason::BadMagic
                            | IntegrityReason::HeaderChecksum
                            | IntegrityReason::Malformed(_),
                        ..
                    }) => {}
                    other => panic!("byte {pos} ^ {mask:#x}: got {other:?}"),
                }
            }
        }
        for len in 0..good.len() {
            assert!(
                matches!(
                    decode_state_for_fuzz(good.get(..len).unwrap_or_default()),
                    Err(Error::Integrity { .. })
                ),
                "truncated to {len}"
            );
        }
        // And through the file: a corrupted state file makes every call fail cleanly.
        let dir = tmp();
        let kms = LocalKms::open(dir.path())?;
        let path = dir.path().join(STATE_FILE);
        let mut bad = good.clone();
        if let Some(b) = bad.get_mut(20) {
            *b ^= 0x10;
        }
        std::fs::write(&path, &bad).map_err(|e| Error::io(&path, e))?;
        assert!(matches!(kms.list(), Err(Error::Integrity { .. })));
        assert!(matches!(
            kms.provider("b").check(),
            Err(Error::Integrity { .. })
        ));
        Ok(())
    }

    /// Re-seals `body` (everything after the magic, before the crc) with a valid crc, so the
    /// structural checks behind the crc are exercised.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn key_bytes(
        name: &[u8],
        state: u8,
        deletion_at: u64,
        versions: u32,
        stored: usize,
    ) -> Vec<u8> {
        let mut k = Vec::new();
        k.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
        k.extend_from_slice(name);
        k.extend_from_slice(&5u64.to_le_bytes());
        k.push(state);
        k.extend_from_slice(&deletion_at.to_le_bytes());
        k.extend_from_slice(&versions.to_le_bytes());
        k.extend(std::iter::repeat_n(7u8, 32 * stored));
        k
    }

    fn with_count(count: u32, keys: &[Vec<u8>]) -> Vec<u8> {
        let mut body = count.to_le_bytes().to_vec();
        for k in keys {
            body.extend_from_slice(k);
        }
        sealed(&body)
    }

    #[test]
    fn structurally_bad_states_behind_a_valid_crc() {
        let ok = key_bytes(b"k", 0, 0, 1, 1);
        let single = std::slice::from_ref(&ok);
        assert_eq!(decode_state_for_fuzz(&with_count(1, single)).ok(), Some(1));
        let mut trailing = ok.clone();
        trailing.push(0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("huge key count", with_count(u32::MAX, &[])),
            ("count over limit", with_count(10_001, &[])),
            ("count beyond bytes", with_count(2, single)),
            ("duplicate", with_count(2, &[ok.clone(), ok.clone()])),
            ("trailing", with_count(1, &[trailing])),
            ("empty name", with_count(1, &[key_bytes(b"", 0, 0, 1, 1)])),
            ("bad name", with_count(1, &[key_bytes(b"a/b", 0, 0, 1, 1)])),
            (
                "non-utf8 name",
                with_count(1, &[key_bytes(&[0xff, 0xfe], 0, 0, 1, 1)]),
            ),
            (
                "long name",
                with_count(1, &[key_bytes(&[b'a'; 129], 0, 0, 1, 1)]),
            ),
            (
                "unknown state",
                with_count(1, &[key_bytes(b"k", 4, 0, 1, 1)]),
            ),
            (
                "stray deletion",
                with_count(1, &[key_bytes(b"k", 1, 9, 1, 1)]),
            ),
            ("no versions", with_count(1, &[key_bytes(b"k", 0, 0, 0, 0)])),
            (
                "versions over limit",
                with_count(1, &[key_bytes(b"k", 0, 0, 10_001, 0)]),
            ),
            (
                "huge versions",
                with_count(1, &[key_bytes(b"k", 0, 0, u32::MAX, 0)]),
            ),
            (
                "materials missing",
                with_count(1, &[key_bytes(b"k", 0, 0, 3, 2)]),
            ),
            (
                "destroyed with materials",
                with_count(1, &[key_bytes(b"k", 3, 0, 1, 1)]),
            ),
        ];
        for (what, bytes) in cases {
            match decode_state_for_fuzz(&bytes) {
                Err(Error::Integrity {
                    reason: IntegrityReason::Malformed(_),
                    ..
                }) => {}
                other => panic!("{what}: got {other:?}"),
            }
        }
        // Destroyed keys store no materials but keep their count; pending keys their date.
        let fine = with_count(
            2,
            &[key_bytes(b"d", 3, 0, 4, 0), key_bytes(b"p", 2, 99, 2, 2)],
        );
        assert_eq!(decode_state_for_fuzz(&fine).ok(), Some(2));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_state_for_fuzz(&bytes);
            let _ = decode_state_for_fuzz(&sealed(&bytes));
        }
    }
}
