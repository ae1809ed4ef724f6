//! The Raft log and vote of one node, in a sealdb database of its own.

use super::config::*;
use crate::codec::{decode, encode};
use crate::{Error, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use sealdb::{Db, Keyspace, Options, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

/// The Raft log and vote of one node, in its own sealdb database. Nothing is reported durable
/// before it is: the vote, truncations and purges are synced writes, and appended entries are
/// reported flushed only after a WAL sync that followed them (one sync shared by every append
/// queued meanwhile).
#[derive(Clone)]
pub struct LogStore {
    log: Keyspace,
    meta: Keyspace,
    syncer: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Held by every handle on the log database and dropped after it (fields drop in order),
    /// so that a node stopping can wait until the database is closed.
    open: Arc<()>,
}

/// Group commit of appends: each `append` writes its entries at once (in log order, unsynced)
/// and queues its callback here; this thread takes every callback queued, makes every write so
/// far durable with one WAL sync, and only then reports them flushed. While a sync runs, the
/// appends of other client writes queue up and share the next one. It ends when the log store
/// and its readers are gone.
fn log_syncer(db: Db, queue: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>, open: Arc<()>) {
    while let Ok(first) = queue.recv() {
        let mut waiting = vec![first];
        waiting.extend(queue.try_iter());
        let result = db.sync_wal();
        for callback in waiting {
            callback.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
    drop(db);
    drop(open);
}

impl LogStore {
    pub(super) fn open(path: &Path, opts: Options) -> crate::Result<Self> {
        let db = Db::open(path, opts)?;
        let (syncer, queue) = std::sync::mpsc::channel();
        let open = Arc::new(());
        let syncer_db = db.clone();
        let syncer_open = open.clone();
        std::thread::Builder::new()
            .name("sealdb-raft-log-sync".into())
            .spawn(move || log_syncer(syncer_db, queue, syncer_open))
            .map_err(|e| Error::io("starting the log sync thread", e))?;
        Ok(LogStore {
            log: db.create_keyspace(LOG_KEYSPACE)?,
            meta: db.create_keyspace(LOG_META_KEYSPACE)?,
            syncer,
            open,
        })
    }

    /// Gone (`upgrade` is `None`) once every handle on the log database has been dropped and
    /// the database is closed.
    pub(crate) fn open_signal(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.open)
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> crate::Result<Option<T>> {
        read_decoded(&self.meta, key, what)
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        durability: WriteOptions,
    ) -> crate::Result<()> {
        self.meta.put_opt(key, encode(value), durability)?;
        Ok(())
    }

    fn entries(&self, start: Bound<u64>, end: Bound<u64>) -> crate::Result<Vec<Entry<TypeConfig>>> {
        let bound = |b: Bound<u64>| match b {
            Bound::Included(i) => Bound::Included(index_key(i).to_vec()),
            Bound::Excluded(i) => Bound::Excluded(index_key(i).to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.log.range((bound(start), bound(end)))? {
            let (_, value) = item?;
            out.push(decode(&value, "log entry")?);
        }
        Ok(out)
    }

    /// Deletes the entries in `range` (and writes `extra` in the same synced batch).
    fn delete_entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        extra: Option<(&[u8], Vec<u8>)>,
    ) -> crate::Result<()> {
        let doomed: Vec<u64> = self
            .entries(start, end)?
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        let mut batch = WriteBatch::new();
        for index in doomed {
            batch.delete(&self.log, index_key(index))?;
        }
        if let Some((key, value)) = extra {
            batch.put(&self.meta, key, value)?;
        }
        self.log.db().write(batch, WriteOptions::SYNC)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.entries(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .read_meta(PURGED_KEY, "last purged log id")
            .map_err(read_logs_err)?;
        let last = self.log.last_key_value().map_err(read_logs_err)?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> =
                    decode(&value, "log entry").map_err(read_logs_err)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE_KEY, vote, WriteOptions::SYNC)
            .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE_KEY, "vote")
            .map_err(|e| StorageIOError::read_vote(io_err(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced (it is a hint: after a restart openraft re-applies up to it at once
        // instead of waiting for the leader): the next append's WAL sync makes it durable, and
        // a committed id lost to a power cut only means a later catch-up, never a wrong read
        // (linearizable reads wait for the leader's commit in its term).
        self.write_meta(COMMITTED_KEY, &committed, WriteOptions::NO_SYNC)
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED_KEY, "committed log id")
            .map_err(read_logs_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // All entries of one append in one batch, written now and in order (a batch past
        // sealdb's limit is written as several, in order, so a crash keeps a prefix, which
        // Raft tolerates); durable once the syncer's next WAL sync returns.
        let mut batch = WriteBatch::new();
        for entry in entries {
            let key = index_key(entry.log_id.index);
            let value = encode(&entry);
            if batch.put(&self.log, key, &value).is_err() && !batch.is_empty() {
                let full = std::mem::take(&mut batch);
                self.log
                    .db()
                    .write(full, WriteOptions::NO_SYNC)
                    .map_err(write_logs_err)?;
                batch.put(&self.log, key, &value).map_err(write_logs_err)?;
            }
        }
        self.log
            .db()
            .write(batch, WriteOptions::NO_SYNC)
            .map_err(write_logs_err)?;
        if let Err(std::sync::mpsc::SendError(callback)) = self.syncer.send(callback) {
            // The syncer is gone (only at shutdown): sync here instead.
            let result = self.log.db().sync_wal();
            callback.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
            result.map_err(write_logs_err)?;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete_entries(Bound::Included(log_id.index), Bound::Unbounded, None)
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purged id and the deletions in one synced batch: the log state never claims a
        // purge that did not happen, nor the reverse.
        let marker = encode(&Some(log_id));
        self.delete_entries(
            Bound::Unbounded,
            Bound::Included(log_id.index),
            Some((PURGED_KEY, marker)),
        )
        .map_err(write_logs_err)
    }
}
