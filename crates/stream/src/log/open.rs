//! Opening a stream: the chain's scan (sealdb-log's rules), each segment's records blocks
//! verified and indexed, the anchor check, truncation to the WAL's last sequence number, and
//! the new segment appends go to.

use super::*;
use sealdb_log::{ChainRules, Scanned, scan_chain, walk_segment};

/// A segment of the chain whose start frame authenticated (its reader kept open).
type Found = Scanned<StartFrame>;

/// Which stream [`StreamLog::open`] expects to find and how its recovery treats what it finds:
/// [`new`](Self::new) for the common case (no anchor check, nothing cut, writable), then the
/// builder methods for the engine's checks and cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPlan {
    id: StreamId,
    expected: Option<StreamAnchor>,
    max_seq: u64,
    regenerable_after: u64,
    read_only: bool,
}

impl RecoveryPlan {
    /// Opens the stream `id` writable, with no anchor check and nothing cut (beyond a torn
    /// tail).
    ///
    /// Every segment's start frame must name `id`, or the open fails with
    /// [`Error::WrongStream`] (a segment moved in from another stream's directory).
    pub fn new(id: StreamId) -> Self {
        Self {
            id,
            expected: None,
            max_seq: u64::MAX,
            regenerable_after: u64::MAX,
            read_only: false,
        }
    }

    /// Checks the chain against `expected`, the anchor the caller pinned outside the data
    /// directory (the engine's head record; `None`: no check, for a stream that has none yet).
    ///
    /// Before anything is changed on disk, the newest segment with a start frame must be at
    /// least `expected.segment`, and the stream must hold every record up to
    /// `min(expected.last_seq, max_seq)` before truncation (see
    /// [`truncating`](Self::truncating)); otherwise the open fails with
    /// [`Error::MissingFile`] naming the missing segment (deleted newest segments, or records
    /// cut off the end). Records above `max_seq` are not required: they are phantoms this
    /// very open cuts (or an earlier, crashed open already cut), so a crash between a
    /// truncating open and the caller's next anchor update is not mistaken for tampering.
    pub fn anchored(self, expected: Option<StreamAnchor>) -> Self {
        Self { expected, ..self }
    }

    /// Also cuts every record with a sequence number above `max_seq`: the engine passes the
    /// WAL's recovered last sequence number, so records whose commit groups the WAL lost in a
    /// crash ("phantoms": the stream's unsynced tail reached the disk, the WAL's did not) are
    /// never served.
    ///
    /// The cut is made like a torn tail's, at block (commit group) granularity, and no
    /// recovered file is written again: the new segment's start frame names the segment
    /// holding the last kept record and says it validly ends after that record's block. The
    /// segments after it are *superseded* by that start frame: once it is durable they are
    /// removed (newest first, then a directory sync), and any recovery after a crash removes
    /// those left over, unread. So the truncation takes effect atomically when the new segment
    /// is created; a crash before that leaves the stream as it was, for the next truncating
    /// open to cut again. A records block holding sequence numbers both at or below and above
    /// `max_seq` is not split: it is [`Error::Malformed`], naming the file and block, and
    /// nothing is changed on disk (unless [`regenerable_after`](Self::regenerable_after)
    /// allows cutting it whole). If even the trim point is above `max_seq`, every retained
    /// segment goes and the stream restarts with `max_seq` as its trim point.
    ///
    /// [`StreamRecovery::truncated_records`] counts the records this open cut (not those in
    /// segments a crashed earlier open had already superseded).
    pub fn truncating(self, max_seq: u64) -> Self {
        Self { max_seq, ..self }
    }

    /// For a caller that can re-create every record above `regenerable_after` itself (the
    /// engine: from its WAL, which holds every commit above its flushed sequence number). A
    /// records block straddling `max_seq` (see [`truncating`](Self::truncating)) is then cut
    /// whole, instead of being `Malformed`, when its first record is above
    /// `regenerable_after`: the block merged several commit groups (see
    /// [`StreamLog::append_deferred`]) and the WAL lost only the later ones; the caller
    /// re-appends the earlier ones. A straddling block reaching down to `regenerable_after`
    /// or below is still `Malformed`.
    pub fn regenerable_after(self, regenerable_after: u64) -> Self {
        Self {
            regenerable_after,
            ..self
        }
    }

    /// Opens for reading only: the same verification, records above `max_seq` hidden from
    /// readers, but nothing on disk is created, removed, synced or written (a database opened
    /// read-only beside a writer). [`StreamLog::append`] fails with [`Error::ReadOnly`].
    pub fn read_only(self) -> Self {
        Self {
            read_only: true,
            ..self
        }
    }
}

impl StreamLog {
    /// Opens the stream in `dir` (creating the directory if needed), verifies every retained
    /// segment and rebuilds the index, cuts a torn tail of the last segment, and starts a
    /// fresh segment (new file id) for new appends: a recovered segment is never appended to.
    /// `plan` names the stream and says what else recovery checks and cuts (an anchor, records
    /// above the WAL's last sequence number) and whether it may write at all.
    pub fn open(
        fs: SharedFs,
        dir: &Path,
        keyring: Keyring,
        opts: StreamOptions,
        plan: RecoveryPlan,
    ) -> Result<(Self, StreamRecovery)> {
        let RecoveryPlan {
            id,
            expected,
            max_seq,
            regenerable_after,
            read_only,
        } = plan;
        if !read_only {
            // Durably: a stream whose directory a power cut forgets would reopen empty.
            sealdb_vfs::create_dir_all_durable(fs.as_ref(), dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut stats = StreamRecovery::default();
        let cfg = chain_config(opts.cipher);
        // Pass 1 (sealdb-log's rules): every segment's start frame, bound to this stream, and
        // the chain resolved from the newest segment back. Segments numbered between a
        // segment and the predecessor it names were superseded: a recovery cut them off
        // (phantoms above a truncation point, or an empty segment) by creating a successor
        // naming an earlier segment, and crashed before it removed them all. They are removed
        // now, unread. Missing segments at the front are what trimming leaves; a hole in the
        // middle is an error. Only the last segment may lack a start frame (created just
        // before a crash): it holds nothing and is removed.
        let rules = ChainRules {
            min_segment: 0,
            front_trimmed: true,
            supersede: true,
            keep_readers: true,
        };
        let chain = scan_chain(
            fs.as_ref(),
            dir,
            &cfg,
            &keyring,
            rules,
            &mut |path, h, data| {
                let s = StartFrame::decode(data)
                    .map_err(|why| malformed_in(path, Some(h.offset), why))?;
                if s.stream != id {
                    return Err(Error::WrongStream {
                        file: path.display().to_string(),
                        expected: id,
                        found: s.stream,
                    });
                }
                Ok((s.link, s))
            },
        )?;
        // The newest segment whose creation was durable (a torn start never was, so no anchor
        // can name it).
        let newest = chain.newest_started();
        let max_number = chain.max_number;
        // Files removed only once everything is verified: a failed open changes nothing.
        let mut dead: Vec<PathBuf> = Vec::new();
        if let Some((torn, path)) = chain.torn_header {
            stats.torn_tail = Some(torn);
            dead.push(path);
        }
        dead.extend(chain.superseded.into_iter().map(|s| s.path));
        let mut found = chain.segments;

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
            let reader = seg.reader(fs.as_ref(), &cfg, &keyring)?;
            if seg.start.base_seq != last_seq {
                return Err(malformed_in(
                    &seg.path,
                    Some(reader.data_start()),
                    format!(
                        "start frame says the stream held up to sequence {}, but the segments \
                         before it end at {last_seq}",
                        seg.start.base_seq
                    ),
                ));
            }
            let next = found.get(i + 1).map(|f| f.link);
            let cut = (max_seq, regenerable_after);
            let r = replay_segment(seg, &reader, next, cut, &mut last_seq)?;
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
                    file_id: reader.header().file_id,
                    base_seq: seg.start.base_seq,
                    blocks: r.blocks,
                    times: r.times,
                    bytes: reader.len(),
                    closed: true,
                    reader: Some(reader.clone()),
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
            link: Link::after(
                found.last().map_or(0, |f| f.number),
                last_end,
                last_finished,
                max_number.saturating_add(1),
            ),
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
            start.link = Link {
                number: start.link.number,
                ..last.start.link
            };
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
        let frame = start.encode();
        let file = sealdb_log::create_segment(
            fs.as_ref(),
            dir,
            &cfg,
            &keyring,
            start.link.number,
            &frame,
        )?;
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
        segments.insert(start.link.number, Segment::new_active(dir, &start, &file));
        let log = Self {
            fs,
            dir: dir.to_path_buf(),
            opts,
            id,
            anchor: Mutex::new(StreamAnchor {
                segment: start.link.number,
                last_seq,
            }),
            observer: RwLock::new(None),
            keyring: RwLock::new(keyring),
            writer: Mutex::new(Some(Writer {
                file,
                number: start.link.number,
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
    reader: &SealedReader,
    next: Option<Link>,
    (max_seq, regenerable_after): (u64, u64),
    last_seq: &mut u64,
) -> Result<Replayed> {
    let path = &seg.path;
    let mut blocks = Vec::new();
    let mut times: Option<(u64, u64)> = None;
    let (mut kept, mut cut) = (0u64, 0u64);
    // Read by the end frame's check, advanced by each records block.
    let seq = std::cell::Cell::new(*last_seq);
    let mut on_records = |handle: BlockHandle, data: &[u8]| -> Result<()> {
        let at = Some(handle.offset);
        let decoded = decode_records_frame(data).map_err(|why| malformed_in(path, at, why))?;
        let (Some(f), Some(l)) = (decoded.first(), decoded.last()) else {
            return Err(malformed_in(path, at, "records frame holds no records"));
        };
        if f.seq <= seq.get() {
            return Err(malformed_in(
                path,
                at,
                format!("sequence {} does not follow {}", f.seq, seq.get()),
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
            // Wholly above the cut, or straddling it with every record re-creatable by the
            // caller: the truncation drops the whole block.
            cut += decoded.len() as u64;
        } else {
            return Err(malformed_in(
                path,
                at,
                format!(
                    "records frame holds sequences {} to {}, across the truncation point \
                     {max_seq}: a commit group cannot be split",
                    f.seq, l.seq
                ),
            ));
        }
        blocks.push(BlockEntry {
            handle,
            first_seq: f.seq,
            last_seq: l.seq,
        });
        seq.set(l.seq);
        Ok(())
    };
    let mut on_end = |handle: BlockHandle, data: &[u8]| -> Result<()> {
        let at = Some(handle.offset);
        let end_seq = decode_end_frame(data).map_err(|why| malformed_in(path, at, why))?;
        if end_seq != seq.get() {
            return Err(malformed_in(
                path,
                at,
                format!(
                    "end frame names sequence {end_seq}, but the stream ends at {}",
                    seq.get()
                ),
            ));
        }
        Ok(())
    };
    let walked = walk_segment(seg, reader, next, &mut on_records, &mut on_end)?;
    *last_seq = seq.get();
    Ok(Replayed {
        blocks,
        times,
        start_end: walked.start_end,
        valid_end: walked.valid_end,
        finished: walked.finished,
        torn: walked.torn,
        kept,
        cut,
    })
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
