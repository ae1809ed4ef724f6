//! A filesystem wrapper that calls a test's hook before every mutating operation.
//!
//! For tests that must hold a thread at an exact point of its I/O — a group-commit leader
//! inside its WAL sync, a retirement inside its file deletion — and check what other threads
//! can do meanwhile, without sleeping and hoping.

use crate::{FileLock, FileSystem, Op, RandomAccessFile, SharedFs, WritableFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Called with the operation and the path it touches (for a rename, its source) before the
/// operation runs. It may block; an error it returns is the operation's error.
pub type Hook = Arc<dyn Fn(Op, &Path) -> io::Result<()> + Send + Sync>;

/// A [`FileSystem`] that runs a [`Hook`] before each mutating operation of the filesystem it
/// wraps (creations, appends, syncs, renames, removals, directory syncs and creations, links).
/// Reads pass straight through.
#[derive(Clone)]
pub struct HookFs {
    inner: SharedFs,
    hook: Hook,
}

impl HookFs {
    /// Wraps `inner`, calling `hook` before each of its mutating operations.
    pub fn new(inner: SharedFs, hook: Hook) -> Self {
        Self { inner, hook }
    }
}

impl std::fmt::Debug for HookFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

struct HookFile {
    inner: Box<dyn WritableFile>,
    path: PathBuf,
    hook: Hook,
}

impl std::fmt::Debug for HookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WritableFile for HookFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        (self.hook)(Op::Write, &self.path)?;
        self.inner.append(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        (self.hook)(Op::Sync, &self.path)?;
        self.inner.sync_data()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn background_syncer(&self) -> Option<crate::BackgroundSync> {
        self.inner.background_syncer()
    }
}

impl HookFs {
    fn wrap(&self, path: &Path, inner: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(HookFile {
            inner,
            path: path.to_path_buf(),
            hook: self.hook.clone(),
        })
    }
}

impl FileSystem for HookFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        (self.hook)(Op::Create, path)?;
        Ok(self.wrap(path, self.inner.create_new(path)?))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open_read(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(self.wrap(path, self.inner.open_append(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        (self.hook)(Op::Rename, from)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::Remove, path)?;
        self.inner.remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::CreateDir, path)?;
        self.inner.create_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::Remove, path)?;
        self.inner.remove_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::SyncDir, path)?;
        self.inner.sync_dir(path)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::Sync, path)?;
        self.inner.sync_file(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        (self.hook)(Op::Link, from)?;
        self.inner.hard_link(from, to)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CrashFs;
    use std::sync::Mutex;

    #[test]
    fn the_hook_sees_every_mutation_and_can_fail_it() -> io::Result<()> {
        let seen: Arc<Mutex<Vec<(Op, PathBuf)>>> = Arc::default();
        let log = seen.clone();
        let fs = HookFs::new(
            Arc::new(CrashFs::new()),
            Arc::new(move |op, p: &Path| {
                log.lock()
                    .map_err(|_| io::Error::other("lock"))?
                    .push((op, p.to_path_buf()));
                if p.ends_with("refused") {
                    return Err(io::Error::other("refused by the hook"));
                }
                Ok(())
            }),
        );
        let a = Path::new("/a");
        let mut f = fs.create_new(a)?;
        f.append(b"x")?;
        f.sync_data()?;
        fs.sync_dir(Path::new("/"))?;
        fs.rename(a, Path::new("/b"))?;
        assert!(fs.create_new(Path::new("/refused")).is_err());
        assert!(!fs.exists(Path::new("/refused")));
        let got = seen.lock().map_err(|_| io::Error::other("lock"))?.clone();
        let ops: Vec<Op> = got.iter().map(|(op, _)| *op).collect();
        assert_eq!(
            ops,
            [
                Op::Create,
                Op::Write,
                Op::Sync,
                Op::SyncDir,
                Op::Rename,
                Op::Create
            ]
        );
        assert_eq!(fs.list_dir(Path::new("/"))?, vec!["b".to_string()]);
        Ok(())
    }
}
