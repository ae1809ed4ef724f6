//! The filesystem seam of sealdb.
//!
//! Every durable byte sealdb writes (WAL segments, tables, the manifest, the KEYS file) goes
//! through [`FileSystem`]. Two implementations exist:
//!
//! - [`RealFs`]: `std::fs`, with positional reads (`pread`) and `fdatasync`.
//! - [`CrashFs`]: an in-memory filesystem that models what survives a power cut. File contents
//!   become durable only when the file is synced, and directory entries (creations, renames,
//!   removals) only when their directory is synced. [`CrashFs::crash`] throws away everything
//!   that was not durable, and a fault countdown makes the N-th mutating operation fail, so a
//!   test can crash a workload at every write, sync and rename in turn.
//!
//! This crate never interprets file contents: sealing is the job of `sealdb-crypto`.

mod crash;
mod hook;
mod priority;
mod real;

pub use crash::{CrashFs, Fault, FaultId, FaultKind, Op, PathPredicate};
pub use hook::{Hook, HookFs};
pub use priority::{BACKGROUND_NICE, lower_thread_priority};
pub use real::RealFs;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened for appending. Files are only ever written at their end: sealdb never
/// overwrites bytes in place (see `docs/crypto.md`, nonce uniqueness).
pub trait WritableFile: Send + Sync + Debug {
    /// Appends `data` at the end of the file (into the OS buffer; not yet durable).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Number of bytes appended so far (including any written before this handle was opened).
    fn len(&self) -> u64;
    /// Whether nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A handle that makes the bytes appended so far durable from another thread, for
    /// background syncing (it keeps the dirty tail small, so a later foreground sync is short).
    /// `None` where unsupported (the crashable filesystem keeps syncs deterministic).
    fn background_syncer(&self) -> Option<BackgroundSync> {
        None
    }
}

/// A background sync handle (see [`WritableFile::background_syncer`]).
pub type BackgroundSync = std::sync::Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// A file opened for positional reads. Implementations are safe to share between threads.
pub trait RandomAccessFile: Send + Sync + Debug {
    /// Fills `buf` with the bytes at `offset`; fails with `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length when it was opened.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An exclusive lock on a path, held until dropped.
pub trait FileLock: Send + Sync + Debug {}

/// Every filesystem operation sealdb performs. Paths are absolute or relative to the process's
/// working directory, exactly as with `std::fs`.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates a new file for appending; fails with `AlreadyExists` if the path exists. Creating
    /// never truncates: sealed files are written once (the nonce-uniqueness rule).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>>;
    /// Opens an existing file to append at its end (used only for plain logs such as audit
    /// logs; never for sealed files).
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists (atomic on POSIX filesystems).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists the names of the entries of a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes an existing file's contents durable without writing to it (recovery uses it to
    /// make what it replayed from a previous run's unsynced tail durable before relying on it).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// The size of a file in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Creates a hard link `to` for `from` (or fails with `Unsupported`).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating it), failing with `WouldBlock` if another
    /// holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;
}

/// A shared handle to a filesystem implementation.
pub type SharedFs = Arc<dyn FileSystem>;

/// Reads a whole file, refusing files longer than `limit` bytes before allocating.
pub fn read_file_limited(fs: &dyn FileSystem, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = fs.open_read(path)?;
    let len = file.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes, over the {limit}-byte limit",
                path.display()
            ),
        ));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces `path` atomically with `contents`: write a temporary file beside it, sync it,
/// rename it over `path`, sync the directory. After a crash the path holds either the old or
/// the new contents, never a mixture.
pub fn write_file_atomic(fs: &dyn FileSystem, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!("{TEMP_MARKER}{}", unique_suffix()?));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = fs.create_new(&tmp)?;
        file.append(contents)?;
        file.sync_data()?;
        drop(file);
        fs.rename(&tmp, path)?;
        fs.sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// Whether an I/O error means the disk (or the quota) is full: `ENOSPC` or `EDQUOT`.
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Creates `path` and any missing parents, and makes every directory it created durable by
/// syncing its parent: a new directory's entry is like a new file's, lost in a power cut until
/// its parent directory is synced. Existing directories cost nothing (no sync).
pub fn create_dir_all_durable(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || fs.exists(p) {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(path)?;
    for dir in &missing {
        fs.sync_dir(&parent_dir(dir))?;
    }
    Ok(())
}

/// The directory containing `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What separates a file's name from the suffix of its temporary copies.
const TEMP_MARKER: &str = ".tmp-";

/// A random suffix for a temporary file name. Random rather than pid-and-counter: a stale
/// temporary file left by a crashed process with the same pid (PID 1 in every container) would
/// otherwise collide with the next run's first name and fail its `create_new`.
fn unique_suffix() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `name` is a temporary file [`write_file_atomic`] creates (random suffix) or
/// created before it used random suffixes (`<pid>-<counter>`).
pub fn is_temp_file_name(name: &str) -> bool {
    let Some((base, suffix)) = name.rsplit_once(TEMP_MARKER) else {
        return false;
    };
    let random = suffix.len() == 32 && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    let legacy = suffix.split_once('-').is_some_and(|(pid, n)| {
        !pid.is_empty()
            && !n.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && n.bytes().all(|b| b.is_ascii_digit())
    });
    !base.is_empty() && (random || legacy)
}

/// Removes the temporary files [`write_file_atomic`] left in `dir` when a process died
/// between creating and renaming one; returns how many. Call it only while nothing else writes
/// into `dir` (at open, under the database lock): a live writer's temporary file looks the
/// same. A temporary file never holds the only copy of anything: the rename had not happened.
pub fn remove_stale_temp_files(fs: &dyn FileSystem, dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for name in fs.list_dir(dir)? {
        if !is_temp_file_name(&name) {
            continue;
        }
        let path = dir.join(&name);
        match fs.remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        fs.sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_file_with_same_pid_does_not_block_write_file_atomic() -> io::Result<()> {
        let fs = CrashFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir)?;
        // What a crashed earlier process with our pid left, for the first names it would use.
        for n in 0..64 {
            let stale = dir.join(format!("CURRENT.tmp-{}-{n}", std::process::id()));
            fs.create_new(&stale)?.append(b"stale")?;
        }
        write_file_atomic(&fs, &dir.join("CURRENT"), b"new")?;
        assert_eq!(fs.contents(&dir.join("CURRENT"))?, b"new");
        assert_eq!(remove_stale_temp_files(&fs, dir)?, 64);
        assert_eq!(fs.list_dir(dir)?, vec!["CURRENT".to_string()]);
        Ok(())
    }

    #[test]
    fn create_dir_all_durable_survives_a_crash() -> io::Result<()> {
        let fs = CrashFs::new();
        create_dir_all_durable(&fs, Path::new("/a/b/c"))?;
        create_dir_all_durable(&fs, Path::new("/a/b/c"))?;
        fs.create_dir_all(Path::new("/a/x"))?;
        fs.crash();
        assert!(fs.exists(Path::new("/a/b/c")));
        assert!(!fs.exists(Path::new("/a/x")));
        Ok(())
    }

    #[test]
    fn temp_file_names_are_recognised_and_others_are_not() {
        assert!(is_temp_file_name(
            "KEYS.tmp-0123456789abcdef0123456789abcdef"
        ));
        assert!(is_temp_file_name("CURRENT.tmp-1-0"));
        assert!(!is_temp_file_name("CURRENT"));
        assert!(!is_temp_file_name(".tmp-1-0"));
        assert!(!is_temp_file_name("data.tmp-notes"));
        assert!(!is_temp_file_name("0000000000000001.sst"));
    }
}
