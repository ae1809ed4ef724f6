//! The secondary-index API of [`Db`]: defining (with backfill), dropping, listing and
//! querying indexes. Their maintenance on the write path is `crate::index`.

use super::Db;
use crate::index::{
    IndexHit, IndexInfo, IndexQuery, KeyValue, LiveIndex, QueryPage, guarded, index_keyspace_name,
};

use crate::manifest::Edit;
use crate::{Error, Result};
use sealdb_index::{
    ContinuationToken, Extractor, IndexDefinition, IndexKind, decode_entry_key, matches,
    query_bounds,
};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

impl Db {
    /// Creates a secondary index and backfills it from the base keyspace's current contents,
    /// online: writes continue and are indexed as they commit; queries return
    /// `IndexNotReady` until the backfill is done. `progress(done)` counts items indexed.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
    /// use sealdb::{Extractor, IndexDefinition, IndexKind, IndexQuery, IndexValue, Projection, Query};
    /// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
    /// let orders = db.create_keyspace("orders")?;
    /// orders.put("o1", r#"{"total": 30}"#)?;
    /// db.create_index(
    ///     IndexDefinition {
    ///         name: "by_total".into(),
    ///         keyspace: "orders".into(),
    ///         kind: IndexKind::Global,
    ///         extractor: Extractor::JsonPointer("/total".into()),
    ///         projection: Projection::KeysOnly,
    ///     },
    ///     &mut |_done| {},
    /// )?;
    /// orders.put("o2", r#"{"total": 5}"#)?; // indexed as it commits
    /// let page = db.query_index("by_total", &IndexQuery::new(Query::Ge(IndexValue::Number(10.0))))?;
    /// let keys: Vec<_> = page.hits.iter().map(|h| h.primary_key.clone()).collect();
    /// assert_eq!(keys, [b"o1".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn create_index(&self, def: IndexDefinition, progress: &mut dyn FnMut(u64)) -> Result<()> {
        def.validate()
            .map_err(|e| Error::invalid_argument(e.to_string()))?;
        self.check_writable_pub()?;
        let inner = &self.inner;
        if inner.indexes.read().by_name.contains_key(&def.name) {
            return Err(Error::invalid_argument(format!(
                "index {} exists",
                def.name
            )));
        }
        let base = self.keyspace(&def.keyspace)?;
        let encoded = def
            .encode()
            .map_err(|e| Error::invalid_argument(e.to_string()))?;
        let ks = self.create_keyspace_internal(&index_keyspace_name(&def.name))?;
        let keyring = inner.keyring.read().clone();
        let live = Arc::new(LiveIndex {
            name: def.name.clone(),
            keyspace: ks.id(),
            base: base.id(),
            def,
            ready: AtomicBool::new(false),
        });
        // Installed under the commit path so no write slips between definition and backfill
        // start unindexed.
        self.run_exclusive(|| {
            inner
                .versions
                .manifest()
                .apply(
                    vec![Edit::CreateIndex {
                        keyspace: live.keyspace,
                        base: live.base,
                        definition: encoded.clone(),
                    }],
                    &keyring,
                )
                .map_err(|e| inner.fail(e))?;
            let next = inner.indexes.read().with(live.clone());
            *inner.indexes.write() = Arc::new(next);
            Ok(())
        })?;
        self.backfill(&live, progress)?;
        let keyring = inner.keyring.read().clone();
        inner
            .versions
            .manifest()
            .apply(
                vec![Edit::IndexReady {
                    keyspace: live.keyspace,
                }],
                &keyring,
            )
            .map_err(|e| inner.fail(e))?;
        live.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Backfill: in chunks, each run on the commit path (so it is ordered with concurrent
    /// writes), index the current value of every base key.
    fn backfill(&self, idx: &Arc<LiveIndex>, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let mut cursor: Bound<Vec<u8>> = Bound::Unbounded;
        let mut done = 0u64;
        loop {
            let (n, next, full) = self.run_exclusive(|| {
                let snapshot = self.last_sequence();
                let mut it =
                    self.iter_internal(idx.base, cursor.clone(), Bound::Unbounded, snapshot)?;
                let mut batch = sealdb_wal::BatchBuilder::new();
                let mut n = 0u64;
                let mut last = None;
                let mut full = false;
                for item in it.by_ref() {
                    let (k, v) = item?;
                    let entries = guarded(idx, &k, || idx.def.entries(&k, &v))?;
                    // A chunk is one batch, so one WAL frame: stop before an item whose
                    // entries would not fit (the next chunk starts with it).
                    let need = entries.iter().fold(0usize, |acc, (ek, ev)| {
                        acc.saturating_add(sealdb_wal::BatchBuilder::put_len(ek.len(), ev.len()))
                    });
                    if !batch.is_empty()
                        && batch.rep().len().saturating_add(need) > sealdb_wal::MAX_BATCH_LEN
                    {
                        full = true;
                        break;
                    }
                    for (ek, ev) in entries {
                        batch
                            .put(idx.keyspace, &ek, &ev)
                            .map_err(crate::index::grown_batch_error)?;
                    }
                    n += 1;
                    last = Some(k);
                    if n >= 1024 {
                        full = true;
                        break;
                    }
                }
                if !batch.is_empty() {
                    self.commit_internal(batch)?;
                }
                Ok((n, last, full))
            })?;
            done += n;
            progress(done);
            match next {
                Some(k) if full => cursor = Bound::Excluded(k),
                _ => break,
            }
        }
        Ok(())
    }

    /// Drops an index and its files.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        let idx = inner
            .indexes
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::invalid_argument(format!("no index {name}")))?;
        self.run_exclusive(|| {
            let next = inner.indexes.read().without(name);
            *inner.indexes.write() = Arc::new(next);
            Ok(())
        })?;
        self.drop_keyspace_internal(&index_keyspace_name(&idx.name))?;
        Ok(())
    }

    /// Every index.
    pub fn list_indexes(&self) -> Vec<IndexInfo> {
        let inner = &self.inner;
        let names: HashMap<u32, String> = inner
            .keyspaces
            .read()
            .iter()
            .map(|(n, id)| (*id, n.clone()))
            .collect();
        inner
            .indexes
            .read()
            .by_name
            .values()
            .map(|i| IndexInfo {
                name: i.name.clone(),
                keyspace: names.get(&i.base).cloned().unwrap_or_default(),
                kind: i.def.kind,
                projection: i.def.projection.clone(),
                json_pointer: match &i.def.extractor {
                    Extractor::JsonPointer(p) => Some(p.clone()),
                    Extractor::Custom(_) => None,
                },
                ready: i.ready.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Queries an index at the latest snapshot.
    pub fn query_index(&self, name: &str, q: &IndexQuery) -> Result<QueryPage> {
        // Registered for the whole query, so a compaction meanwhile keeps every version it
        // reads (an unregistered sequence number could lose index entries or base items).
        let snapshot = self.snapshot();
        #[cfg(test)]
        tests::QUERY_PAUSE.with(|p| p.borrow_mut().take().map(|f| f()));
        self.query_index_at(name, q, snapshot.sequence())
    }

    pub(crate) fn query_index_at(
        &self,
        name: &str,
        q: &IndexQuery,
        snapshot: u64,
    ) -> Result<QueryPage> {
        let idx = self
            .inner
            .indexes
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::invalid_argument(format!("no index {name}")))?;
        if !idx.ready.load(Ordering::Acquire) {
            return Err(Error::IndexNotReady(name.to_string()));
        }
        let partition: Vec<u8> = match idx.def.kind {
            IndexKind::Global => Vec::new(),
            IndexKind::Local(_) => q.partition.clone().ok_or_else(|| {
                Error::invalid_argument(format!(
                    "index {name} is local: the query must name a partition"
                ))
            })?,
        };
        let mut bounds = query_bounds(&partition, &q.query);
        if let Some(tok) = &q.after {
            bounds = tok.resume_bounds(bounds, q.reverse);
        }
        let it = self.iter_internal(idx.keyspace, bounds.0, bounds.1, snapshot)?;
        let iter: Box<dyn Iterator<Item = Result<KeyValue>>> = if q.reverse {
            Box::new(it.rev())
        } else {
            Box::new(it)
        };
        let mut hits = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for item in iter {
            let (ek, ev) = item?;
            let decoded = decode_entry_key(&ek)
                .map_err(|e| Error::corruption(format!("index {name}: {e}")))?;
            if !matches(&q.query, &decoded) || decoded.partition != partition {
                continue;
            }
            if q.limit > 0 && hits.len() >= q.limit {
                more = true;
                break;
            }
            let value = decoded
                .index_value()
                .map_err(|e| Error::corruption(format!("index {name}: {e}")))?;
            let item = if q.fetch_items {
                match self.get_internal(idx.base, &decoded.primary_key, snapshot)? {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                ev
            };
            hits.push(IndexHit {
                primary_key: decoded.primary_key,
                value,
                item,
            });
            last_key = Some(ek);
        }
        Ok(QueryPage {
            hits,
            next: if more {
                last_key.map(ContinuationToken)
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Db, Extractor, IndexDefinition, IndexKind, IndexQuery, IndexValue, Options, Projection,
        Query,
    };
    use std::cell::RefCell;

    thread_local! {
        /// Run by `query_index` once it has chosen its sequence number, before it reads.
        pub(super) static QUERY_PAUSE: RefCell<Option<Box<dyn FnOnce()>>> =
            const { RefCell::new(None) };
    }

    #[test]
    fn a_compaction_during_an_index_query_loses_no_hit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keystore = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            keystore_dir: Some(keystore.path().to_path_buf()),
            background_work: false,
            ..Options::default()
        };
        let db = Db::open(dir.path().join("db"), opts).expect("open");
        let items = db.create_keyspace("items").expect("keyspace");
        db.create_index(
            IndexDefinition {
                name: "by_color".into(),
                keyspace: "items".into(),
                kind: IndexKind::Global,
                extractor: Extractor::JsonPointer("/color".into()),
                projection: Projection::KeysOnly,
            },
            &mut |_| {},
        )
        .expect("index");
        items.put(b"k1", br#"{"color":"red"}"#).expect("put");
        db.flush().expect("flush");
        // Between the query choosing its sequence number and reading, the item changes and a
        // full compaction runs.
        let d = db.clone();
        let ks = items.clone();
        QUERY_PAUSE.with(|p| {
            *p.borrow_mut() = Some(Box::new(move || {
                ks.put(b"k1", br#"{"color":"blue"}"#).expect("put");
                d.compact().expect("compact");
            }))
        });
        let q = IndexQuery {
            fetch_items: true,
            ..IndexQuery::new(Query::Eq(IndexValue::String("red".into())))
        };
        let page = db.query_index("by_color", &q).expect("query");
        assert_eq!(
            page.hits.len(),
            1,
            "the hit at the query's snapshot is kept"
        );
        assert_eq!(page.hits[0].primary_key, b"k1");
        assert_eq!(page.hits[0].item, br#"{"color":"red"}"#);
        // And the compaction did its work for later readers.
        let page = db.query_index("by_color", &q).expect("query");
        assert!(page.hits.is_empty());
    }
}
