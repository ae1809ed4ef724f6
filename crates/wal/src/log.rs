//! Segments, frames, appends, rollover and recovery.

use crate::{Error, Result};
use parking_lot::{Condvar, Mutex};
use sealdb_crypto::{
    ArtifactKind, CipherId, Expected, IntegrityReason, Keyring, SealedReader, SealedWriter,
};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FRAME_START: u8 = 1;
const FRAME_BATCHES: u8 = 2;
const FRAME_END: u8 = 3;
const SEGMENT_SUFFIX: &str = ".wal";

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

/// One write batch inside a frame: its records and the sequence number of the first one (the
/// others follow consecutively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBatch<'a> {
    /// Sequence number of the batch's first record.
    pub first_seq: u64,
    /// Number of records.
    pub count: u32,
    /// The encoded records (see [`crate::RecordIter`]).
    pub rep: &'a [u8],
    /// Commit time of the frame, Unix milliseconds (all batches of a frame share the first
    /// batch's time; recovery reports the frame's).
    pub commit_time_ms: u64,
}

/// The torn tail cut off the last segment during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The segment number.
    pub segment: u64,
    /// Where the valid data ended.
    pub offset: u64,
    /// Bytes dropped after it.
    pub dropped_bytes: u64,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segments replayed.
    pub segments: usize,
    /// Batch frames replayed.
    pub frames: u64,
    /// Write batches replayed.
    pub batches: u64,
    /// Records replayed.
    pub records: u64,
    /// The highest sequence number recovered (0 if none).
    pub last_seq: u64,
    /// A torn tail cut from the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Segments deleted at open because they were obsolete (below `min_segment`).
    pub obsolete_removed: usize,
}

/// The file name of segment `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:016}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A start frame: names its segment and how the previous segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StartFrame {
    number: u64,
    prev_number: u64,
    prev_end: u64,
    prev_finished: bool,
}

impl StartFrame {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FRAME_START];
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.prev_number.to_le_bytes());
        out.extend_from_slice(&self.prev_end.to_le_bytes());
        out.push(u8::from(self.prev_finished));
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 26 || b.first() != Some(&FRAME_START) {
            return None;
        }
        let u = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let prev_finished = match b.get(25)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(Self {
            number: u(1)?,
            prev_number: u(9)?,
            prev_end: u(17)?,
            prev_finished,
        })
    }
}

/// Parses a batch frame's payload into its batches, checking every length.
fn decode_batches(b: &[u8]) -> Option<Vec<FrameBatch<'_>>> {
    if b.first() != Some(&FRAME_BATCHES) {
        return None;
    }
    let commit_time_ms = u64::from_le_bytes(b.get(1..9)?.try_into().ok()?);
    let count = u32::from_le_bytes(b.get(9..13)?.try_into().ok()?);
    let mut pos = 13usize;
    // Each batch needs at least 16 header bytes: bound the count before allocating.
    if (count as usize).checked_mul(16)? > b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let first_seq = u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
        let n = u32::from_le_bytes(b.get(pos + 8..pos + 12)?.try_into().ok()?);
        let len = u32::from_le_bytes(b.get(pos + 12..pos + 16)?.try_into().ok()?) as usize;
        pos += 16;
        let rep = b.get(pos..pos.checked_add(len)?)?;
        pos += len;
        out.push(FrameBatch {
            first_seq,
            count: n,
            rep,
            commit_time_ms,
        });
    }
    if pos != b.len() {
        return None;
    }
    Some(out)
}

fn encode_batches(batches: &[FrameBatch<'_>], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.push(FRAME_BATCHES);
    let time = batches.first().map_or(0, |b| b.commit_time_ms);
    out.extend_from_slice(&time.to_le_bytes());
    let count = u32::try_from(batches.len())
        .map_err(|_| Error::invalid_argument("too many batches in one frame".into()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for b in batches {
        let len = u32::try_from(b.rep.len())
            .map_err(|_| Error::invalid_argument("batch too large".into()))?;
        out.extend_from_slice(&b.first_seq.to_le_bytes());
        out.extend_from_slice(&b.count.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(b.rep);
    }
    Ok(())
}

/// One decoded WAL frame (the plaintext of one block of a segment), for inspection tools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// The segment's first frame: its number and how its predecessor ended.
    Start {
        /// This segment's number.
        number: u64,
        /// The previous segment's number (0 for the first segment of a WAL).
        prev_number: u64,
        /// Where the previous segment validly ended (its length).
        prev_end: u64,
        /// Whether the previous segment was finished with an end frame.
        prev_finished: bool,
    },
    /// One commit group: its batches (decode their records with [`crate::RecordIter`]).
    Batches(Vec<FrameBatch<'a>>),
    /// The frame that finishes a rolled-over segment.
    End,
}

/// Decodes one frame payload (checking every length; the records are decoded lazily by
/// [`crate::RecordIter`]). Untrusted input is fine: malformed bytes are an error.
pub fn decode_frame(payload: &[u8]) -> Result<Frame<'_>> {
    if let Some(s) = StartFrame::decode(payload) {
        return Ok(Frame::Start {
            number: s.number,
            prev_number: s.prev_number,
            prev_end: s.prev_end,
            prev_finished: s.prev_finished,
        });
    }
    if payload == [FRAME_END] {
        return Ok(Frame::End);
    }
    decode_batches(payload)
        .map(Frame::Batches)
        .ok_or_else(|| Error::malformed("a frame that is neither start, batches nor end".into()))
}

/// Decodes one frame payload and every record in it; for the fuzz target. Returns the number
/// of records.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_frame_for_fuzz(payload: &[u8]) -> Result<u64> {
    if StartFrame::decode(payload).is_some() || payload == [FRAME_END] {
        return Ok(0);
    }
    let batches = decode_batches(payload).ok_or_else(|| Error::malformed("frame".into()))?;
    let mut n = 0;
    for b in batches {
        for r in crate::batch::RecordIter::new(b.rep) {
            r?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Debug)]
struct Active {
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

/// The write-ahead log of one database.
pub struct Wal {
    fs: SharedFs,
    dir: PathBuf,
    opts: WalOptions,
    inner: Mutex<Inner>,
    /// Hands sync jobs to the background syncer thread (which ends when this drops).
    background: Mutex<Option<std::sync::mpsc::SyncSender<sealdb_vfs::BackgroundSync>>>,
    /// Told of every new segment once it is durable (the engine's head record).
    roll_observer: Mutex<Option<RollObserver>>,
    /// The next segment, created ahead of need off the commit path.
    spare: Arc<SpareSlot>,
    /// Serializes retirements, which do their file I/O outside `inner`.
    retiring: Mutex<()>,
}

/// A segment created ahead of need: its sealed header is written and durable and its
/// directory entry is durable, but it holds no frame yet. To recovery it is a last segment
/// without a start frame, which holds nothing and is deleted when writing starts.
struct Spare {
    number: u64,
    writer: SealedWriter,
}

/// Where the background creation of the next segment leaves its outcome.
#[derive(Default)]
struct SpareState {
    /// A creation is under way (its file may exist half-made).
    pending: bool,
    /// The outcome of the last creation, until a rollover takes it. A failure is kept too:
    /// it is the rollover's failure to create its segment, reported when the rollover
    /// happens (a full disk retries later; anything else poisons).
    made: Option<Result<Spare>>,
}

struct SpareSlot {
    state: Mutex<SpareState>,
    ready: Condvar,
}

impl SpareSlot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SpareState::default()),
            ready: Condvar::new(),
        })
    }

    /// Waits for a creation under way, then takes its outcome.
    fn take(&self) -> Option<Result<Spare>> {
        let mut st = self.state.lock();
        while st.pending {
            self.ready.wait(&mut st);
        }
        st.made.take()
    }
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
        self.background.lock().take();
        // A spare left behind is harmless (recovery deletes it), but a clean close leaves
        // only the segments that hold the log.
        let _ = self.discard_spare();
    }
}

fn start_background_syncer() -> Option<std::sync::mpsc::SyncSender<sealdb_vfs::BackgroundSync>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<sealdb_vfs::BackgroundSync>(1);
    std::thread::Builder::new()
        .name("sealdb-wal-sync".into())
        .spawn(move || {
            // A failed background sync changes nothing promised: synced writes sync themselves.
            while let Ok(sync) = rx.recv() {
                let _ = sync();
            }
        })
        .ok()?;
    Some(tx)
}

/// What recovery found: everything needed to decide whether the log is whole (and to start
/// writing after it) without having changed a byte on disk.
#[derive(Debug)]
pub struct WalRecovery {
    dir: PathBuf,
    stats: RecoveryStats,
    /// Replayed segments with the highest sequence number each holds.
    closed: BTreeMap<u64, u64>,
    /// Where each replayed segment validly ends.
    ends: BTreeMap<u64, u64>,
    /// The last replayed segment: (number, valid end, finished).
    prev_info: (u64, u64, bool),
    max_number: u64,
    min_segment: u64,
    /// Segments older than `min_segment`: obsolete, deleted when writing starts.
    obsolete: Vec<u64>,
    /// A last segment whose start frame never became durable: deleted when writing starts.
    torn_header: Option<u64>,
}

impl WalRecovery {
    /// What was replayed.
    pub fn stats(&self) -> &RecoveryStats {
        &self.stats
    }

    /// The newest segment holding a durable start frame (`None` if there is none).
    pub fn newest_segment(&self) -> Option<u64> {
        self.ends.keys().next_back().copied()
    }

    /// Where segment `number` validly ends (`None` if it was not replayed).
    pub fn segment_end(&self, number: u64) -> Option<u64> {
        self.ends.get(&number).copied()
    }

    /// The number of live segments replayed.
    pub fn live_segments(&self) -> usize {
        self.ends.len()
    }

    /// The oldest segment that may hold unflushed data (segments below it are obsolete).
    pub fn min_segment(&self) -> u64 {
        self.min_segment
    }
}

/// One segment's start frame, read in recovery's first pass (the file is closed again, so
/// recovery holds one descriptor at a time however many segments there are).
struct SegmentOnDisk {
    number: u64,
    path: PathBuf,
    start: Option<StartFrame>,
}

fn io_error(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: p.display().to_string(),
        source: e,
    }
}

impl Wal {
    /// Opens the WAL in `dir` (creating the directory if needed), replays every frame through
    /// `replay` in commit order, and starts a fresh segment for new writes:
    /// [`Wal::recover`] then [`Wal::start`].
    ///
    /// `min_segment` is the oldest segment that may still hold unflushed data (from the
    /// manifest); older ones are deleted.
    pub fn open(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: WalOptions,
        min_segment: u64,
        replay: &mut dyn FnMut(FrameBatch<'_>) -> Result<()>,
    ) -> Result<(Self, RecoveryStats)> {
        let rec = Self::recover(&fs, dir, &keyring, opts, min_segment, replay)?;
        let stats = rec.stats.clone();
        Ok((Self::start(fs, keyring, opts, rec)?, stats))
    }

    /// Replays the segments of `dir` (an archive, a backup's copy) without changing
    /// anything: no segment is deleted, synced or created.
    pub fn replay_read_only(
        fs: &SharedFs,
        dir: &Path,
        keyring: &Keyring,
        opts: WalOptions,
        min_segment: u64,
        replay: &mut dyn FnMut(FrameBatch<'_>) -> Result<()>,
    ) -> Result<RecoveryStats> {
        Ok(Self::recover(fs, dir, keyring, opts, min_segment, replay)?.stats)
    }

    /// Starts writing after a recovery: deletes obsolete segments and a last segment whose
    /// start frame never became durable, makes the replayed tail durable, and creates a new
    /// segment whose start frame records where the recovered chain validly ended. Never
    /// appends to a recovered segment.
    pub fn start(
        fs: SharedFs,
        keyring: Keyring,
        opts: WalOptions,
        rec: WalRecovery,
    ) -> Result<Self> {
        let dir = rec.dir.clone();
        // Every directory created here durable in its parent, up the tree.
        sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir).map_err(|e| io_error(&dir, e))?;
        // Deletions first: on a full disk they are what makes room for the new segment.
        let doomed: Vec<u64> = rec
            .obsolete
            .iter()
            .copied()
            .chain(rec.torn_header)
            .collect();
        for n in &doomed {
            let p = dir.join(segment_file_name(*n));
            fs.remove_file(&p).map_err(|e| io_error(&p, e))?;
        }
        if !doomed.is_empty() {
            fs.sync_dir(&dir).map_err(|e| io_error(&dir, e))?;
        }
        // What was replayed may include a previous run's unsynced tail; it is visible from now
        // on, and the new segment's start frame records where it ends, so make it durable
        // first.
        if rec.prev_info.0 != 0 {
            let p = dir.join(segment_file_name(rec.prev_info.0));
            fs.sync_file(&p).map_err(|e| io_error(&p, e))?;
        }
        let number = rec.max_number.max(rec.min_segment.saturating_sub(1)) + 1;
        let start = StartFrame {
            number,
            prev_number: rec.prev_info.0,
            prev_end: rec.prev_info.1,
            prev_finished: rec.prev_info.2,
        };
        let active = create_segment(fs.as_ref(), &dir, &keyring, opts.cipher, start)?;
        Ok(Self {
            fs,
            dir,
            opts,
            inner: Mutex::new(Inner {
                active: Some(active),
                closed: rec.closed,
                poisoned: None,
                broken_at: None,
                scratch: Vec::new(),
                keyring,
            }),
            // Started on first use: only filesystems with background syncing need it.
            background: Mutex::new(None),
            roll_observer: Mutex::new(None),
            spare: SpareSlot::new(),
            retiring: Mutex::new(()),
        })
    }

    /// A WAL that was recovered but is never written: appends, rotations and syncs fail with
    /// [`Error::ReadOnly`], and nothing on disk changes.
    pub fn read_only(fs: SharedFs, keyring: Keyring, opts: WalOptions, rec: WalRecovery) -> Self {
        Self {
            fs,
            dir: rec.dir,
            opts,
            inner: Mutex::new(Inner {
                active: None,
                closed: rec.closed,
                poisoned: None,
                broken_at: None,
                scratch: Vec::new(),
                keyring,
            }),
            background: Mutex::new(None),
            roll_observer: Mutex::new(None),
            spare: SpareSlot::new(),
            retiring: Mutex::new(()),
        }
    }

    /// Replays every segment of `dir` at or above `min_segment` through `replay`, in commit
    /// order, and checks the chain, without changing anything on disk (see [`Wal::start`]).
    pub fn recover(
        fs: &SharedFs,
        dir: &Path,
        keyring: &Keyring,
        opts: WalOptions,
        min_segment: u64,
        replay: &mut dyn FnMut(FrameBatch<'_>) -> Result<()>,
    ) -> Result<WalRecovery> {
        let io = io_error;
        let mut stats = RecoveryStats::default();
        let mut numbers: Vec<u64> = if fs.exists(dir) {
            fs.list_dir(dir)
                .map_err(|e| io(dir, e))?
                .iter()
                .filter_map(|n| parse_segment_name(n))
                .collect()
        } else {
            Vec::new()
        };
        numbers.sort_unstable();

        let obsolete: Vec<u64> = numbers
            .iter()
            .copied()
            .filter(|n| *n < min_segment)
            .collect();
        stats.obsolete_removed = obsolete.len();
        numbers.retain(|n| *n >= min_segment);

        let expected = Expected {
            kind: ArtifactKind::Wal,
            database_id: keyring.database_id(),
            cipher: Some(opts.cipher),
        };
        // Pass 1: read every segment's start frame, one file open at a time.
        let mut segments: Vec<SegmentOnDisk> = Vec::with_capacity(numbers.len());
        let last_index = numbers.len().checked_sub(1);
        for (i, number) in numbers.iter().copied().enumerate() {
            let path = dir.join(segment_file_name(number));
            let is_last = Some(i) == last_index;
            let opened = SealedReader::open(fs.as_ref(), &path, keyring, &expected)
                .map(|r| r.blocks_unfinished_ok().next());
            let first = match opened {
                Ok(x) => x,
                // A segment created just before a crash may have a torn header.
                Err(sealdb_crypto::Error::Integrity {
                    reason: IntegrityReason::Truncated,
                    ..
                }) if is_last => {
                    segments.push(SegmentOnDisk {
                        number,
                        path,
                        start: None,
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let start = match first {
                Some(Ok((_, block))) => {
                    let s = StartFrame::decode(&block.data).ok_or_else(|| {
                        Error::malformed(format!(
                            "{}: first frame is not a start frame",
                            path.display()
                        ))
                    })?;
                    if s.number != number {
                        return Err(Error::malformed(format!(
                            "{}: start frame names segment {}",
                            path.display(),
                            s.number
                        )));
                    }
                    Some(s)
                }
                None if is_last => None,
                Some(Err(sealdb_crypto::Error::Integrity {
                    reason: IntegrityReason::Truncated,
                    ..
                })) if is_last => None,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(Error::malformed(format!(
                        "{}: empty segment",
                        path.display()
                    )));
                }
            };
            segments.push(SegmentOnDisk {
                number,
                path,
                start,
            });
        }
        // A last segment whose start frame never became durable holds nothing: it is dropped
        // (deleted by `start`).
        let mut torn_header = None;
        if let Some(last) = segments.last()
            && last.start.is_none()
        {
            let dropped = fs.file_size(&last.path).unwrap_or(0);
            stats.torn_tail = Some(TornTail {
                segment: last.number,
                offset: 0,
                dropped_bytes: dropped,
            });
            torn_header = Some(last.number);
            segments.pop();
        }
        // The chain: each segment names its predecessor.
        if let Some(first) = segments.first().and_then(|s| s.start)
            && first.prev_number != 0
            && first.prev_number >= min_segment
        {
            return Err(Error::MissingSegment(format!(
                "segment {} follows segment {}, which is missing",
                first.number, first.prev_number
            )));
        }
        for pair in segments.windows(2) {
            if let [a, b] = pair {
                let prev = b.start.map(|s| s.prev_number);
                if prev != Some(a.number) {
                    return Err(Error::MissingSegment(format!(
                        "segment {} does not follow segment {}",
                        b.number, a.number
                    )));
                }
            }
        }

        // Pass 2: replay, reopening one segment at a time.
        let mut closed = BTreeMap::new();
        let mut ends = BTreeMap::new();
        let mut prev_info = (0u64, 0u64, false); // (number, valid end, finished)
        let mut last_seq = 0u64;
        for (i, seg) in segments.iter().enumerate() {
            let reader = SealedReader::open(fs.as_ref(), &seg.path, keyring, &expected)?;
            let next_start = segments.get(i + 1).and_then(|s| s.start);
            let mut seg_max = 0u64;
            let mut iter = match next_start {
                Some(ns) if ns.prev_finished => reader.blocks(),
                _ => reader.blocks_unfinished_ok(),
            };
            let stop_at = next_start
                .filter(|ns| !ns.prev_finished)
                .map(|ns| ns.prev_end);
            let mut valid_end = reader.data_start();
            let mut finished = false;
            let mut first = true;
            loop {
                if Some(valid_end) == stop_at {
                    break;
                }
                let Some(item) = iter.next() else { break };
                let (handle, block) = match item {
                    Ok(x) => x,
                    Err(sealdb_crypto::Error::Integrity {
                        reason: IntegrityReason::Truncated,
                        block,
                        ..
                    }) if next_start.is_none() => {
                        let len = reader.len();
                        let offset = block.unwrap_or(valid_end);
                        stats.torn_tail = Some(TornTail {
                            segment: seg.number,
                            offset,
                            dropped_bytes: len.saturating_sub(offset),
                        });
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                valid_end = handle.end();
                if first {
                    first = false;
                    // The start frame: pass 1 checked it, but the file was reopened since.
                    if StartFrame::decode(&block.data) != seg.start {
                        return Err(Error::malformed(format!(
                            "{}: start frame changed during recovery",
                            seg.path.display()
                        )));
                    }
                    continue;
                }
                if block.is_final {
                    if block.data != [FRAME_END] {
                        return Err(Error::malformed(format!(
                            "{}: final frame is not an end frame",
                            seg.path.display()
                        )));
                    }
                    finished = true;
                    break;
                }
                let batches = decode_batches(&block.data).ok_or_else(|| {
                    Error::malformed("bad batch frame".into())
                        .in_file(&seg.path)
                        .at(handle.offset)
                })?;
                stats.frames += 1;
                for b in batches {
                    if b.first_seq <= last_seq || b.count == 0 {
                        return Err(Error::malformed(format!(
                            "sequence {} out of order",
                            b.first_seq
                        ))
                        .in_file(&seg.path)
                        .at(handle.offset));
                    }
                    last_seq = b.first_seq + u64::from(b.count) - 1;
                    seg_max = last_seq;
                    stats.batches += 1;
                    stats.records += u64::from(b.count);
                    replay(b)?;
                }
            }
            if let Some(stop) = stop_at
                && valid_end != stop
            {
                return Err(Error::malformed(format!(
                    "{}: valid data ends at {valid_end}, but the next segment recorded {stop}",
                    seg.path.display()
                )));
            }
            if next_start.is_some_and(|ns| ns.prev_finished) && !finished {
                return Err(Error::malformed(format!(
                    "{}: segment lacks its end frame",
                    seg.path.display()
                )));
            }
            stats.segments += 1;
            closed.insert(seg.number, seg_max);
            ends.insert(seg.number, valid_end);
            prev_info = (seg.number, valid_end, finished);
        }
        stats.last_seq = last_seq;
        Ok(WalRecovery {
            dir: dir.to_path_buf(),
            stats,
            closed,
            ends,
            prev_info,
            max_number: numbers.last().copied().unwrap_or(0),
            min_segment,
            obsolete,
            torn_header,
        })
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
        if let Some(why) = &inner.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        if inner.active.is_none() {
            return Err(Error::ReadOnly);
        }
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
            {
                let mut bg = self.background.lock();
                if bg.is_none() {
                    *bg = start_background_syncer();
                }
                if bg
                    .as_ref()
                    .is_some_and(|tx| tx.try_send(sync.0.clone()).is_ok())
                {
                    active.unsynced = 0;
                }
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
        let start = StartFrame {
            number: active.number + 1,
            prev_number: active.number,
            prev_end: valid_end,
            prev_finished: false,
        };
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
    fn create_next(&self, inner: &mut Inner, start: StartFrame, defer_sync: bool) -> Result<()> {
        let made = match self.spare.take() {
            Some(Ok(spare)) if spare.number == start.number => {
                start_spare(spare, start, !defer_sync)
            }
            Some(Ok(spare)) => self
                .remove_spare(spare)
                .and_then(|()| self.create_segment_now(inner, start)),
            Some(Err(e)) => Err(e),
            None => self.create_segment_now(inner, start),
        };
        match made {
            Ok(next) => {
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
            Err(e) => {
                let p = self.dir.join(segment_file_name(start.number));
                match self.fs.remove_file(&p) {
                    Ok(()) => {}
                    Err(r) if r.kind() == std::io::ErrorKind::NotFound => {}
                    Err(r) => {
                        let r = io_error(&p, r);
                        inner.poisoned = Some(r.to_string());
                        return Err(r);
                    }
                }
                Err(e)
            }
        }
    }

    fn create_segment_now(&self, inner: &Inner, start: StartFrame) -> Result<Active> {
        create_segment(
            self.fs.as_ref(),
            &self.dir,
            &inner.keyring,
            self.opts.cipher,
            start,
        )
    }

    /// Deletes an unused spare segment, durably: left behind, it would sit in the middle of
    /// the chain as a segment without a start frame.
    fn remove_spare(&self, spare: Spare) -> Result<()> {
        let p = self.dir.join(segment_file_name(spare.number));
        drop(spare.writer);
        self.fs.remove_file(&p).map_err(|e| io_error(&p, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| io_error(&self.dir, e))
    }

    /// Deletes the spare segment, if any (waiting for one being created).
    fn discard_spare(&self) -> Result<()> {
        match self.spare.take() {
            Some(Ok(spare)) => self.remove_spare(spare),
            // The failed creation removed what it made.
            Some(Err(_)) | None => Ok(()),
        }
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
        {
            let mut st = self.spare.state.lock();
            if st.pending || st.made.is_some() {
                return;
            }
            st.pending = true;
        }
        let number = active.number + 1;
        let fs = self.fs.clone();
        let dir = self.dir.clone();
        let keyring = inner.keyring.clone();
        let cipher = self.opts.cipher;
        let slot = self.spare.clone();
        let spawned = std::thread::Builder::new()
            .name("sealdb-wal-spare".into())
            .spawn(move || {
                // At normal priority: a rollover may wait for this thread, and a committing
                // writer must never wait on a thread that load can starve.
                let made = create_spare(fs.as_ref(), &dir, &keyring, cipher, number);
                let mut st = slot.state.lock();
                st.made = Some(made);
                st.pending = false;
                slot.ready.notify_all();
            });
        if spawned.is_err() {
            // No thread: the rollover creates the segment itself, as without a spare.
            self.spare.state.lock().pending = false;
        }
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
        let start = StartFrame {
            number: active.number + 1,
            prev_number: active.number,
            prev_end: active.writer.offset(),
            prev_finished: true,
        };
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
        if let Some(why) = &inner.poisoned {
            return Err(Error::poisoned(why.clone()));
        }
        if inner.active.is_none() {
            return Err(Error::ReadOnly);
        }
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
        if let Some(a) = archive {
            sealdb_vfs::create_dir_all_durable(self.fs.as_ref(), a).map_err(|e| io_error(a, e))?;
        }
        for n in &doomed {
            let p = self.dir.join(segment_file_name(*n));
            let r = match archive {
                Some(a) => self.fs.rename(&p, &a.join(segment_file_name(*n))),
                None => self.fs.remove_file(&p),
            };
            r.map_err(|e| io_error(&p, e))?;
            self.inner.lock().closed.remove(n);
        }
        if let (Some(a), false) = (archive, doomed.is_empty()) {
            self.fs.sync_dir(a).map_err(|e| io_error(a, e))?;
        }
        if !doomed.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| io_error(&self.dir, e))?;
        }
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
        let mut st = self.spare.state.lock();
        while st.pending {
            self.spare.ready.wait(&mut st);
        }
        st.made
            .as_ref()
            .and_then(|m| m.as_ref().ok())
            .map(|s| s.number)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What one segment holds, read without touching it (backups and point-in-time recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Segment number (from its start frame).
    pub number: u64,
    /// The sealed file's id.
    pub file_id: [u8; 16],
    /// First and last sequence numbers it holds (0 when it holds none).
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Commit times (Unix ms) of its first and last batch frames.
    pub first_time_ms: u64,
    /// Last frame's commit time.
    pub last_time_ms: u64,
    /// Whether it ends with an end frame.
    pub finished: bool,
}

/// Reads a segment's frames to summarize it. A partial block at the end stops the summary
/// (it is an active or torn segment); any other failure is an error.
pub fn summarize_segment(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<SegmentSummary> {
    let expected = Expected {
        kind: ArtifactKind::Wal,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    let reader = SealedReader::open(fs, path, keyring, &expected)?;
    let mut out = SegmentSummary {
        number: 0,
        file_id: reader.header().file_id.0,
        first_seq: 0,
        last_seq: 0,
        first_time_ms: 0,
        last_time_ms: 0,
        finished: false,
    };
    for (i, item) in reader.blocks_unfinished_ok().enumerate() {
        let (_, block) = match item {
            Ok(x) => x,
            Err(sealdb_crypto::Error::Integrity {
                reason: IntegrityReason::Truncated,
                ..
            }) => break,
            Err(e) => return Err(e.into()),
        };
        if i == 0 {
            let s = StartFrame::decode(&block.data)
                .ok_or_else(|| Error::malformed(format!("{}: no start frame", path.display())))?;
            out.number = s.number;
            continue;
        }
        if block.is_final {
            out.finished = true;
            break;
        }
        let batches = decode_batches(&block.data)
            .ok_or_else(|| Error::malformed(format!("{}: bad frame", path.display())))?;
        for b in batches {
            if out.first_seq == 0 {
                out.first_seq = b.first_seq;
                out.first_time_ms = b.commit_time_ms;
            }
            out.last_seq = b.first_seq + u64::from(b.count).saturating_sub(1);
            out.last_time_ms = b.commit_time_ms;
        }
    }
    Ok(out)
}

/// Creates segment `number` ahead of need: the sealed header, durable, with a durable
/// directory entry, and no frame. A failure removes what was made (or reports why it could
/// not).
fn create_spare(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
    cipher: CipherId,
    number: u64,
) -> Result<Spare> {
    let path = dir.join(segment_file_name(number));
    let made = (|| -> Result<Spare> {
        let mut writer = SealedWriter::create(fs, &path, keyring, ArtifactKind::Wal, cipher)?;
        writer.sync()?;
        fs.sync_dir(dir).map_err(|e| io_error(dir, e))?;
        Ok(Spare { number, writer })
    })();
    if made.is_err() {
        match fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    made
}

/// Makes a spare the segment `start` describes: its start frame, durable unless `sync` is
/// false (then the caller's next sync makes it durable, and it must announce the segment
/// only after that).
fn start_spare(spare: Spare, start: StartFrame, sync: bool) -> Result<Active> {
    let mut writer = spare.writer;
    writer.append_block(&start.encode())?;
    if sync {
        writer.sync()?;
    }
    let syncer = writer.background_syncer().map(Syncer);
    Ok(Active {
        writer,
        number: start.number,
        max_seq: 0,
        has_batches: false,
        unsynced: 0,
        syncer,
        announce: None,
    })
}

fn create_segment(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
    cipher: CipherId,
    start: StartFrame,
) -> Result<Active> {
    let path = dir.join(segment_file_name(start.number));
    let mut writer = SealedWriter::create(fs, &path, keyring, ArtifactKind::Wal, cipher)?;
    writer.append_block(&start.encode())?;
    writer.sync()?;
    fs.sync_dir(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let syncer = writer.background_syncer().map(Syncer);
    Ok(Active {
        writer,
        number: start.number,
        max_seq: 0,
        has_batches: false,
        unsynced: 0,
        syncer,
        announce: None,
    })
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn frames_decode_by_kind_and_garbage_is_an_error() {
        let start = StartFrame {
            number: 7,
            prev_number: 6,
            prev_end: 4096,
            prev_finished: true,
        };
        assert_eq!(
            decode_frame(&start.encode()).ok(),
            Some(Frame::Start {
                number: 7,
                prev_number: 6,
                prev_end: 4096,
                prev_finished: true
            })
        );
        assert_eq!(decode_frame(&[FRAME_END]).ok(), Some(Frame::End));
        let mut b = crate::BatchBuilder::new();
        assert!(b.put(1, b"k", b"v").is_ok());
        let batch = FrameBatch {
            first_seq: 42,
            count: 1,
            rep: b.rep(),
            commit_time_ms: 5,
        };
        let mut payload = Vec::new();
        assert!(encode_batches(&[batch], &mut payload).is_ok());
        assert_eq!(
            decode_frame(&payload).ok(),
            Some(Frame::Batches(vec![batch]))
        );
        assert!(decode_frame(&[9, 9, 9]).is_err());
        payload.pop();
        assert!(decode_frame(&payload).is_err());
    }
}
