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

mod control;
mod fault;
mod files;
mod fs;
mod state;

pub use control::CrashFs;
pub use fault::{Fault, FaultId, FaultKind, Op, PathPredicate};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileSystem;
    use std::io;
    use std::path::PathBuf;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A fresh filesystem with the directory `dir` created and its entry in `/` durable.
    fn with_durable_dir(dir: &str) -> io::Result<CrashFs> {
        let fs = CrashFs::new();
        fs.create_dir_all(&p(dir))?;
        fs.sync_dir(&p("/"))?;
        Ok(fs)
    }

    #[test]
    fn unsynced_data_is_lost_on_crash() -> io::Result<()> {
        let fs = with_durable_dir("/db")?;
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
        let fs = with_durable_dir("/db")?;
        let mut f = fs.create_new(&p("/db/a"))?;
        f.append(b"x")?;
        f.sync_data()?;
        fs.crash();
        assert!(!fs.exists(&p("/db/a")));
        Ok(())
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() -> io::Result<()> {
        let fs = with_durable_dir("/d")?;
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
        let fs = with_durable_dir("/d")?;
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
        let fs = with_durable_dir("/d")?;
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
        let fs = with_durable_dir("/d")?;
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
        let fs = with_durable_dir("/d")?;
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
