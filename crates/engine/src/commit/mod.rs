//! The write path: the group-commit pipeline. Writers queue their batches; the leader of a
//! group assigns sequence numbers, expands each batch with its index records and stream
//! changes (`expand`), logs the group as one WAL frame (`commit_frame`), applies it to the
//! memtable (`apply_frame`) and publishes it; memtable rotation and write stalls are decided
//! here too. Everything works on [`DbInner`]; the `Db` facade delegates. A record never
//! reaches the memtable (and so a reader) before the frame holding it is in the WAL.

mod expand;

use crate::state::{DbInner, Poison, WriteRequest};
use crate::version::SuperVersion;
use crate::{Error, Result};
use sealdb_memtable::{Memtable, ValueKind};
use sealdb_wal::{BatchBuilder, FrameBatch, Op, RecordIter};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A write the leader accepted, expanded and is about to log.
#[derive(Debug)]
struct Prepared {
    id: u64,
    req: WriteRequest,
    /// The changes its streams record (empty without streams).
    changes: Vec<crate::streams::Change>,
    /// Bytes of change records it makes, per stream keyspace.
    stream_bytes: HashMap<u32, usize>,
    /// The sequence number of its first record (set once its frame is being logged).
    first: u64,
}

/// What a writer waits behind: at most a frame's worth of batches per group.
pub(crate) const GROUP_BUDGET: usize = sealdb_wal::MAX_FRAME_LEN - sealdb_wal::FRAME_HEADER_LEN;

/// A request's weight against [`GROUP_BUDGET`]: what it adds to a frame.
fn frame_weight(req: &WriteRequest) -> usize {
    sealdb_wal::BATCH_HEADER_LEN.saturating_add(req.rep.len())
}

/// The refusal of `check_writable` again, for another writer of the same group.
fn copy_refusal(e: &Error) -> Error {
    match e {
        Error::KeyUnavailable {
            provider,
            key_id,
            state,
            since,
        } => Error::KeyUnavailable {
            provider: provider.clone(),
            key_id: key_id.clone(),
            state: state.clone(),
            since: *since,
        },
        // The cause went with the first refusal; the others repeat what and where.
        Error::Poisoned { what, file, at, .. } => Error::Poisoned {
            what: what.clone(),
            file: file.clone(),
            at: *at,
            source: None,
        },
        Error::ReadOnly => Error::ReadOnly,
        Error::NoSpace { path } => Error::NoSpace { path: path.clone() },
        other => Error::poisoned(other.to_string()),
    }
}

/// A writer whose commit group's leader panicked outside the application's closures: what
/// reached the log is unknown, so the database is poisoned.
fn leader_failed(inner: &DbInner, e: sealdb_wal::LeaderFailed) -> Error {
    inner.poison(Error::poisoned(e.to_string()))
}

impl DbInner {
    /// Commits a batch through the group-commit queue; returns the sequence number of its
    /// last record. The caller ([`crate::Db::write`]) has checked that it is not empty and
    /// belongs to this database.
    pub(crate) fn write(&self, batch: BatchBuilder, sync: bool) -> Result<u64> {
        self.check_writable()?;
        self.wait_for_room()?;
        let req = WriteRequest {
            count: batch.count(),
            rep: batch.into_rep(),
            sync,
        };
        let weight = frame_weight(&req);
        // A synced write's leader waits briefly for the other writers to join its group: the
        // `fdatasync` they share costs far more than the wait.
        let gather = req.sync;
        self.group
            .submit_gathering(req, weight, gather, |group| self.commit_group(group))
            .unwrap_or_else(|e| Err(leader_failed(self, e)))
    }

    /// Runs on the group-commit leader: assigns sequence numbers, writes one WAL frame (more
    /// only if the group outgrew one sealed block; a sync per frame if any of its writers
    /// asked for it), applies the batches to the memtable, then publishes.
    fn commit_group(&self, group: Vec<(u64, WriteRequest)>) -> Vec<(u64, Result<u64>)> {
        let _exclusive = self.commit_lock.lock();
        self.commit_locked(group)
    }

    /// Runs `f` with the commit path held: no write commits meanwhile, and `f` may commit
    /// through [`commit_internal`](Self::commit_internal).
    pub(crate) fn run_exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _exclusive = self.commit_lock.lock();
        f()
    }

    /// Commits a batch from inside [`run_exclusive`](Self::run_exclusive).
    pub(crate) fn commit_internal(&self, batch: BatchBuilder) -> Result<u64> {
        let req = WriteRequest {
            count: batch.count(),
            rep: batch.into_rep(),
            sync: false,
        };
        self.commit_locked(vec![(0, req)])
            .into_iter()
            .next()
            .map_or_else(|| Err(Error::corruption("empty commit".into())), |(_, r)| r)
    }

    fn commit_locked(&self, group: Vec<(u64, WriteRequest)>) -> Vec<(u64, Result<u64>)> {
        let inner = self;
        if let Err(e) = self.check_writable() {
            // Each writer gets the refusal itself, in its own class: a master key that became
            // unusable while the writer waited is `KeyUnavailable`, not a poisoned database.
            return group
                .into_iter()
                .map(|(id, _)| (id, Err(copy_refusal(&e))))
                .collect();
        }
        let force_rotate = group.iter().any(|(_, r)| r.count == 0);
        // Rotation requests are rare: a group without one is used as it is, not re-collected.
        let (rotations, group): (Vec<_>, Vec<_>) = if force_rotate {
            group.into_iter().partition(|(_, r)| r.count == 0)
        } else {
            (Vec::new(), group)
        };
        if let Err(e) = self.maybe_rotate(force_rotate) {
            self.poison(e);
            return group
                .into_iter()
                .chain(rotations)
                .map(|(id, _)| (id, Err(self.poisoned_error())))
                .collect();
        }
        let snapshot = inner.last_seq.load(Ordering::Acquire);
        let mut results: Vec<(u64, Result<u64>)> =
            Vec::with_capacity(rotations.len() + group.len());
        results.extend(rotations.into_iter().map(|(id, _)| (id, Ok(snapshot))));
        // Index maintenance and stream capture, when any keyspace has them.
        let indexes = inner.indexes.read().clone();
        let streams = inner.streams.read().clone();
        let mut prepared = Vec::with_capacity(group.len());
        let mut overlay = HashMap::new();
        for (id, mut req) in group {
            let mut changes = Vec::new();
            if indexes.is_empty() && streams.is_empty() {
                prepared.push(Prepared {
                    id,
                    req,
                    changes,
                    stream_bytes: HashMap::new(),
                    first: 0,
                });
                continue;
            }
            match self.expand(
                &mut req,
                &mut overlay,
                snapshot,
                &indexes,
                &streams,
                &mut changes,
            ) {
                Ok(stream_bytes) => prepared.push(Prepared {
                    id,
                    req,
                    changes,
                    stream_bytes,
                    first: 0,
                }),
                Err(e) => results.push((id, Err(e))),
            }
        }
        // Pack the batches, in order, into frames that each fit one sealed block (and whose
        // change records fit one stream block per stream): a group merged from many writers,
        // or grown by index entries, becomes several frames rather than an oversized one.
        let mut seq = snapshot;
        // The usual group (no streams, within one block) is one frame as it stands.
        if prepared.iter().all(|p| p.stream_bytes.is_empty())
            && sealdb_wal::frame_len(prepared.iter().map(|p| p.req.rep.len()))
                <= sealdb_wal::MAX_FRAME_LEN
        {
            if !prepared.is_empty() {
                self.commit_frame(prepared, &mut seq, &mut results);
            }
            return results;
        }
        let mut frame: Vec<Prepared> = Vec::with_capacity(prepared.len());
        let mut wal_len = sealdb_wal::FRAME_HEADER_LEN;
        let mut stream_len: HashMap<u32, usize> = HashMap::new();
        for p in prepared {
            let batch_len = sealdb_wal::BATCH_HEADER_LEN.saturating_add(p.req.rep.len());
            let fits = wal_len.saturating_add(batch_len) <= sealdb_wal::MAX_FRAME_LEN
                && p.stream_bytes.iter().all(|(ks, bytes)| {
                    stream_len
                        .get(ks)
                        .copied()
                        .unwrap_or(sealdb_stream::RECORDS_FRAME_HEADER_LEN)
                        .saturating_add(*bytes)
                        <= sealdb_stream::MAX_FRAME_LEN
                });
            if !fits && !frame.is_empty() {
                self.commit_frame(std::mem::take(&mut frame), &mut seq, &mut results);
                wal_len = sealdb_wal::FRAME_HEADER_LEN;
                stream_len.clear();
            }
            wal_len = wal_len.saturating_add(batch_len);
            for (ks, bytes) in &p.stream_bytes {
                let l = stream_len
                    .entry(*ks)
                    .or_insert(sealdb_stream::RECORDS_FRAME_HEADER_LEN);
                *l = l.saturating_add(*bytes);
            }
            frame.push(p);
        }
        if !frame.is_empty() {
            self.commit_frame(frame, &mut seq, &mut results);
        }
        results
    }

    /// Logs `frame`'s batches as one WAL frame (and their change records as one block per
    /// stream), applies them to the memtable and publishes them; `seq` is the last sequence
    /// number assigned so far and advances past the frame once it is logged.
    fn commit_frame(
        &self,
        mut frame: Vec<Prepared>,
        seq: &mut u64,
        results: &mut Vec<(u64, Result<u64>)>,
    ) {
        let inner = self;
        // An earlier frame of this group failed: nothing more is logged.
        if inner.poisoned.lock().is_some() {
            results.extend(
                frame
                    .into_iter()
                    .map(|p| (p.id, Err(self.poisoned_error()))),
            );
            return;
        }
        let mut next = *seq;
        let mut sync = false;
        for p in &mut frame {
            p.first = next + 1;
            next += u64::from(p.req.count);
            sync |= p.req.sync;
        }
        let now_ms = crate::now_ms();
        fn frame_batch(p: &Prepared, commit_time_ms: u64) -> FrameBatch<'_> {
            FrameBatch {
                first_seq: p.first,
                count: p.req.count,
                rep: &p.req.rep,
                commit_time_ms,
            }
        }
        // A frame of one batch (a lone writer's every commit) needs no list on the heap.
        let one: [FrameBatch<'_>; 1];
        let many: Vec<FrameBatch<'_>>;
        let batches: &[FrameBatch<'_>] = if let [p] = frame.as_slice() {
            one = [frame_batch(p, now_ms)];
            &one
        } else {
            many = frame.iter().map(|p| frame_batch(p, now_ms)).collect();
            &many
        };
        match inner.wal.append(batches, sync) {
            Ok(()) => {}
            Err(sealdb_wal::Error::BatchTooLarge { size, limit }) => {
                // Refused before anything was written (packing makes this unreachable): the
                // database stays writable.
                results.extend(frame.into_iter().map(|p| {
                    let e = Error::BatchTooLarge {
                        what: "WAL frame".into(),
                        size,
                        limit,
                    };
                    (p.id, Err(e))
                }));
                return;
            }
            Err(e) if e.is_no_space() && !inner.wal.is_poisoned() => {
                // A full disk: nothing was acknowledged, and the WAL goes on in a new segment
                // at the next write; every writer of the frame gets the typed error.
                let e = Error::from(e);
                results.extend(frame.into_iter().map(|p| (p.id, Err(copy_refusal(&e)))));
                return;
            }
            Err(e) => {
                self.poison(e.into());
                results.extend(
                    frame
                        .into_iter()
                        .map(|p| (p.id, Err(self.poisoned_error()))),
                );
                return;
            }
        }
        *seq = next;
        // Change records go to the streams after the WAL and before the memtable: a flush
        // (which may delete WAL segments) never sees data whose records are not appended.
        if frame.iter().any(|p| !p.changes.is_empty()) {
            let mut changes: Vec<Vec<crate::streams::Change>> = Vec::with_capacity(frame.len());
            let mut rest = Vec::with_capacity(frame.len());
            for mut p in frame {
                let mut c = std::mem::take(&mut p.changes);
                for ch in &mut c {
                    ch.first_seq = p.first;
                }
                changes.push(c);
                rest.push(p);
            }
            let streams = inner.streams.read().clone();
            let memtable = inner.versions.current().active.id();
            if let Err(e) =
                crate::streams::append_changes(&streams, memtable, changes, now_ms, sync)
            {
                self.poison(e);
                results.extend(rest.into_iter().map(|p| (p.id, Err(self.poisoned_error()))));
                return;
            }
            self.apply_frame(rest, sync, results);
        } else {
            self.apply_frame(frame, sync, results);
        }
        inner.last_seq.store(*seq, Ordering::Release);
        inner.visible_seq.store(*seq, Ordering::Release);
    }

    /// Inserts a logged frame's batches into the active memtable.
    fn apply_frame(&self, frame: Vec<Prepared>, sync: bool, results: &mut Vec<(u64, Result<u64>)>) {
        let inner = self;
        inner.counters.commit_groups.fetch_add(1, Ordering::Relaxed);
        if sync {
            inner.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
        }
        let active = inner.versions.current().active.clone();
        for p in frame {
            let first = p.first;
            let req = p.req;
            let mut ok = true;
            for (s, rec) in (first..).zip(RecordIter::new(&req.rep)) {
                let Ok(rec) = rec else {
                    ok = false;
                    break;
                };
                let kind = match rec.op {
                    Op::Put => ValueKind::Put,
                    Op::Delete => ValueKind::Delete,
                };
                if active
                    .insert_prefixed(&rec.keyspace.to_be_bytes(), rec.key, s, kind, rec.value)
                    .is_err()
                {
                    ok = false;
                    break;
                }
            }
            inner.counters.batches.fetch_add(1, Ordering::Relaxed);
            inner
                .counters
                .records
                .fetch_add(u64::from(req.count), Ordering::Relaxed);
            inner
                .counters
                .user_bytes
                .fetch_add(req.rep.len() as u64, Ordering::Relaxed);
            if ok {
                results.push((p.id, Ok(first + u64::from(req.count) - 1)));
            } else {
                let e = self.poison(Error::corruption("memtable insert failed".into()));
                results.push((p.id, Err(e)));
            }
        }
    }

    /// The error a writer gets once the database is poisoned: the first failure, named once.
    fn poisoned_error(&self) -> Error {
        self.poisoned.lock().as_ref().map_or_else(
            || Error::poisoned("an earlier failure".into()),
            Poison::error,
        )
    }

    /// Freezes the active memtable once it is over budget (called by the commit leader, the
    /// only mutator of the memtable set).
    fn maybe_rotate(&self, force: bool) -> Result<()> {
        let inner = self;
        let current = inner.versions.current();
        if !force && current.active.approximate_bytes() < inner.opts.memtable_size {
            return Ok(());
        }
        self.rotate_memtable()
    }

    /// Freezes the active memtable and starts a new one (and a new WAL segment).
    pub(crate) fn rotate_memtable(&self) -> Result<()> {
        let inner = self;
        let mut version = inner.versions.lock_current();
        if version.active.is_empty() {
            return Ok(());
        }
        // The WAL is not rolled here: segments roll by size, and a flush deletes a segment
        // once every record in it is in tables (the memtable rotation stays cheap).
        version.active.freeze();
        let id = inner.next_memtable_id.fetch_add(1, Ordering::Relaxed);
        let mut immutables = vec![version.active.clone()];
        immutables.extend(version.immutables.iter().cloned());
        *version = Arc::new(SuperVersion {
            active: Arc::new(Memtable::new(id)),
            immutables,
            version: version.version.clone(),
        });
        inner.counters.rotations.fetch_add(1, Ordering::Relaxed);
        drop(version);
        inner.events.signal_flush();
        Ok(())
    }

    /// Back-pressure: while too many frozen memtables wait for flush, writers wait (counted in
    /// [`Stats::write_stalls`](crate::Stats::write_stalls)).
    pub(crate) fn wait_for_room(&self) -> Result<()> {
        let inner = self;
        let limit = inner.opts.max_immutable_memtables.max(1);
        let l0_limit = inner.opts.l0_stop_writes.max(1);
        let over = || {
            let v = inner.versions.current();
            v.immutables.len() >= limit
                || v.version
                    .keyspaces
                    .values()
                    .any(|l| l.first().is_some_and(|l0| l0.len() >= l0_limit))
        };
        if !over() {
            return Ok(());
        }
        let start = Instant::now();
        inner.counters.stalls.fetch_add(1, Ordering::Relaxed);
        inner.events.signal_flush();
        inner.events.signal_compaction();
        let mut guard = inner.events.stall_lock.lock();
        let mut result = Ok(());
        while over() {
            if let Err(e) = self.check_writable() {
                result = Err(e);
                break;
            }
            // Compaction cannot make room until space is freed: say so rather than hang.
            if let Some(path) = inner.events.no_space.lock().compaction.clone() {
                result = Err(Error::NoSpace { path });
                break;
            }
            inner
                .events
                .stall_cv
                .wait_for(&mut guard, Duration::from_millis(50));
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        inner
            .counters
            .stall_nanos
            .fetch_add(nanos, Ordering::Relaxed);
        result
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_not_poisoned()?;
        if let Some(path) = self.events.no_space.lock().flush.clone() {
            return Err(Error::NoSpace { path });
        }
        Ok(())
    }

    /// [`check_writable`](Self::check_writable) without the disk-full pause: for `flush`,
    /// which is how a caller without background threads retries.
    pub(crate) fn check_not_poisoned(&self) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(poison) = self.poisoned.lock().as_ref() {
            return Err(poison.error());
        }
        self.check_key()
    }

    /// Writes every memtable to level-0 tables now (and waits for it).
    pub(crate) fn flush(self: &Arc<Self>) -> Result<()> {
        self.check_not_poisoned()?;
        // Rotation is the commit leader's job: go through the queue with an empty request.
        let inner = self;
        let req = WriteRequest {
            rep: Vec::new(),
            count: 0,
            sync: false,
        };
        let weight = frame_weight(&req);
        inner
            .group
            .submit(req, weight, |group| self.commit_group(group))
            .unwrap_or_else(|e| Err(leader_failed(inner, e)))?;
        while crate::jobs::flush::flush_oldest(&inner.job_context(), &inner.keyspaces)
            .map_err(|e| inner.fail(e))?
        {}
        Ok(())
    }
}
