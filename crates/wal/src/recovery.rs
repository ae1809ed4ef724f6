//! Recovery: replaying the chain of segments (the rules are sealdb-log's [`sealdb_log::scan`]),
//! and summaries of single segments for backups and point-in-time recovery.

use crate::frame::decode_batches;
use crate::log::{WalOptions, activate, chain_config};
use crate::{Error, FrameBatch, Result, Wal};
use sealdb_crypto::{CipherId, Keyring, SealedReader};
use sealdb_log::{ChainRules, Link, TornTail, scan_chain, walk_segment};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// What recovery found: everything needed to decide whether the log is whole (and to start
/// writing after it) without having changed a byte on disk.
#[derive(Debug)]
pub struct WalRecovery {
    pub(crate) dir: PathBuf,
    pub(crate) stats: RecoveryStats,
    /// Replayed segments with the highest sequence number each holds.
    pub(crate) closed: BTreeMap<u64, u64>,
    /// Where each replayed segment validly ends.
    pub(crate) ends: BTreeMap<u64, u64>,
    /// The last replayed segment: (number, valid end, finished).
    pub(crate) prev_info: (u64, u64, bool),
    pub(crate) max_number: u64,
    pub(crate) min_segment: u64,
    /// Segments older than `min_segment`: obsolete, deleted when writing starts.
    pub(crate) obsolete: Vec<u64>,
    /// A last segment whose start frame never became durable: deleted when writing starts.
    pub(crate) torn_header: Option<u64>,
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

fn malformed(path: &Path, offset: Option<u64>, why: impl std::fmt::Display) -> Error {
    sealdb_log::Error::malformed(path, offset, why).into()
}

/// A WAL start frame is the link alone.
fn decode_start(path: &Path, at: u64, data: &[u8]) -> Result<(Link, ())> {
    Link::decode_exact(data).map(|l| (l, ())).map_err(|why| {
        malformed(
            path,
            Some(at),
            format!("first frame is not a start frame: {why}"),
        )
    })
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
        sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir)
            .map_err(|e| sealdb_log::Error::io(&dir, e))?;
        let cfg = chain_config(opts.cipher);
        // Deletions first: on a full disk they are what makes room for the new segment.
        let doomed: Vec<u64> = rec
            .obsolete
            .iter()
            .copied()
            .chain(rec.torn_header)
            .collect();
        sealdb_log::retire_prefix(fs.as_ref(), &dir, &cfg, &doomed, None, &mut |_| {})?;
        // What was replayed may include a previous run's unsynced tail; it is visible from now
        // on, and the new segment's start frame records where it ends, so make it durable
        // first.
        if rec.prev_info.0 != 0 {
            let p = cfg.path(&dir, rec.prev_info.0);
            fs.sync_file(&p).map_err(|e| sealdb_log::Error::io(&p, e))?;
        }
        let number = rec.max_number.max(rec.min_segment.saturating_sub(1)) + 1;
        let (prev_number, prev_end, prev_finished) = rec.prev_info;
        let start = Link::after(prev_number, prev_end, prev_finished, number);
        let writer =
            sealdb_log::create_segment(fs.as_ref(), &dir, &cfg, &keyring, number, &start.encode())?;
        let active = activate(writer, number);
        Ok(Self::assemble(fs, keyring, opts, rec, Some(active)))
    }

    /// A WAL that was recovered but is never written: appends, rotations and syncs fail with
    /// [`Error::ReadOnly`], and nothing on disk changes.
    pub fn read_only(fs: SharedFs, keyring: Keyring, opts: WalOptions, rec: WalRecovery) -> Self {
        Self::assemble(fs, keyring, opts, rec, None)
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
        let cfg = chain_config(opts.cipher);
        let rules = ChainRules {
            min_segment,
            front_trimmed: false,
            supersede: false,
            // One file open at a time, however many segments there are.
            keep_readers: false,
        };
        // Pass 1: every segment's start frame, and the chain they form.
        let chain = scan_chain(fs.as_ref(), dir, &cfg, keyring, rules, &mut |p, h, data| {
            decode_start(p, h.offset, data)
        })?;
        let mut stats = RecoveryStats {
            obsolete_removed: chain.obsolete.len(),
            torn_tail: chain.torn_header.as_ref().map(|(t, _)| *t),
            ..RecoveryStats::default()
        };

        // Pass 2: replay, reopening one segment at a time.
        let mut closed = BTreeMap::new();
        let mut ends = BTreeMap::new();
        let mut prev_info = (0u64, 0u64, false); // (number, valid end, finished)
        let mut last_seq = 0u64;
        for (i, seg) in chain.segments.iter().enumerate() {
            let reader = seg.reader(fs.as_ref(), &cfg, keyring)?;
            let next = chain.segments.get(i + 1).map(|s| s.link);
            let mut seg_max = 0u64;
            let path = &seg.path;
            let walked = walk_segment::<(), Error>(
                seg,
                &reader,
                next,
                &mut |handle, data| {
                    let at = Some(handle.offset);
                    let batches = decode_batches(data)
                        .ok_or_else(|| malformed(path, at, "bad batch frame"))?;
                    stats.frames += 1;
                    for b in batches {
                        if b.first_seq <= last_seq || b.count == 0 {
                            let why = format!("sequence {} out of order", b.first_seq);
                            return Err(malformed(path, at, why));
                        }
                        last_seq = b.first_seq + u64::from(b.count) - 1;
                        seg_max = last_seq;
                        stats.batches += 1;
                        stats.records += u64::from(b.count);
                        replay(b)?;
                    }
                    Ok(())
                },
                &mut |handle, data| {
                    if data.len() != 1 {
                        return Err(malformed(
                            path,
                            Some(handle.offset),
                            "end frame carries data",
                        ));
                    }
                    Ok(())
                },
            )?;
            if walked.torn.is_some() {
                stats.torn_tail = walked.torn;
            }
            stats.segments += 1;
            closed.insert(seg.number, seg_max);
            ends.insert(seg.number, walked.valid_end);
            prev_info = (seg.number, walked.valid_end, walked.finished);
        }
        stats.last_seq = last_seq;
        Ok(WalRecovery {
            dir: dir.to_path_buf(),
            stats,
            closed,
            ends,
            prev_info,
            max_number: chain.max_number,
            min_segment,
            obsolete: chain.obsolete,
            torn_header: chain.torn_header.map(|(t, _)| t.segment),
        })
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
    let expected = chain_config(cipher).expected(keyring);
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
            Err(e) if sealdb_log::is_truncated(&e) => break,
            Err(e) => return Err(e.into()),
        };
        if i == 0 {
            let s = Link::decode_exact(&block.data)
                .map_err(|_| Error::malformed(format!("{}: no start frame", path.display())))?;
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
