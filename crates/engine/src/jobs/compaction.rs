//! Compaction: picking the next job by level size and the compaction pointers, merging its
//! inputs into new tables, and the table rewrites of re-encryption.

use super::outputs::{create_output, next_file_number, table_options, to_file_meta, with_outputs};
use crate::manifest::{Edit, FileMeta, NUM_LEVELS};
use crate::state::{BgJob, DbInner};
use crate::tables::{TABLES_DIR, open_table};
use crate::version::{SuperVersion, TableHandle, Version, overlaps, table_error};
use crate::{Error, Result};
use sealdb_sstable::{TableBuilder, TableIter, ValueKind};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One compaction: input tables of `level` (and the overlapping ones of `level + 1`) merged
/// into new tables of `level + 1`.
struct Job {
    keyspace: u32,
    level: usize,
    inputs: Vec<Arc<TableHandle>>,
    next_inputs: Vec<Arc<TableHandle>>,
    /// Normally `level + 1`; `level` when a table is rewritten in place (re-encryption).
    output_level: usize,
}

fn level_target(inner: &DbInner, level: usize) -> u64 {
    let mut t = inner.opts.level1_bytes.max(1);
    for _ in 1..level {
        t = t.saturating_mul(inner.opts.level_size_ratio.max(2));
    }
    t
}

fn key_range(files: &[Arc<TableHandle>]) -> (Vec<u8>, Vec<u8>) {
    let lo = files
        .iter()
        .map(|f| f.meta.smallest.clone())
        .min()
        .unwrap_or_default();
    let hi = files
        .iter()
        .map(|f| f.meta.largest.clone())
        .max()
        .unwrap_or_default();
    (lo, hi)
}

pub(super) fn overlapping(
    level: &[Arc<TableHandle>],
    lo: &[u8],
    hi: &[u8],
) -> Vec<Arc<TableHandle>> {
    let lo_b = Bound::Included(lo.to_vec());
    let hi_b = Bound::Included(hi.to_vec());
    level
        .iter()
        .filter(|t| overlaps(&t.meta, &lo_b, &hi_b))
        .cloned()
        .collect()
}

/// Picks the most urgent compaction, if any level is over its target.
fn pick(inner: &DbInner, version: &Version) -> Option<Job> {
    let current_dk = inner.keyring.read().current_version();
    let mut best: Option<(f64, Job)> = None;
    for (ks, levels) in &version.keyspaces {
        for level in 0..NUM_LEVELS - 1 {
            let files = levels.get(level)?;
            if files.is_empty() {
                continue;
            }
            let score = if level == 0 {
                files.len() as f64 / inner.opts.l0_compaction_trigger.max(1) as f64
            } else {
                files.iter().map(|f| f.meta.size).sum::<u64>() as f64
                    / level_target(inner, level) as f64
            };
            if score < 1.0 || best.as_ref().is_some_and(|(b, _)| *b >= score) {
                continue;
            }
            let inputs: Vec<Arc<TableHandle>> = if level == 0 {
                files.clone()
            } else {
                // Prefer tables sealed under an old data key (rotation), else round-robin.
                let old = files.iter().find(|f| f.meta.data_key_version != current_dk);
                let chosen = old.cloned().or_else(|| {
                    let ptr = inner.compact_pointers.lock().get(&(*ks, level)).cloned();
                    files
                        .iter()
                        .find(|f| ptr.as_ref().is_none_or(|p| f.meta.smallest > *p))
                        .or_else(|| files.first())
                        .cloned()
                });
                chosen.into_iter().collect()
            };
            let (lo, hi) = key_range(&inputs);
            let next_inputs = levels
                .get(level + 1)
                .map(|l| overlapping(l, &lo, &hi))
                .unwrap_or_default();
            best = Some((
                score,
                Job {
                    keyspace: *ks,
                    level,
                    inputs,
                    next_inputs,
                    output_level: level + 1,
                },
            ));
        }
    }
    best.map(|(_, j)| j)
}

/// Runs the most urgent compaction; returns whether there was one.
pub(crate) fn compact_once(inner: &Arc<DbInner>) -> Result<bool> {
    let _g = inner.compaction_lock.lock();
    let version = inner.version.read().version.clone();
    let Some(job) = pick(inner, &version) else {
        return Ok(false);
    };
    run(inner, job)?;
    Ok(true)
}

/// Compacts every keyspace into its last level in one pass (each byte rewritten once),
/// dropping tombstones and shadowed versions no snapshot needs.
pub(crate) fn compact_all(inner: &Arc<DbInner>) -> Result<()> {
    let _g = inner.compaction_lock.lock();
    let version = inner.version.read().version.clone();
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
            inner,
            Job {
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
    inner: &Arc<DbInner>,
    keyspace: u32,
    level: usize,
    table: Arc<TableHandle>,
) -> Result<()> {
    let _g = inner.compaction_lock.lock();
    let live = inner
        .version
        .read()
        .version
        .levels(keyspace)
        .and_then(|l| l.get(level))
        .is_some_and(|l| l.iter().any(|t| t.meta.number == table.meta.number));
    if !live {
        return Ok(());
    }
    run(
        inner,
        Job {
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

fn run(inner: &Arc<DbInner>, job: Job) -> Result<()> {
    let started = Instant::now();
    let keyring = inner.keyring.read().clone();
    let version = inner.version.read().version.clone();
    let mut all = job.inputs.clone();
    all.extend(job.next_inputs.iter().cloned());
    let (lo, hi) = key_range(&all);
    let out_level = job.output_level;
    // An in-place rewrite of one level-0 table must keep its tombstones: older level-0
    // tables beside it may hold what they delete.
    let in_place_l0 = job.level == 0 && out_level == 0;
    let bottommost = !in_place_l0 && is_bottommost(&version, job.keyspace, out_level, &lo, &hi);
    let smallest_snapshot = inner.smallest_snapshot();
    let opts = table_options(inner);
    let read_bytes: u64 = all.iter().map(|t| t.meta.size).sum();

    let mut reserved = 0u64;
    let mut created: Vec<(u64, PathBuf)> = Vec::new();
    let (outputs, written, handles) = with_outputs(inner, &mut created, |created| {
        let mut merge = Merge::new(&all)?;
        let mut outputs: Vec<FileMeta> = Vec::new();
        let mut builder: Option<(u64, TableBuilder)> = None;
        let mut last_key: Option<Vec<u8>> = None;
        let mut last_seq_for_key = u64::MAX;
        let mut written = 0u64;
        let rate = inner.opts.compaction_rate_bytes_per_sec;
        let mut paced_bytes = 0u64;
        while let Some(e) = merge.next()? {
            let new_key = last_key.as_deref() != Some(e.key.as_slice());
            if new_key {
                // Cut output files only between user keys, so a level never splits one key.
                if builder
                    .as_ref()
                    .is_some_and(|(_, b)| b.estimated_size() >= inner.opts.target_file_size)
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
                let number = next_file_number(inner, &mut reserved);
                let b = create_output(inner, number, &keyring, &opts, created)?;
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
        let dir = inner.path.join(TABLES_DIR);
        inner.fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut handles = Vec::new();
        for meta in &outputs {
            handles.push(open_table(
                &inner.fs,
                &inner.path,
                meta,
                &keyring,
                inner.cipher,
                &inner.cache,
            )?);
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
        let mut manifest = inner.manifest.lock();
        if !manifest.state().keyspaces.contains_key(&job.keyspace) {
            for h in &handles {
                h.mark_obsolete();
            }
            return Ok(());
        }
        if let Err(e) = manifest.apply(edits, &keyring) {
            drop(handles);
            manifest.doubtful_outputs(created);
            return Err(e);
        }
        let mut v = inner.version.write();
        let mut next = (*v.version).clone();
        if let Some(levels) = next.keyspaces.get_mut(&job.keyspace) {
            let gone: std::collections::HashSet<u64> = all.iter().map(|t| t.meta.number).collect();
            for level in levels.iter_mut() {
                level.retain(|t| !gone.contains(&t.meta.number));
            }
            if let Some(l) = levels.get_mut(out_level) {
                l.extend(handles);
            }
        }
        next.normalize();
        *v = Arc::new(SuperVersion {
            active: v.active.clone(),
            immutables: v.immutables.clone(),
            version: Arc::new(next),
        });
    }
    for t in &all {
        t.mark_obsolete();
    }
    inner
        .compact_pointers
        .lock()
        .insert((job.keyspace, job.level), hi);
    inner.resume_after_space(BgJob::Compaction);
    inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
    inner
        .counters
        .compaction_read_bytes
        .fetch_add(read_bytes, Ordering::Relaxed);
    inner
        .counters
        .compaction_write_bytes
        .fetch_add(written, Ordering::Relaxed);
    inner.notify_room();
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
