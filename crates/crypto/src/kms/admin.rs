//! The key-management operations of a [`LocalKms`]: create, list, rotate, the state changes
//! and the audit log's reading.

use super::audit::{AuditEntry, parse_audit_log};
use super::state::{
    KeyRecord, KmsKeyInfo, Lifecycle, MAX_DELETION_DAYS, MAX_KEYS, MAX_VERSIONS, MIN_DELETION_DAYS,
    SECONDS_PER_DAY, unavailable, validate_name, wrong_state,
};
use super::store::LocalKms;
use crate::keys::SecretKey;
use crate::{Error, KeyState, Result};
use std::io;

impl LocalKms {
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
}
