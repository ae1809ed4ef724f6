//! Writing the live `MANIFEST-<n>` (edit groups appended and synced, rolled to a snapshot)
//! and replaying one at open.

use super::current::{CURRENT_FILE, read_current, write_current};
use super::edit::Edit;
use super::edit::{decode_group, encode_group};
use super::format::{FormatVersion, check_cipher};
use super::state::{DEFAULT_KEYSPACE, ManifestState};
use crate::{Error, Result};
use sealdb_crypto::{
    ArtifactKind, CipherId, Expected, IntegrityReason, Keyring, SealedReader, SealedWriter,
};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MANIFEST_PREFIX: &str = "MANIFEST-";
/// Roll to a new manifest (a snapshot) once the live one grows past this.
const MANIFEST_ROLL_BYTES: u64 = 4 << 20;

/// Replays manifest bytes (a whole `MANIFEST-<n>` file) with a fixed keyring; for the fuzz
/// target. Never panics.
#[cfg(feature = "fuzzing")]
pub fn replay_manifest_for_fuzz(
    bytes: &[u8],
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<usize> {
    let fs = sealdb_vfs::CrashFs::new();
    let dir = Path::new("/m");
    let _ = sealdb_vfs::FileSystem::create_dir_all(&fs, dir);
    let path = dir.join("MANIFEST-0000000000000001");
    let mut f = sealdb_vfs::FileSystem::create_new(&fs, &path).map_err(|e| Error::io(&path, e))?;
    f.append(bytes).map_err(|e| Error::io(&path, e))?;
    drop(f);
    let state = read_manifest(&fs, &path, keyring, cipher)?;
    Ok(state.keyspaces.len())
}

fn manifest_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:016}")
}

#[cfg(feature = "fuzzing")]
fn read_manifest(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<ManifestState> {
    read_manifest_counted(fs, path, keyring, cipher).map(|(s, _)| s)
}

/// Replays a manifest; also returns how many edit groups it held.
fn read_manifest_counted(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<(ManifestState, u64)> {
    let mut groups = 0u64;
    let expected = Expected {
        kind: ArtifactKind::Manifest,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    let reader = SealedReader::open(fs, path, keyring, &expected)?;
    let mut state = ManifestState {
        keyspaces: BTreeMap::new(),
        levels: BTreeMap::new(),
        // A manifest without a format-version edit is version 1.
        format_version: FormatVersion::OLDEST,
        ..ManifestState::default()
    };
    for item in reader.blocks_unfinished_ok() {
        match item {
            Ok((handle, block)) => {
                // Decode and apply errors name the manifest and the edit group's offset.
                let at_group = |e: Error| e.in_file(path).at(handle.offset);
                for edit in decode_group(&block.data, "edit group").map_err(at_group)? {
                    state.apply(&edit).map_err(at_group)?;
                }
                groups += 1;
            }
            // An edit group whose write was cut by a crash was never acknowledged.
            Err(sealdb_crypto::Error::Integrity {
                reason: IntegrityReason::Truncated,
                ..
            }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if !state.keyspaces.contains_key(&DEFAULT_KEYSPACE) {
        return Err(Error::corruption("no default keyspace".into()).in_file(path));
    }
    Ok((state, groups))
}

/// The live manifest.
#[derive(Debug)]
pub(crate) struct Manifest {
    fs: SharedFs,
    dir: PathBuf,
    cipher: CipherId,
    number: u64,
    /// `None` in a read-only database: nothing is ever written.
    writer: Option<SealedWriter>,
    state: ManifestState,
    /// Edit groups written to the live manifest (its first is the snapshot).
    groups: u64,
    /// Told of every new position (the head record pins the manifest's end).
    head: Option<std::sync::Arc<crate::head::Head>>,
    /// Set when a write to the live manifest failed: its tail is unknown (a partial or even a
    /// whole edit group may be on disk), so it is never appended to again; the next edit
    /// starts a new manifest instead.
    needs_roll: bool,
    /// Table files (number, path) an edit that failed may have named: the unknown tail could
    /// make them live on reopen, so they are deleted only once a new manifest replaced that
    /// tail, and only if the state does not hold them.
    doubtful: Vec<(u64, PathBuf)>,
}

/// A manifest as read at open, before anything is written.
#[derive(Debug)]
pub(crate) struct ReadManifest {
    /// The manifest number `CURRENT` names.
    pub number: u64,
    /// The state its edits build.
    pub state: ManifestState,
    /// Edit groups it holds.
    pub groups: u64,
}

impl Manifest {
    /// Writes the manifest of a restored database, holding `state`.
    pub(crate) fn create_with_state(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        state: ManifestState,
    ) -> Result<Self> {
        Self::write_new(fs, dir, keyring, cipher, 1, state)
    }

    /// Writes the manifest of a new database at format `version`.
    pub(crate) fn create(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        version: FormatVersion,
    ) -> Result<Self> {
        check_cipher(version, cipher)?;
        let state = ManifestState {
            format_version: version,
            ..ManifestState::default()
        };
        Self::write_new(fs, dir, keyring, cipher, 1, state)
    }

    /// The database's format version.
    pub(crate) fn format_version(&self) -> FormatVersion {
        self.state.format_version
    }

    /// Raises the format version to `to` (durably, before returning). Raising to the current
    /// version does nothing; lowering is refused, since files of the newer format may exist.
    pub(crate) fn ratchet(&mut self, to: FormatVersion, keyring: &Keyring) -> Result<bool> {
        let current = self.state.format_version;
        if to < current {
            return Err(Error::invalid_argument(format!(
                "the database is at format version {current}; a version never goes down (asked for {to})"
            )));
        }
        if to == current {
            return Ok(false);
        }
        self.apply(vec![Edit::FormatVersion(to.number())], keyring)?;
        Ok(true)
    }

    /// Reads the manifest `CURRENT` names and replays it, changing nothing on disk.
    pub(crate) fn read(
        fs: &dyn sealdb_vfs::FileSystem,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
    ) -> Result<ReadManifest> {
        let number = read_current(fs, dir, keyring)?;
        let path = dir.join(manifest_name(number));
        if !fs.exists(&path) {
            return Err(Error::corruption(format!(
                "CURRENT names {}, which is missing",
                path.display()
            )));
        }
        let (state, groups) = read_manifest_counted(fs, &path, keyring, cipher)?;
        Ok(ReadManifest {
            number,
            state,
            groups,
        })
    }

    /// Continues after a manifest read at open: writes a fresh manifest holding its state
    /// (the replayed one is never appended to) and switches `CURRENT` to it.
    pub(crate) fn start_after(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        read: ReadManifest,
    ) -> Result<Self> {
        Self::write_new(fs, dir, keyring, cipher, read.number + 1, read.state)
    }

    /// A manifest that is only read: edits are refused.
    pub(crate) fn read_only(
        fs: SharedFs,
        dir: &Path,
        cipher: CipherId,
        read: ReadManifest,
    ) -> Self {
        Self {
            fs,
            dir: dir.to_path_buf(),
            cipher,
            number: read.number,
            writer: None,
            state: read.state,
            groups: read.groups,
            head: None,
            needs_roll: false,
            doubtful: Vec::new(),
        }
    }

    fn write_new(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        number: u64,
        state: ManifestState,
    ) -> Result<Self> {
        let path = dir.join(manifest_name(number));
        if fs.exists(&path) {
            // Left by a crash before CURRENT was switched to it: never reuse, never append.
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let mut writer =
            SealedWriter::create(fs.as_ref(), &path, keyring, ArtifactKind::Manifest, cipher)?;
        writer.append_block(&encode_group(&state.snapshot_edits()))?;
        writer.sync()?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        write_current(fs.as_ref(), dir, keyring, number)?;
        // Older manifests (and orphans of crashed switches) are now garbage. Best effort: the
        // switch is done, so a failure here must not make the caller retry it (a retry would
        // remove the manifest CURRENT now names); leftovers go at the next switch.
        if let Ok(names) = fs.list_dir(dir) {
            for name in names {
                if let Some(n) = name
                    .strip_prefix(MANIFEST_PREFIX)
                    .and_then(|d| d.parse::<u64>().ok())
                    && n != number
                {
                    let _ = fs.remove_file(&dir.join(&name));
                }
            }
            let _ = fs.sync_dir(dir);
        }
        Ok(Self {
            fs,
            dir: dir.to_path_buf(),
            cipher,
            number,
            writer: Some(writer),
            state,
            groups: 1,
            head: None,
            needs_roll: false,
            doubtful: Vec::new(),
        })
    }

    /// The live manifest's position: (manifest number, edit groups written).
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.number, self.groups)
    }

    /// Re-reads `CURRENT` and the manifest it names from disk (for `verify`): `CURRENT` must
    /// name this manifest, and the file must authenticate and hold every edit group written to
    /// it (a cut at a block boundary authenticates, so the count is what shows it). Call with
    /// the manifest lock held, so that no edit is appended meanwhile. A read-only handle
    /// accepts a newer manifest or more edit groups (another process's writer moved on).
    pub(crate) fn verify_on_disk(&self, keyring: &Keyring) -> Result<()> {
        let read_only = self.writer.is_none();
        let named = read_current(self.fs.as_ref(), &self.dir, keyring)?;
        if named < self.number || (named > self.number && !read_only) {
            return Err(Error::corruption(format!(
                "{} names manifest {named}, but the live manifest is {}",
                self.dir.join(CURRENT_FILE).display(),
                self.number
            )));
        }
        let path = self.dir.join(manifest_name(named));
        let (_, groups) = read_manifest_counted(self.fs.as_ref(), &path, keyring, self.cipher)?;
        let short = named == self.number && groups < self.groups;
        if short || (!read_only && groups != self.groups) {
            return Err(Error::corruption(format!(
                "{} holds {groups} edit groups, but {} were written to it",
                path.display(),
                self.groups
            )));
        }
        Ok(())
    }

    /// Reports every new position to the head from now on.
    pub(crate) fn set_head(&mut self, head: std::sync::Arc<crate::head::Head>) {
        self.head = Some(head);
    }

    /// Tells the head the new position. Runs after the edit is durable and applied, so a
    /// head that cannot be written for lack of space is not an error of the edit: reporting
    /// one would make the caller redo a change that already happened (a flush would write its
    /// tables twice). A lagging head only checks less (it still names an older, smaller
    /// position) and catches up at the next edit.
    fn record_position(&self) -> Result<()> {
        if let Some(h) = &self.head {
            let pos = self.position();
            match h.update(|s| s.manifest = s.manifest.max(pos)) {
                Err(e) if !e.is_no_space() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Starts a new manifest holding a snapshot of the state (sealed under the keyring's
    /// current data key) and switches `CURRENT` to it.
    pub(crate) fn roll(&mut self, keyring: &Keyring) -> Result<()> {
        self.roll_to(keyring, self.state.clone())
    }

    /// Starts a new manifest holding `state` and switches to it. On failure nothing changes
    /// (the half-written new manifest is replaced by the next attempt).
    fn roll_to(&mut self, keyring: &Keyring, state: ManifestState) -> Result<()> {
        if self.writer.is_none() {
            return Err(Error::ReadOnly);
        }
        let mut rolled = Self::write_new(
            self.fs.clone(),
            &self.dir,
            keyring,
            self.cipher,
            self.number + 1,
            state,
        )?;
        rolled.head = self.head.take();
        let doubtful = std::mem::take(&mut self.doubtful);
        *self = rolled;
        // The unknown tail is gone with the old manifest: files only it may have named are
        // orphans now.
        for (number, path) in doubtful {
            if !self.holds_table(number) {
                let _ = self.fs.remove_file(&path);
            }
        }
        self.record_position()
    }

    fn holds_table(&self, number: u64) -> bool {
        self.state
            .levels
            .values()
            .flatten()
            .any(|files| files.contains_key(&number))
    }

    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Notes table files a failed edit named (see [`apply`](Self::apply)): they are deleted
    /// when it is safe, or else found as orphans at the next open.
    pub(crate) fn doubtful_outputs(&mut self, files: impl IntoIterator<Item = (u64, PathBuf)>) {
        self.doubtful.extend(files);
    }

    /// Durably records `edits`, then applies them. On failure nothing is applied, and the
    /// live manifest is not written again: the next edit goes to a new manifest. A failure
    /// for lack of space ([`Error::NoSpace`]) is therefore safe to retry; the caller must
    /// still treat the edit as possibly durable until then (see
    /// [`doubtful_outputs`](Self::doubtful_outputs)).
    pub(crate) fn apply(&mut self, edits: Vec<Edit>, keyring: &Keyring) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(Error::ReadOnly);
        };
        let mut next = self.state.clone();
        for e in &edits {
            next.apply(e)?;
        }
        if self.needs_roll || writer.offset() > MANIFEST_ROLL_BYTES {
            return self.roll_to(keyring, next);
        }
        let written = writer
            .append_block(&encode_group(&edits))
            .and_then(|_| writer.sync());
        if let Err(e) = written {
            self.needs_roll = true;
            return Err(e.into());
        }
        self.state = next;
        self.groups += 1;
        self.record_position()
    }
}
