//! [`FileSystem`] for [`CrashFs`]: each operation on the model, with the POSIX durability
//! rules of the module's documentation (entries durable only once their directory is synced).

use super::control::CrashFs;
use super::fault::Op;
use super::files::{CrashLock, CrashReadable, CrashWritable};
use super::state::{Dir, Inode, State, not_found};
use crate::{FileLock, FileSystem, RandomAccessFile, WritableFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        let len = st.file_len(id);
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
                let len = self.state.lock().file_len(id);
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
        st.sync_file(id, path)
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.dirs.contains_key(path) || st.lookup(path).is_ok()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let id = st.lookup(path)?;
        Ok(st.file_len(id))
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
