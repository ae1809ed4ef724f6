//! Background jobs: flush, compaction and verification, the threads that run them, their
//! priority, and the backoff while the disk is full. This scheduler is the only part of
//! `jobs` that names the shared state (`crate::state::DbInner`): it builds each job's
//! [`JobContext`] (`DbInner::job_context`), and the jobs see only that. Nothing here names
//! the `Db` facade.

pub(crate) mod compaction;
pub(crate) mod context;
pub(crate) mod flush;
mod outputs;
pub(crate) mod reclaim;
pub(crate) mod verify;

use crate::events::BgJob;
use crate::state::DbInner;
use crate::{Error, Result};
use compaction::compact_once;
use context::{JobContext, TableContext};
use flush::flush_oldest;
use sealdb_crypto::ArtifactKind;
use sealdb_sstable::TableOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First and longest wait between retries of a background job that failed for lack of space.
const NO_SPACE_RETRY_FIRST: Duration = Duration::from_millis(20);
const NO_SPACE_RETRY_MAX: Duration = Duration::from_secs(1);

/// Runs one background job until it has nothing left to do, on every signal. A failure for
/// lack of space pauses the job (see `NoSpacePause`) and retries it with exponential backoff
/// (the job left nothing behind, so a retry starts clean) until space is freed; any other
/// failure poisons the database.
fn run_job(
    inner: &DbInner,
    job: BgJob,
    signals: &crossbeam_channel::Receiver<()>,
    mut step: impl FnMut() -> Result<bool>,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        let woke = match backoff {
            None => signals.recv().is_ok(),
            // The whole interval, whatever signals come meanwhile: every refused write signals,
            // and retrying on each would turn a write storm into a retry storm.
            Some(d) => {
                let until = Instant::now() + d;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match signals.recv_timeout(left) {
                        Ok(()) if !left.is_zero() => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break false,
                        _ => break true,
                    }
                }
            }
        };
        // Ends when the database's last handle drops the sender.
        if !woke {
            return;
        }
        loop {
            if inner.poisoned.lock().is_some() {
                backoff = None;
                break;
            }
            match step() {
                Ok(true) => continue,
                Ok(false) => {
                    inner.events.resume_after_space(job);
                    backoff = None;
                    break;
                }
                Err(Error::NoSpace { path }) => {
                    inner.events.pause_for_space(job, path);
                    backoff = Some(
                        backoff.map_or(NO_SPACE_RETRY_FIRST, |d| (d * 2).min(NO_SPACE_RETRY_MAX)),
                    );
                    break;
                }
                Err(e) => {
                    inner.poison(e);
                    backoff = None;
                    break;
                }
            }
        }
    }
}

impl DbInner {
    /// The handles a background job may use (see [`JobContext`]).
    pub(crate) fn job_context(&self) -> JobContext<'_> {
        JobContext {
            versions: &self.versions,
            tables: TableContext {
                fs: &self.fs,
                path: &self.path,
                keyring: &self.keyring,
                cipher: self.cipher,
                cache: &self.cache,
                options: TableOptions {
                    block_size: self.opts.block_size,
                    bloom_bits_per_key: self.opts.bloom_bits_per_key,
                    compression: self.opts.compression,
                    kind: ArtifactKind::Table,
                    cipher: self.cipher,
                },
            },
            opts: &self.opts,
            counters: &self.counters,
            events: &self.events,
            wal: &self.wal,
            streams: &self.streams,
            visible_seq: &self.visible_seq,
            snapshots: &self.snapshots,
        }
    }
}

/// Starts the flush and compaction threads.
pub(crate) fn start(inner: &Arc<DbInner>) -> Vec<std::thread::JoinHandle<()>> {
    let (ftx, frx) = crossbeam_channel::bounded::<()>(1);
    let (ctx, crx) = crossbeam_channel::bounded::<()>(1);
    *inner.events.flush_signal.lock() = Some(ftx);
    *inner.events.compact_signal.lock() = Some(ctx);
    let mut threads = Vec::new();
    let f = inner.clone();
    threads.push(
        std::thread::Builder::new()
            .name("sealdb-flush".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(sealdb_vfs::BACKGROUND_NICE);
                run_job(&f, BgJob::Flush, &frx, || {
                    flush_oldest(&f.job_context(), &f.keyspaces)
                })
            })
            .unwrap_or_else(|_| std::thread::spawn(|| {})),
    );
    let c = inner.clone();
    threads.push(
        std::thread::Builder::new()
            .name("sealdb-compact".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(sealdb_vfs::BACKGROUND_NICE);
                run_job(&c, BgJob::Compaction, &crx, || {
                    compact_once(&c.job_context())
                })
            })
            .unwrap_or_else(|_| std::thread::spawn(|| {})),
    );
    threads
}
