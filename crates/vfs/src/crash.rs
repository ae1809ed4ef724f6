//! A crashable in-memory filesystem for fault-injection tests.
//!
//! The model follows what POSIX promises and no more:
//! - bytes appended to a file are durable only once the file is synced;
//! - a new directory entry (create, rename, remove) is durable only once its directory is synced;
//! - a new directory is durable only once its parent directory is synced: a crash forgets a
//!   directory created since its parent's last sync, and everything in it (removing and
//!   renaming directories is modelled as immediately durable);
//! - a crash may keep any prefix of a file's unsynced tail ([`CrashFs::crash_keeping_prefix`]),
//!   which is how torn writes reach the disk.
//!
//! Besides crashes it injects the two errors a running database meets on a sick disk, without
//! killing the "process": a full disk ([`CrashFs::set_space_limit`]: appends past the limit
//! write what fits and fail with `ENOSPC`, and deleting files makes room again) and arbitrary
//! I/O errors on chosen operations and paths ([`CrashFs::inject`] with a [`Fault`]).

use crate::{FileLock, FileSystem, RandomAccessFile, WritableFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which operations the fault countdown counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Every mutating operation: create, append, sync, rename, remove, directory sync.
    AnyMutation,
    /// Only syncs (file and directory).
    SyncOnly,
}

/// The operations a [`Fault`] can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `create_new` (and `open_append` of a missing file).
    Create,
    /// An append to an open file.
    Write,
    /// `sync_data` of an open file, or `sync_file`.
    Sync,
    /// A rename.
    Rename,
    /// `remove_file`.
    Remove,
    /// `sync_dir`.
    SyncDir,
    /// `create_dir_all`.
    CreateDir,
    /// `hard_link`.
    Link,
}

/// A predicate on the path an operation touches (for a rename, its source).
pub type PathPredicate = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// An injected I/O error: which operations and paths it hits, how many matching operations
/// succeed first, and how many times it fires. Built with [`Fault::eio`] or
/// [`Fault::no_space`] and the builder methods; armed with [`CrashFs::inject`]. Unlike
/// [`CrashFs::fail_after`] it does not kill the filesystem: operations it does not hit go on.
#[derive(Clone)]
pub struct Fault {
    ops: Vec<Op>,
    path: Option<PathPredicate>,
    skip: u64,
    remaining: Option<u64>,
    errno: i32,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fault")
            .field("ops", &self.ops)
            .field("path_filter", &self.path.is_some())
            .field("skip", &self.skip)
            .field("remaining", &self.remaining)
            .field("errno", &self.errno)
            .finish()
    }
}

/// `EIO`: the device failed.
const EIO: i32 = 5;
/// `ENOSPC`: no space left on device (`io::ErrorKind::StorageFull`).
const ENOSPC: i32 = 28;

impl Fault {
    /// Fails with `EIO`. By default every operation, every path, forever.
    pub fn eio() -> Self {
        Self::with_errno(EIO)
    }

    /// Fails with `ENOSPC` (`io::ErrorKind::StorageFull`), as a full disk does.
    pub fn no_space() -> Self {
        Self::with_errno(ENOSPC)
    }

    /// Fails with the given raw OS error.
    pub fn with_errno(errno: i32) -> Self {
        Self {
            ops: Vec::new(),
            path: None,
            skip: 0,
            remaining: None,
            errno,
        }
    }

    /// Only these operations (default: all).
    pub fn on(mut self, ops: &[Op]) -> Self {
        self.ops = ops.to_vec();
        self
    }

    /// Only operations on paths matching `pred`.
    pub fn when_path(mut self, pred: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Self {
        self.path = Some(Arc::new(pred));
        self
    }

    /// Lets the first `n` matching operations succeed: the fault hits the (n+1)-th.
    pub fn after(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Fires at most `n` times, then disarms itself (default: until removed).
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, op: Op, path: &Path) -> bool {
        (self.ops.is_empty() || self.ops.contains(&op))
            && self.path.as_ref().is_none_or(|p| p(path))
    }
}

/// Identifies an armed [`Fault`] (to remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// The bare OS error, as the real filesystem returns it (callers add the path): code that
/// checks `raw_os_error()` or `kind()` sees exactly what it would see on a real disk.
fn os_error(errno: i32, _op: Op, _path: &Path) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<String, u64>,
    durable_entries: BTreeMap<String, u64>,
    /// Whether the directory's own entry in its parent is durable (its parent was synced
    /// since it was created).
    durable: bool,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_inode: u64,
    /// Mutations left before the injected fault fires; `None` = no fault armed.
    countdown: Option<u64>,
    fault_kind: Option<FaultKind>,
    /// Set once the fault fired: the "process" is dead and every later mutation fails.
    dead: bool,
    mutations: u64,
    locks: BTreeSet<PathBuf>,
    /// Armed injected faults, in arming order.
    faults: Vec<(FaultId, Fault)>,
    next_fault: u64,
    /// Injected errors returned so far.
    faults_fired: u64,
    /// Bytes the files reachable from a directory may hold in total; `None` = unlimited.
    space_limit: Option<u64>,
}

impl State {
    fn split(path: &Path) -> io::Result<(PathBuf, String)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad path"))?
            .to_string();
        Ok((crate::parent_dir(path), name))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| not_found(dir, "directory"))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = Self::split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.entries.get(&name).copied())
            .ok_or_else(|| not_found(path, "file"))
    }

    /// Fires the first armed fault that hits `op` on `path`, if any.
    fn inject(&mut self, op: Op, path: &Path) -> io::Result<()> {
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
    fn used_bytes(&self) -> u64 {
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
    fn room_for(&self, wanted: usize) -> usize {
        match self.space_limit {
            None => wanted,
            Some(limit) => {
                let free = limit.saturating_sub(self.used_bytes());
                wanted.min(usize::try_from(free).unwrap_or(usize::MAX))
            }
        }
    }

    /// Counts a mutation and fires the armed fault when its countdown reaches zero.
    fn mutate(&mut self, is_sync: bool) -> io::Result<()> {
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

fn not_found(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{what} {} not found", path.display()),
    )
}

/// An in-memory filesystem that can lose everything not yet durable. Cheap to clone: clones
/// share the same state.
#[derive(Debug, Clone, Default)]
pub struct CrashFs {
    state: Arc<Mutex<State>>,
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

#[derive(Debug)]
struct CrashWritable {
    state: Arc<Mutex<State>>,
    inode: u64,
    len: u64,
    /// The path the file was opened at (what injected faults match).
    path: PathBuf,
}

impl WritableFile for CrashWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        let half = data.get(..data.len() / 2).unwrap_or_default();
        if let Err(e) = st
            .mutate(false)
            .and_then(|()| st.inject(Op::Write, &self.path))
        {
            // A write that dies midway may leave part of its bytes in the page cache.
            if let Some(inode) = st.inodes.get_mut(&self.inode) {
                inode.data.extend_from_slice(half);
            }
            self.len += half.len() as u64;
            return Err(e);
        }
        // A full disk takes what fits, then refuses the rest (a short write, then ENOSPC).
        let fits = st.room_for(data.len());
        let kept = data.get(..fits).unwrap_or_default();
        let inode = st
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| io::Error::other("inode vanished"))?;
        inode.data.extend_from_slice(kept);
        self.len += kept.len() as u64;
        if fits < data.len() {
            st.faults_fired += 1;
            return Err(os_error(ENOSPC, Op::Write, &self.path));
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.state.lock();
        st.mutate(true)?;
        st.inject(Op::Sync, &self.path)?;
        if let Some(inode) = st.inodes.get_mut(&self.inode) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
struct CrashReadable {
    state: Arc<Mutex<State>>,
    inode: u64,
    len: u64,
}

impl RandomAccessFile for CrashReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.state.lock();
        let data = st
            .inodes
            .get(&self.inode)
            .map(|i| i.data.as_slice())
            .unwrap_or_default();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
struct CrashLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl FileLock for CrashLock {}

impl Drop for CrashLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl FileSystem for CrashFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        let (dir, name) = State::split(path)?;
        if st.dir_mut(&dir)?.entries.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        st.mutate(false)?;
        st.inject(Op::Create, path)?;
        let id = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(id, Inode::default());
        st.dir_mut(&dir)?.entries.insert(name, id);
        Ok(Box::new(CrashWritable {
            state: self.state.clone(),
            inode: id,
            len: 0,
            path: path.to_path_buf(),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let st = self.state.lock();
        let id = st.lookup(path)?;
        let len = st.inodes.get(&id).map(|i| i.data.len()).unwrap_or(0) as u64;
        Ok(Arc::new(CrashReadable {
            state: self.state.clone(),
            inode: id,
            len,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let existing = self.state.lock().lookup(path).ok();
        match existing {
            Some(id) => {
                let len = self
                    .state
                    .lock()
                    .inodes
                    .get(&id)
                    .map(|i| i.data.len())
                    .unwrap_or(0) as u64;
                Ok(Box::new(CrashWritable {
                    state: self.state.clone(),
                    inode: id,
                    len,
                    path: path.to_path_buf(),
                }))
            }
            None => self.create_new(path),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dirs.contains_key(from) {
            // Directories are modelled as durable on creation; renaming one moves the whole
            // subtree at once (the model does not tear directory renames).
            if st.dirs.contains_key(to) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "target directory exists",
                ));
            }
            st.mutate(false)?;
            st.inject(Op::Rename, from)?;
            let moved: Vec<PathBuf> = st
                .dirs
                .keys()
                .filter(|d| d.starts_with(from))
                .cloned()
                .collect();
            for d in moved {
                if let (Some(dir), Ok(rest)) = (st.dirs.remove(&d), d.strip_prefix(from)) {
                    st.dirs.insert(to.join(rest), dir);
                }
            }
            return Ok(());
        }
        let id = st.lookup(from)?;
        let (to_dir, to_name) = State::split(to)?;
        st.dir_mut(&to_dir)?;
        st.mutate(false)?;
        st.inject(Op::Rename, from)?;
        let (from_dir, from_name) = State::split(from)?;
        st.dir_mut(&from_dir)?.entries.remove(&from_name);
        st.dir_mut(&to_dir)?.entries.insert(to_name, id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.lookup(path)?;
        st.mutate(false)?;
        st.inject(Op::Remove, path)?;
        let (dir, name) = State::split(path)?;
        st.dir_mut(&dir)?.entries.remove(&name);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if !st.dirs.contains_key(path) {
            st.inject(Op::CreateDir, path)?;
        }
        let mut cur = PathBuf::new();
        for comp in path.components() {
            cur.push(comp);
            // The root (or a relative path's first component) has no parent to sync.
            let durable = cur.parent().is_none_or(|p| p.as_os_str().is_empty());
            st.dirs.entry(cur.clone()).or_insert_with(|| Dir {
                durable,
                ..Dir::default()
            });
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let empty = st
            .dirs
            .get(path)
            .map(|d| d.entries.is_empty())
            .ok_or_else(|| not_found(path, "directory"))?;
        if !empty {
            return Err(io::Error::other("directory not empty"));
        }
        st.dirs.remove(path);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        let dir = st
            .dirs
            .get(path)
            .ok_or_else(|| not_found(path, "directory"))?;
        let mut names: Vec<String> = dir.entries.keys().cloned().collect();
        // Subdirectories are entries too.
        for sub in st.dirs.keys() {
            if sub.parent() == Some(path)
                && let Some(n) = sub.file_name().and_then(|n| n.to_str())
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.dir_mut(path)?;
        st.mutate(true)?;
        st.inject(Op::SyncDir, path)?;
        let dir = st.dir_mut(path)?;
        dir.durable_entries = dir.entries.clone();
        for (sub, d) in st.dirs.iter_mut() {
            if sub.parent() == Some(path) {
                d.durable = true;
            }
        }
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let id = st.lookup(path)?;
        st.mutate(true)?;
        st.inject(Op::Sync, path)?;
        if let Some(inode) = st.inodes.get_mut(&id) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.dirs.contains_key(path) || st.lookup(path).is_ok()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let id = st.lookup(path)?;
        Ok(st.inodes.get(&id).map(|i| i.data.len()).unwrap_or(0) as u64)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let id = st.lookup(from)?;
        let (dir, name) = State::split(to)?;
        if st.dir_mut(&dir)?.entries.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "link exists"));
        }
        st.mutate(false)?;
        st.inject(Op::Link, from)?;
        st.dir_mut(&dir)?.entries.insert(name, id);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut st = self.state.lock();
        if !st.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            ));
        }
        Ok(Box::new(CrashLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_data_is_lost_on_crash() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/db"))?;
        fs.sync_dir(&p("/"))?;
        let mut f = fs.create_new(&p("/db/a"))?;
        f.append(b"hello")?;
        f.sync_data()?;
        f.append(b" world")?;
        fs.sync_dir(&p("/db"))?;
        fs.crash();
        assert_eq!(fs.contents(&p("/db/a"))?, b"hello");
        Ok(())
    }

    #[test]
    fn unsynced_directory_entry_is_lost_on_crash() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/db"))?;
        fs.sync_dir(&p("/"))?;
        let mut f = fs.create_new(&p("/db/a"))?;
        f.append(b"x")?;
        f.sync_data()?;
        fs.crash();
        assert!(!fs.exists(&p("/db/a")));
        Ok(())
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        crate::write_file_atomic(&fs, &p("/d/k"), b"v1")?;
        let mut tmp = fs.create_new(&p("/d/t"))?;
        tmp.append(b"v2")?;
        tmp.sync_data()?;
        fs.rename(&p("/d/t"), &p("/d/k"))?;
        fs.crash();
        assert_eq!(fs.contents(&p("/d/k"))?, b"v1");
        Ok(())
    }

    #[test]
    fn fault_fires_and_kills_later_mutations() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        fs.fail_after(1, FaultKind::AnyMutation);
        let mut f = fs.create_new(&p("/d/a"))?;
        assert!(f.append(b"abcd").is_err());
        assert!(fs.fault_fired());
        assert!(f.sync_data().is_err());
        fs.crash();
        assert!(!fs.fault_fired());
        assert!(!fs.exists(&p("/d/a")));
        Ok(())
    }

    #[test]
    fn torn_tail_keeps_a_prefix() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        let mut f = fs.create_new(&p("/d/a"))?;
        f.append(b"sync")?;
        f.sync_data()?;
        fs.sync_dir(&p("/d"))?;
        f.append(&[7u8; 100])?;
        fs.crash_keeping_prefix(12345);
        let c = fs.contents(&p("/d/a"))?;
        assert!(c.starts_with(b"sync") && c.len() <= 104);
        Ok(())
    }

    #[test]
    fn full_disk_writes_what_fits_then_fails_and_deleting_makes_room() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        fs.set_space_limit(Some(10));
        let mut a = fs.create_new(&p("/d/a"))?;
        a.append(b"123456")?;
        let e = a.append(b"abcdef").err().ok_or(io::ErrorKind::Other)?;
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(fs.contents(&p("/d/a"))?, b"123456abcd");
        assert_eq!(a.len(), 10);
        let mut b = fs.create_new(&p("/d/b"))?;
        assert!(b.append(b"x").is_err());
        fs.remove_file(&p("/d/a"))?;
        b.append(b"x")?;
        assert_eq!(fs.used_bytes(), 1);
        Ok(())
    }

    #[test]
    fn injected_fault_hits_matching_ops_after_skipping_and_disarms() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        fs.inject(
            Fault::eio()
                .on(&[Op::Write])
                .when_path(|p| p.extension().is_some_and(|e| e == "sst"))
                .after(1)
                .times(1),
        );
        let mut log = fs.create_new(&p("/d/x.log"))?;
        log.append(b"ok")?;
        let mut t = fs.create_new(&p("/d/1.sst"))?;
        t.append(b"first")?;
        let e = t.append(b"second").err().ok_or(io::ErrorKind::Other)?;
        assert_eq!(e.raw_os_error(), Some(5));
        t.append(b"third")?; // disarmed after one hit, and the filesystem is not dead
        assert!(!fs.fault_fired());
        assert_eq!(fs.injected_errors(), 1);
        let id = fs.inject(Fault::no_space().on(&[Op::Rename]));
        let e = fs
            .rename(&p("/d/x.log"), &p("/d/y.log"))
            .err()
            .ok_or(io::ErrorKind::Other)?;
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        fs.remove_fault(id);
        fs.rename(&p("/d/x.log"), &p("/d/y.log"))?;
        Ok(())
    }

    #[test]
    fn new_directory_is_lost_on_crash_until_its_parent_is_synced() -> io::Result<()> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p("/a/b"))?;
        let mut f = fs.create_new(&p("/a/b/f"))?;
        f.append(b"x")?;
        f.sync_data()?;
        fs.sync_dir(&p("/a/b"))?;
        fs.sync_dir(&p("/a"))?; // makes b durable, but a itself is not
        fs.crash();
        assert!(!fs.exists(&p("/a")));
        assert!(!fs.exists(&p("/a/b/f")));
        fs.create_dir_all(&p("/a/b"))?;
        fs.sync_dir(&p("/"))?;
        fs.sync_dir(&p("/a"))?;
        let mut f = fs.create_new(&p("/a/b/f"))?;
        f.append(b"x")?;
        f.sync_data()?;
        fs.sync_dir(&p("/a/b"))?;
        fs.crash();
        assert_eq!(fs.contents(&p("/a/b/f"))?, b"x");
        Ok(())
    }
}
