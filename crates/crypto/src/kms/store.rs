//! The KMS directory: its lock, and reading and atomically replacing `kms.state` under it.

use super::audit::{AUDIT_FILE, AuditEntry, append_audit, open_audit_log};
use super::codec::{MAX_STATE_FILE_LEN, decode_state, encode_state};
use super::session::Session;
use super::state::{STATE_FILE, State};
use crate::private_file::{
    Replace, check_private_mode, create_private_dir, read_limited, sync_dir,
    write_private_file_atomically,
};
use crate::{Error, IntegrityReason, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(super) const LOCK_FILE: &str = "kms.lock";

/// A local KMS rooted at a directory. Cheap to clone; holds no key material itself (every call
/// reads the state file under the lock and forgets it afterwards).
#[derive(Debug, Clone)]
pub struct LocalKms {
    dir: PathBuf,
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

    pub(super) fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub(super) fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// Runs `f` on the current state under the exclusive lock, then appends what `f` audited
    /// and saves the state if `f` (or the lazy destruction of overdue keys) changed it.
    ///
    /// The audit entries are written *before* the state: a change is never saved unaudited,
    /// and if the audit cannot be written a successful result is turned into that error (an
    /// unaudited wrap or unwrap is refused).
    pub(super) fn with_lock<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
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
        if let Err(audit_error) = append_audit(&self.audit_path(), &entries) {
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
            let _ = append_audit(&self.audit_path(), &followups);
            return Err(save_error);
        }
        result
    }

    pub(super) fn acquire_lock(&self) -> Result<File> {
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
    pub(super) fn read_state(&self) -> Result<(State, bool)> {
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

    pub(super) fn write_state(&self, state: &State) -> Result<()> {
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
}
