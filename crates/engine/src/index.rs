//! Secondary indexes in the engine: each index is a keyspace of its own (sealed tables of kind
//! `index`), maintained in the same atomic batch as the base write by the group-commit leader,
//! backfilled online, and queried by exact match, range or prefix on the index value.

use crate::db::{Db, DbInner, keyspace_key};
use crate::manifest::Edit;
use crate::{Error, Result};
use sealdb_index::{
    ContinuationToken, Extractor, IndexDefinition, IndexKind, IndexValue, Query, decode_entry_key,
    matches, query_bounds,
};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A key and its value, as scans yield them.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Keyspace names starting with this are the engine's own (index keyspaces).
pub(crate) const INTERNAL_PREFIX: &str = "__";

pub(crate) fn index_keyspace_name(index: &str) -> String {
    format!("{INTERNAL_PREFIX}index/{index}")
}

/// One index the write path maintains.
#[derive(Debug)]
pub(crate) struct LiveIndex {
    pub name: String,
    pub keyspace: u32,
    pub base: u32,
    pub def: IndexDefinition,
    pub ready: AtomicBool,
}

/// The indexes, by base keyspace and by name. Swapped whole when one is created or dropped.
#[derive(Debug, Default)]
pub(crate) struct IndexSet {
    pub by_base: HashMap<u32, Vec<Arc<LiveIndex>>>,
    pub by_name: BTreeMap<String, Arc<LiveIndex>>,
}

impl IndexSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn from_manifest(
        state: &crate::manifest::ManifestState,
        custom: &[crate::options::NamedExtractor],
    ) -> Result<Self> {
        let mut set = IndexSet::default();
        for (ks, rec) in &state.indexes {
            let persisted = IndexDefinition::decode(&rec.definition)
                .map_err(|e| Error::Corruption(format!("index definition: {e}")))?;
            let name = persisted.name.clone();
            let custom_fn = custom
                .iter()
                .find(|c| c.index == name)
                .map(|c| c.extract.clone());
            let def = persisted
                .into_definition(custom_fn)
                .map_err(|e| Error::InvalidArgument(format!("index {name}: {e}")))?;
            set.insert(Arc::new(LiveIndex {
                name,
                keyspace: *ks,
                base: rec.base,
                def,
                ready: AtomicBool::new(rec.ready),
            }));
        }
        Ok(set)
    }

    fn insert(&mut self, idx: Arc<LiveIndex>) {
        self.by_base.entry(idx.base).or_default().push(idx.clone());
        self.by_name.insert(idx.name.clone(), idx);
    }

    fn without(&self, name: &str) -> Self {
        let mut set = IndexSet::default();
        for (n, i) in &self.by_name {
            if n != name {
                set.insert(i.clone());
            }
        }
        set
    }

    fn with(&self, idx: Arc<LiveIndex>) -> Self {
        let mut set = self.without(&idx.name);
        set.insert(idx);
        set
    }
}

/// Adds to `out` the index records that keep every index on `base` in step with the write
/// `key: old -> new`.
pub(crate) fn maintain(
    indexes: &[Arc<LiveIndex>],
    key: &[u8],
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    out: &mut sealdb_wal::BatchBuilder,
) -> Result<()> {
    for idx in indexes {
        let plan = idx.def.plan(key, old, new);
        for k in plan.deletes {
            out.delete(idx.keyspace, &k)
                .map_err(|e| Error::InvalidArgument(format!("index {}: {e}", idx.name)))?;
        }
        for (k, v) in plan.puts {
            out.put(idx.keyspace, &k, &v)
                .map_err(|e| Error::InvalidArgument(format!("index {}: {e}", idx.name)))?;
        }
    }
    Ok(())
}

/// An index as [`Db::list_indexes`] describes it.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// The base keyspace.
    pub keyspace: String,
    /// Global or local (with its partition rule).
    pub kind: IndexKind,
    /// What it projects.
    pub projection: sealdb_index::Projection,
    /// The JSON pointer it extracts, or `None` for an application closure.
    pub json_pointer: Option<String>,
    /// Whether its backfill is done (queries are refused until then).
    pub ready: bool,
}

/// A query on an index.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    /// What to match on the index value.
    pub query: Query,
    /// The partition, for a local index (required there, ignored for a global one).
    pub partition: Option<Vec<u8>>,
    /// Most results to return (0: no limit).
    pub limit: usize,
    /// Descending order of (index value, primary key).
    pub reverse: bool,
    /// Resume after this token (from a previous page).
    pub after: Option<ContinuationToken>,
    /// For keys-only and include projections: fetch each item's full value from the base
    /// keyspace (at the same snapshot).
    pub fetch_items: bool,
}

impl IndexQuery {
    /// A query with no limit, ascending, projected values only.
    pub fn new(query: Query) -> Self {
        Self {
            query,
            partition: None,
            limit: 0,
            reverse: false,
            after: None,
            fetch_items: false,
        }
    }
}

/// One result of an index query.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHit {
    /// The item's primary key.
    pub primary_key: Vec<u8>,
    /// The index value it matched.
    pub value: IndexValue,
    /// The projected value (or the full item with `fetch_items`).
    pub item: Vec<u8>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The hits, in index order.
    pub hits: Vec<IndexHit>,
    /// Pass to [`IndexQuery::after`] for the next page; `None` when the query is exhausted.
    pub next: Option<ContinuationToken>,
}

impl Db {
    /// Creates a secondary index and backfills it from the base keyspace's current contents,
    /// online: writes continue and are indexed as they commit; queries return
    /// `IndexNotReady` until the backfill is done. `progress(done)` counts items indexed.
    pub fn create_index(&self, def: IndexDefinition, progress: &mut dyn FnMut(u64)) -> Result<()> {
        def.validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.check_writable_pub()?;
        let inner = &self.inner;
        if inner.indexes.read().by_name.contains_key(&def.name) {
            return Err(Error::InvalidArgument(format!("index {} exists", def.name)));
        }
        let base = self.keyspace(&def.keyspace)?;
        let encoded = def
            .encode()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
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
                .manifest
                .lock()
                .apply(
                    vec![Edit::CreateIndex {
                        keyspace: live.keyspace,
                        base: live.base,
                        definition: encoded.clone(),
                    }],
                    &keyring,
                )
                .map_err(|e| inner.poison(e))?;
            let next = inner.indexes.read().with(live.clone());
            *inner.indexes.write() = Arc::new(next);
            Ok(())
        })?;
        self.backfill(&live, progress)?;
        let keyring = inner.keyring.read().clone();
        inner
            .manifest
            .lock()
            .apply(
                vec![Edit::IndexReady {
                    keyspace: live.keyspace,
                }],
                &keyring,
            )
            .map_err(|e| inner.poison(e))?;
        live.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Backfill: in chunks, each run on the commit path (so it is ordered with concurrent
    /// writes), index the current value of every base key.
    fn backfill(&self, idx: &Arc<LiveIndex>, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let mut cursor: Bound<Vec<u8>> = Bound::Unbounded;
        let mut done = 0u64;
        loop {
            let (n, next) = self.run_exclusive(|| {
                let snapshot = self.last_sequence();
                let mut it =
                    self.iter_internal(idx.base, cursor.clone(), Bound::Unbounded, snapshot)?;
                let mut batch = sealdb_wal::BatchBuilder::new();
                let mut n = 0u64;
                let mut last = None;
                for item in it.by_ref() {
                    let (k, v) = item?;
                    for (ek, ev) in idx.def.entries(&k, &v) {
                        batch
                            .put(idx.keyspace, &ek, &ev)
                            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                    }
                    n += 1;
                    last = Some(k);
                    if n >= 1024 {
                        break;
                    }
                }
                if !batch.is_empty() {
                    self.commit_internal(batch)?;
                }
                Ok((n, last))
            })?;
            done += n;
            progress(done);
            match next {
                Some(k) if n >= 1024 => cursor = Bound::Excluded(k),
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
            .ok_or_else(|| Error::InvalidArgument(format!("no index {name}")))?;
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
        let snapshot = self.last_sequence();
        self.query_index_at(name, q, snapshot)
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
            .ok_or_else(|| Error::InvalidArgument(format!("no index {name}")))?;
        if !idx.ready.load(Ordering::Acquire) {
            return Err(Error::IndexNotReady(name.to_string()));
        }
        let partition: Vec<u8> = match idx.def.kind {
            IndexKind::Global => Vec::new(),
            IndexKind::Local(_) => q.partition.clone().ok_or_else(|| {
                Error::InvalidArgument(format!(
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
                .map_err(|e| Error::Corruption(format!("index {name}: {e}")))?;
            if !matches(&q.query, &decoded) || decoded.partition != partition {
                continue;
            }
            if q.limit > 0 && hits.len() >= q.limit {
                more = true;
                break;
            }
            let value = decoded
                .index_value()
                .map_err(|e| Error::Corruption(format!("index {name}: {e}")))?;
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

/// Reads an item's current value for the commit leader: the overlay of this group's earlier
/// writes first, then the database at the last committed sequence.
pub(crate) fn leader_read(
    inner: &DbInner,
    db: &Db,
    overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    keyspace: u32,
    key: &[u8],
    snapshot: u64,
) -> Result<Option<Vec<u8>>> {
    let _ = inner;
    if let Some(v) = overlay.get(&keyspace_key(keyspace, key)) {
        return Ok(v.clone());
    }
    db.get_internal(keyspace, key, snapshot)
}

/// Decodes an index entry key; for the fuzz target.
pub fn decode_index_entry_for_fuzz(bytes: &[u8]) -> bool {
    decode_entry_key(bytes).is_ok()
}
