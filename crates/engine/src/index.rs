//! Secondary indexes in the engine: each index is a keyspace of its own (sealed tables of kind
//! `index`), maintained in the same atomic batch as the base write by the group-commit leader,
//! backfilled online, and queried by exact match, range or prefix on the index value.

use crate::{Error, Result};
use sealdb_index::{ContinuationToken, IndexDefinition, IndexKind, IndexValue, Query};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A key and its value, as scans yield them.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

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
                .map_err(|e| Error::corruption(format!("index definition: {e}")))?;
            let name = persisted.name.clone();
            let custom_fn = custom
                .iter()
                .find(|c| c.index == name)
                .map(|c| c.extract.clone());
            let def = persisted
                .into_definition(custom_fn)
                .map_err(|e| Error::invalid_argument(format!("index {name}: {e}")))?;
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

    pub(crate) fn without(&self, name: &str) -> Self {
        let mut set = IndexSet::default();
        for (n, i) in &self.by_name {
            if n != name {
                set.insert(i.clone());
            }
        }
        set
    }

    pub(crate) fn with(&self, idx: Arc<LiveIndex>) -> Self {
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
        let plan = guarded(idx, key, || idx.def.plan(key, old, new))?;
        let add = |r: sealdb_wal::Result<()>| {
            r.map_err(|e| match e {
                e @ sealdb_wal::Error::BatchTooLarge { .. } => grown_batch_error(e),
                e => Error::invalid_argument(format!("index {}: {e}", idx.name)),
            })
        };
        for k in plan.deletes {
            add(out.delete(idx.keyspace, &k))?;
        }
        for (k, v) in plan.puts {
            add(out.put(idx.keyspace, &k, &v))?;
        }
    }
    Ok(())
}

/// The error for a batch that index maintenance grew past what one WAL frame holds.
pub(crate) fn grown_batch_error(e: sealdb_wal::Error) -> Error {
    match e {
        sealdb_wal::Error::BatchTooLarge { size, limit } => Error::BatchTooLarge {
            what: "write batch with its index entries".into(),
            size,
            limit,
        },
        other => other.into(),
    }
}

/// Runs index code that calls the application's extractor. A panic there is the
/// application's failure on this one item: it becomes an error for the write (or backfill)
/// that needed it, instead of unwinding through the commit leader, which serves every
/// writer of its group.
pub(crate) fn guarded<T>(idx: &LiveIndex, key: &[u8], f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        Error::invalid_argument(format!(
            "index {}: the extractor panicked on primary key {}: {}",
            idx.name,
            String::from_utf8_lossy(key),
            sealdb_wal::panic_message(payload.as_ref())
        ))
    })
}

/// An index as [`Db::list_indexes`](crate::Db::list_indexes) describes it.
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

/// Decodes an index entry key; for the fuzz target.
#[cfg(feature = "fuzzing")]
pub fn decode_index_entry_for_fuzz(bytes: &[u8]) -> bool {
    sealdb_index::decode_entry_key(bytes).is_ok()
}
