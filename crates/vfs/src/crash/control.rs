//! [`CrashFs`] itself and what a test drives it with: crashes (clean or torn), the fault
//! countdown, injected faults, the space limit, and direct access to a file's bytes.

use super::fault::{Fault, FaultId, FaultKind};
use super::state::{Dir, State};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An in-memory filesystem that can lose everything not yet durable. Cheap to clone: clones
/// share the same state.
#[derive(Debug, Clone, Default)]
pub struct CrashFs {
    pub(super) state: Arc<Mutex<State>>,
}

impl CrashFs {
    /// An empty filesystem with a root directory `/`.
    pub fn new() -> Self {
        let fs = Self::default();
        fs.state.lock().dirs.insert(
            PathBuf::from("/"),
            Dir {
                durable: true,
                ..Dir::default()
            },
        );
        fs
    }

    /// Arms a fault: after `n` more counted operations succeed, the next one fails and every
    /// mutation after it fails too, as if the process had died at that point.
    pub fn fail_after(&self, n: u64, kind: FaultKind) {
        let mut st = self.state.lock();
        st.countdown = Some(n);
        st.fault_kind = Some(kind);
    }

    /// Whether an armed fault has fired.
    pub fn fault_fired(&self) -> bool {
        self.state.lock().dead
    }

    /// Arms an injected fault (see [`Fault`]); it stays armed across crashes until it has
    /// fired its [`times`](Fault::times) or is removed.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let mut st = self.state.lock();
        let id = FaultId(st.next_fault);
        st.next_fault += 1;
        st.faults.push((id, fault));
        id
    }

    /// Disarms one injected fault (a no-op if it already disarmed itself).
    pub fn remove_fault(&self, id: FaultId) {
        self.state.lock().faults.retain(|(f, _)| *f != id);
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Injected errors (faults and full-disk refusals) returned so far.
    pub fn injected_errors(&self) -> u64 {
        self.state.lock().faults_fired
    }

    /// Limits the bytes all files together may hold (`None`: unlimited). An append that does
    /// not fit writes the part that does and fails with `ENOSPC`, as `write(2)` on a full
    /// disk does; removing files frees their bytes.
    pub fn set_space_limit(&self, limit: Option<u64>) {
        self.state.lock().space_limit = limit;
    }

    /// Bytes held by the files now reachable from a directory.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes()
    }

    /// Mutating operations counted so far (to size a crash-at-every-point loop).
    pub fn mutation_count(&self) -> u64 {
        self.state.lock().mutations
    }

    /// Simulates a power cut: every file loses its unsynced tail and every directory its
    /// unsynced entries. Clears any armed or fired fault and all locks.
    pub fn crash(&self) {
        self.crash_with(|_, _| 0);
    }

    /// Like [`crash`](Self::crash), but each file keeps a prefix of its unsynced tail chosen by
    /// `seed`, modelling pages the OS wrote back before the power cut (torn writes).
    pub fn crash_keeping_prefix(&self, seed: u64) {
        let mut x = seed | 1;
        self.crash_with(move |_, unsynced| {
            // xorshift: a deterministic spread of cut points, reproducible from the seed.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if unsynced == 0 {
                0
            } else {
                (x % (unsynced as u64 + 1)) as usize
            }
        });
    }

    fn crash_with(&self, mut keep: impl FnMut(u64, usize) -> usize) {
        let mut st = self.state.lock();
        let mut ids: Vec<u64> = st.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(inode) = st.inodes.get_mut(&id) {
                let durable_len = inode.durable.len().min(inode.data.len());
                // Data appended after the last sync: keep a prefix of it, if asked.
                let unsynced = inode.data.len().saturating_sub(durable_len);
                let kept = keep(id, unsynced).min(unsynced);
                let mut survived = inode.durable.clone();
                if inode.data.len() >= durable_len + kept && inode.durable.len() == durable_len {
                    survived.extend_from_slice(&inode.data[durable_len..durable_len + kept]);
                }
                inode.data = survived.clone();
                inode.durable = survived;
            }
        }
        // Directories whose entry never became durable vanish with their whole subtree.
        let lost: Vec<PathBuf> = st
            .dirs
            .iter()
            .filter(|(_, d)| !d.durable)
            .map(|(p, _)| p.clone())
            .collect();
        st.dirs
            .retain(|p, _| !lost.iter().any(|l| p.starts_with(l)));
        for dir in st.dirs.values_mut() {
            dir.entries = dir.durable_entries.clone();
        }
        st.dead = false;
        st.countdown = None;
        st.fault_kind = None;
        st.locks.clear();
    }

    /// The current contents of a file (durable or not), for tests that inspect bytes.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let id = st.lookup(path)?;
        Ok(st
            .inodes
            .get(&id)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    /// Overwrites a file's bytes (current and durable), for tamper tests.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut st = self.state.lock();
        let id = st.lookup(path)?;
        if let Some(inode) = st.inodes.get_mut(&id) {
            inode.durable = data.clone();
            inode.data = data;
        }
        Ok(())
    }
}
