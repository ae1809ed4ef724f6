//! Flush: the oldest frozen memtable becomes a level-0 table, then the WAL segments it
//! covered are retired (or archived for point-in-time recovery).

use super::context::JobContext;
use super::outputs::{create_output, to_file_meta, with_outputs};
use super::reclaim::reclaim_later;
use crate::events::BgJob;
use crate::manifest::{Edit, FileMeta, NUM_LEVELS};
use crate::tables::TABLES_DIR;
use crate::version::{SuperVersion, table_error};
use crate::{Error, Result};
use parking_lot::RwLock;
use sealdb_sstable::{TableBuilder, ValueKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Retires WAL segments whose records are all in tables, even when no flush had anything to
/// write (segments left by sessions that wrote nothing): records the new minimum segment in
/// the manifest, then deletes (or archives) them.
pub(crate) fn retire_wal(ctx: &JobContext<'_>) -> Result<()> {
    let _g = ctx.versions.lock_flushes();
    let keyring = ctx.tables.keyring();
    // Segments go only below what the manifest durably records as the chain's start.
    let min_segment = {
        let mut manifest = ctx.versions.manifest();
        let flushed_seq = manifest.state().flushed_seq;
        let first = ctx.wal.first_needed_segment(flushed_seq);
        if first > manifest.state().wal_min_segment {
            manifest.apply(vec![Edit::WalMinSegment(first)], &keyring)?;
        }
        manifest.state().wal_min_segment
    };
    if ctx.opts.pitr_window.is_some() {
        ctx.wal
            .archive_obsolete(min_segment, &ctx.tables.path.join(crate::pitr::ARCHIVE_DIR))?;
    } else {
        ctx.wal.remove_obsolete(min_segment)?;
    }
    Ok(())
}

/// Flushes the oldest frozen memtable into one level-0 table per keyspace. Returns whether
/// there was one.
///
/// A failure leaves nothing behind: the memtable stays frozen (and its WAL segments stay),
/// the tables written so far are deleted, and a retry starts over. Only a failed manifest
/// write leaves them, to [`Manifest::doubtful_outputs`](crate::manifest::Manifest).
///
/// `keyspaces` is the live name map: records of keyspaces no longer in it (dropped since
/// the memtable was written) are left out of the tables.
pub(crate) fn flush_oldest(
    ctx: &JobContext<'_>,
    keyspaces: &RwLock<BTreeMap<String, u32>>,
) -> Result<bool> {
    let _g = ctx.versions.lock_flushes();
    let started = Instant::now();
    let sv = ctx.versions.current();
    let Some(mem) = sv.immutables.last().cloned() else {
        return Ok(false);
    };
    let keyring = ctx.tables.keyring();
    let live_keyspaces: std::collections::HashSet<u32> =
        keyspaces.read().values().copied().collect();
    let mut reserved = 0u64;
    let mut created: Vec<(u64, PathBuf)> = Vec::new();
    let (outputs, written, handles) = with_outputs(&ctx.tables, &mut created, |created| {
        let mut outputs: Vec<(u32, FileMeta)> = Vec::new();
        let mut current: Option<(u32, u64, TableBuilder)> = None;
        let mut written = 0u64;
        let finish = |cur: Option<(u32, u64, TableBuilder)>,
                      outputs: &mut Vec<(u32, FileMeta)>,
                      written: &mut u64|
         -> Result<()> {
            if let Some((ks, number, b)) = cur {
                let meta = b.finish().map_err(table_error)?;
                *written += meta.file_size;
                outputs.push((ks, to_file_meta(number, &meta)));
            }
            Ok(())
        };
        // Borrowed in place: the memtable is frozen, and copying every key and value out
        // (as its owned cursor does) was a large share of a flush's CPU.
        mem.try_for_each(|e| -> Result<()> {
            let Some(ks) = e
                .key
                .get(..4)
                .and_then(|p| p.try_into().ok())
                .map(u32::from_be_bytes)
            else {
                return Ok(());
            };
            if !live_keyspaces.contains(&ks) {
                return Ok(()); // dropped keyspace
            }
            let user = e.key.get(4..).unwrap_or_default();
            if current.as_ref().is_none_or(|(c, _, _)| *c != ks) {
                finish(current.take(), &mut outputs, &mut written)?;
                let number = ctx.versions.next_file_number(&mut reserved);
                let b = create_output(&ctx.tables, number, &keyring, created)?;
                current = Some((ks, number, b));
            }
            if let Some((_, _, b)) = current.as_mut() {
                let kind = match e.kind {
                    sealdb_memtable::ValueKind::Put => ValueKind::Put,
                    sealdb_memtable::ValueKind::Delete => ValueKind::Delete,
                };
                b.add(user, e.seq, kind, e.value).map_err(table_error)?;
            }
            Ok(())
        })?;
        finish(current.take(), &mut outputs, &mut written)?;
        let dir = ctx.tables.path.join(TABLES_DIR);
        ctx.tables
            .fs
            .sync_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        // Streams durable before the manifest says this data left the WAL.
        crate::streams::sync_all(&ctx.streams.read())?;
        let mut handles = Vec::new();
        for (ks, meta) in &outputs {
            handles.push((*ks, ctx.tables.open(meta, &keyring)?));
        }
        Ok((outputs, written, handles))
    })?;

    let flushed_seq = mem.max_seq().unwrap_or(0);
    let mut edits: Vec<Edit> = outputs
        .iter()
        .map(|(ks, meta)| Edit::AddFile {
            keyspace: *ks,
            level: 0,
            file: meta.clone(),
        })
        .collect();
    edits.push(Edit::NextFileNumber(reserved));
    edits.push(Edit::FlushedSeq(flushed_seq));
    edits.push(Edit::WalMinSegment(
        ctx.wal.first_needed_segment(flushed_seq),
    ));
    // What the manifest durably says the WAL chain starts at: segments below it may go.
    let wal_min_segment;
    {
        let mut manifest = ctx.versions.manifest();
        // Keyspaces dropped while we flushed: skip their files (removed as orphans at open).
        let alive = manifest.state().keyspaces.clone();
        edits.retain(
            |e| !matches!(e, Edit::AddFile { keyspace, .. } if !alive.contains_key(keyspace)),
        );
        ctx.versions
            .log_and_apply(&mut manifest, edits, &keyring, created, |v| {
                let mut next = (*v.version).clone();
                for (ks, h) in handles {
                    if !alive.contains_key(&ks) {
                        h.mark_obsolete();
                        continue;
                    }
                    let levels = next
                        .keyspaces
                        .entry(ks)
                        .or_insert_with(|| vec![Vec::new(); NUM_LEVELS]);
                    if let Some(l0) = levels.get_mut(0) {
                        l0.push(h);
                    }
                }
                next.keyspaces.retain(|ks, _| alive.contains_key(ks));
                next.normalize();
                let immutables: Vec<_> = v
                    .immutables
                    .iter()
                    .filter(|m| !Arc::ptr_eq(m, &mem))
                    .cloned()
                    .collect();
                SuperVersion {
                    active: v.active.clone(),
                    immutables,
                    version: Arc::new(next),
                }
            })?;
        wal_min_segment = manifest.state().wal_min_segment;
    }
    if ctx.opts.pitr_window.is_some() {
        ctx.wal.archive_obsolete(
            wal_min_segment,
            &ctx.tables.path.join(crate::pitr::ARCHIVE_DIR),
        )?;
        crate::pitr::trim_archive(
            ctx.tables.fs,
            ctx.tables.path,
            &ctx.tables.keyring(),
            ctx.tables.cipher,
            ctx.opts.pitr_window,
        )?;
    } else {
        ctx.wal.remove_obsolete(wal_min_segment)?;
    }
    crate::streams::trim_all(&ctx.streams.read())?;
    ctx.events.resume_after_space(BgJob::Flush);
    ctx.counters.flushes.fetch_add(1, Ordering::Relaxed);
    ctx.counters
        .flush_bytes
        .fetch_add(written, Ordering::Relaxed);
    ctx.events.notify_room();
    ctx.events.signal_compaction();
    // Freeing a memtable is one deallocation per key, value and node: off this thread, so
    // the flush is done (and the next one may start) without paying for it.
    reclaim_later(mem);
    tracing::info!(
        tables = outputs.len(),
        bytes = written,
        flushed_seq,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "flush"
    );
    Ok(true)
}
