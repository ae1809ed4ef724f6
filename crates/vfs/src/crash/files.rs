//! The open-file handles of [`CrashFs`](super::CrashFs): appends and syncs go through the
//! model's fault and space checks; reads see the current (not only durable) bytes.

use super::fault::{ENOSPC, Op, os_error};
use super::state::State;
use crate::{FileLock, RandomAccessFile, WritableFile};
use parking_lot::Mutex;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct CrashWritable {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: u64,
    pub(super) len: u64,
    /// The path the file was opened at (what injected faults match).
    pub(super) path: PathBuf,
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
        self.state.lock().sync_file(self.inode, &self.path)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
pub(super) struct CrashReadable {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: u64,
    pub(super) len: u64,
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
pub(super) struct CrashLock {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) path: PathBuf,
}

impl FileLock for CrashLock {}

impl Drop for CrashLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}
