//! Change streams in the engine: per keyspace, a sealed stream log (crate `sealdb-stream`)
//! fed by the commit leader with one record per real change, in commit order; recovered from
//! the WAL when the stream lags it after a crash.

use crate::{Error, Result};
use sealdb_stream::{
    ChangeRecord, ConsumerPositions, Event, RecoveryPlan, StreamId, StreamLog, StreamOptions,
    ViewType,
};
use sealdb_vfs::FileSystem;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One change the commit leader saw: (keyspace, key, old value, new value), and where the
/// record sits in its batch (its sequence number is `first_seq + position`).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub keyspace: u32,
    pub key: Vec<u8>,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
    pub position: u32,
    pub first_seq: u64,
}

/// An enabled stream.
#[derive(Debug)]
pub(crate) struct LiveStream {
    pub keyspace_name: String,
    pub view: ViewType,
    pub retention: Duration,
    pub max_bytes: u64,
    /// Writes at or below this sequence number predate the stream (never recorded).
    pub start_seq: u64,
    pub log: StreamLog,
    pub positions: parking_lot::Mutex<ConsumerPositions>,
    pub dir: PathBuf,
    /// Id of the memtable the records deferred last belong to: deferred records are written
    /// before the first record of a newer memtable is accepted, so a stream block never mixes
    /// commits on both sides of a memtable boundary (a flushed memtable's commits are not in
    /// the WAL any more, so their records must never be in a block recovery may cut).
    pub deferred_memtable: std::sync::atomic::AtomicU64,
}

/// Streams by keyspace id.
pub(crate) type StreamSet = HashMap<u32, Arc<LiveStream>>;

pub(crate) fn view_code(v: ViewType) -> u8 {
    match v {
        ViewType::KeysOnly => 0,
        ViewType::NewImage => 1,
        ViewType::OldImage => 2,
        ViewType::NewAndOldImages => 3,
    }
}

pub(crate) fn view_from_code(c: u8) -> Result<ViewType> {
    Ok(match c {
        0 => ViewType::KeysOnly,
        1 => ViewType::NewImage,
        2 => ViewType::OldImage,
        3 => ViewType::NewAndOldImages,
        _ => return Err(Error::corruption(format!("unknown stream view type {c}"))),
    })
}

pub(crate) fn stream_err(e: sealdb_stream::Error) -> Error {
    e.into()
}

/// The event a change is, if any: a delete of an absent key and a put that changes nothing
/// are none.
fn event_of(c: &Change) -> Option<Event> {
    Some(match (&c.old, &c.new) {
        (None, Some(_)) => Event::Insert,
        (Some(o), Some(n)) if o == n => return None,
        (Some(_), Some(_)) => Event::Modify,
        (Some(_), None) => Event::Remove,
        (None, None) => return None,
    })
}

/// [`to_record`] for a change that is no longer needed: moves instead of copying.
fn into_record(c: Change, view: ViewType, keyspace: &str, time_ms: u64) -> Option<ChangeRecord> {
    let event = event_of(&c)?;
    Some(ChangeRecord {
        seq: c.first_seq + u64::from(c.position),
        commit_time_ms: time_ms,
        event,
        keyspace: keyspace.to_string(),
        key: c.key,
        new_image: c.new.filter(|_| view.includes_new_image()),
        old_image: c.old.filter(|_| view.includes_old_image()),
    })
}

/// The record a change makes, if any (see [`event_of`]).
pub(crate) fn to_record(
    c: &Change,
    view: ViewType,
    keyspace: &str,
    time_ms: u64,
) -> Option<ChangeRecord> {
    let event = event_of(c)?;
    Some(ChangeRecord {
        seq: c.first_seq + u64::from(c.position),
        commit_time_ms: time_ms,
        event,
        keyspace: keyspace.to_string(),
        key: c.key.clone(),
        new_image: if view.includes_new_image() {
            c.new.clone()
        } else {
            None
        },
        old_image: if view.includes_old_image() {
            c.old.clone()
        } else {
            None
        },
    })
}

/// The encoded bytes of the records `changes` make, per stream keyspace of `set` (what
/// [`append_to`] would put in each stream's block, less the frame header), without building
/// the records.
pub(crate) fn record_bytes(set: &StreamSet, changes: &[Change]) -> HashMap<u32, usize> {
    let mut out: HashMap<u32, usize> = HashMap::new();
    for c in changes {
        let Some(s) = set.get(&c.keyspace) else {
            continue;
        };
        if event_of(c).is_none() {
            continue;
        }
        let image = |include: bool, v: &Option<Vec<u8>>| {
            if include {
                v.as_ref().map(Vec::len)
            } else {
                None
            }
        };
        let len = sealdb_stream::record_len(
            s.keyspace_name.len(),
            c.key.len(),
            image(s.view.includes_new_image(), &c.new),
            image(s.view.includes_old_image(), &c.old),
        );
        let total = out.entry(c.keyspace).or_default();
        *total = total.saturating_add(len);
    }
    out
}

/// Hands a commit group's records to their streams. A synced commit appends them (with any
/// deferred before them) and syncs; an unsynced one defers them
/// ([`StreamLog::append_deferred`]), so that many commits share one sealed block and one
/// write. Deferred records that a crash takes away are regenerated from the WAL at the next
/// open, like a stream that lagged the WAL; the WAL is never trimmed before the streams are
/// synced ([`sync_all`]).
///
/// `memtable` is the active memtable's id: deferred records are flushed to their log when it
/// changes, so none stays deferred past the memtable whose WAL segment holds its batch.
pub(crate) fn append_changes(
    streams: &StreamSet,
    memtable: u64,
    groups: Vec<Vec<Change>>,
    time_ms: u64,
    sync: bool,
) -> Result<()> {
    if sync {
        return append_to(streams, &groups, time_ms, true);
    }
    // The changes are consumed: their keys and images move into the records.
    let mut per: HashMap<u32, Vec<ChangeRecord>> = HashMap::new();
    for c in groups.into_iter().flatten() {
        let Some(s) = streams.get(&c.keyspace) else {
            continue;
        };
        let ks = c.keyspace;
        if let Some(r) = into_record(c, s.view, &s.keyspace_name, time_ms) {
            per.entry(ks).or_default().push(r);
        }
    }
    for (ks, records) in per {
        if let Some(s) = streams.get(&ks) {
            use std::sync::atomic::Ordering;
            if s.deferred_memtable.swap(memtable, Ordering::Relaxed) != memtable {
                s.log.flush_pending().map_err(stream_err)?;
            }
            s.log.append_deferred(records).map_err(stream_err)?;
        }
    }
    Ok(())
}

/// The records `groups` make, per stream keyspace of `set`, in commit order.
fn records_by_stream(
    set: &StreamSet,
    groups: &[Vec<Change>],
    time_ms: u64,
) -> HashMap<u32, Vec<ChangeRecord>> {
    let mut per: HashMap<u32, Vec<ChangeRecord>> = HashMap::new();
    for c in groups.iter().flatten() {
        let Some(s) = set.get(&c.keyspace) else {
            continue;
        };
        if let Some(r) = to_record(c, s.view, &s.keyspace_name, time_ms) {
            per.entry(c.keyspace).or_default().push(r);
        }
    }
    per
}

/// Appends the records of `groups` to the streams of `set` (one sealed block per stream);
/// also used by recovery before the database is shared.
pub(crate) fn append_to(
    set: &StreamSet,
    groups: &[Vec<Change>],
    time_ms: u64,
    sync: bool,
) -> Result<()> {
    for (ks, records) in records_by_stream(set, groups, time_ms) {
        if let Some(s) = set.get(&ks) {
            s.log.append(&records, sync).map_err(stream_err)?;
        }
    }
    Ok(())
}

/// Makes every stream durable (before a flush records its sequence number in the manifest,
/// so a stream never lags data that left the WAL).
pub(crate) fn sync_all(streams: &StreamSet) -> Result<()> {
    for s in streams.values() {
        s.log.sync().map_err(stream_err)?;
    }
    Ok(())
}

/// Applies retention to every stream.
pub(crate) fn trim_all(streams: &StreamSet) -> Result<()> {
    for s in streams.values() {
        let cap = (s.max_bytes > 0).then_some(s.max_bytes);
        s.log
            .trim(Some(s.retention), cap, crate::now_ms())
            .map_err(stream_err)?;
    }
    Ok(())
}

/// The directory holding every stream.
const STREAMS_DIR: &str = "streams";

pub(crate) fn stream_dir(db: &Path, keyspace: u32) -> PathBuf {
    db.join(STREAMS_DIR).join(format!("{keyspace:08}"))
}

fn parse_stream_dir(name: &str) -> Option<u32> {
    (name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The identity bound into every segment and `CONSUMERS` file of a stream: its keyspace (the
/// role) and the sequence number at which it was enabled (the incarnation), so a directory
/// moved from another keyspace, or left over from an earlier incarnation of this keyspace's
/// stream, is refused instead of served.
pub(crate) fn stream_id(keyspace: u32, start_seq: u64) -> StreamId {
    StreamId {
        owner: u64::from(keyspace),
        epoch: start_seq,
    }
}

/// Removes a stream directory and everything in it, durably: files, then (after a directory
/// sync) the directory, then a sync of `streams/`. Any failure is returned, naming the path:
/// a stream whose records were meant to go must never quietly keep them.
pub(crate) fn remove_stream_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    if !fs.exists(dir) {
        return Ok(());
    }
    for name in fs.list_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = dir.join(&name);
        match fs.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    fs.remove_dir(dir).map_err(|e| Error::io(dir, e))?;
    let parent = sealdb_vfs::parent_dir(dir);
    fs.sync_dir(&parent).map_err(|e| Error::io(&parent, e))
}

/// Removes every stream directory the manifest does not name: what a crash between a
/// disable's manifest edit and its directory removal (or between an enable's directory
/// creation and its manifest edit) leaves behind. Names that are not stream directories are
/// left alone.
/// The head entry of a live stream: its chain end and its consumer positions' generation.
pub(crate) fn stream_head(s: &LiveStream) -> crate::head::StreamHead {
    let a = s.log.anchor();
    crate::head::StreamHead {
        segment: a.segment,
        last_seq: a.last_seq,
        consumers_generation: s.positions.lock().generation(),
    }
}

/// Tells the head of every new segment of `s` from now on (each rollover), so deleting a
/// stream's newest segments is refused at open. A head that cannot be written lags (older
/// ends: weaker detection, never a false alarm), like the WAL's.
pub(crate) fn observe_stream_head(head: &Arc<crate::head::Head>, keyspace: u32, s: &LiveStream) {
    let head = head.clone();
    s.log
        .set_roll_observer(Arc::new(move |a: sealdb_stream::StreamAnchor| {
            let _ = head.update(|st| {
                let e = st.streams.entry(keyspace).or_default();
                e.segment = e.segment.max(a.segment);
                e.last_seq = e.last_seq.max(a.last_seq);
            });
            Ok(())
        }));
}

pub(crate) fn remove_orphan_streams(
    fs: &dyn FileSystem,
    db: &Path,
    state: &crate::manifest::ManifestState,
) -> Result<()> {
    let root = db.join(STREAMS_DIR);
    if !fs.exists(&root) {
        return Ok(());
    }
    for name in fs.list_dir(&root).map_err(|e| Error::io(&root, e))? {
        if let Some(ks) = parse_stream_dir(&name)
            && !state.streams.contains_key(&ks)
        {
            remove_stream_dir(fs, &root.join(&name))?;
        }
    }
    Ok(())
}

/// Opens the streams the manifest lists, after removing stream directories it does not list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_streams(
    fs: &sealdb_vfs::SharedFs,
    db: &Path,
    state: &crate::manifest::ManifestState,
    keyring: &sealdb_crypto::Keyring,
    cipher: sealdb_crypto::CipherId,
    max_seq: u64,
    anchors: Option<&std::collections::BTreeMap<u32, crate::head::StreamHead>>,
    read_only: bool,
) -> Result<StreamSet> {
    if !read_only {
        remove_orphan_streams(fs.as_ref(), db, state)?;
    }
    let mut set = StreamSet::new();
    for (ks, rec) in &state.streams {
        let Some(name) = state.keyspaces.get(ks) else {
            continue;
        };
        let dir = stream_dir(db, *ks);
        let id = stream_id(*ks, rec.start_seq);
        if !read_only && fs.exists(&dir) {
            // Temporary files of a CONSUMERS replace a crashed process left (a writable open
            // only: reading never changes the directory).
            sealdb_vfs::remove_stale_temp_files(fs.as_ref(), &dir)
                .map_err(|e| Error::io(&dir, e))?;
        }
        // Records above the WAL's recovered sequence ("phantoms": after a power cut the OS may
        // have kept a stream's unsynced tail but not the WAL's) are cut: a record must never
        // exist for a write the WAL lost. The head pins the stream's newest segment, its last
        // durable record and its consumer positions' generation; all are checked before the
        // open changes anything.
        let anchor = anchors.and_then(|a| a.get(ks));
        let expected = anchor.map(|a| sealdb_stream::StreamAnchor {
            segment: a.segment,
            last_seq: a.last_seq,
        });
        let stream_opts = StreamOptions {
            cipher,
            ..StreamOptions::default()
        };
        // A block merging several deferred commit groups may straddle `max_seq` (the WAL
        // kept the earlier groups, lost the later ones): it is cut whole when every record in
        // it is above the flushed sequence number, and the WAL replay regenerates the earlier
        // groups' records. Deferred records are written before a newer memtable's, and
        // streams are synced before a flush trims the WAL, so a legitimate straddling block
        // never reaches down to flushed commits.
        let plan = RecoveryPlan::new(id)
            .anchored(expected)
            .truncating(max_seq)
            .regenerable_after(state.flushed_seq);
        let plan = if read_only { plan.read_only() } else { plan };
        let (log, _) = StreamLog::open(fs.clone(), &dir, keyring.clone(), stream_opts, plan)
            .map_err(stream_err)?;
        let positions = ConsumerPositions::load(
            fs.as_ref(),
            &dir,
            keyring,
            id,
            anchor.map(|a| a.consumers_generation),
        )
        .map_err(stream_err)?;
        set.insert(
            *ks,
            Arc::new(LiveStream {
                keyspace_name: name.clone(),
                view: view_from_code(rec.view)?,
                retention: Duration::from_secs(rec.retention_secs),
                max_bytes: rec.max_bytes,
                start_seq: rec.start_seq,
                log,
                positions: parking_lot::Mutex::new(positions),
                dir,
                deferred_memtable: std::sync::atomic::AtomicU64::new(0),
            }),
        );
    }
    Ok(set)
}

/// A change record.
pub use sealdb_stream::ChangeRecord as StreamRecord;
/// A change's kind.
pub use sealdb_stream::Event as StreamEvent;
/// Where a stream reader starts.
pub use sealdb_stream::StartAt as StreamStart;
/// What a stream records of each change.
pub use sealdb_stream::ViewType as StreamView;

/// A batch of records read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatch {
    /// The records, in commit order.
    pub records: Vec<ChangeRecord>,
    /// Read from `StreamStart::At(next)` to continue.
    pub next: u64,
}

/// A stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The keyspace.
    pub keyspace: String,
    /// Its view type.
    pub view: ViewType,
    /// Retention by age.
    pub retention: Duration,
    /// Retention by size (0: none).
    pub max_bytes: u64,
    /// Oldest retained sequence number.
    pub horizon: u64,
    /// Newest record's sequence number.
    pub last_seq: u64,
    /// Bytes of segments.
    pub bytes: u64,
}
