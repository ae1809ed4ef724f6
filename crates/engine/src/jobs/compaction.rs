//! Compaction: running the job the version set picks (`VersionSet::pick_compaction`),
//! merging its inputs into new tables, and the table rewrites of re-encryption.

use super::context::JobContext;
use super::outputs::{create_output, to_file_meta, with_outputs};
use crate::events::BgJob;
use crate::manifest::{Edit, FileMeta, NUM_LEVELS};
use crate::tables::TABLES_DIR;
use crate::version::{TableHandle, Version, table_error};
use crate::versions::{Compaction, key_range, overlapping};
use crate::{Error, Result};
use sealdb_sstable::{TableBuilder, TableIter, ValueKind};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs the most urgent compaction; returns whether there was one.
pub(crate) fn compact_once(ctx: &JobContext<'_>) -> Result<bool> {
    let _g = ctx.versions.lock_compactions();
    let version = ctx.versions.live();
    let current_data_key = ctx.tables.keyring.read().current_version();
    let Some(job) = ctx
        .versions
        .pick_compaction(&version, ctx.opts, current_data_key)
    else {
        return Ok(false);
    };
    run(ctx, job)?;
    Ok(true)
}

/// Compacts every keyspace into its last level in one pass (each byte rewritten once),
/// dropping tombstones and shadowed versions no snapshot needs.
pub(crate) fn compact_all(ctx: &JobContext<'_>) -> Result<()> {
    let _g = ctx.versions.lock_compactions();
    let version = ctx.versions.live();
    for (ks, levels) in &version.keyspaces {
        let upper: Vec<Arc<TableHandle>> = levels
            .iter()
            .take(NUM_LEVELS - 1)
            .flatten()
            .cloned()
            .collect();
        let bottom: Vec<Arc<TableHandle>> = levels.get(NUM_LEVELS - 1).cloned().unwrap_or_default();
        if upper.is_empty() && bottom.len() <= 1 {
            continue;
        }
        run(
            ctx,
            Compaction {
                keyspace: *ks,
                level: 0,
                inputs: upper,
                next_inputs: bottom,
                output_level: NUM_LEVELS - 1,
            },
        )?;
    }
    Ok(())
}

/// Rewrites one table under the current data key, in place in its level (re-encryption).
/// A no-op if a compaction already replaced it.
pub(crate) fn rewrite_table(
    ctx: &JobContext<'_>,
    keyspace: u32,
    level: usize,
    table: Arc<TableHandle>,
) -> Result<()> {
    let _g = ctx.versions.lock_compactions();
    let live = ctx
        .versions
        .live()
        .levels(keyspace)
        .and_then(|l| l.get(level))
        .is_some_and(|l| l.iter().any(|t| t.meta.number == table.meta.number));
    if !live {
        return Ok(());
    }
    run(
        ctx,
        Compaction {
            keyspace,
            level,
            inputs: vec![table],
            next_inputs: Vec::new(),
            output_level: level,
        },
    )
}

/// Whether any table below `level` overlaps `[lo, hi]`: if none, tombstones in the output
/// shadow nothing and may be dropped.
fn is_bottommost(version: &Version, keyspace: u32, level: usize, lo: &[u8], hi: &[u8]) -> bool {
    let Some(levels) = version.levels(keyspace) else {
        return true;
    };
    levels
        .iter()
        .skip(level + 1)
        .all(|l| overlapping(l, lo, hi).is_empty())
}

/// Merges the job's inputs in internal order.
struct Merge {
    iters: Vec<TableIter>,
    heads: Vec<Option<sealdb_sstable::Entry>>,
}

impl Merge {
    fn new(tables: &[Arc<TableHandle>]) -> Result<Self> {
        let mut iters: Vec<TableIter> = tables
            .iter()
            .map(|t| t.table.iter(Bound::Unbounded, Bound::Unbounded))
            .collect();
        let mut heads = Vec::with_capacity(iters.len());
        for it in iters.iter_mut() {
            heads.push(it.next().transpose().map_err(table_error)?);
        }
        Ok(Self { iters, heads })
    }

    fn next(&mut self) -> Result<Option<sealdb_sstable::Entry>> {
        let mut best: Option<usize> = None;
        for (i, h) in self.heads.iter().enumerate() {
            let Some(e) = h else { continue };
            let better = match best
                .and_then(|b| self.heads.get(b))
                .and_then(Option::as_ref)
            {
                None => true,
                Some(b) => {
                    (e.key.as_slice(), std::cmp::Reverse(e.seq))
                        < (b.key.as_slice(), std::cmp::Reverse(b.seq))
                }
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else { return Ok(None) };
        let next = match self.iters.get_mut(i) {
            Some(it) => it.next().transpose().map_err(table_error)?,
            None => None,
        };
        Ok(self
            .heads
            .get_mut(i)
            .and_then(|slot| std::mem::replace(slot, next)))
    }
}

fn run(ctx: &JobContext<'_>, job: Compaction) -> Result<()> {
    let started = Instant::now();
    let keyring = ctx.tables.keyring();
    let version = ctx.versions.live();
    let mut all = job.inputs.clone();
    all.extend(job.next_inputs.iter().cloned());
    let (lo, hi) = key_range(&all);
    let out_level = job.output_level;
    // An in-place rewrite of one level-0 table must keep its tombstones: older level-0
    // tables beside it may hold what they delete.
    let in_place_l0 = job.level == 0 && out_level == 0;
    let bottommost = !in_place_l0 && is_bottommost(&version, job.keyspace, out_level, &lo, &hi);
    let smallest_snapshot = ctx.smallest_snapshot();
    let read_bytes: u64 = all.iter().map(|t| t.meta.size).sum();

    let mut reserved = 0u64;
    let mut created: Vec<(u64, PathBuf)> = Vec::new();
    let (outputs, written, handles) = with_outputs(&ctx.tables, &mut created, |created| {
        let mut merge = Merge::new(&all)?;
        let mut outputs: Vec<FileMeta> = Vec::new();
        let mut builder: Option<(u64, TableBuilder)> = None;
        let mut last_key: Option<Vec<u8>> = None;
        let mut last_seq_for_key = u64::MAX;
        let mut written = 0u64;
        let rate = ctx.opts.compaction_rate_bytes_per_sec;
        let mut paced_bytes = 0u64;
        while let Some(e) = merge.next()? {
            let new_key = last_key.as_deref() != Some(e.key.as_slice());
            if new_key {
                // Cut output files only between user keys, so a level never splits one key.
                if builder
                    .as_ref()
                    .is_some_and(|(_, b)| b.estimated_size() >= ctx.opts.target_file_size)
                    && let Some((n, b)) = builder.take()
                {
                    let meta = b.finish().map_err(table_error)?;
                    written += meta.file_size;
                    outputs.push(to_file_meta(n, &meta));
                }
                last_key = Some(e.key.clone());
                last_seq_for_key = u64::MAX;
            }
            // A newer version of this key is visible to every reader: this one is shadowed.
            let drop = if last_seq_for_key <= smallest_snapshot {
                true
            } else {
                e.kind == ValueKind::Delete && bottommost && e.seq <= smallest_snapshot
            };
            last_seq_for_key = e.seq;
            if drop {
                continue;
            }
            if builder.is_none() {
                let number = ctx.versions.next_file_number(&mut reserved);
                let b = create_output(&ctx.tables, number, &keyring, created)?;
                builder = Some((number, b));
            }
            if let Some((_, b)) = builder.as_mut() {
                b.add(&e.key, e.seq, e.kind, &e.value)
                    .map_err(table_error)?;
            }
            // Pacing: hold the write rate under the limit so foreground work keeps the CPU.
            if rate > 0 {
                paced_bytes += (e.key.len() + e.value.len()) as u64;
                let due = Duration::from_secs_f64(paced_bytes as f64 / rate as f64);
                let spent = started.elapsed();
                if due > spent {
                    std::thread::sleep(due - spent);
                }
            }
        }
        if let Some((n, b)) = builder.take() {
            let meta = b.finish().map_err(table_error)?;
            written += meta.file_size;
            outputs.push(to_file_meta(n, &meta));
        }
        let dir = ctx.tables.path.join(TABLES_DIR);
        ctx.tables
            .fs
            .sync_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let mut handles = Vec::new();
        for meta in &outputs {
            handles.push(ctx.tables.open(meta, &keyring)?);
        }
        Ok((outputs, written, handles))
    })?;

    let mut edits = Vec::new();
    // Each input leaves the level it is in now (a full compaction takes several levels).
    let level_of = |number: u64| -> u8 {
        version
            .levels(job.keyspace)
            .and_then(|ls| {
                ls.iter()
                    .position(|l| l.iter().any(|t| t.meta.number == number))
            })
            .unwrap_or(job.level) as u8
    };
    for t in job.inputs.iter().chain(&job.next_inputs) {
        edits.push(Edit::RemoveFile {
            keyspace: job.keyspace,
            level: level_of(t.meta.number),
            number: t.meta.number,
        });
    }
    for meta in &outputs {
        edits.push(Edit::AddFile {
            keyspace: job.keyspace,
            level: out_level as u8,
            file: meta.clone(),
        });
    }
    edits.push(Edit::NextFileNumber(reserved));
    {
        let mut manifest = ctx.versions.manifest();
        if !manifest.state().keyspaces.contains_key(&job.keyspace) {
            for h in &handles {
                h.mark_obsolete();
            }
            return Ok(());
        }
        ctx.versions
            .log_and_apply(&mut manifest, edits, &keyring, created, |v| {
                let mut next = (*v.version).clone();
                if let Some(levels) = next.keyspaces.get_mut(&job.keyspace) {
                    let gone: std::collections::HashSet<u64> =
                        all.iter().map(|t| t.meta.number).collect();
                    for level in levels.iter_mut() {
                        level.retain(|t| !gone.contains(&t.meta.number));
                    }
                    if let Some(l) = levels.get_mut(out_level) {
                        l.extend(handles);
                    }
                }
                next.normalize();
                v.with_version(next)
            })?;
    }
    for t in &all {
        t.mark_obsolete();
    }
    ctx.versions
        .set_compact_pointer(job.keyspace, job.level, hi);
    ctx.events.resume_after_space(BgJob::Compaction);
    ctx.counters.compactions.fetch_add(1, Ordering::Relaxed);
    ctx.counters
        .compaction_read_bytes
        .fetch_add(read_bytes, Ordering::Relaxed);
    ctx.counters
        .compaction_write_bytes
        .fetch_add(written, Ordering::Relaxed);
    ctx.events.notify_room();
    tracing::info!(
        keyspace = job.keyspace,
        level = job.level,
        output_level = out_level,
        inputs = all.len(),
        read_bytes,
        written_bytes = written,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "compaction"
    );
    Ok(())
}
