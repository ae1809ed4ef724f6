//! Which database directories this process holds the writer lock of, so that a second open
//! in the same process can say so instead of blaming "another process": the directory lock
//! is an OS file lock, which cannot tell a live handle of ours from someone else's.

use parking_lot::Mutex;
use sealdb_vfs::FileLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Directories locked by this process, with how many locks each (normally one).
static HELD: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

/// The key a directory is registered under: its canonical path when it has one, so that
/// `./db` and `/abs/db` match.
fn key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether this process holds the writer lock of `path`.
pub(crate) fn held_here(path: &Path) -> bool {
    HELD.lock()
        .as_ref()
        .is_some_and(|m| m.contains_key(&key(path)))
}

/// A writer lock that is registered as held by this process for as long as it lives.
#[derive(Debug)]
pub(crate) struct HeldHere {
    _lock: Box<dyn FileLock>,
    key: PathBuf,
}

impl HeldHere {
    /// Registers `lock` (on the database directory `path`).
    pub(crate) fn wrap(lock: Box<dyn FileLock>, path: &Path) -> Box<dyn FileLock> {
        let key = key(path);
        *HELD
            .lock()
            .get_or_insert_with(HashMap::new)
            .entry(key.clone())
            .or_insert(0) += 1;
        Box::new(Self { _lock: lock, key })
    }
}

impl FileLock for HeldHere {}

impl Drop for HeldHere {
    fn drop(&mut self) {
        let mut held = HELD.lock();
        if let Some(m) = held.as_mut()
            && let Some(n) = m.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}
