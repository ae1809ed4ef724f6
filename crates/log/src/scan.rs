//! Recovery's scan of a chain: which segments belong to it, and where each validly ends.
//!
//! Pass 1 ([`scan_chain`]) reads every segment's start frame and resolves the chain from the
//! newest segment back; pass 2 ([`walk_segment`], once per segment, oldest first) verifies
//! every block and hands the payload and end frames to the log. Neither changes anything on
//! disk: the log decides what to delete and creates its new segment only once everything is
//! verified.
//!
//! The rules, the same for every chained log:
//! - Only the **last** segment may end in a partial block (a torn write): it is cut off and
//!   reported ([`TornTail`]). Anything else that fails to verify is an error.
//! - A last segment without a durable start frame (created just before a crash, or created
//!   ahead of need and never started) holds nothing: it is reported as a torn tail at offset
//!   0, and the log deletes it.
//! - Each segment names its predecessor. A segment whose successor names an older one was
//!   *superseded* (a truncating recovery cut it off and crashed before removing it), if the
//!   log allows that ([`ChainRules::supersede`]); a named predecessor that is missing is
//!   [`Error::MissingSegment`], at the front too unless the log trims its front.
//! - A segment whose successor says it was finished must end with its end frame; one whose
//!   successor says it was not is read exactly up to the end that successor recorded (the
//!   bytes after it are a torn tail an earlier recovery cut).

use crate::{ChainConfig, Error, FRAME_END, FRAME_PAYLOAD, FRAME_START, Link, is_truncated};
use sealdb_crypto::{BlockHandle, Keyring, SealedReader};
use sealdb_vfs::FileSystem;
use std::path::{Path, PathBuf};

/// Parses a start frame (given the segment's path and the block, for its errors) into the
/// link and what the log adds to it.
pub type StartDecoder<'a, S, E> = dyn FnMut(&Path, BlockHandle, &[u8]) -> Result<(Link, S), E> + 'a;

/// Takes one payload or end frame (where it lies, its plaintext) during pass 2.
pub type FrameVisitor<'a, E> = dyn FnMut(BlockHandle, &[u8]) -> Result<(), E> + 'a;

/// The torn tail cut off the last segment during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The segment number.
    pub segment: u64,
    /// Where the valid data ended (0: the segment's start frame itself was torn, or never
    /// written, and the segment is removed).
    pub offset: u64,
    /// Bytes dropped after it.
    pub dropped_bytes: u64,
}

/// What a log tolerates at the ends of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRules {
    /// Segments numbered below this are obsolete (their contents are elsewhere): they are not
    /// read, only listed in [`Chain::obsolete`].
    pub min_segment: u64,
    /// Whether the oldest segment may name a predecessor that is gone (a log trimmed from the
    /// front). Otherwise only one below `min_segment` may be gone.
    pub front_trimmed: bool,
    /// Whether segments numbered between a segment and the predecessor it names are
    /// superseded (removed unread) rather than a broken chain.
    pub supersede: bool,
    /// Whether pass 1 keeps every segment's reader open for pass 2 (and the log's readers);
    /// otherwise pass 2 reopens them, one file open at a time however many there are.
    pub keep_readers: bool,
}

/// One segment whose start frame authenticated.
#[derive(Debug)]
pub struct Scanned<S> {
    /// Its number.
    pub number: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its start frame's link.
    pub link: Link,
    /// What the log's start frame adds to the link.
    pub start: S,
    /// Its reader, when [`ChainRules::keep_readers`].
    pub reader: Option<SealedReader>,
}

impl<S> Scanned<S> {
    /// Its reader: the one kept open, or a fresh one.
    pub fn reader(
        &self,
        fs: &dyn FileSystem,
        cfg: &ChainConfig,
        keyring: &Keyring,
    ) -> Result<SealedReader, Error> {
        match &self.reader {
            Some(r) => Ok(r.clone()),
            None => Ok(SealedReader::open(
                fs,
                &self.path,
                keyring,
                &cfg.expected(keyring),
            )?),
        }
    }
}

/// The chain pass 1 found.
#[derive(Debug)]
pub struct Chain<S> {
    /// The segments of the chain, oldest first.
    pub segments: Vec<Scanned<S>>,
    /// Segments cut off by a later one naming an older predecessor, newest first.
    pub superseded: Vec<Scanned<S>>,
    /// Segments below [`ChainRules::min_segment`], ascending.
    pub obsolete: Vec<u64>,
    /// A last segment without a durable start frame (offset 0), with its path.
    pub torn_header: Option<(TornTail, PathBuf)>,
    /// The highest segment number on disk at or above `min_segment` (0: none).
    pub max_number: u64,
}

impl<S> Chain<S> {
    /// The newest segment whose start frame is durable (`0`: none), superseded ones included:
    /// what the log had durably created, for comparing with an anchor kept elsewhere.
    pub fn newest_started(&self) -> u64 {
        let chained = self.segments.last().map_or(0, |s| s.number);
        let superseded = self.superseded.first().map_or(0, |s| s.number);
        chained.max(superseded)
    }
}

/// Pass 1: reads the start frame of every segment in `dir` at or above `rules.min_segment`
/// and resolves the chain. `decode` parses a start frame (the log's fields after the link;
/// it is given the path and block for its errors) into the link and the log's fields.
pub fn scan_chain<S, E: From<Error>>(
    fs: &dyn FileSystem,
    dir: &Path,
    cfg: &ChainConfig,
    keyring: &Keyring,
    rules: ChainRules,
    decode: &mut StartDecoder<'_, S, E>,
) -> Result<Chain<S>, E> {
    let mut numbers = cfg.list(fs, dir)?;
    let obsolete: Vec<u64> = numbers
        .iter()
        .copied()
        .take_while(|n| *n < rules.min_segment)
        .collect();
    numbers.drain(..obsolete.len());
    let expected = cfg.expected(keyring);
    let mut found: Vec<Scanned<S>> = Vec::with_capacity(numbers.len());
    let mut torn_header = None;
    for (i, number) in numbers.iter().copied().enumerate() {
        let path = cfg.path(dir, number);
        let is_last = i + 1 == numbers.len();
        let first = match SealedReader::open(fs, &path, keyring, &expected) {
            Ok(reader) => match reader.blocks_unfinished_ok().next() {
                Some(Ok((handle, block))) => Some((reader, handle, block)),
                Some(Err(e)) if is_last && is_truncated(&e) => None,
                None if is_last => None,
                Some(Err(e)) => return Err(Error::from(e).into()),
                None => {
                    return Err(
                        Error::malformed(&path, None, "segment holds no start frame").into(),
                    );
                }
            },
            // A segment created just before a crash may have a torn header.
            Err(e) if is_last && is_truncated(&e) => None,
            Err(e) => return Err(Error::from(e).into()),
        };
        let Some((reader, handle, block)) = first else {
            let dropped_bytes = fs.file_size(&path).unwrap_or(0);
            let torn = TornTail {
                segment: number,
                offset: 0,
                dropped_bytes,
            };
            torn_header = Some((torn, path));
            continue;
        };
        let (link, start) = decode(&path, handle, &block.data)?;
        if link.number != number {
            return Err(Error::malformed(
                &path,
                Some(handle.offset),
                format!("start frame names segment {}", link.number),
            )
            .into());
        }
        found.push(Scanned {
            number,
            path,
            link,
            start,
            reader: rules.keep_readers.then_some(reader),
        });
    }
    let (segments, superseded) = resolve(found, rules)?;
    Ok(Chain {
        segments,
        superseded,
        obsolete,
        torn_header,
        max_number: numbers.last().copied().unwrap_or(0),
    })
}

/// Follows the links from the newest segment back.
#[allow(clippy::type_complexity)] // (the chain, the superseded segments)
fn resolve<S>(
    mut found: Vec<Scanned<S>>,
    rules: ChainRules,
) -> Result<(Vec<Scanned<S>>, Vec<Scanned<S>>), Error> {
    let mut chain: Vec<Scanned<S>> = Vec::with_capacity(found.len());
    let mut superseded = Vec::new();
    while let Some(seg) = found.pop() {
        match chain
            .last()
            .map(|next| (next.number, next.link.prev_number))
        {
            Some((_, prev)) if seg.number > prev && rules.supersede => superseded.push(seg),
            Some((next, prev)) if seg.number != prev => {
                return Err(Error::MissingSegment(format!(
                    "segment {next} does not follow segment {} (it names {prev})",
                    seg.number
                )));
            }
            _ => chain.push(seg),
        }
    }
    chain.reverse();
    if let Some(first) = chain.first()
        && !rules.front_trimmed
        && first.link.prev_number != 0
        && first.link.prev_number >= rules.min_segment
    {
        return Err(Error::MissingSegment(format!(
            "segment {} follows segment {}, which is missing",
            first.number, first.link.prev_number
        )));
    }
    Ok((chain, superseded))
}

/// What pass 2 found in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Where its start frame ends.
    pub start_end: u64,
    /// Where its valid data ends.
    pub valid_end: u64,
    /// Whether it carries its end frame.
    pub finished: bool,
    /// A torn tail (the last segment only).
    pub torn: Option<TornTail>,
}

/// Pass 2 for one segment: verifies every block of `seg` (read through `reader`) and hands
/// each payload frame and the end frame, with where it lies, to the log. `next` is the
/// successor's link (`None` for the last segment: only it may have a torn tail).
pub fn walk_segment<S, E: From<Error>>(
    seg: &Scanned<S>,
    reader: &SealedReader,
    next: Option<Link>,
    on_payload: &mut FrameVisitor<'_, E>,
    on_end: &mut FrameVisitor<'_, E>,
) -> Result<Walked, E> {
    let path = &seg.path;
    let mut iter = match next {
        Some(n) if n.prev_finished => reader.blocks(),
        _ => reader.blocks_unfinished_ok(),
    };
    // A predecessor recovered with a torn tail keeps its torn bytes (files are never
    // rewritten); the next segment's start frame says where its valid data ended.
    let stop_at = next.filter(|n| !n.prev_finished).map(|n| n.prev_end);
    let mut walked = Walked {
        start_end: reader.data_start(),
        valid_end: reader.data_start(),
        finished: false,
        torn: None,
    };
    let mut first = true;
    loop {
        if Some(walked.valid_end) == stop_at {
            break;
        }
        let Some(item) = iter.next() else { break };
        let (handle, block) = match item {
            Ok(x) => x,
            Err(e) if next.is_none() && is_truncated(&e) => {
                let offset = match &e {
                    sealdb_crypto::Error::Integrity { block, .. } => {
                        block.unwrap_or(walked.valid_end)
                    }
                    _ => walked.valid_end,
                };
                walked.torn = Some(TornTail {
                    segment: seg.number,
                    offset,
                    dropped_bytes: reader.len().saturating_sub(offset),
                });
                break;
            }
            Err(e) => return Err(Error::from(e).into()),
        };
        walked.valid_end = handle.end();
        let at = Some(handle.offset);
        if first {
            first = false;
            // Pass 1 checked it, but the file may have been reopened since.
            if Link::decode_prefix(&block.data).ok().map(|(l, _)| l) != Some(seg.link) {
                return Err(
                    Error::malformed(path, at, "start frame changed during recovery").into(),
                );
            }
            walked.start_end = walked.valid_end;
            continue;
        }
        match (block.data.first(), block.is_final) {
            (Some(&FRAME_END), true) => {
                on_end(handle, &block.data)?;
                walked.finished = true;
                break;
            }
            (_, true) => {
                return Err(Error::malformed(path, at, "final frame is not an end frame").into());
            }
            (Some(&FRAME_PAYLOAD), false) => on_payload(handle, &block.data)?,
            (Some(&FRAME_START), false) => {
                return Err(Error::malformed(path, at, "a second start frame").into());
            }
            (Some(t), false) => {
                return Err(
                    Error::malformed(path, at, format!("unexpected frame type {t}")).into(),
                );
            }
            (None, false) => return Err(Error::malformed(path, at, "empty block").into()),
        }
    }
    if let Some(stop) = stop_at
        && walked.valid_end != stop
    {
        return Err(Error::malformed(
            path,
            None,
            format!(
                "valid data ends at {}, but the next segment recorded {stop}",
                walked.valid_end
            ),
        )
        .into());
    }
    if next.is_some_and(|n| n.prev_finished) && !walked.finished {
        return Err(Error::malformed(path, None, "segment lacks its end frame").into());
    }
    Ok(walked)
}
