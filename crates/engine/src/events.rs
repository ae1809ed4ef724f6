//! What background jobs and writers tell each other: wake-ups of the flush and compaction
//! threads, a job waiting for disk space, and room freed for stalled writers. A job reaches
//! writers only through this; writers reach jobs only through the wake-ups.

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

/// Background jobs waiting for disk space: each holds the path that could not be written.
/// While a flush waits, writes are refused with [`Error::NoSpace`](crate::Error::NoSpace)
/// (memtables cannot drain, and each write would eat into what little space is left); while
/// only compaction waits, writes go on until level 0 fills up. Reads are never affected.
#[derive(Debug, Default)]
pub(crate) struct NoSpacePause {
    pub flush: Option<String>,
    pub compaction: Option<String>,
}

/// Which background job a [`NoSpacePause`] entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BgJob {
    Flush,
    Compaction,
}

/// The events between jobs and writers, one per open database.
#[derive(Debug, Default)]
pub(crate) struct JobEvents {
    /// Writers stalled for room wait on `stall_cv` under `stall_lock`.
    pub(crate) stall_lock: Mutex<()>,
    pub(crate) stall_cv: Condvar,
    /// Background work paused because the disk is full (retried with backoff).
    pub(crate) no_space: Mutex<NoSpacePause>,
    /// Wake the background threads; `None` when there are none (or they are stopping).
    pub(crate) flush_signal: Mutex<Option<Sender<()>>>,
    pub(crate) compact_signal: Mutex<Option<Sender<()>>>,
}

impl JobEvents {
    /// Marks a background job as waiting for disk space (see [`NoSpacePause`]).
    pub(crate) fn pause_for_space(&self, job: BgJob, path: String) {
        let mut p = self.no_space.lock();
        match job {
            BgJob::Flush => p.flush = Some(path),
            BgJob::Compaction => p.compaction = Some(path),
        }
        drop(p);
        self.notify_room();
    }

    /// A background job succeeded: it no longer waits for space.
    pub(crate) fn resume_after_space(&self, job: BgJob) {
        let mut p = self.no_space.lock();
        let slot = match job {
            BgJob::Flush => &mut p.flush,
            BgJob::Compaction => &mut p.compaction,
        };
        if slot.take().is_some() {
            drop(p);
            self.notify_room();
        }
    }

    /// Wakes stalled writers (after a flush or compaction freed room, or on failure).
    pub(crate) fn notify_room(&self) {
        let _g = self.stall_lock.lock();
        self.stall_cv.notify_all();
    }

    /// Wakes the flush thread, if there is one.
    pub(crate) fn signal_flush(&self) {
        if let Some(tx) = self.flush_signal.lock().as_ref() {
            let _ = tx.try_send(());
        }
    }

    /// Wakes the compaction thread, if there is one.
    pub(crate) fn signal_compaction(&self) {
        if let Some(tx) = self.compact_signal.lock().as_ref() {
            let _ = tx.try_send(());
        }
    }

    /// Stops the background threads' wake-ups: each thread ends once its channel closes.
    pub(crate) fn close(&self) {
        self.flush_signal.lock().take();
        self.compact_signal.lock().take();
    }
}
