//! The backup API of [`Db`]; backups themselves are `crate::backup`.

use super::Db;
use crate::Result;
use crate::backup::BackupInfo;
use std::path::Path;

impl Db {
    /// Takes a consistent online backup into `dir` (created if needed): the live tables at
    /// the last flush's sequence number (memtables are flushed first), the WAL segments that
    /// point-in-time recovery needs, the KEYS file, and a sealed catalogue. Reads and writes
    /// continue meanwhile. `progress(done, total)` counts files.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
    /// let db = sealdb::Db::open(dir.path().join("db"), opts.clone())?;
    /// db.put("k", "v")?;
    /// let backups = dir.path().join("backups");
    /// let info = db.backup(&backups, &mut |_done, _total| {})?;
    /// assert_eq!(sealdb::list_backups(&backups, &opts)?.len(), 1);
    /// let restored = dir.path().join("restored");
    /// sealdb::restore_backup(
    ///     &backups, &restored, Some(info.id.as_str()), sealdb::RestorePoint::Backup, None, &opts,
    ///     &mut |_, _| {},
    /// )?;
    /// drop(db);
    /// assert_eq!(sealdb::Db::open(&restored, opts)?.get("k")?, Some(b"v".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn backup(&self, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupInfo> {
        crate::backup::create::backup(&self.inner, dir, progress)
    }
}
