//! The change-stream API of [`Db`]: enabling, reading, consuming and trimming a keyspace's
//! stream. The streams themselves (logs, records, recovery) are `crate::streams`.

use super::Db;
use crate::manifest::Edit;
use crate::state::DbInner;
use crate::streams::{
    LiveStream, StreamBatch, StreamInfo, observe_stream_head, remove_stream_dir, stream_dir,
    stream_err, stream_head, stream_id, trim_all, view_code,
};
use crate::{Error, Result};
use sealdb_stream::{ConsumerPositions, RecoveryPlan, StartAt, StreamLog, StreamOptions, ViewType};
use std::sync::Arc;
use std::time::Duration;

/// Tells the head of every new segment of `s` from now on (each rollover), so deleting a
/// stream's newest segments is refused at open. A head that cannot be written lags (older
/// ends: weaker detection, never a false alarm), like the WAL's.
fn observe_stream(inner: &DbInner, keyspace: u32, s: &LiveStream) {
    if let Some(head) = &inner.head {
        observe_stream_head(head, keyspace, s);
    }
}

/// Pins a just-enabled stream in the head and observes its rollovers.
fn anchor_stream(inner: &DbInner, keyspace: u32, s: &LiveStream) {
    observe_stream(inner, keyspace, s);
    if let Some(h) = &inner.head {
        let entry = stream_head(s);
        let _ = h.update(|st| {
            st.streams.insert(keyspace, entry);
        });
    }
}

impl Db {
    fn live_stream(&self, keyspace: &crate::Keyspace) -> Result<Arc<LiveStream>> {
        self.inner
            .streams
            .read()
            .get(&keyspace.id())
            .cloned()
            .ok_or_else(|| {
                Error::invalid_argument(format!("keyspace {} has no stream", keyspace.name()))
            })
    }

    /// Enables the change stream of `keyspace` with a view type and retention (by age, and by
    /// total size when `max_bytes > 0`). Changes committed from now on are recorded. The
    /// stream is always a new one: whatever an earlier stream of the keyspace left on disk is
    /// removed first, and its segments could not be read anyway (they name another epoch).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
    /// use sealdb::{StreamStart, StreamView};
    /// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
    /// let accounts = db.create_keyspace("accounts")?;
    /// let day = std::time::Duration::from_secs(24 * 3600);
    /// db.enable_stream(&accounts, StreamView::NewAndOldImages, day, 0)?;
    /// accounts.put("a1", "100")?;
    /// accounts.put("a1", "75")?;
    /// let batch = db.read_stream(&accounts, StreamStart::TrimHorizon, 100, 1 << 20)?;
    /// assert_eq!(batch.records.len(), 2);
    /// // Continue later from `StreamStart::At(batch.next)`.
    /// # Ok(()) }
    /// ```
    pub fn enable_stream(
        &self,
        keyspace: &crate::Keyspace,
        view: ViewType,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<()> {
        self.check_writable_pub()?;
        let inner = &self.inner;
        self.run_exclusive(|| {
            if inner.streams.read().contains_key(&keyspace.id()) {
                return Err(Error::invalid_argument(format!(
                    "keyspace {} already has a stream",
                    keyspace.name()
                )));
            }
            let keyring = inner.keyring.read().clone();
            let dir = stream_dir(&inner.path, keyspace.id());
            let start_seq = self.last_sequence();
            let id = stream_id(keyspace.id(), start_seq);
            // A crash between this and the manifest edit leaves an orphan directory, which
            // the next open removes.
            remove_stream_dir(inner.fs.as_ref(), &dir)?;
            let (log, _) = StreamLog::open(
                inner.fs.clone(),
                &dir,
                keyring.clone(),
                StreamOptions {
                    cipher: inner.cipher,
                    ..StreamOptions::default()
                },
                RecoveryPlan::new(id),
            )
            .map_err(stream_err)?;
            let positions = ConsumerPositions::load(inner.fs.as_ref(), &dir, &keyring, id, None)
                .map_err(stream_err)?;
            inner
                .versions
                .manifest()
                .apply(
                    vec![Edit::SetStream {
                        keyspace: keyspace.id(),
                        view: view_code(view),
                        retention_secs: retention.as_secs(),
                        max_bytes,
                        start_seq,
                    }],
                    &keyring,
                )
                .map_err(|e| inner.fail(e))?;
            let mut next = (**inner.streams.read()).clone();
            next.insert(
                keyspace.id(),
                Arc::new(LiveStream {
                    keyspace_name: keyspace.name().to_string(),
                    view,
                    retention,
                    max_bytes,
                    start_seq,
                    log,
                    positions: parking_lot::Mutex::new(positions),
                    dir,
                    deferred_memtable: std::sync::atomic::AtomicU64::new(0),
                }),
            );
            *inner.streams.write() = Arc::new(next);
            if let Some(s) = inner.streams.read().get(&keyspace.id()) {
                anchor_stream(inner, keyspace.id(), s);
            }
            Ok(())
        })
    }

    /// Disables the stream of `keyspace` and deletes its records. The manifest edit comes
    /// first: once it is durable the stream is off, and a crash before its directory is gone
    /// leaves an orphan the next open removes. A failure to remove the directory is returned
    /// (the stream stays off; the next open or enable removes what is left).
    pub fn disable_stream(&self, keyspace: &crate::Keyspace) -> Result<()> {
        self.check_writable_pub()?;
        let inner = &self.inner;
        // Under the commit lock: no commit is appending to the stream while its files go,
        // and no concurrent enable can create the new stream's files before they are gone.
        self.run_exclusive(|| {
            let keyring = inner.keyring.read().clone();
            inner
                .versions
                .manifest()
                .apply(
                    vec![Edit::ClearStream {
                        keyspace: keyspace.id(),
                    }],
                    &keyring,
                )
                .map_err(|e| inner.fail(e))?;
            let mut next = (**inner.streams.read()).clone();
            let removed = next.remove(&keyspace.id());
            *inner.streams.write() = Arc::new(next);
            let dir = match removed {
                Some(s) => s.dir.clone(),
                None => stream_dir(&inner.path, keyspace.id()),
            };
            if let Some(h) = &inner.head {
                // The stream is off (manifest): its end is no longer pinned. A head left
                // naming it by a crash here is dropped by the next open, which checks only
                // the streams the manifest names.
                let _ = h.update(|st| {
                    st.streams.remove(&keyspace.id());
                });
            }
            remove_stream_dir(inner.fs.as_ref(), &dir)
        })
    }

    /// Reads up to `max_records` records (and about `max_bytes`) of `keyspace`'s stream.
    /// Reading below the trim horizon is `Error::Trimmed`, naming the horizon.
    pub fn read_stream(
        &self,
        keyspace: &crate::Keyspace,
        start: StartAt,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<StreamBatch> {
        self.check_key()?;
        let s = self.live_stream(keyspace)?;
        let b = s
            .log
            .read(start, max_records, max_bytes)
            .map_err(stream_err)?;
        Ok(StreamBatch {
            records: b.records,
            next: b.next,
        })
    }

    /// Blocks until a record newer than `after_seq` exists or `timeout` passes (no polling);
    /// returns whether one does.
    pub fn wait_stream(
        &self,
        keyspace: &crate::Keyspace,
        after_seq: u64,
        timeout: Duration,
    ) -> Result<bool> {
        let s = self.live_stream(keyspace)?;
        Ok(s.log.wait_for(after_seq, timeout))
    }

    /// Durably records consumer `name`'s position (the last sequence number it processed).
    pub fn commit_stream_position(
        &self,
        keyspace: &crate::Keyspace,
        name: &str,
        seq: u64,
    ) -> Result<()> {
        self.check_writable_pub()?;
        let s = self.live_stream(keyspace)?;
        let keyring = self.inner.keyring.read().clone();
        let mut positions = s.positions.lock();
        positions
            .commit(self.inner.fs.as_ref(), &s.dir, &keyring, name, seq)
            .map_err(stream_err)?;
        if let Some(h) = &self.inner.head {
            // Consumer commits are not on the write path: pinning each one is affordable, and
            // a deleted or older CONSUMERS file is then refused instead of silently resetting
            // every consumer.
            let generation = positions.generation();
            h.update(|st| {
                st.streams
                    .entry(keyspace.id())
                    .or_default()
                    .consumers_generation = generation;
            })?;
        }
        Ok(())
    }

    /// Consumer `name`'s committed position, if any.
    pub fn stream_position(&self, keyspace: &crate::Keyspace, name: &str) -> Result<Option<u64>> {
        Ok(self.live_stream(keyspace)?.positions.lock().get(name))
    }

    /// Applies retention now (it also runs after every flush).
    pub fn trim_streams(&self) -> Result<()> {
        trim_all(&self.inner.streams.read())
    }

    /// The state of `keyspace`'s stream.
    pub fn stream_info(&self, keyspace: &crate::Keyspace) -> Result<StreamInfo> {
        let s = self.live_stream(keyspace)?;
        Ok(StreamInfo {
            keyspace: s.keyspace_name.clone(),
            view: s.view,
            retention: s.retention,
            max_bytes: s.max_bytes,
            horizon: s.log.horizon(),
            last_seq: s.log.last_seq(),
            bytes: s.log.total_bytes(),
        })
    }
}
