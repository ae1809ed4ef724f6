//! Expanding a batch on the commit leader: the index records that keep secondary indexes in
//! step, and the changes its streams record, read through the group's overlay.

use crate::index::grown_batch_error;
use crate::state::{DbInner, WriteRequest, keyspace_key};
use crate::{Error, Result};
use sealdb_wal::{BatchBuilder, Op, RecordIter};
use std::collections::HashMap;

/// Reads an item's current value for the commit leader: the overlay of this group's earlier
/// writes first, then the database at the last committed sequence.
fn leader_read(
    inner: &DbInner,
    overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    keyspace: u32,
    key: &[u8],
    snapshot: u64,
) -> Result<Option<Vec<u8>>> {
    if let Some(v) = overlay.get(&keyspace_key(keyspace, key)) {
        return Ok(v.clone());
    }
    inner.get_at(keyspace, key, snapshot)
}

impl DbInner {
    /// Adds the records that keep secondary indexes in step (same batch, so atomic) and
    /// collects the changes streams record. Reads each touched item's current value: only for
    /// keyspaces that have an index or a stream. Returns the bytes of change records the batch
    /// makes per stream keyspace.
    ///
    /// Fails with `BatchTooLarge` when the batch with its index entries, or its change
    /// records for one stream, would not fit in one sealed block; the group's `overlay` then
    /// holds nothing of this batch, so the batches after it are maintained as if it had never
    /// been submitted.
    pub(super) fn expand(
        &self,
        req: &mut WriteRequest,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        snapshot: u64,
        indexes: &crate::index::IndexSet,
        streams: &crate::streams::StreamSet,
        changes: &mut Vec<crate::streams::Change>,
    ) -> Result<HashMap<u32, usize>> {
        let touched = RecordIter::new(&req.rep).any(|r| {
            r.is_ok_and(|r| {
                indexes.by_base.contains_key(&r.keyspace) || streams.contains_key(&r.keyspace)
            })
        });
        if !touched {
            return Ok(HashMap::new());
        }
        // This batch's own writes, merged into the group's overlay only once it is accepted.
        let mut mine: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut extra = BatchBuilder::new();
        for (pos, rec) in RecordIter::new(&req.rep).enumerate() {
            let rec = rec.map_err(|e| Error::invalid_argument(e.to_string()))?;
            let idx = indexes.by_base.get(&rec.keyspace);
            let stream = streams.get(&rec.keyspace);
            if idx.is_none() && stream.is_none() {
                continue;
            }
            let ikey = keyspace_key(rec.keyspace, rec.key);
            let old = match mine.get(&ikey) {
                Some(v) => v.clone(),
                None => leader_read(self, overlay, rec.keyspace, rec.key, snapshot)?,
            };
            let new = match rec.op {
                Op::Put => Some(rec.value.to_vec()),
                Op::Delete => None,
            };
            if let Some(idx) = idx {
                crate::index::maintain(idx, rec.key, old.as_deref(), new.as_deref(), &mut extra)?;
            }
            if stream.is_some() {
                changes.push(crate::streams::Change {
                    keyspace: rec.keyspace,
                    key: rec.key.to_vec(),
                    old: old.clone(),
                    new: new.clone(),
                    position: pos as u32,
                    first_seq: 0,
                });
            }
            mine.insert(ikey, new);
        }
        // The batch is rebuilt only when index maintenance added records to it (a stream
        // alone leaves it as submitted).
        let grown = if extra.count() > 0 {
            let mut all = BatchBuilder::new();
            for rec in RecordIter::new(&req.rep).chain(RecordIter::new(extra.rep())) {
                let rec = rec.map_err(|e| Error::invalid_argument(e.to_string()))?;
                match rec.op {
                    Op::Put => all.put(rec.keyspace, rec.key, rec.value),
                    Op::Delete => all.delete(rec.keyspace, rec.key),
                }
                .map_err(grown_batch_error)?;
            }
            Some(all)
        } else {
            None
        };
        let stream_bytes = crate::streams::record_bytes(streams, changes);
        for (ks, bytes) in &stream_bytes {
            let size = sealdb_stream::RECORDS_FRAME_HEADER_LEN.saturating_add(*bytes);
            if size > sealdb_stream::MAX_FRAME_LEN {
                let name = streams
                    .get(ks)
                    .map_or_else(String::new, |s| s.keyspace_name.clone());
                return Err(Error::BatchTooLarge {
                    what: format!(
                        "the change records of a write batch for the stream of keyspace {name:?}"
                    ),
                    size: size as u64,
                    limit: sealdb_stream::MAX_FRAME_LEN as u64,
                });
            }
        }
        overlay.extend(mine);
        if let Some(all) = grown {
            req.count = all.count();
            req.rep = all.rep().to_vec();
        }
        Ok(stream_bytes)
    }
}
