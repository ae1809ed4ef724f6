//! The file-system model behind [`CrashFs`](super::CrashFs): inodes with their durable
//! prefix, directories with their durable entries, and the bookkeeping of faults, mutations
//! and space that every operation goes through.

use super::fault::{Fault, FaultId, FaultKind, Op, os_error};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub(super) struct Inode {
    pub(super) data: Vec<u8>,
    pub(super) durable: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Dir {
    pub(super) entries: BTreeMap<String, u64>,
    pub(super) durable_entries: BTreeMap<String, u64>,
    /// Whether the directory's own entry in its parent is durable (its parent was synced
    /// since it was created).
    pub(super) durable: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) inodes: HashMap<u64, Inode>,
    pub(super) dirs: BTreeMap<PathBuf, Dir>,
    pub(super) next_inode: u64,
    /// Mutations left before the injected fault fires; `None` = no fault armed.
    pub(super) countdown: Option<u64>,
    pub(super) fault_kind: Option<FaultKind>,
    /// Set once the fault fired: the "process" is dead and every later mutation fails.
    pub(super) dead: bool,
    pub(super) mutations: u64,
    pub(super) locks: BTreeSet<PathBuf>,
    /// Armed injected faults, in arming order.
    pub(super) faults: Vec<(FaultId, Fault)>,
    pub(super) next_fault: u64,
    /// Injected errors returned so far.
    pub(super) faults_fired: u64,
    /// Bytes the files reachable from a directory may hold in total; `None` = unlimited.
    pub(super) space_limit: Option<u64>,
}

impl State {
    pub(super) fn split(path: &Path) -> io::Result<(PathBuf, String)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad path"))?
            .to_string();
        Ok((crate::parent_dir(path), name))
    }

    pub(super) fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| not_found(dir, "directory"))
    }

    pub(super) fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = Self::split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.entries.get(&name).copied())
            .ok_or_else(|| not_found(path, "file"))
    }

    /// Fires the first armed fault that hits `op` on `path`, if any.
    pub(super) fn inject(&mut self, op: Op, path: &Path) -> io::Result<()> {
        let mut fired = None;
        for (i, (_, f)) in self.faults.iter_mut().enumerate() {
            if !f.matches(op, path) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if let Some(r) = f.remaining.as_mut() {
                *r = r.saturating_sub(1);
            }
            fired = Some((i, f.errno));
            break;
        }
        let Some((i, errno)) = fired else {
            return Ok(());
        };
        if self
            .faults
            .get(i)
            .is_some_and(|(_, f)| f.remaining == Some(0))
        {
            self.faults.remove(i);
        }
        self.faults_fired += 1;
        Err(os_error(errno, op, path))
    }

    /// Bytes held by files that some directory entry reaches (a removed file's space is
    /// free at once: the model does not keep unlinked-but-open files alive).
    pub(super) fn used_bytes(&self) -> u64 {
        let mut seen = BTreeSet::new();
        let mut used = 0u64;
        for dir in self.dirs.values() {
            for id in dir.entries.values() {
                if seen.insert(*id) {
                    used += self.inodes.get(id).map_or(0, |i| i.data.len() as u64);
                }
            }
        }
        used
    }

    /// How many of `wanted` bytes fit under the space limit.
    pub(super) fn room_for(&self, wanted: usize) -> usize {
        match self.space_limit {
            None => wanted,
            Some(limit) => {
                let free = limit.saturating_sub(self.used_bytes());
                wanted.min(usize::try_from(free).unwrap_or(usize::MAX))
            }
        }
    }

    /// The current length of a file (durable or not).
    pub(super) fn file_len(&self, id: u64) -> u64 {
        self.inodes.get(&id).map_or(0, |i| i.data.len() as u64)
    }

    /// `fsync` of file `id` opened at `path`: a counted mutation and an injection point, then
    /// everything written so far is durable.
    pub(super) fn sync_file(&mut self, id: u64, path: &Path) -> io::Result<()> {
        self.mutate(true)?;
        self.inject(Op::Sync, path)?;
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    /// Counts a mutation and fires the armed fault when its countdown reaches zero.
    pub(super) fn mutate(&mut self, is_sync: bool) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("injected fault: filesystem is crashed"));
        }
        let counts = match self.fault_kind {
            Some(FaultKind::SyncOnly) => is_sync,
            _ => true,
        };
        if counts {
            self.mutations += 1;
            if let Some(left) = self.countdown.as_mut() {
                if *left == 0 {
                    self.dead = true;
                    self.countdown = None;
                    return Err(io::Error::other("injected fault"));
                }
                *left -= 1;
            }
        }
        Ok(())
    }
}

pub(super) fn not_found(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{what} {} not found", path.display()),
    )
}
