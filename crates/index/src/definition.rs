//! Index definitions: what an index covers, how it extracts values, what it projects, and the
//! maintenance plan for one base write.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::key::entry_key;
use crate::value::{IndexValue, normalize_zero};
use crate::{Error, MAX_KEYSPACE_NAME_LEN, MAX_NAME_LEN, Result};

/// How a local index finds the partition of a primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionSpec {
    /// The first N bytes (N ≥ 1). A shorter key has no partition.
    FixedPrefix(usize),
    /// The bytes before the first occurrence of this byte (possibly none: a key that starts with
    /// the delimiter is in the empty partition). A key without the delimiter has no partition.
    Delimiter(u8),
}

/// Global or local, as in DynamoDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// One ordered index over the whole keyspace; every entry is in the empty partition.
    Global,
    /// One ordered index per partition of the primary key; items whose key has no partition are
    /// not indexed.
    Local(PartitionSpec),
}

/// What an index entry stores beside its key (which already holds the primary key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Projection {
    /// Nothing: a query returns primary keys, and the caller reads the base items it wants.
    KeysOnly,
    /// A JSON object with just these top-level fields of the item (those it has).
    Include(Vec<String>),
    /// The whole item, byte for byte.
    All,
}

/// An application-supplied extractor: given the primary key and the value, the index values
/// (as bytes; each becomes an [`IndexValue::Bytes`]). It must be deterministic: maintenance
/// re-runs it on the old value to find the entries to delete.
pub type ExtractFn = Arc<dyn Fn(&[u8], &[u8]) -> Vec<Vec<u8>> + Send + Sync>;

/// How index values are pulled out of an item.
#[derive(Clone)]
pub enum Extractor {
    /// An RFC 6901 JSON pointer into the value parsed as JSON (`""` is the whole document,
    /// `/a/0/b` a nested field). A string, number or boolean there is one index value; an array
    /// gives one value per string, number or boolean element; anything else, or a value that is
    /// not JSON, gives none.
    JsonPointer(String),
    /// An application closure. It is not persisted: the application registers it again at every
    /// open (see [`crate::PersistedDefinition::into_definition`]).
    Custom(ExtractFn),
}

/// Shows the pointer, and only a placeholder for a closure, which cannot be printed.
impl fmt::Debug for Extractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JsonPointer(p) => f.debug_tuple("JsonPointer").field(p).finish(),
            Self::Custom(_) => f.write_str("Custom(<closure>)"),
        }
    }
}

/// A secondary index over one base keyspace.
#[derive(Debug, Clone)]
pub struct IndexDefinition {
    /// The index's name: 1 to 128 bytes of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// The base keyspace it indexes.
    pub keyspace: String,
    /// Global or local.
    pub kind: IndexKind,
    /// Where index values come from.
    pub extractor: Extractor,
    /// What each entry stores.
    pub projection: Projection,
}

/// The index changes one base write needs, to apply in the same atomic batch as the write.
///
/// `deletes` and the keys of `puts` never overlap, so the order of application does not matter.
/// Both are in ascending key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Entry keys to delete.
    pub deletes: Vec<Vec<u8>>,
    /// Entry keys to write, with their entry values (the projection).
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Plan {
    /// True when the write changes nothing in the index.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.puts.is_empty()
    }
}

impl IndexDefinition {
    /// Checks every rule a definition must meet: the name (1 to 128 bytes of
    /// `A-Z a-z 0-9 . _ -`), the keyspace name (1 to 255 bytes), a fixed partition prefix of at
    /// least one byte, the JSON pointer's syntax (RFC 6901: empty, or `/`-separated tokens in
    /// which `~` is always followed by `0` or `1`), and an include list that is non-empty, without
    /// empty or repeated field names.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_keyspace(&self.keyspace)?;
        validate_kind(&self.kind)?;
        if let Extractor::JsonPointer(p) = &self.extractor {
            validate_pointer(p)?;
        }
        validate_projection(&self.projection)
    }

    /// The partition `key` belongs to: its prefix for a local index, `Some(b"")` for every key of
    /// a global index (whose entries all live in the empty partition, as [`crate::query_bounds`]
    /// expects), and `None` when a local index's spec finds no partition (the item is not
    /// indexed).
    pub fn partition<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        match self.kind {
            IndexKind::Global => Some(&[]),
            IndexKind::Local(PartitionSpec::FixedPrefix(n)) => key.get(..n),
            IndexKind::Local(PartitionSpec::Delimiter(d)) => {
                let end = key.iter().position(|&b| b == d)?;
                key.get(..end)
            }
        }
    }

    /// The index values of one item, each once, in order of first appearance. Sparse: a value
    /// that is not JSON, a pointer that finds nothing, `null` or an object give none.
    pub fn extract(&self, key: &[u8], value: &[u8]) -> Vec<IndexValue> {
        let doc = self.needs_json().then(|| parse_json(value)).flatten();
        self.extract_parsed(key, value, doc.as_ref())
    }

    /// The entry value the projection stores: empty for keys-only, the item for all, and for an
    /// include list the JSON object of those top-level fields the item has (`{}` when the item
    /// is not a JSON object). Fields are written in sorted order, so equal items always project
    /// to equal bytes.
    pub fn entry_value(&self, value: &[u8]) -> Vec<u8> {
        let doc = self.needs_json().then(|| parse_json(value)).flatten();
        self.project_parsed(value, doc.as_ref())
    }

    /// Every index entry of one item: entry key to entry value, in key order. Empty when the item
    /// is not indexed. This is what a full rebuild of the index writes for the item.
    pub fn entries(&self, key: &[u8], value: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let Some(partition) = self.partition(key) else {
            return BTreeMap::new();
        };
        // Parse once for both extraction and projection: items can be large.
        let doc = self.needs_json().then(|| parse_json(value)).flatten();
        let values = self.extract_parsed(key, value, doc.as_ref());
        if values.is_empty() {
            return BTreeMap::new();
        }
        let projected = self.project_parsed(value, doc.as_ref());
        values
            .iter()
            .map(|v| (entry_key(partition, v, key), projected.clone()))
            .collect()
    }

    /// The index maintenance for a write of `key` from `old` to `new` (`None` = absent: an insert
    /// has no `old`, a delete no `new`). Deletes the entries only the old item has, puts the
    /// entries the new item has unless the old item already has the same entry with the same
    /// projected value.
    ///
    /// `old` must be the value the base keyspace holds at the write's sequence number, or the
    /// index drifts; the engine reads it under the same write lock that orders the batch.
    pub fn plan(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) -> Plan {
        let old = old.map(|v| self.entries(key, v)).unwrap_or_default();
        let new = new.map(|v| self.entries(key, v)).unwrap_or_default();
        let deletes = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        let puts = new
            .into_iter()
            .filter(|(k, v)| old.get(k) != Some(v))
            .collect();
        Plan { deletes, puts }
    }

    fn needs_json(&self) -> bool {
        matches!(self.extractor, Extractor::JsonPointer(_))
            || matches!(self.projection, Projection::Include(_))
    }

    fn extract_parsed(&self, key: &[u8], value: &[u8], doc: Option<&Value>) -> Vec<IndexValue> {
        let found = match &self.extractor {
            Extractor::JsonPointer(pointer) => doc
                .and_then(|d| d.pointer(pointer))
                .map(json_values)
                .unwrap_or_default(),
            Extractor::Custom(f) => f(key, value).into_iter().map(IndexValue::Bytes).collect(),
        };
        // Deduplicate on the encoding: it is what the entry key holds, so two values with one
        // encoding (0.0 and -0.0) would be one entry anyway.
        let mut seen = HashSet::new();
        found
            .into_iter()
            .filter(|v| !v.is_nan() && seen.insert(v.encode()))
            .collect()
    }

    fn project_parsed(&self, value: &[u8], doc: Option<&Value>) -> Vec<u8> {
        match &self.projection {
            Projection::KeysOnly => Vec::new(),
            Projection::All => value.to_vec(),
            Projection::Include(fields) => {
                let mut out = serde_json::Map::new();
                if let Some(Value::Object(item)) = doc {
                    // Sorted insertion gives sorted output whether or not serde_json's
                    // `preserve_order` feature is on somewhere in the build.
                    let wanted: BTreeSet<&String> = fields.iter().collect();
                    for field in wanted {
                        if let Some(v) = item.get(field) {
                            out.insert(field.clone(), v.clone());
                        }
                    }
                }
                serde_json::to_vec(&Value::Object(out)).unwrap_or_else(|_| b"{}".to_vec())
            }
        }
    }
}

/// The value as JSON, or `None` when it is not JSON (then it has no JSON-derived index values).
/// serde_json caps nesting depth, so hostile input cannot exhaust the stack.
fn parse_json(value: &[u8]) -> Option<Value> {
    serde_json::from_slice(value).ok()
}

/// The index values at a pointer's target.
fn json_values(target: &Value) -> Vec<IndexValue> {
    match target {
        Value::Array(items) => items.iter().filter_map(json_scalar).collect(),
        other => json_scalar(other).into_iter().collect(),
    }
}

fn json_scalar(v: &Value) -> Option<IndexValue> {
    match v {
        Value::Bool(b) => Some(IndexValue::Bool(*b)),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| IndexValue::Number(normalize_zero(f))),
        Value::String(s) => Some(IndexValue::String(s.clone())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidDefinition(format!(
            "index name must be 1 to {MAX_NAME_LEN} bytes, got {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::InvalidDefinition(format!(
            "index name {name:?} contains {c:?}; allowed are A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

fn validate_keyspace(keyspace: &str) -> Result<()> {
    if keyspace.is_empty() || keyspace.len() > MAX_KEYSPACE_NAME_LEN {
        return Err(Error::InvalidDefinition(format!(
            "keyspace name must be 1 to {MAX_KEYSPACE_NAME_LEN} bytes, got {}",
            keyspace.len()
        )));
    }
    Ok(())
}

fn validate_kind(kind: &IndexKind) -> Result<()> {
    if let IndexKind::Local(PartitionSpec::FixedPrefix(0)) = kind {
        // A zero-byte prefix would put every key in one partition: that is a global index.
        return Err(Error::InvalidDefinition(
            "a fixed partition prefix must be at least 1 byte (use a global index instead)".into(),
        ));
    }
    Ok(())
}

fn validate_pointer(pointer: &str) -> Result<()> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(Error::InvalidDefinition(format!(
            "JSON pointer {pointer:?} must be empty or start with '/'"
        )));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        // RFC 6901: `~` only as `~0` (a literal `~`) or `~1` (a literal `/`).
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(Error::InvalidDefinition(format!(
                "JSON pointer {pointer:?} has a '~' not followed by '0' or '1'"
            )));
        }
    }
    Ok(())
}

fn validate_projection(projection: &Projection) -> Result<()> {
    let Projection::Include(fields) = projection else {
        return Ok(());
    };
    if fields.is_empty() {
        return Err(Error::InvalidDefinition(
            "an include projection needs at least one field (or use keys-only)".into(),
        ));
    }
    let mut seen = HashSet::new();
    for f in fields {
        if f.is_empty() {
            return Err(Error::InvalidDefinition(
                "include projection has an empty field name".into(),
            ));
        }
        if !seen.insert(f) {
            return Err(Error::InvalidDefinition(format!(
                "include projection names field {f:?} twice"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(pointer: &str, kind: IndexKind, projection: Projection) -> IndexDefinition {
        IndexDefinition {
            name: "by_x".into(),
            keyspace: "items".into(),
            kind,
            extractor: Extractor::JsonPointer(pointer.into()),
            projection,
        }
    }

    fn s(x: &str) -> IndexValue {
        IndexValue::String(x.into())
    }

    #[test]
    fn validate_rules() {
        let ok = def("/a~0b~1c", IndexKind::Global, Projection::All);
        assert!(ok.validate().is_ok());
        let bad = [
            IndexDefinition {
                name: String::new(),
                ..ok.clone()
            },
            IndexDefinition {
                name: "x".repeat(129),
                ..ok.clone()
            },
            IndexDefinition {
                name: "a b".into(),
                ..ok.clone()
            },
            IndexDefinition {
                keyspace: String::new(),
                ..ok.clone()
            },
            def("a", IndexKind::Global, Projection::All),
            def("/a~2", IndexKind::Global, Projection::All),
            def("/a~", IndexKind::Global, Projection::All),
            def(
                "",
                IndexKind::Local(PartitionSpec::FixedPrefix(0)),
                Projection::All,
            ),
            def("", IndexKind::Global, Projection::Include(vec![])),
            def(
                "",
                IndexKind::Global,
                Projection::Include(vec![String::new()]),
            ),
            def(
                "",
                IndexKind::Global,
                Projection::Include(vec!["a".into(), "a".into()]),
            ),
        ];
        for d in bad {
            assert!(
                matches!(d.validate(), Err(Error::InvalidDefinition(_))),
                "{d:?}"
            );
        }
        assert!(
            IndexDefinition {
                name: "x".repeat(128),
                ..ok
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn extract_scalars_arrays_and_sparse() {
        let d = def("/t", IndexKind::Global, Projection::KeysOnly);
        assert_eq!(d.extract(b"k", br#"{"t":"x"}"#), vec![s("x")]);
        assert_eq!(
            d.extract(b"k", br#"{"t":-0.0}"#),
            vec![IndexValue::Number(0.0)]
        );
        assert_eq!(
            d.extract(b"k", br#"{"t":true}"#),
            vec![IndexValue::Bool(true)]
        );
        assert_eq!(
            d.extract(b"k", br#"{"t":["b",1,"b",null,{"x":1},[2],false,1.0]}"#),
            vec![s("b"), IndexValue::Number(1.0), IndexValue::Bool(false)]
        );
        for sparse in [
            &br#"{"t":null}"#[..],
            br#"{"t":{"a":1}}"#,
            br#"{"u":1}"#,
            br#"[1]"#,
            b"not json",
            b"",
            b"\xFF\xFE",
        ] {
            assert!(d.extract(b"k", sparse).is_empty());
            assert!(d.plan(b"k", None, Some(sparse)).is_empty());
        }
        let whole = def("", IndexKind::Global, Projection::KeysOnly);
        assert_eq!(whole.extract(b"k", br#""top""#), vec![s("top")]);
        let nested = def("/a/1/b~1c", IndexKind::Global, Projection::KeysOnly);
        assert_eq!(
            nested.extract(b"k", br#"{"a":[0,{"b/c":7}]}"#),
            vec![IndexValue::Number(7.0)]
        );
    }

    #[test]
    fn custom_extractor_gives_bytes() {
        let f: ExtractFn = Arc::new(|k: &[u8], _: &[u8]| vec![k.to_vec(), vec![1], k.to_vec()]);
        let d = IndexDefinition {
            extractor: Extractor::Custom(f),
            ..def("", IndexKind::Global, Projection::KeysOnly)
        };
        assert_eq!(
            d.extract(b"pk", b"anything"),
            vec![
                IndexValue::Bytes(b"pk".to_vec()),
                IndexValue::Bytes(vec![1])
            ]
        );
        assert_eq!(format!("{:?}", d.extractor), "Custom(<closure>)");
    }

    #[test]
    fn partitions() {
        let g = def("", IndexKind::Global, Projection::All);
        assert_eq!(g.partition(b"abc"), Some(&b""[..]));
        let fixed = def(
            "",
            IndexKind::Local(PartitionSpec::FixedPrefix(2)),
            Projection::All,
        );
        assert_eq!(fixed.partition(b"abc"), Some(&b"ab"[..]));
        assert_eq!(fixed.partition(b"ab"), Some(&b"ab"[..]));
        assert_eq!(fixed.partition(b"a"), None);
        let delim = def(
            "",
            IndexKind::Local(PartitionSpec::Delimiter(b'#')),
            Projection::All,
        );
        assert_eq!(delim.partition(b"u1#o9"), Some(&b"u1"[..]));
        assert_eq!(delim.partition(b"#o9"), Some(&b""[..]));
        assert_eq!(delim.partition(b"u1"), None);
        let d = def(
            "/t",
            IndexKind::Local(PartitionSpec::Delimiter(b'#')),
            Projection::All,
        );
        assert!(d.plan(b"nodelim", None, Some(br#"{"t":1}"#)).is_empty());
        assert_eq!(d.plan(b"a#1", None, Some(br#"{"t":1}"#)).puts.len(), 1);
    }

    #[test]
    fn include_projection_picks_fields() {
        let d = def(
            "/t",
            IndexKind::Global,
            Projection::Include(vec!["b".into(), "a".into(), "missing".into()]),
        );
        assert_eq!(
            d.entry_value(br#"{"t":1,"a":[1,2],"b":null,"c":"no"}"#),
            br#"{"a":[1,2],"b":null}"#
        );
        assert_eq!(d.entry_value(b"[1,2]"), b"{}");
        assert_eq!(d.entry_value(b"not json"), b"{}");
        let keys_only = def("/t", IndexKind::Global, Projection::KeysOnly);
        assert!(keys_only.entry_value(br#"{"t":1}"#).is_empty());
        let all = def("/t", IndexKind::Global, Projection::All);
        assert_eq!(all.entry_value(br#"{"t":1}"#), br#"{"t":1}"#);
    }

    #[test]
    fn plan_skips_unchanged_and_rewrites_changed_projection() {
        let d = def(
            "/t",
            IndexKind::Global,
            Projection::Include(vec!["p".into()]),
        );
        let old = br#"{"t":["a","b"],"p":1}"#;
        let same = br#"{"t":["b","a"],"p":1,"q":2}"#;
        assert!(d.plan(b"k", Some(old), Some(same)).is_empty());
        let changed = br#"{"t":["b","c"],"p":2}"#;
        let plan = d.plan(b"k", Some(old), Some(changed));
        assert_eq!(plan.deletes, vec![entry_key(b"", &s("a"), b"k")]);
        assert_eq!(
            plan.puts,
            vec![
                (entry_key(b"", &s("b"), b"k"), br#"{"p":2}"#.to_vec()),
                (entry_key(b"", &s("c"), b"k"), br#"{"p":2}"#.to_vec()),
            ]
        );
        let delete = d.plan(b"k", Some(old), None);
        assert_eq!(delete.deletes.len(), 2);
        assert!(delete.puts.is_empty());
    }
}
