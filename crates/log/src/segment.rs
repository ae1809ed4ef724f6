//! Writing a chain: creating segments (at once, or ahead of need in the background), the
//! background syncer, and retiring segments from the front of the chain.

use crate::{ChainConfig, Error, Result};
use parking_lot::{Condvar, Mutex};
use sealdb_crypto::{Keyring, SealedWriter};
use sealdb_vfs::{BackgroundSync, FileSystem, SharedFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Creates segment `number` holding `start_frame`, durably: the file and its directory entry
/// are synced before it is returned, so a start frame naming a predecessor never outlives the
/// file it is in.
pub fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &ChainConfig,
    keyring: &Keyring,
    number: u64,
    start_frame: &[u8],
) -> Result<SealedWriter> {
    let path = cfg.path(dir, number);
    let mut writer = SealedWriter::create(fs, &path, keyring, cfg.kind, cfg.cipher)?;
    writer.append_block(start_frame)?;
    writer.sync()?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(writer)
}

/// A segment created ahead of need: its sealed header is written and durable and its
/// directory entry is durable, but it holds no frame yet. To recovery it is a last segment
/// without a start frame, which holds nothing and is deleted when writing starts.
#[derive(Debug)]
pub struct Spare {
    number: u64,
    writer: SealedWriter,
}

impl Spare {
    /// Whether it can become segment `number` of a log sealing under `keyring`: made for that
    /// number, and sealed under the data-key version current now (a rotation since it was made
    /// leaves it under the old one, which a new segment must not keep alive).
    fn fits(&self, number: u64, keyring: &Keyring) -> bool {
        self.number == number && self.writer.header().data_key_version == keyring.current_version()
    }
}

impl Spare {
    /// The segment number it was created for.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Makes it a segment: writes `start_frame`, durable unless `sync` is false (then the
    /// caller's next sync makes it durable, and nothing may rely on the segment before).
    pub fn start(self, start_frame: &[u8], sync: bool) -> Result<SealedWriter> {
        let mut writer = self.writer;
        writer.append_block(start_frame)?;
        if sync {
            writer.sync()?;
        }
        Ok(writer)
    }

    /// Deletes it, durably: left behind, it would sit in the middle of the chain as a
    /// segment without a start frame.
    pub fn remove(self, fs: &dyn FileSystem, dir: &Path, cfg: &ChainConfig) -> Result<()> {
        let p = cfg.path(dir, self.number);
        drop(self.writer);
        fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
    }
}

/// Creates segment `number` as a [`Spare`]. A failure removes what was made (or reports why
/// it could not).
fn create_spare(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &ChainConfig,
    keyring: &Keyring,
    number: u64,
) -> Result<Spare> {
    let path = cfg.path(dir, number);
    let made = (|| -> Result<Spare> {
        let mut writer = SealedWriter::create(fs, &path, keyring, cfg.kind, cfg.cipher)?;
        writer.sync()?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Spare { number, writer })
    })();
    if made.is_err() {
        match fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    made
}

/// Where the background creation of the next segment leaves its outcome.
#[derive(Debug, Default)]
struct SpareState {
    /// A creation is under way (its file may exist half-made).
    pending: bool,
    /// The outcome of the last creation, until a rollover takes it. A failure is kept too:
    /// it is the rollover's failure to create its segment, reported when the rollover
    /// happens.
    made: Option<Result<Spare>>,
}

/// The next segment, created ahead of need off the writing thread, so that a rollover only
/// writes and syncs a start frame (no file creation, no directory sync).
#[derive(Debug, Default)]
pub struct SpareSlot {
    state: Mutex<SpareState>,
    ready: Condvar,
}

impl SpareSlot {
    /// An empty slot.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits for a creation under way, then takes its outcome (`None`: there is no spare).
    pub fn take(&self) -> Option<Result<Spare>> {
        let mut st = self.state.lock();
        while st.pending {
            self.ready.wait(&mut st);
        }
        st.made.take()
    }

    /// The number of the spare that is ready, if one is (waits for one being created).
    pub fn ready_number(&self) -> Option<u64> {
        let mut st = self.state.lock();
        while st.pending {
            self.ready.wait(&mut st);
        }
        st.made
            .as_ref()
            .and_then(|m| m.as_ref().ok())
            .map(Spare::number)
    }

    /// Starts creating segment `number` on a thread named `thread_name`, unless a creation is
    /// under way or its outcome not yet taken. Without a thread, nothing happens: the
    /// rollover then creates its segment itself.
    pub fn prepare(
        self: &Arc<Self>,
        fs: SharedFs,
        dir: PathBuf,
        cfg: ChainConfig,
        keyring: Keyring,
        number: u64,
        thread_name: &str,
    ) {
        {
            let mut st = self.state.lock();
            if st.pending || st.made.is_some() {
                return;
            }
            st.pending = true;
        }
        let slot = self.clone();
        let spawned = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                // At normal priority: a rollover may wait for this thread, and a writer must
                // never wait on a thread that load can starve.
                let made = create_spare(fs.as_ref(), &dir, &cfg, &keyring, number);
                let mut st = slot.state.lock();
                st.made = Some(made);
                st.pending = false;
                slot.ready.notify_all();
            });
        if spawned.is_err() {
            self.state.lock().pending = false;
        }
    }

    /// Deletes the spare, if any (waiting for one being created).
    pub fn discard(&self, fs: &dyn FileSystem, dir: &Path, cfg: &ChainConfig) -> Result<()> {
        match self.take() {
            Some(Ok(spare)) => spare.remove(fs, dir, cfg),
            // A failed creation removed what it made.
            Some(Err(_)) | None => Ok(()),
        }
    }
}

/// Why a rollover could not start the next segment.
#[derive(Debug)]
pub struct StartFailed {
    /// The failure.
    pub error: Error,
    /// A failure to remove the half-made segment afterwards: the directory may still hold it
    /// (the log must not write on until reopened).
    pub cleanup: Option<Box<Error>>,
}

/// Starts segment `number` with `start_frame` at a rollover: in the segment created ahead for
/// it when `spare` holds one (its start frame synced unless `defer_sync`: then the caller's
/// next sync makes it durable, and nothing may name the segment before), otherwise in a file
/// created now, durably. A spare created for another number, or sealed under a data-key
/// version that is no longer current, is removed first; a failed
/// background creation is this rollover's failure. If starting fails, the half-made segment
/// is removed again, so a retry can create it afresh.
#[allow(clippy::too_many_arguments)]
pub fn start_next(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &ChainConfig,
    keyring: &Keyring,
    spare: Option<&SpareSlot>,
    number: u64,
    start_frame: &[u8],
    defer_sync: bool,
) -> std::result::Result<SealedWriter, StartFailed> {
    let create_now = || create_segment(fs, dir, cfg, keyring, number, start_frame);
    let made = match spare.and_then(SpareSlot::take) {
        Some(Ok(spare)) if spare.fits(number, keyring) => spare.start(start_frame, !defer_sync),
        Some(Ok(spare)) => spare.remove(fs, dir, cfg).and_then(|()| create_now()),
        Some(Err(e)) => Err(e),
        None => create_now(),
    };
    made.map_err(|error| {
        let p = cfg.path(dir, number);
        let cleanup = match fs.remove_file(&p) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Box::new(Error::io(&p, e))),
        };
        StartFailed { error, cleanup }
    })
}

/// Syncs the active segment on a background thread (started on first use, ended when this
/// drops), so the foreground sync at the next synced write or rollover has little left.
#[derive(Default)]
pub struct BackgroundSyncer {
    sender: Mutex<Option<std::sync::mpsc::SyncSender<BackgroundSync>>>,
}

impl std::fmt::Debug for BackgroundSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackgroundSyncer")
    }
}

impl BackgroundSyncer {
    /// Hands `sync` to the thread (named `thread_name` if it starts now); `false` if it is
    /// still busy with the previous one, or no thread could be started.
    pub fn submit(&self, sync: &BackgroundSync, thread_name: &str) -> bool {
        let mut tx = self.sender.lock();
        if tx.is_none() {
            let (sender, rx) = std::sync::mpsc::sync_channel::<BackgroundSync>(1);
            let started = std::thread::Builder::new()
                .name(thread_name.into())
                .spawn(move || {
                    // A failed background sync changes nothing promised: synced writes sync
                    // themselves.
                    while let Ok(sync) = rx.recv() {
                        let _ = sync();
                    }
                });
            if started.is_ok() {
                *tx = Some(sender);
            }
        }
        tx.as_ref()
            .is_some_and(|s| s.try_send(sync.clone()).is_ok())
    }

    /// Ends the thread (after the job it is running).
    pub fn stop(&self) {
        self.sender.lock().take();
    }
}

/// Retires the closed segments `doomed` (the front of the chain, ascending): deletes them,
/// or with `archive` moves them there (same filesystem), where their chain continues. Only a
/// prefix of the chain may go: each segment names its predecessor, so a hole in the middle
/// would read as a lost segment. `retired` is told of each once it is gone. (The one
/// exception is the WAL's recovery, which passes a last segment whose start frame never
/// became durable: nothing names it, so removing it leaves no hole.)
pub fn retire_prefix(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &ChainConfig,
    doomed: &[u64],
    archive: Option<&Path>,
    retired: &mut dyn FnMut(u64),
) -> Result<()> {
    if let Some(a) = archive {
        sealdb_vfs::create_dir_all_durable(fs, a).map_err(|e| Error::io(a, e))?;
    }
    for n in doomed {
        let p = cfg.path(dir, *n);
        let r = match archive {
            Some(a) => fs.rename(&p, &a.join(cfg.file_name(*n))),
            None => fs.remove_file(&p),
        };
        r.map_err(|e| Error::io(&p, e))?;
        retired(*n);
    }
    if doomed.is_empty() {
        return Ok(());
    }
    if let Some(a) = archive {
        fs.sync_dir(a).map_err(|e| Error::io(a, e))?;
    }
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Removes `paths` (segments at the front of the chain, oldest first), each removal made
/// durable before the next: after a crash the chain on disk is still a suffix, never one
/// with a hole. A file already gone is fine. `removed` is told the index of each.
pub fn remove_oldest_first(
    fs: &dyn FileSystem,
    dir: &Path,
    paths: &[PathBuf],
    removed: &mut dyn FnMut(usize),
) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        match fs.remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        removed(i);
    }
    Ok(())
}
