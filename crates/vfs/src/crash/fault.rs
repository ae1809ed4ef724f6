//! Injected faults: the countdown that kills the "process" ([`FaultKind`]) and the targeted
//! I/O errors ([`Fault`]) that leave it running, with the errors they return.

use std::io;
use std::path::Path;
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
///
/// [`CrashFs::inject`]: crate::CrashFs::inject
/// [`CrashFs::fail_after`]: crate::CrashFs::fail_after
#[derive(Clone)]
pub struct Fault {
    ops: Vec<Op>,
    path: Option<PathPredicate>,
    pub(super) skip: u64,
    pub(super) remaining: Option<u64>,
    pub(super) errno: i32,
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
pub(super) const ENOSPC: i32 = 28;

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

    pub(super) fn matches(&self, op: Op, path: &Path) -> bool {
        (self.ops.is_empty() || self.ops.contains(&op))
            && self.path.as_ref().is_none_or(|p| p(path))
    }
}

/// Identifies an armed [`Fault`] (to remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(pub(super) u64);

/// The bare OS error, as the real filesystem returns it (callers add the path): code that
/// checks `raw_os_error()` or `kind()` sees exactly what it would see on a real disk.
pub(super) fn os_error(errno: i32, _op: Op, _path: &Path) -> io::Error {
    io::Error::from_raw_os_error(errno)
}
