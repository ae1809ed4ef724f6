//! Segments, appends, rollover, the in-memory index, reads, live tailing, retention and
//! recovery.
//!
//! Locking: `writer` serialises appends (and owns the active segment's file); `index` is the
//! in-memory picture readers use, held only briefly (never across file I/O by readers, and by
//! the writer only to publish a block it has written). Lock order: writer, then index.
//! `trim_lock` serialises trims; it is never held with `writer`.

use crate::record::{
    FRAME_END, FRAME_RECORDS, FRAME_START, MAX_FRAME_LEN, StartFrame, decode_end_frame,
    decode_records_frame, encode_end_frame, encode_records_frame,
};
use crate::{ChangeRecord, Error, Result, StreamId};
use parking_lot::{Condvar, Mutex, RwLock};
use sealdb_crypto::sealed::BLOCK_PREFIX_LEN;
use sealdb_crypto::{
    ArtifactKind, BlockHandle, CipherId, Expected, FileId, IntegrityReason, Keyring, SealedReader,
    SealedWriter,
};
use sealdb_vfs::{FileSystem, SharedFs};
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

/// The file name of segment `number`: 16 decimal digits and [`SEGMENT_SUFFIX`].
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

/// The torn tail cut off the last segment during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The segment number.
    pub segment: u64,
    /// Where the valid data ended (0: the segment's start frame itself was torn and the
    /// segment was removed).
    pub offset: u64,
    /// Bytes dropped after it.
    pub dropped_bytes: u64,
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
    /// Records recovered and retained (not counting those cut by `open_truncating`).
    pub records: u64,
    /// Records cut by [`StreamLog::open_truncating`] because their sequence numbers were
    /// above its `max_seq` (0 for [`StreamLog::open`]).
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

/// A segment found on disk whose start frame authenticated.
struct Found {
    number: u64,
    path: PathBuf,
    reader: SealedReader,
    start: StartFrame,
}

use crate::malformed_in as malformed;

fn is_truncated(e: &sealdb_crypto::Error) -> bool {
    matches!(
        e,
        sealdb_crypto::Error::Integrity {
            reason: IntegrityReason::Truncated,
            ..
        }
    )
}

/// The anchor check of an open: `found` is what the directory held (newest segment with a start frame, highest sequence number before any
/// truncation). Records above `max_seq` may legitimately have been cut as phantoms, so only
/// those up to `min(expected.last_seq, max_seq)` are required.
fn check_against(
    dir: &Path,
    found: StreamAnchor,
    expected: StreamAnchor,
    max_seq: u64,
) -> Result<()> {
    if found.segment < expected.segment {
        return Err(Error::MissingFile {
            file: dir
                .join(segment_file_name(expected.segment))
                .display()
                .to_string(),
            detail: format!(
                "the stream's newest segment is {}, but segment {} was created durably",
                found.segment, expected.segment
            ),
        });
    }
    let required = expected.last_seq.min(max_seq);
    if found.last_seq < required {
        return Err(Error::MissingFile {
            file: dir
                .join(segment_file_name(found.segment))
                .display()
                .to_string(),
            detail: format!(
                "the stream ends at sequence {}, but records up to {required} were durable \
                 (records at the end of the chain were deleted or cut)",
                found.last_seq
            ),
        });
    }
    Ok(())
}

fn expected_header(keyring: &Keyring, cipher: CipherId) -> Expected {
    Expected {
        kind: ArtifactKind::Stream,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    }
}

impl StreamLog {
    /// Opens the stream in `dir` (creating the directory if needed), verifies every retained
    /// segment and rebuilds the index, cuts a torn tail of the last segment, and starts a
    /// fresh segment (new file id) for new appends: a recovered segment is never appended to.
    ///
    /// The same as [`open_truncating`](Self::open_truncating) with `max_seq = u64::MAX`.
    pub fn open(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        id: StreamId,
        expected: Option<StreamAnchor>,
    ) -> Result<(Self, StreamRecovery)> {
        Self::open_truncating(fs, dir, keyring, opts, id, expected, u64::MAX)
    }

    /// Like [`open`](Self::open), but also cuts every record with a sequence number above
    /// `max_seq`: the engine passes the WAL's recovered last sequence number, so records whose
    /// commit groups the WAL lost in a crash ("phantoms": the stream's unsynced tail reached
    /// the disk, the WAL's did not) are never served.
    ///
    /// The cut is made like a torn tail's, at block (commit group) granularity, and no
    /// recovered file is written again: the new segment's start frame names the segment
    /// holding the last kept record and says it validly ends after that record's block. The
    /// segments after it are *superseded* by that start frame: once it is durable they are
    /// removed (newest first, then a directory sync), and any recovery after a crash removes
    /// those left over, unread. So the truncation takes effect atomically when the new segment
    /// is created; a crash before that leaves the stream as it was, for the next
    /// `open_truncating` to cut again. A records block holding sequence numbers both at or
    /// below and above `max_seq` is not split: it is [`Error::Malformed`], naming the file
    /// and block, and nothing is changed on disk. If even the trim point is above `max_seq`,
    /// every retained segment goes and the stream restarts with `max_seq` as its trim point.
    ///
    /// [`StreamRecovery::truncated_records`] counts the records this call cut (not those in
    /// segments a crashed earlier call had already superseded).
    ///
    /// Every segment's start frame must name `id`, or the open fails with
    /// [`Error::WrongStream`] (a segment moved in from another stream's directory).
    ///
    /// `expected` is the anchor the caller pinned outside the data directory (the engine's
    /// head record; `None`: no check, for a stream that has none yet). Before anything is
    /// changed on disk, the newest segment with a start frame must be at least
    /// `expected.segment`, and the stream must hold every record up to
    /// `min(expected.last_seq, max_seq)` before truncation; otherwise the open fails with
    /// [`Error::MissingFile`] naming the missing segment (deleted newest segments, or records
    /// cut off the end). Records above `max_seq` are not required: they are phantoms this
    /// very call cuts (or an earlier, crashed call already cut), so a crash between a
    /// truncating open and the caller's next anchor update is not mistaken for tampering.
    #[allow(clippy::too_many_arguments)]
    pub fn open_truncating(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        id: StreamId,
        expected: Option<StreamAnchor>,
        max_seq: u64,
    ) -> Result<(Self, StreamRecovery)> {
        Self::open_inner(
            fs,
            dir,
            keyring,
            opts,
            id,
            expected,
            (max_seq, u64::MAX),
            false,
        )
    }

    /// Opens the stream for reading only: the same verification as
    /// [`open_truncating`](Self::open_truncating), records above `max_seq` hidden from
    /// readers, but nothing on disk is created, removed, synced or written (a database opened
    /// read-only beside a writer). [`append`](Self::append) fails with [`Error::ReadOnly`].
    #[allow(clippy::too_many_arguments)]
    pub fn open_read_only(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        id: StreamId,
        expected: Option<StreamAnchor>,
        max_seq: u64,
    ) -> Result<(Self, StreamRecovery)> {
        Self::open_inner(
            fs,
            dir,
            keyring,
            opts,
            id,
            expected,
            (max_seq, u64::MAX),
            true,
        )
    }

    /// [`open_truncating`](Self::open_truncating) (or, with `read_only`,
    /// [`open_read_only`](Self::open_read_only)) for a caller that can re-create every record
    /// above `regenerable_after` itself (the engine: from its WAL, which holds every commit
    /// above its flushed sequence number). A records block straddling `max_seq` is then cut
    /// whole, instead of being `Malformed`, when its first record is above
    /// `regenerable_after`: the block merged several commit groups (see
    /// [`append_deferred`](Self::append_deferred)) and the WAL lost only the later ones; the
    /// caller re-appends the earlier ones. A straddling block reaching down to
    /// `regenerable_after` or below is still `Malformed`.
    #[allow(clippy::too_many_arguments)]
    pub fn open_recovering(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        id: StreamId,
        expected: Option<StreamAnchor>,
        max_seq: u64,
        regenerable_after: u64,
        read_only: bool,
    ) -> Result<(Self, StreamRecovery)> {
        Self::open_inner(
            fs,
            dir,
            keyring,
            opts,
            id,
            expected,
            (max_seq, regenerable_after),
            read_only,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn open_inner(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        id: StreamId,
        expected: Option<StreamAnchor>,
        (max_seq, regenerable_after): (u64, u64),
        read_only: bool,
    ) -> Result<(Self, StreamRecovery)> {
        if !read_only {
            // Durably: a stream whose directory a power cut forgets would reopen empty.
            sealdb_vfs::create_dir_all_durable(fs.as_ref(), dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut stats = StreamRecovery::default();
        let listed = if fs.exists(dir) {
            fs.list_dir(dir).map_err(|e| Error::io(dir, e))?
        } else {
            Vec::new()
        };
        let mut numbers: Vec<u64> = listed
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        numbers.sort_unstable();
        let exp = expected_header(&keyring, opts.cipher);

        // Pass 1: open every segment and read its start frame. Only the last segment may lack
        // one (created just before a crash): it holds nothing and is removed.
        let mut found: Vec<Found> = Vec::with_capacity(numbers.len());
        // Files removed only once everything is verified: a failed open changes nothing.
        let mut dead: Vec<PathBuf> = Vec::new();
        for (i, number) in numbers.iter().copied().enumerate() {
            let path = dir.join(segment_file_name(number));
            let is_last = i + 1 == numbers.len();
            let start = match SealedReader::open(fs.as_ref(), &path, &keyring, &exp) {
                Ok(reader) => match reader.blocks_unfinished_ok().next() {
                    Some(Ok((handle, block))) => {
                        let s = StartFrame::decode(&block.data)
                            .map_err(|why| malformed(&path, Some(handle.offset), why))?;
                        if s.number != number {
                            return Err(malformed(
                                &path,
                                Some(handle.offset),
                                format!("start frame names segment {}", s.number),
                            ));
                        }
                        if s.stream != id {
                            return Err(Error::WrongStream {
                                file: path.display().to_string(),
                                expected: id,
                                found: s.stream,
                            });
                        }
                        Some((reader, s))
                    }
                    Some(Err(e)) if is_last && is_truncated(&e) => None,
                    None if is_last => None,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(malformed(&path, None, "segment holds no start frame")),
                },
                Err(e) if is_last && is_truncated(&e) => None,
                Err(e) => return Err(e.into()),
            };
            match start {
                Some((reader, start)) => found.push(Found {
                    number,
                    path,
                    reader,
                    start,
                }),
                None => {
                    let dropped = fs.file_size(&path).unwrap_or(0);
                    stats.torn_tail = Some(TornTail {
                        segment: number,
                        offset: 0,
                        dropped_bytes: dropped,
                    });
                    dead.push(path);
                }
            }
        }
        // The newest segment whose creation was durable (a torn start never was, so no anchor
        // can name it).
        let newest = found.last().map_or(0, |f| f.number);
        // The chain, resolved from the newest segment back: each segment names its
        // predecessor. Segments numbered between a segment and the predecessor it names were
        // superseded: a recovery cut them off (phantoms above a truncation point, or an empty
        // segment) by creating a successor naming an earlier segment, and crashed before it
        // removed them all. They are removed now, unread. Missing segments at the front are
        // what trimming leaves; a hole in the middle is an error.
        let mut chain: Vec<Found> = Vec::with_capacity(found.len());
        let mut superseded: Vec<Found> = Vec::new();
        while let Some(seg) = found.pop() {
            match chain
                .last()
                .map(|next| (next.number, next.start.prev_number))
            {
                Some((_, prev)) if seg.number > prev => superseded.push(seg),
                Some((next, prev)) if seg.number < prev => {
                    return Err(Error::MissingSegment(format!(
                        "segment {next} does not follow segment {} (it names {prev})",
                        seg.number
                    )));
                }
                _ => chain.push(seg),
            }
        }
        chain.reverse();
        let mut found = chain;
        dead.extend(superseded.into_iter().map(|s| s.path));

        // Pass 2: verify every block and rebuild the index. Records above `max_seq` are
        // verified like the rest but neither counted as recovered nor in commit-time ranges.
        let mut trimmed_through = found.first().map_or(0, |f| f.start.base_seq);
        let mut last_seq = trimmed_through;
        let mut segments: BTreeMap<u64, Segment> = BTreeMap::new();
        // Per segment in `found`: where its start frame ends.
        let mut start_ends: Vec<u64> = Vec::with_capacity(found.len());
        let mut last_finished = false;
        let mut last_end = 0u64;
        for (i, seg) in found.iter().enumerate() {
            if seg.start.base_seq != last_seq {
                return Err(malformed(
                    &seg.path,
                    Some(seg.reader.data_start()),
                    format!(
                        "start frame says the stream held up to sequence {}, but the segments \
                         before it end at {last_seq}",
                        seg.start.base_seq
                    ),
                ));
            }
            let next_start = found.get(i + 1).map(|f| f.start);
            let r = replay_segment(seg, next_start, max_seq, regenerable_after, &mut last_seq)?;
            if r.torn.is_some() {
                stats.torn_tail = r.torn;
            }
            stats.records += r.kept;
            stats.truncated_records += r.cut;
            start_ends.push(r.start_end);
            segments.insert(
                seg.number,
                Segment {
                    number: seg.number,
                    path: seg.path.clone(),
                    file_id: seg.reader.header().file_id,
                    base_seq: seg.start.base_seq,
                    blocks: r.blocks,
                    times: r.times,
                    bytes: seg.reader.len(),
                    closed: true,
                    reader: Some(seg.reader.clone()),
                },
            );
            last_finished = r.finished;
            last_end = r.valid_end;
        }
        if let Some(exp) = expected {
            let found = StreamAnchor {
                segment: newest,
                last_seq,
            };
            check_against(dir, found, exp, max_seq)?;
        }
        // Verified: only now remove a torn last segment and superseded ones (unread).
        if !dead.is_empty() && !read_only {
            for path in &dead {
                fs.remove_file(path).map_err(|e| Error::io(path, e))?;
            }
            fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }

        // Truncation to `max_seq`. The cut segment is the first holding a record above it (or
        // the first of all, when even the trim point is above it: then nothing retained may
        // stay, since every segment's base sequence is at least the trim point). It is kept
        // up to its last block at or below `max_seq`; the segments after it are superseded.
        let mut doomed: Vec<Found> = Vec::new();
        if last_seq > max_seq {
            let cut_at = if trimmed_through > max_seq {
                Some(0)
            } else {
                found.iter().position(|f| {
                    segments
                        .get(&f.number)
                        .and_then(|s| s.blocks.last())
                        .is_some_and(|b| b.last_seq > max_seq)
                })
            };
            if let Some(i) = cut_at.filter(|&i| i < found.len()) {
                doomed = found.split_off(i + 1);
                if let (Some(cut), Some(&start_end)) = (found.last(), start_ends.get(i))
                    && let Some(seg) = segments.get_mut(&cut.number)
                {
                    let keep = seg.blocks.partition_point(|b| b.last_seq <= max_seq);
                    seg.blocks.truncate(keep);
                    // From now on the cut segment is read up to its last kept block, like one
                    // recovered with a torn tail: the new start frame says so.
                    last_finished = false;
                    (last_end, last_seq) = match seg.blocks.last() {
                        Some(b) => (b.handle.end(), b.last_seq),
                        None => (start_end, cut.start.base_seq),
                    };
                    // Only below the trim point can that exceed `max_seq` (it is then the
                    // first segment's base sequence): the stream restarts with `max_seq` as
                    // its trim point, so that the engine's next sequence number follows it.
                    last_seq = last_seq.min(max_seq);
                    trimmed_through = trimmed_through.min(max_seq);
                }
            }
        }
        stats.last_seq = last_seq;

        // The new segment's start frame: it follows the last recovered segment, unless that
        // one holds no record at all (a previous open's segment that never got an append, or
        // one whose records were all cut), in which case the new segment takes its place in
        // the chain (its start frame copies the empty one's predecessor fields) and the empty
        // one is superseded too, so repeated opens do not pile up empty files.
        let mut start = StartFrame {
            number: numbers.last().copied().unwrap_or(0).saturating_add(1),
            prev_number: found.last().map_or(0, |f| f.number),
            prev_end: last_end,
            prev_finished: last_finished,
            base_seq: last_seq,
            stream: id,
        };
        if !last_finished
            && found.last().is_some_and(|last| {
                segments
                    .get(&last.number)
                    .is_some_and(|s| s.blocks.is_empty())
            })
            && let Some(last) = found.pop()
        {
            start.prev_number = last.start.prev_number;
            start.prev_end = last.start.prev_end;
            start.prev_finished = last.start.prev_finished;
            doomed.push(last);
        }
        for seg in &doomed {
            segments.remove(&seg.number);
        }
        stats.segments = segments.len();
        if read_only {
            let newest = segments.keys().next_back().copied().unwrap_or(0);
            let log = Self {
                fs,
                dir: dir.to_path_buf(),
                opts,
                id,
                anchor: Mutex::new(StreamAnchor {
                    segment: newest,
                    last_seq,
                }),
                observer: RwLock::new(None),
                keyring: RwLock::new(keyring),
                writer: Mutex::new(None),
                index: Mutex::new(Index {
                    segments,
                    last_seq,
                    pending_seq: 0,
                    trimmed_through,
                }),
                appended: Condvar::new(),
                trim_lock: Mutex::new(()),
            };
            return Ok((log, stats));
        }
        // What was recovered may include a previous run's unsynced tail; it is readable from
        // now on and the new start frame records where it ends, so make it durable first.
        if let Some(last) = segments.values().next_back() {
            fs.sync_file(&last.path)
                .map_err(|e| Error::io(&last.path, e))?;
        }
        let file = create_segment(fs.as_ref(), dir, &keyring, opts.cipher, &start)?;
        // Now that the new start frame is durable, the segments it supersedes are dead (a
        // recovery after a crash from here on removes whichever are left): remove them, newest
        // first. Removing them before the new segment existed would let a crash in between
        // resurrect phantoms for a plain `open`, reuse their numbers for new files, and, when
        // no segment was left, lose the trim point.
        if !doomed.is_empty() {
            doomed.sort_unstable_by_key(|s| std::cmp::Reverse(s.number));
            for seg in &doomed {
                fs.remove_file(&seg.path)
                    .map_err(|e| Error::io(&seg.path, e))?;
            }
            fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        segments.insert(
            start.number,
            Segment {
                number: start.number,
                path: dir.join(segment_file_name(start.number)),
                file_id: file.header().file_id,
                base_seq: start.base_seq,
                blocks: Vec::new(),
                times: None,
                bytes: file.offset(),
                closed: false,
                reader: None,
            },
        );
        let log = Self {
            fs,
            dir: dir.to_path_buf(),
            opts,
            id,
            anchor: Mutex::new(StreamAnchor {
                segment: start.number,
                last_seq,
            }),
            observer: RwLock::new(None),
            keyring: RwLock::new(keyring),
            writer: Mutex::new(Some(Writer {
                file,
                number: start.number,
                has_records: false,
                last_seq,
                poisoned: None,
                scratch: Vec::new(),
                pending: Vec::new(),
                pending_len: 0,
            })),
            index: Mutex::new(Index {
                segments,
                last_seq,
                pending_seq: 0,
                trimmed_through,
            }),
            appended: Condvar::new(),
            trim_lock: Mutex::new(()),
        };
        Ok((log, stats))
    }

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
    /// straddles its `max_seq`: see [`open_recovering`](Self::open_recovering).
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
            number: old_number.saturating_add(1),
            prev_number: old_number,
            prev_end: old_end,
            prev_finished: true,
            base_seq: w.last_seq,
            stream: self.id,
        };
        let keyring = self.keyring.read().clone();
        let file = create_segment(
            self.fs.as_ref(),
            &self.dir,
            &keyring,
            self.opts.cipher,
            &start,
        )?;
        let segment = Segment {
            number: start.number,
            path: self.dir.join(segment_file_name(start.number)),
            file_id: file.header().file_id,
            base_seq: start.base_seq,
            blocks: Vec::new(),
            times: None,
            bytes: file.offset(),
            closed: false,
            reader: None,
        };
        w.file = file;
        w.number = start.number;
        w.has_records = false;
        {
            let mut idx = self.index.lock();
            if let Some(old) = idx.segments.get_mut(&old_number) {
                old.closed = true;
                old.bytes = old_end;
            }
            idx.segments.insert(start.number, segment);
        }
        // The old segment's end frame and the new start frame are both durable: every record
        // so far is, too.
        let anchor = StreamAnchor {
            segment: start.number,
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

    /// Reads records from `start`, at most `max_records` (≥ 1) of them and at most
    /// `max_bytes` of encoded records ([`ChangeRecord::encoded_len`]), except that a read
    /// returns at least one record when one is available, however large.
    ///
    /// `At`/`After` a position whose records retention has removed fail with
    /// [`Error::Trimmed`]. `Latest` returns nothing now (it positions after the newest
    /// record). The index finds the first block to read without scanning.
    pub fn read(&self, start: StartAt, max_records: usize, max_bytes: usize) -> Result<ReadBatch> {
        if max_records == 0 {
            return Err(Error::invalid_argument(
                "a stream read needs max_records >= 1".into(),
            ));
        }
        // Deferred records are readable like written ones: write them first.
        self.flush_pending()?;
        let (mut next, cursor) = {
            let idx = self.index.lock();
            let seq = match start {
                StartAt::TrimHorizon => idx.trimmed_through.saturating_add(1),
                StartAt::Latest => idx.last_seq.saturating_add(1),
                StartAt::At(s) => s,
                StartAt::After(s) => match s.checked_add(1) {
                    Some(s) => s,
                    None => {
                        return Ok(ReadBatch {
                            records: Vec::new(),
                            next: u64::MAX,
                        });
                    }
                },
            };
            if idx.trimmed_through > 0 && seq <= idx.trimmed_through {
                return Err(Error::Trimmed {
                    requested: seq,
                    horizon: idx.horizon(),
                });
            }
            (seq, idx.locate(seq))
        };
        let mut records: Vec<ChangeRecord> = Vec::new();
        let Some((mut seg_no, mut block_no)) = cursor else {
            return Ok(ReadBatch { records, next });
        };
        let mut bytes = 0usize;
        'blocks: while records.len() < max_records {
            enum Step {
                Block(BlockEntry, Option<SealedReader>, PathBuf, FileId),
                Advance(u64),
                Done,
            }
            let step = {
                let idx = self.index.lock();
                match idx.segments.get(&seg_no) {
                    None if records.is_empty() => {
                        return Err(Error::Trimmed {
                            requested: next,
                            horizon: idx.horizon(),
                        });
                    }
                    None => Step::Done,
                    Some(seg) => match seg.blocks.get(block_no) {
                        Some(entry) => Step::Block(
                            *entry,
                            seg.reader.clone().filter(|r| r.len() >= entry.handle.end()),
                            seg.path.clone(),
                            seg.file_id,
                        ),
                        None if seg.closed => idx
                            .segments
                            .range(seg_no.saturating_add(1)..)
                            .next()
                            .map_or(Step::Done, |(n, _)| Step::Advance(*n)),
                        None => Step::Done,
                    },
                }
            };
            let (entry, reader, path, file_id) = match step {
                Step::Done => break,
                Step::Advance(n) => {
                    seg_no = n;
                    block_no = 0;
                    continue;
                }
                Step::Block(entry, reader, path, file_id) => (entry, reader, path, file_id),
            };
            block_no += 1;
            if entry.last_seq < next {
                continue;
            }
            let reader = match reader {
                Some(r) => r,
                None => match self.reopen(seg_no, &path, file_id) {
                    Ok(r) => r,
                    Err(e) => {
                        let idx = self.index.lock();
                        if idx.segments.contains_key(&seg_no) {
                            return Err(e);
                        }
                        if records.is_empty() {
                            return Err(Error::Trimmed {
                                requested: next,
                                horizon: idx.horizon(),
                            });
                        }
                        break;
                    }
                },
            };
            let block = reader.read_block(entry.handle)?;
            let offset = Some(entry.handle.offset);
            if block.is_final {
                return Err(malformed(&path, offset, "indexed records block is final"));
            }
            let decoded =
                decode_records_frame(&block.data).map_err(|why| malformed(&path, offset, why))?;
            if decoded.first().map(|r| r.seq) != Some(entry.first_seq)
                || decoded.last().map(|r| r.seq) != Some(entry.last_seq)
            {
                return Err(malformed(
                    &path,
                    offset,
                    "block's sequence numbers differ from the index",
                ));
            }
            for r in decoded {
                if r.seq < next {
                    continue;
                }
                let len = r.encoded_len();
                if records.len() >= max_records
                    || (!records.is_empty() && bytes.saturating_add(len) > max_bytes)
                {
                    break 'blocks;
                }
                bytes = bytes.saturating_add(len);
                next = r.seq.saturating_add(1);
                records.push(r);
            }
        }
        Ok(ReadBatch { records, next })
    }

    /// Opens a fresh reader on a segment (the cached one is missing or shorter than the
    /// block), checks that the file is still the one written, and caches it. The file-id
    /// check also keeps out a segment moved in from another stream: file ids are random and
    /// never reused, and this one was bound to this stream when its start frame was verified
    /// (at open) or written (at creation).
    fn reopen(&self, seg_no: u64, path: &Path, file_id: FileId) -> Result<SealedReader> {
        let keyring = self.keyring.read().clone();
        let exp = expected_header(&keyring, self.opts.cipher);
        let reader = SealedReader::open(self.fs.as_ref(), path, &keyring, &exp)?;
        if reader.header().file_id != file_id {
            return Err(sealdb_crypto::Error::integrity(
                path.display().to_string(),
                None,
                IntegrityReason::ReplacedFile,
            )
            .into());
        }
        let mut idx = self.index.lock();
        if let Some(seg) = idx.segments.get_mut(&seg_no)
            && seg.reader.as_ref().is_none_or(|c| c.len() < reader.len())
        {
            seg.reader = Some(reader.clone());
        }
        Ok(reader)
    }

    /// Blocks until a record with a sequence number greater than `after_seq` has been
    /// appended (returns `true`) or `timeout` passes (returns whether one has by then).
    pub fn wait_for(&self, after_seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut idx = self.index.lock();
        while idx.last_seq.max(idx.pending_seq) <= after_seq {
            match deadline {
                Some(d) => {
                    if self.appended.wait_until(&mut idx, d).timed_out() {
                        return idx.last_seq.max(idx.pending_seq) > after_seq;
                    }
                }
                None => self.appended.wait(&mut idx),
            }
        }
        true
    }

    /// Removes whole closed segments, oldest first, while the oldest one is (a) empty, (b)
    /// older than `max_age` (its newest record committed before `now_ms - max_age`), or (c)
    /// the stream's total size exceeds `max_bytes`. Never removes the active segment. Readers
    /// asking for removed records get [`Error::Trimmed`] from then on.
    pub fn trim(
        &self,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
        now_ms: u64,
    ) -> Result<TrimReport> {
        let _serial = self.trim_lock.lock();
        let doomed: Vec<(PathBuf, u64)> = {
            let mut guard = self.index.lock();
            let idx = &mut *guard;
            let cutoff = max_age
                .map(|a| now_ms.saturating_sub(u64::try_from(a.as_millis()).unwrap_or(u64::MAX)));
            let mut total = idx.total_bytes();
            let mut doomed = Vec::new();
            for seg in idx.segments.values() {
                if !seg.closed {
                    break;
                }
                let empty = seg.blocks.is_empty();
                let expired =
                    cutoff.is_some_and(|c| seg.times.is_none_or(|(_, newest)| newest < c));
                let over = max_bytes.is_some_and(|m| total > m);
                if !(empty || expired || over) {
                    break;
                }
                total = total.saturating_sub(seg.bytes);
                doomed.push((seg.number, seg.path.clone(), seg.bytes));
            }
            for (n, _, _) in &doomed {
                idx.segments.remove(n);
            }
            if let Some(first) = idx.segments.values().next() {
                idx.trimmed_through = idx.trimmed_through.max(first.base_seq);
            }
            doomed.into_iter().map(|(_, p, b)| (p, b)).collect()
        };
        // Oldest first, each removal made durable before the next: after a crash the chain
        // on disk is still a suffix, never one with a hole.
        let mut report = TrimReport::default();
        for (path, bytes) in &doomed {
            match self.fs.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
            report.segments_removed += 1;
            report.bytes_removed += bytes;
        }
        report.horizon = self.horizon();
        Ok(report)
    }

    /// Replaces the keyring; segments created from now on use its current data-key version.
    /// It must still hold the versions of retained segments for reads of them.
    pub fn set_keyring(&self, keyring: Keyring) {
        *self.keyring.write() = keyring;
    }

    /// Paths of every retained segment (closed and active), oldest first: for backups and
    /// verification.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.index
            .lock()
            .segments
            .values()
            .map(|s| s.path.clone())
            .collect()
    }

    /// Bytes the retained segments occupy.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().total_bytes()
    }

    /// The stream directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What replaying one recovered segment found.
struct Replayed {
    /// Every records block, in order (including those above `max_seq`).
    blocks: Vec<BlockEntry>,
    /// Oldest and newest commit time of its records at or below `max_seq`.
    times: Option<(u64, u64)>,
    /// Where its start frame ends.
    start_end: u64,
    /// Where its valid data ends.
    valid_end: u64,
    /// Whether it carries its end frame.
    finished: bool,
    /// A torn tail (last segment only).
    torn: Option<TornTail>,
    /// Records at or below `max_seq`.
    kept: u64,
    /// Records above it.
    cut: u64,
}

/// Verifies every block of one recovered segment and indexes its records blocks. A records
/// block holding sequence numbers on both sides of `max_seq` is an error (a commit group is
/// never split) unless all its records are above `regenerable_after`: then it is cut whole.
fn replay_segment(
    seg: &Found,
    next_start: Option<StartFrame>,
    max_seq: u64,
    regenerable_after: u64,
    last_seq: &mut u64,
) -> Result<Replayed> {
    let reader = &seg.reader;
    let path = &seg.path;
    let mut iter = match next_start {
        Some(ns) if ns.prev_finished => reader.blocks(),
        _ => reader.blocks_unfinished_ok(),
    };
    // A predecessor recovered with a torn tail keeps its torn bytes (files are never
    // rewritten); the next segment's start frame says where its valid data ended.
    let stop_at = next_start
        .filter(|ns| !ns.prev_finished)
        .map(|ns| ns.prev_end);
    let mut blocks = Vec::new();
    let mut times: Option<(u64, u64)> = None;
    let mut valid_end = reader.data_start();
    let mut finished = false;
    let mut torn = None;
    let mut first = true;
    let mut start_end = valid_end;
    let (mut kept, mut cut) = (0u64, 0u64);
    loop {
        if Some(valid_end) == stop_at {
            break;
        }
        let Some(item) = iter.next() else { break };
        let (handle, block) = match item {
            Ok(x) => x,
            Err(e) if next_start.is_none() && is_truncated(&e) => {
                let offset = match &e {
                    sealdb_crypto::Error::Integrity { block, .. } => block.unwrap_or(valid_end),
                    _ => valid_end,
                };
                torn = Some(TornTail {
                    segment: seg.number,
                    offset,
                    dropped_bytes: reader.len().saturating_sub(offset),
                });
                break;
            }
            Err(e) => return Err(e.into()),
        };
        valid_end = handle.end();
        let at = Some(handle.offset);
        if first {
            first = false; // the start frame, checked in pass 1
            start_end = valid_end;
            continue;
        }
        match block.data.first() {
            Some(&FRAME_END) if block.is_final => {
                let end_seq =
                    decode_end_frame(&block.data).map_err(|why| malformed(path, at, why))?;
                if end_seq != *last_seq {
                    return Err(malformed(
                        path,
                        at,
                        format!(
                            "end frame names sequence {end_seq}, but the stream ends at {last_seq}"
                        ),
                    ));
                }
                finished = true;
                break;
            }
            Some(&FRAME_RECORDS) if !block.is_final => {
                let decoded =
                    decode_records_frame(&block.data).map_err(|why| malformed(path, at, why))?;
                let (Some(f), Some(l)) = (decoded.first(), decoded.last()) else {
                    return Err(malformed(path, at, "records frame holds no records"));
                };
                if f.seq <= *last_seq {
                    return Err(malformed(
                        path,
                        at,
                        format!("sequence {} does not follow {last_seq}", f.seq),
                    ));
                }
                if l.seq <= max_seq {
                    for r in &decoded {
                        times = Some(match times {
                            Some((a, b)) => (a.min(r.commit_time_ms), b.max(r.commit_time_ms)),
                            None => (r.commit_time_ms, r.commit_time_ms),
                        });
                    }
                    kept += decoded.len() as u64;
                } else if f.seq > max_seq || f.seq > regenerable_after {
                    // Wholly above the cut, or straddling it with every record re-creatable
                    // by the caller: the truncation drops the whole block.
                    cut += decoded.len() as u64;
                } else {
                    return Err(malformed(
                        path,
                        at,
                        format!(
                            "records frame holds sequences {} to {}, across the truncation \
                             point {max_seq}: a commit group cannot be split",
                            f.seq, l.seq
                        ),
                    ));
                }
                blocks.push(BlockEntry {
                    handle,
                    first_seq: f.seq,
                    last_seq: l.seq,
                });
                *last_seq = l.seq;
            }
            Some(&FRAME_START) => {
                return Err(malformed(path, at, "a second start frame"));
            }
            Some(t) => {
                return Err(malformed(
                    path,
                    at,
                    format!("unexpected frame type {t} (final flag {})", block.is_final),
                ));
            }
            None => return Err(malformed(path, at, "empty block")),
        }
    }
    if let Some(stop) = stop_at
        && valid_end != stop
    {
        return Err(malformed(
            path,
            None,
            format!("valid data ends at {valid_end}, but the next segment recorded {stop}"),
        ));
    }
    if next_start.is_some_and(|ns| ns.prev_finished) && !finished {
        return Err(malformed(path, None, "segment lacks its end frame"));
    }
    Ok(Replayed {
        blocks,
        times,
        start_end,
        valid_end,
        finished,
        torn,
        kept,
        cut,
    })
}

/// Creates segment `start.number` with its start frame, durably (file and directory entry).
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
    cipher: CipherId,
    start: &StartFrame,
) -> Result<SealedWriter> {
    let path = dir.join(segment_file_name(start.number));
    let mut writer = SealedWriter::create(fs, &path, keyring, ArtifactKind::Stream, cipher)?;
    writer.append_block(&start.encode())?;
    writer.sync()?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(42), "0000000000000042.stream");
        assert_eq!(parse_segment_name("0000000000000042.stream"), Some(42));
        assert_eq!(parse_segment_name("42.stream"), None);
        assert_eq!(parse_segment_name("0000000000000042.wal"), None);
    }

    #[test]
    fn stream_log_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StreamLog>();
    }
}
