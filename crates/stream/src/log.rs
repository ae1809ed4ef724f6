//! The stream's segments, appends, rollover and the in-memory index; opening and recovery
//! are in `open`, reads, live tailing and retention in `read`. The chain itself (naming,
//! start-frame links, recovery's scan rules, segment creation) is sealdb-log's.
//!
//! Locking: `writer` serialises appends (and owns the active segment's file); `index` is the
//! in-memory picture readers use, held only briefly (never across file I/O by readers, and by
//! the writer only to publish a block it has written). Lock order: writer, then index.
//! `trim_lock` serialises trims; it is never held with `writer`.

mod open;
mod read;

pub use open::RecoveryPlan;

use crate::frame::{
    MAX_FRAME_LEN, StartFrame, decode_end_frame, decode_records_frame, encode_end_frame,
    encode_records_frame,
};
use crate::{ChangeRecord, Error, Result, StreamId, malformed_in};
use parking_lot::{Condvar, Mutex, RwLock};
use sealdb_crypto::sealed::BLOCK_PREFIX_LEN;
use sealdb_crypto::{
    ArtifactKind, BlockHandle, CipherId, FileId, IntegrityReason, Keyring, SealedReader,
    SealedWriter,
};
use sealdb_log::{ChainConfig, Link, TornTail};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The file-name suffix of stream segments.
pub const SEGMENT_SUFFIX: &str = ".stream";

/// Encoded size at which deferred commit groups are written as one block (see
/// [`StreamLog::append_deferred`]): large enough that a seal and a write are shared by many
/// small commits, small enough that a read decrypts little beyond what it returns.
pub const DEFER_BLOCK_LEN: usize = 32 << 10;

/// How a stream's segments are named and sealed.
fn chain_config(cipher: CipherId) -> ChainConfig {
    ChainConfig {
        kind: ArtifactKind::Stream,
        suffix: SEGMENT_SUFFIX,
        cipher,
    }
}

/// The file name of segment `number`: 16 decimal digits and [`SEGMENT_SUFFIX`].
pub fn segment_file_name(number: u64) -> String {
    chain_config(CipherId::ChaCha20Poly1305).file_name(number)
}

/// Where a stream's chain ends: what the engine pins in its head record, outside the data
/// directory, so that deleting the newest segments (or cutting records off the end) is
/// detected at the next open instead of silently dropping records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StreamAnchor {
    /// The newest segment's number (the active one).
    pub segment: u64,
    /// The highest sequence number known durable in the stream (0: none).
    pub last_seq: u64,
}

/// Called by [`StreamLog`] each time a rollover has made a new segment durable (and closed the
/// previous one durably), with the new anchor. It runs under the stream's writer lock, so
/// anchors arrive in order; it must not call back into the same [`StreamLog`]. An error fails
/// the append that rolled over and poisons the stream.
pub type RollObserver = Arc<dyn Fn(StreamAnchor) -> Result<()> + Send + Sync>;

/// How the stream writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Roll over to a new segment once the active one would grow past this many bytes
    /// (a segment always takes at least one commit group). Retention removes whole segments,
    /// so this is also the granularity of trimming.
    pub segment_size: u64,
    /// The block cipher (the database's data cipher).
    pub cipher: CipherId,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            segment_size: 8 << 20,
            cipher: CipherId::ChaCha20Poly1305,
        }
    }
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still retained.
    TrimHorizon,
    /// Just after the newest record: only records appended from now on.
    Latest,
    /// The record with this sequence number, or the first one after it.
    At(u64),
    /// The first record after this sequence number.
    After(u64),
}

/// The result of one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Records in sequence order.
    pub records: Vec<ChangeRecord>,
    /// Where to continue: pass `StartAt::At(next)`. One past the last record returned, or the
    /// start position when nothing was returned.
    pub next: u64,
}

/// What recovery found at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRecovery {
    /// The highest sequence number in the stream (0 if it never held a record).
    pub last_seq: u64,
    /// A torn tail cut from the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Segments recovered and retained (not counting the new one opened for appends).
    pub segments: usize,
    /// Records recovered and retained (not counting those cut by
    /// [`RecoveryPlan::truncating`]).
    pub records: u64,
    /// Records cut because their sequence numbers were above the `max_seq` of
    /// [`RecoveryPlan::truncating`] (0 for an open that does not truncate).
    pub truncated_records: u64,
}

/// What a trim removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Segments removed.
    pub segments_removed: usize,
    /// Bytes those segments occupied.
    pub bytes_removed: u64,
    /// The trim horizon afterwards (see [`StreamLog::horizon`]).
    pub horizon: u64,
}

/// One records block in the index.
#[derive(Debug, Clone, Copy)]
struct BlockEntry {
    handle: BlockHandle,
    first_seq: u64,
    last_seq: u64,
}

/// What the index knows about one segment.
#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    file_id: FileId,
    /// The stream's last sequence number when the segment was created: every record in it is
    /// greater.
    base_seq: u64,
    blocks: Vec<BlockEntry>,
    /// Oldest and newest commit time of its records (`None` while it holds none).
    times: Option<(u64, u64)>,
    bytes: u64,
    /// Closed segments get no more blocks; only they may be trimmed.
    closed: bool,
    /// A reader, cached; its length may lag behind the active segment's.
    reader: Option<SealedReader>,
}

impl Segment {
    /// The index entry of a segment just created for appends.
    fn new_active(dir: &Path, start: &StartFrame, file: &SealedWriter) -> Self {
        Self {
            number: start.link.number,
            path: dir.join(segment_file_name(start.link.number)),
            file_id: file.header().file_id,
            base_seq: start.base_seq,
            blocks: Vec::new(),
            times: None,
            bytes: file.offset(),
            closed: false,
            reader: None,
        }
    }

    fn first_seq(&self) -> Option<u64> {
        self.blocks.first().map(|b| b.first_seq)
    }
}

#[derive(Debug)]
struct Index {
    segments: BTreeMap<u64, Segment>,
    last_seq: u64,
    /// The highest sequence number accepted but not yet written (deferred); 0 if none.
    pending_seq: u64,
    /// Records with sequence numbers up to this were removed by retention (0: none were).
    trimmed_through: u64,
}

impl Index {
    fn horizon(&self) -> u64 {
        self.segments
            .values()
            .find_map(Segment::first_seq)
            .unwrap_or_else(|| self.last_seq.saturating_add(1))
    }

    fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// The first block holding a record with sequence number `>= seq`.
    fn locate(&self, seq: u64) -> Option<(u64, usize)> {
        self.segments.values().find_map(|s| {
            s.blocks
                .last()
                .filter(|b| b.last_seq >= seq)
                .map(|_| (s.number, s.blocks.partition_point(|b| b.last_seq < seq)))
        })
    }
}

#[derive(Debug)]
struct Writer {
    file: SealedWriter,
    number: u64,
    has_records: bool,
    last_seq: u64,
    poisoned: Option<String>,
    scratch: Vec<u8>,
    /// Records accepted by [`StreamLog::append_deferred`] and not yet written, in order.
    pending: Vec<ChangeRecord>,
    /// Their encoded size (records only, without the frame header).
    pending_len: usize,
}

impl Writer {
    /// The highest sequence number accepted, written or pending.
    fn accepted_seq(&self) -> u64 {
        self.pending.last().map_or(self.last_seq, |r| r.seq)
    }
}

/// The change stream of one database: a chain of sealed segments in one directory, an
/// in-memory index of their blocks, and a condition variable for live tailing.
pub struct StreamLog {
    fs: SharedFs,
    dir: PathBuf,
    opts: StreamOptions,
    id: StreamId,
    keyring: RwLock<Keyring>,
    /// `None` when opened read-only.
    writer: Mutex<Option<Writer>>,
    index: Mutex<Index>,
    appended: Condvar,
    trim_lock: Mutex<()>,
    /// The current anchor (updated by the writer; read without taking the writer lock).
    anchor: Mutex<StreamAnchor>,
    observer: RwLock<Option<RollObserver>>,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("dir", &self.dir)
            .field("id", &self.id)
            .field("opts", &self.opts)
            .field("anchor", &*self.anchor.lock())
            .finish_non_exhaustive()
    }
}

impl StreamLog {
    /// Appends one commit group as one sealed block (together with any records still
    /// deferred by [`append_deferred`](Self::append_deferred), when they fit one block); with
    /// `sync`, returns only once it (and everything before it) is durable. Sequence numbers
    /// must strictly increase within the slice and across calls. An empty slice does nothing.
    /// Rolls over to a new segment first if the active one would grow past
    /// [`StreamOptions::segment_size`]. After an I/O failure the stream is poisoned and
    /// refuses further appends until reopened.
    pub fn append(&self, records: &[ChangeRecord], sync: bool) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer.lock();
        let w = Self::accept(&mut guard, records)?;
        let len: usize = records.iter().map(ChangeRecord::encoded_len).sum();
        if !w.pending.is_empty()
            && crate::RECORDS_FRAME_HEADER_LEN
                .saturating_add(w.pending_len)
                .saturating_add(len)
                <= DEFER_BLOCK_LEN
        {
            w.pending.extend_from_slice(records);
            w.pending_len += len;
            return self.write_pending(w, sync);
        }
        self.write_pending(w, false)?;
        self.write_block(w, records, sync)
    }

    /// Accepts one commit group without writing it yet: it is kept in memory and written,
    /// merged with the groups deferred after it into one sealed block, once they reach
    /// [`DEFER_BLOCK_LEN`], or at the next [`append`](Self::append),
    /// [`flush_pending`](Self::flush_pending), [`sync`](Self::sync) or
    /// [`read`](Self::read) — readers never miss an accepted record, and
    /// [`wait_for`](Self::wait_for) wakes for it. One block costs one seal and one write
    /// however many groups it holds, which is what makes a stream cheap on the write path.
    ///
    /// Deferred records are lost if the process ends before they are written: the caller
    /// must be able to re-create them (the engine regenerates them from its WAL, which it
    /// never deletes before a [`sync`](Self::sync)). Groups are never split across blocks,
    /// but a block may hold several, so a truncating open may have to cut a block that
    /// straddles its `max_seq`: see [`RecoveryPlan::regenerable_after`].
    pub fn append_deferred(&self, records: Vec<ChangeRecord>) -> Result<()> {
        let Some(last_seq) = records.last().map(|r| r.seq) else {
            return Ok(());
        };
        let mut guard = self.writer.lock();
        let w = Self::accept(&mut guard, &records)?;
        let len: usize = records.iter().map(ChangeRecord::encoded_len).sum();
        let frame = crate::RECORDS_FRAME_HEADER_LEN.saturating_add(len);
        if frame > MAX_FRAME_LEN {
            return Err(Error::invalid_argument(format!(
                "the {} change records of one append encode to {frame} bytes, over the \
                 {MAX_FRAME_LEN}-byte block limit",
                records.len()
            )));
        }
        if !w.pending.is_empty() && frame.saturating_add(w.pending_len) > DEFER_BLOCK_LEN {
            self.write_pending(w, false)?;
        }
        w.pending.extend(records);
        w.pending_len += len;
        if w.pending_len >= DEFER_BLOCK_LEN {
            return self.write_pending(w, false);
        }
        self.index.lock().pending_seq = last_seq;
        self.appended.notify_all();
        Ok(())
    }

    /// Writes the records deferred by [`append_deferred`](Self::append_deferred), if any, as
    /// one sealed block (not synced).
    pub fn flush_pending(&self) -> Result<()> {
        let mut guard = self.writer.lock();
        match guard.as_mut() {
            Some(w) if !w.pending.is_empty() => {
                if let Some(why) = &w.poisoned {
                    return Err(Error::poisoned(why.clone()));
                }
                self.write_pending(w, false)
            }
            _ => Ok(()),
        }
    }

    /// Checks that `records` may follow what the stream accepted so far.
    fn accept<'a>(
        guard: &'a mut Option<Writer>,
        records: &[ChangeRecord],
    ) -> Result<&'a mut Writer> {
        for r in records {
            r.validate()?;
        }
        let Some(w) = guard.as_mut() else {
            return Err(Error::ReadOnly);
        };
        if let Some(why) = &w.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        let mut prev = w.accepted_seq();
        for r in records {
            if r.seq <= prev {
                return Err(Error::OutOfOrder {
                    last: prev,
                    got: r.seq,
                });
            }
            prev = r.seq;
        }
        Ok(w)
    }

    /// Writes the deferred records as one block (a sync even with none pending if `sync`).
    fn write_pending(&self, w: &mut Writer, sync: bool) -> Result<()> {
        if w.pending.is_empty() {
            if sync {
                self.sync_writer(w)?;
            }
            return Ok(());
        }
        let pending = std::mem::take(&mut w.pending);
        w.pending_len = 0;
        let r = self.write_block(w, &pending, sync);
        // Keep the allocation for the next groups.
        w.pending = pending;
        w.pending.clear();
        self.index.lock().pending_seq = 0;
        r
    }

    /// Seals `records` (already checked) as one block and appends it.
    fn write_block(&self, w: &mut Writer, records: &[ChangeRecord], sync: bool) -> Result<()> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        encode_records_frame(records, &mut w.scratch)?;
        if w.scratch.len() > MAX_FRAME_LEN {
            return Err(Error::invalid_argument(format!(
                "the {} change records of one append encode to {} bytes, over the \
                 {MAX_FRAME_LEN}-byte block limit",
                records.len(),
                w.scratch.len()
            )));
        }
        let on_disk = (BLOCK_PREFIX_LEN + w.scratch.len() + self.opts.cipher.tag_len()) as u64;
        let result = (|| -> Result<BlockHandle> {
            if w.has_records && w.file.offset().saturating_add(on_disk) > self.opts.segment_size {
                self.roll_over(w)?;
            }
            let handle = w.file.append_block(&w.scratch)?;
            if sync {
                w.file.sync()?;
            }
            Ok(handle)
        })();
        let handle = match result {
            Ok(h) => h,
            Err(e) => {
                w.poisoned = Some(e.to_string());
                return Err(e);
            }
        };
        w.has_records = true;
        w.last_seq = last.seq;
        if sync {
            self.anchor.lock().last_seq = last.seq;
        }
        if w.scratch.capacity() > 4 << 20 {
            w.scratch = Vec::new();
        }
        let tmin = records.iter().map(|r| r.commit_time_ms).min().unwrap_or(0);
        let tmax = records.iter().map(|r| r.commit_time_ms).max().unwrap_or(0);
        {
            let mut idx = self.index.lock();
            if let Some(seg) = idx.segments.get_mut(&w.number) {
                seg.blocks.push(BlockEntry {
                    handle,
                    first_seq: first.seq,
                    last_seq: last.seq,
                });
                seg.times = Some(match seg.times {
                    Some((a, b)) => (a.min(tmin), b.max(tmax)),
                    None => (tmin, tmax),
                });
                seg.bytes = w.file.offset();
            }
            idx.last_seq = last.seq;
        }
        self.appended.notify_all();
        Ok(())
    }

    fn roll_over(&self, w: &mut Writer) -> Result<()> {
        w.file.finish(&encode_end_frame(w.last_seq))?;
        w.file.sync()?;
        let old_number = w.number;
        let old_end = w.file.offset();
        let start = StartFrame {
            link: Link::after(old_number, old_end, true, old_number.saturating_add(1)),
            base_seq: w.last_seq,
            stream: self.id,
        };
        let keyring = self.keyring.read().clone();
        let file = sealdb_log::start_next(
            self.fs.as_ref(),
            &self.dir,
            &chain_config(self.opts.cipher),
            &keyring,
            None,
            start.link.number,
            &start.encode(),
            false,
        )
        .map_err(|failed| match failed.cleanup {
            // The half-made segment may still be there: that is what the stream must report
            // (it is poisoned until reopened, as the WAL is in the same case).
            Some(cleanup) => Error::from(*cleanup),
            None => Error::from(failed.error),
        })?;
        let segment = Segment::new_active(&self.dir, &start, &file);
        w.file = file;
        w.number = start.link.number;
        w.has_records = false;
        {
            let mut idx = self.index.lock();
            if let Some(old) = idx.segments.get_mut(&old_number) {
                old.closed = true;
                old.bytes = old_end;
            }
            idx.segments.insert(start.link.number, segment);
        }
        // The old segment's end frame and the new start frame are both durable: every record
        // so far is, too.
        let anchor = StreamAnchor {
            segment: start.link.number,
            last_seq: w.last_seq,
        };
        *self.anchor.lock() = anchor;
        let observer = self.observer.read().clone();
        if let Some(f) = observer {
            f(anchor)?;
        }
        Ok(())
    }

    /// Makes every appended record durable, deferred ones included (they are written first).
    pub fn sync(&self) -> Result<()> {
        let mut guard = self.writer.lock();
        // Read-only: nothing was written, so nothing needs syncing.
        let Some(w) = guard.as_mut() else {
            return Ok(());
        };
        if let Some(why) = &w.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        self.write_pending(w, true)
    }

    /// Syncs the active segment and advances the anchor (the writer lock held).
    fn sync_writer(&self, w: &mut Writer) -> Result<()> {
        let r = w.file.sync();
        match &r {
            Ok(()) => self.anchor.lock().last_seq = w.last_seq,
            Err(e) => w.poisoned = Some(e.to_string()),
        }
        Ok(r?)
    }

    /// Where the chain ends now: the active segment and the highest sequence number known
    /// durable (recovered at open, synced by an append with `sync`, [`sync`](Self::sync) or a
    /// rollover). What the engine pins in its head record at open, on rollover (see
    /// [`set_roll_observer`](Self::set_roll_observer)) and at clean close (after a `sync`).
    pub fn anchor(&self) -> StreamAnchor {
        *self.anchor.lock()
    }

    /// Registers `f` to be told the new anchor after each rollover, once the new segment (and
    /// the old one's end) is durable: the engine records it in its head record, so the
    /// segment can never be deleted unnoticed. Replaces any earlier observer.
    pub fn set_roll_observer(&self, f: RollObserver) {
        *self.observer.write() = Some(f);
    }

    /// The stream this log belongs to (bound into every segment's start frame).
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The highest sequence number appended, deferred ones included (0 if the stream never
    /// held a record).
    pub fn last_seq(&self) -> u64 {
        let idx = self.index.lock();
        idx.last_seq.max(idx.pending_seq)
    }

    /// The trim horizon: the lowest sequence number still retained, or `last_seq() + 1` when
    /// no record is retained. Reading at or after it never fails with [`Error::Trimmed`].
    pub fn horizon(&self) -> u64 {
        self.index.lock().horizon()
    }
}
