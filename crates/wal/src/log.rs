//! The writing side of the WAL: the active segment, appends, rollover (into a segment created
//! ahead of need), recovery from a full disk, and retirement of obsolete segments. The chain
//! itself (naming, start frames, segment creation, the spare) is sealdb-log's.

use crate::frame::encode_batches;
use crate::recovery::WalRecovery;
use crate::{Error, FrameBatch, Result};
use parking_lot::Mutex;
use sealdb_crypto::{ArtifactKind, CipherId, Keyring, SealedWriter};
use sealdb_log::{BackgroundSyncer, ChainConfig, FRAME_END, Link, SpareSlot};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SEGMENT_SUFFIX: &str = ".wal";

/// How a WAL's segments are named and sealed.
pub(crate) fn chain_config(cipher: CipherId) -> ChainConfig {
    ChainConfig {
        kind: ArtifactKind::Wal,
        suffix: SEGMENT_SUFFIX,
        cipher,
    }
}

/// The file name of segment `number`.
pub fn segment_file_name(number: u64) -> String {
    chain_config(CipherId::ChaCha20Poly1305).file_name(number)
}

/// How the WAL writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll over to a new segment once the active one reaches this many bytes.
    pub segment_size: u64,
    /// The block cipher (the database's data cipher).
    pub cipher: CipherId,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            cipher: CipherId::ChaCha20Poly1305,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Active {
    writer: SealedWriter,
    number: u64,
    max_seq: u64,
    has_batches: bool,
    /// Bytes appended since the last sync (foreground or background).
    unsynced: u64,
    syncer: Option<Syncer>,
    /// Set while the start frame is not yet known durable (a rollover by a synced append
    /// leaves its sync to that append's): the highest durable sequence number to tell the
    /// roll observer once it is.
    announce: Option<u64>,
}

/// A background sync handle with a `Debug` that says only whether it exists.
#[derive(Clone)]
struct Syncer(sealdb_vfs::BackgroundSync);

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Syncer")
    }
}

/// Unsynced bytes after which the active segment is synced in the background, so the
/// foreground sync at rollover (and the next synced write) has little left to flush.
const BACKGROUND_SYNC_BYTES: u64 = 4 << 20;

#[derive(Debug)]
struct Inner {
    /// The segment new frames go to; `None` in a read-only WAL.
    active: Option<Active>,
    /// Closed segments still on disk, with the highest sequence number each holds.
    closed: BTreeMap<u64, u64>,
    poisoned: Option<String>,
    /// Set when a write into the active segment failed for lack of space: where the
    /// segment's valid data ends (the failed write may have left a partial frame after it).
    /// Nothing is appended to that segment again; the next append first starts a new
    /// segment whose start frame records this end, so recovery stops there.
    broken_at: Option<u64>,
    scratch: Vec<u8>,
    keyring: Keyring,
}

impl Inner {
    /// Fails if an earlier failure poisoned the log, or it is read-only.
    fn check_writable(&self) -> Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        if self.active.is_none() {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }
}

/// The write-ahead log of one database.
pub struct Wal {
    fs: SharedFs,
    dir: PathBuf,
    opts: WalOptions,
    inner: Mutex<Inner>,
    /// Syncs the active segment in the background once enough is unsynced.
    background: BackgroundSyncer,
    /// Told of every new segment once it is durable (the engine's head record).
    roll_observer: Mutex<Option<RollObserver>>,
    /// The next segment, created ahead of need off the commit path.
    spare: Arc<SpareSlot>,
    /// Serializes retirements, which do their file I/O outside `inner`.
    retiring: Mutex<()>,
}

/// Once the active segment holds `segment_size / SPARE_AT_FRACTION` bytes, the next one is
/// created in the background, so that the rollover finds it ready. Not at once: a log that
/// is closed before it fills a segment never pays for (or leaves) a spare.
const SPARE_AT_FRACTION: u64 = 2;

/// Called with `(new segment number, highest sequence number now durable)` after a rollover
/// made a new segment durable.
pub type RollObserver = Box<dyn Fn(u64, u64) + Send + Sync>;

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.background.stop();
        // A spare left behind is harmless (recovery deletes it), but a clean close leaves
        // only the segments that hold the log.
        let _ = self.discard_spare();
    }
}

impl Wal {
    /// A WAL over `rec`'s segments writing into `active` (`None`: read-only).
    pub(crate) fn assemble(
        fs: SharedFs,
        keyring: Keyring,
        opts: WalOptions,
        rec: WalRecovery,
        active: Option<Active>,
    ) -> Self {
        Self {
            fs,
            dir: rec.dir,
            opts,
            inner: Mutex::new(Inner {
                active,
                closed: rec.closed,
                poisoned: None,
                broken_at: None,
                scratch: Vec::new(),
                keyring,
            }),
            // Started on first use: only filesystems with background syncing need it.
            background: BackgroundSyncer::default(),
            roll_observer: Mutex::new(None),
            spare: SpareSlot::new(),
            retiring: Mutex::new(()),
        }
    }

    /// Appends one frame holding `batches`; with `sync`, returns only once it is durable.
    /// Rolls over to a new segment first if the active one is full.
    ///
    /// A write that fails because the disk is full ([`Error::is_no_space`]) is not
    /// acknowledged and leaves the log usable: the failed segment is never appended to again
    /// (its tail is unknown, and a sealed file is never written twice at one offset), and the
    /// next append starts a new segment that records where the old one validly ends. Any other
    /// failure, and any failed sync, poisons the log until it is reopened.
    pub fn append(&self, batches: &[FrameBatch<'_>], sync: bool) -> Result<()> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.check_writable()?;
        encode_batches(batches, &mut inner.scratch)?;
        // Refused before anything is written, so the log stays writable: callers pack
        // batches into frames of at most this size (`frame_len`).
        if inner.scratch.len() > crate::MAX_FRAME_LEN {
            return Err(Error::BatchTooLarge {
                size: inner.scratch.len() as u64,
                limit: crate::MAX_FRAME_LEN as u64,
            });
        }
        self.replace_broken(inner)?;
        let result = (|| -> Result<()> {
            if inner.active.as_ref().is_some_and(|a| {
                a.has_batches
                    && a.writer.offset() + inner.scratch.len() as u64 > self.opts.segment_size
            }) {
                // A synced append syncs the new segment right after its frame: one sync
                // covers the start frame and the frame.
                self.roll_over(inner, sync)?;
            }
            let active = inner.active.as_mut().ok_or(Error::ReadOnly)?;
            let before = active.writer.offset();
            if let Err(e) = active.writer.append_block(&inner.scratch) {
                let e = Error::from(e);
                if e.is_no_space() {
                    inner.broken_at = Some(before);
                }
                return Err(e);
            }
            active.unsynced += inner.scratch.len() as u64;
            if sync {
                active.writer.sync()?;
                active.unsynced = 0;
                self.announce_if_due(active);
            } else if active.unsynced >= BACKGROUND_SYNC_BYTES
                && let Some(sync) = &active.syncer
                && self.background.submit(&sync.0, "sealdb-wal-sync")
            {
                active.unsynced = 0;
            }
            Ok(())
        })();
        if let Err(e) = &result {
            if inner.broken_at.is_none() {
                inner.poisoned = Some(e.to_string());
            }
            return result;
        }
        if let Some(active) = inner.active.as_mut() {
            active.has_batches = true;
            if let Some(last) = batches.last() {
                active.max_seq = last.first_seq + u64::from(last.count).saturating_sub(1);
            }
        }
        if inner.scratch.capacity() > 4 << 20 {
            inner.scratch = Vec::new();
        }
        self.maybe_prepare_spare(inner);
        Ok(())
    }

    /// After a failed write (disk full): makes the old segment's valid prefix durable and
    /// starts a new segment recording where it ends. A new segment that cannot be created
    /// (still no space) is removed again and the log stays broken, to retry on the next append.
    fn replace_broken(&self, inner: &mut Inner) -> Result<()> {
        let Some(valid_end) = inner.broken_at else {
            return Ok(());
        };
        let active = inner.active.as_mut().ok_or(Error::ReadOnly)?;
        // Acknowledged unsynced frames before the failure must be durable before a start
        // frame vouches for them; a failed sync leaves them unknown.
        if let Err(e) = active.writer.sync() {
            let e = Error::from(e);
            inner.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.announce_if_due(active);
        let start = Link::after(active.number, valid_end, false, active.number + 1);
        match self.create_next(inner, start, false) {
            Ok(()) => {
                inner.broken_at = None;
                Ok(())
            }
            Err(e) => {
                if !e.is_no_space() {
                    inner.poisoned = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Creates the segment `start` describes and makes it the active one (the old one
    /// closed). If that fails, the half-made segment is removed again so a retry can create
    /// it afresh; a failure to remove it poisons the log.
    ///
    /// Uses the segment created ahead in the background when there is one (then only the
    /// start frame is written and synced here: no file creation, no directory sync); a
    /// failure of that background creation is this rollover's failure.
    ///
    /// With `defer_sync`, a start frame written into a spare is not synced here: the caller
    /// syncs the new segment next (a synced append, whose sync then covers the start frame
    /// and its own frame), and the segment is announced to the roll observer after that.
    /// The old segment is already durable, so the start frame never vouches for bytes that
    /// could still be lost.
    fn create_next(&self, inner: &mut Inner, start: Link, defer_sync: bool) -> Result<()> {
        let cfg = chain_config(self.opts.cipher);
        let made = sealdb_log::start_next(
            self.fs.as_ref(),
            &self.dir,
            &cfg,
            &inner.keyring,
            Some(&self.spare),
            start.number,
            &start.encode(),
            defer_sync,
        );
        match made {
            Ok(writer) => {
                let next = activate(writer, start.number);
                if let Some(old) = inner.active.replace(next) {
                    inner.closed.insert(old.number, old.max_seq);
                }
                let durable = inner.closed.values().copied().max().unwrap_or(0);
                if let Some(active) = inner.active.as_mut() {
                    active.announce = Some(durable);
                    if !defer_sync {
                        self.announce_if_due(active);
                    }
                }
                Ok(())
            }
            Err(failed) => {
                if let Some(r) = failed.cleanup {
                    let r = Error::from(*r);
                    inner.poisoned = Some(r.to_string());
                    return Err(r);
                }
                Err(failed.error.into())
            }
        }
    }

    /// Deletes the spare segment, if any (waiting for one being created).
    fn discard_spare(&self) -> Result<()> {
        let cfg = chain_config(self.opts.cipher);
        Ok(self.spare.discard(self.fs.as_ref(), &self.dir, &cfg)?)
    }

    /// Starts creating the next segment in the background once the active one is
    /// half full ([`SPARE_AT_FRACTION`]), so the rollover does not create a file, sync it and sync
    /// the directory on the committing thread.
    fn maybe_prepare_spare(&self, inner: &Inner) {
        let Some(active) = inner.active.as_ref() else {
            return;
        };
        let due = self.opts.segment_size / SPARE_AT_FRACTION;
        if !active.has_batches || active.writer.offset() < due || inner.broken_at.is_some() {
            return;
        }
        self.spare.prepare(
            self.fs.clone(),
            self.dir.clone(),
            chain_config(self.opts.cipher),
            inner.keyring.clone(),
            active.number + 1,
            "sealdb-wal-spare",
        );
    }

    /// Tells the roll observer of the active segment once its start frame is durable (call
    /// right after a successful sync of it).
    fn announce_if_due(&self, active: &mut Active) {
        if let Some(durable) = active.announce.take()
            && let Some(observe) = self.roll_observer.lock().as_ref()
        {
            observe(active.number, durable);
        }
    }

    /// Finishes the active segment, makes it durable and starts the next one; with
    /// `defer_sync`, the caller syncs the new segment (see [`Wal::create_next`]).
    fn roll_over(&self, inner: &mut Inner, defer_sync: bool) -> Result<()> {
        let active = inner.active.as_mut().ok_or(Error::ReadOnly)?;
        let before = active.writer.offset();
        if let Err(e) = active.writer.finish(&[FRAME_END]) {
            let e = Error::from(e);
            if e.is_no_space() {
                inner.broken_at = Some(before);
            }
            return Err(e);
        }
        active.writer.sync()?;
        let start = Link::after(
            active.number,
            active.writer.offset(),
            true,
            active.number + 1,
        );
        self.create_next(inner, start, defer_sync).inspect_err(|e| {
            // The old segment is finished and durable; the next append retries from its end.
            if e.is_no_space() && inner.poisoned.is_none() {
                inner.broken_at = Some(start.prev_end);
            }
        })
    }

    /// Registers the function told of every new segment (see [`RollObserver`]).
    pub fn set_roll_observer(&self, observer: RollObserver) {
        *self.roll_observer.lock() = Some(observer);
    }

    /// Syncs the active segment and returns `(its number, where it ends, the highest sequence
    /// number it holds)`: the anchor a clean close records. Fails if the WAL is poisoned or
    /// read-only.
    pub fn sync_for_close(&self) -> Result<(u64, u64, u64)> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if let Some(why) = &inner.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        // A segment a failed write left a partial frame in does not end cleanly: a clean
        // close needs the new segment (or, if the disk is still full, is not clean).
        self.replace_broken(inner)?;
        let active = inner.active.as_mut().ok_or(Error::ReadOnly)?;
        active.writer.sync()?;
        active.unsynced = 0;
        self.announce_if_due(active);
        let end = active.writer.offset();
        let durable = inner
            .closed
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(active.max_seq);
        Ok((active.number, end, durable))
    }

    /// Closes the active segment and starts a new one; returns the new segment's number.
    /// Everything logged from now on is in segments numbered at least that.
    pub fn rotate(&self) -> Result<u64> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.check_writable()?;
        if inner.broken_at.is_some() {
            // Replacing the broken segment is itself the rotation.
            self.replace_broken(inner)?;
        } else if let Err(e) = self.roll_over(inner, false) {
            if inner.broken_at.is_none() {
                inner.poisoned = Some(e.to_string());
            }
            return Err(e);
        }
        Ok(inner.active.as_ref().map_or(0, |a| a.number))
    }

    /// Whether an earlier failure poisoned the log (writes refused until reopened).
    pub fn is_poisoned(&self) -> bool {
        self.inner.lock().poisoned.is_some()
    }

    /// Makes every appended frame durable.
    pub fn sync(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if let Some(why) = &inner.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        let Some(active) = inner.active.as_mut() else {
            return Err(Error::ReadOnly);
        };
        let r = active.writer.sync();
        match &r {
            Ok(()) => self.announce_if_due(active),
            Err(e) => inner.poisoned = Some(e.to_string()),
        }
        Ok(r?)
    }

    /// Deletes the closed segments numbered below `min_segment`: the oldest segment still
    /// needed, as the manifest durably records it (from
    /// [`first_needed_segment`](Self::first_needed_segment)). Bounded by that record rather
    /// than by a sequence number, so a segment closed after the record was computed (a
    /// rollover racing with the flush) is never deleted while the manifest still says the
    /// chain starts at or before it. Returns how many were deleted.
    pub fn remove_obsolete(&self, min_segment: u64) -> Result<usize> {
        self.retire_obsolete(min_segment, None)
    }

    /// Like [`remove_obsolete`](Self::remove_obsolete), but moves the segments into
    /// `archive` (same filesystem) instead of deleting them: point-in-time recovery replays
    /// them later. Their chain continues there.
    pub fn archive_obsolete(&self, min_segment: u64, archive: &Path) -> Result<usize> {
        self.retire_obsolete(min_segment, Some(archive))
    }

    fn retire_obsolete(&self, min_segment: u64, archive: Option<&Path>) -> Result<usize> {
        let _one_at_a_time = self.retiring.lock();
        // Only a prefix of the chain may go: each segment names its predecessor, so a hole
        // in the middle would read as a lost segment. Closed segments are never written
        // again, so the deletions and directory syncs (tens of milliseconds for a large
        // segment) run without the lock every append needs.
        let doomed: Vec<u64> = self
            .inner
            .lock()
            .closed
            .keys()
            .copied()
            .take_while(|n| *n < min_segment)
            .collect();
        let cfg = chain_config(self.opts.cipher);
        sealdb_log::retire_prefix(
            self.fs.as_ref(),
            &self.dir,
            &cfg,
            &doomed,
            archive,
            &mut |n| {
                self.inner.lock().closed.remove(&n);
            },
        )?;
        Ok(doomed.len())
    }

    /// The oldest segment still holding a record newer than `flushed_seq`: everything older
    /// is obsolete once the tables holding `flushed_seq` are durable.
    pub fn first_needed_segment(&self, flushed_seq: u64) -> u64 {
        let inner = self.inner.lock();
        inner
            .closed
            .iter()
            .find(|(_, max)| **max > flushed_seq)
            .map(|(n, _)| *n)
            .or_else(|| inner.active.as_ref().map(|a| a.number))
            .unwrap_or_else(|| inner.closed.keys().next_back().map_or(0, |n| n + 1))
    }

    /// Replaces the keyring; new segments use its current data-key version.
    pub fn set_keyring(&self, keyring: Keyring) {
        let mut inner = self.inner.lock();
        inner.keyring = keyring;
        // A spare was sealed under the old keyring's data key: it must not become a segment
        // (nor stay on disk under a key that may be retired).
        if let Err(e) = self.discard_spare()
            && inner.poisoned.is_none()
        {
            inner.poisoned = Some(e.to_string());
        }
    }

    /// The number of the segment new frames go to (0 in a read-only WAL).
    pub fn active_segment(&self) -> u64 {
        self.inner.lock().active.as_ref().map_or(0, |a| a.number)
    }

    /// Numbers of every segment on disk (closed and active), ascending.
    pub fn segment_numbers(&self) -> Vec<u64> {
        let inner = self.inner.lock();
        let mut v: Vec<u64> = inner.closed.keys().copied().collect();
        v.extend(inner.active.as_ref().map(|a| a.number));
        v
    }

    /// The number of the segment created ahead for the next rollover, if there is one
    /// (waits for one being created). It is on disk but not part of the log: it holds no
    /// frame until the rollover makes it the active segment.
    pub fn spare_segment(&self) -> Option<u64> {
        self.spare.ready_number()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The active segment a freshly started segment becomes.
pub(crate) fn activate(writer: SealedWriter, number: u64) -> Active {
    let syncer = writer.background_syncer().map(Syncer);
    Active {
        writer,
        number,
        max_seq: 0,
        has_batches: false,
        unsynced: 0,
        syncer,
        announce: None,
    }
}
