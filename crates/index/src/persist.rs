//! The persisted form of a definition, which the engine keeps in its sealed manifest.
//!
//! It is a JSON object (the manifest is small and sealed, so readability beats compactness) with
//! a format name and version, so a future layout can be told apart and an older build refuses it
//! instead of misreading it. The serde types here are private mirrors of the public ones: the
//! public enums can evolve without silently changing what is on disk.

use serde::{Deserialize, Serialize};

use crate::definition::{
    ExtractFn, Extractor, IndexDefinition, IndexKind, PartitionSpec, Projection,
};
use crate::{Error, Result};

/// The `format` field of a persisted definition.
pub const DEFINITION_FORMAT: &str = "sealdb.index";
/// The `version` field this build writes, and the only one it reads.
pub const DEFINITION_VERSION: u64 = 1;

/// How a persisted definition extracts: the pointer itself, or a marker for a closure the
/// application must supply again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PersistedExtractor {
    /// An RFC 6901 JSON pointer.
    JsonPointer(String),
    /// A custom extractor; the closure is not persisted.
    Custom,
}

/// A definition as read back from storage: every field but the closure of a custom extractor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersistedDefinition {
    /// The index's name.
    pub name: String,
    /// The base keyspace it indexes.
    pub keyspace: String,
    /// Global or local.
    pub kind: IndexKind,
    /// How it extracts.
    pub extractor: PersistedExtractor,
    /// What each entry stores.
    pub projection: Projection,
}

impl PersistedDefinition {
    /// True when [`PersistedDefinition::into_definition`] needs a closure.
    pub fn needs_custom_extractor(&self) -> bool {
        self.extractor == PersistedExtractor::Custom
    }

    /// The live definition: `custom` must be `Some` exactly when the index uses a custom
    /// extractor ([`Error::MissingExtractor`] if it is missing; [`Error::InvalidDefinition`] if one
    /// is offered for a JSON-pointer index, which would mean the application and the stored
    /// definition disagree about what the index holds).
    pub fn into_definition(self, custom: Option<ExtractFn>) -> Result<IndexDefinition> {
        let extractor = match (self.extractor, custom) {
            (PersistedExtractor::JsonPointer(p), None) => Extractor::JsonPointer(p),
            (PersistedExtractor::Custom, Some(f)) => Extractor::Custom(f),
            (PersistedExtractor::Custom, None) => return Err(Error::MissingExtractor(self.name)),
            (PersistedExtractor::JsonPointer(p), Some(_)) => {
                return Err(Error::InvalidDefinition(format!(
                    "index {:?} is defined by JSON pointer {p:?}, but a custom extractor was \
                     supplied",
                    self.name
                )));
            }
        };
        Ok(IndexDefinition {
            name: self.name,
            keyspace: self.keyspace,
            kind: self.kind,
            extractor,
            projection: self.projection,
        })
    }

    /// The persisted bytes (see [`IndexDefinition::encode`]); fails if the definition is invalid.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let stored = StoredV1::from(self);
        stored.to_persisted()?.validate()?;
        serde_json::to_vec(&stored)
            .map_err(|e| Error::InvalidDefinition(format!("cannot serialize: {e}")))
    }
}

impl IndexDefinition {
    /// The definition without its closure, as it is persisted.
    pub fn to_persisted(&self) -> PersistedDefinition {
        PersistedDefinition {
            name: self.name.clone(),
            keyspace: self.keyspace.clone(),
            kind: self.kind,
            extractor: match &self.extractor {
                Extractor::JsonPointer(p) => PersistedExtractor::JsonPointer(p.clone()),
                Extractor::Custom(_) => PersistedExtractor::Custom,
            },
            projection: self.projection.clone(),
        }
    }

    /// The persisted form: a JSON object (UTF-8), for example
    ///
    /// ```json
    /// {"format":"sealdb.index","version":1,"name":"by_email","keyspace":"users",
    ///  "kind":{"local":{"delimiter":35}},"extractor":{"json_pointer":"/email"},
    ///  "projection":{"include":["name"]}}
    /// ```
    ///
    /// `kind` is `"global"`, `{"local":{"fixed_prefix":N}}` or `{"local":{"delimiter":B}}`;
    /// `extractor` is `{"json_pointer":P}` or `"custom"` (the closure is not stored);
    /// `projection` is `"keys_only"`, `"all"` or `{"include":[fields]}`. Fails with
    /// [`Error::InvalidDefinition`] if [`IndexDefinition::validate`] does.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.to_persisted().encode()
    }

    /// Reads a persisted definition back. Total: bad bytes give [`Error::Malformed`], another
    /// format version [`Error::UnsupportedVersion`], a definition that breaks the rules
    /// [`Error::InvalidDefinition`]; never a panic.
    pub fn decode(bytes: &[u8]) -> Result<PersistedDefinition> {
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed(format!("index definition: {e}")))?;
        if header.format != DEFINITION_FORMAT {
            return Err(Error::malformed(format!(
                "index definition: format {:?} is not {DEFINITION_FORMAT:?}",
                header.format
            )));
        }
        if header.version != DEFINITION_VERSION {
            return Err(Error::UnsupportedVersion(header.version));
        }
        let stored: StoredV1 = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed(format!("index definition: {e}")))?;
        let persisted = stored.to_persisted()?;
        persisted.validate()?;
        Ok(persisted)
    }
}

impl PersistedDefinition {
    /// The same rules as [`IndexDefinition::validate`].
    fn validate(&self) -> Result<()> {
        // Any closure stands in for the missing one: validation never calls it.
        let placeholder: ExtractFn = std::sync::Arc::new(|_: &[u8], _: &[u8]| Vec::new());
        let custom = self.needs_custom_extractor().then_some(placeholder);
        self.clone().into_definition(custom)?.validate()
    }
}

/// Read first, to dispatch on the version before insisting on a version's exact fields.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredV1 {
    format: String,
    version: u64,
    name: String,
    keyspace: String,
    kind: KindV1,
    extractor: ExtractorV1,
    projection: ProjectionV1,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum KindV1 {
    Global,
    Local(PartitionV1),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum PartitionV1 {
    // u64 on disk, whatever the platform's usize: a definition written on a 64-bit machine still
    // reads (or fails cleanly) on a 32-bit one.
    FixedPrefix(u64),
    Delimiter(u8),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ExtractorV1 {
    JsonPointer(String),
    Custom,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ProjectionV1 {
    KeysOnly,
    Include(Vec<String>),
    All,
}

impl From<&PersistedDefinition> for StoredV1 {
    fn from(d: &PersistedDefinition) -> Self {
        Self {
            format: DEFINITION_FORMAT.to_owned(),
            version: DEFINITION_VERSION,
            name: d.name.clone(),
            keyspace: d.keyspace.clone(),
            kind: match d.kind {
                IndexKind::Global => KindV1::Global,
                IndexKind::Local(PartitionSpec::FixedPrefix(n)) => {
                    // usize → u64 is lossless on every platform Rust supports.
                    KindV1::Local(PartitionV1::FixedPrefix(n as u64))
                }
                IndexKind::Local(PartitionSpec::Delimiter(b)) => {
                    KindV1::Local(PartitionV1::Delimiter(b))
                }
            },
            extractor: match &d.extractor {
                PersistedExtractor::JsonPointer(p) => ExtractorV1::JsonPointer(p.clone()),
                PersistedExtractor::Custom => ExtractorV1::Custom,
            },
            projection: match &d.projection {
                Projection::KeysOnly => ProjectionV1::KeysOnly,
                Projection::Include(f) => ProjectionV1::Include(f.clone()),
                Projection::All => ProjectionV1::All,
            },
        }
    }
}

impl StoredV1 {
    fn to_persisted(&self) -> Result<PersistedDefinition> {
        let kind = match self.kind {
            KindV1::Global => IndexKind::Global,
            KindV1::Local(PartitionV1::FixedPrefix(n)) => {
                let n = usize::try_from(n).map_err(|_| {
                    Error::InvalidDefinition(format!(
                        "fixed partition prefix {n} does not fit this platform"
                    ))
                })?;
                IndexKind::Local(PartitionSpec::FixedPrefix(n))
            }
            KindV1::Local(PartitionV1::Delimiter(b)) => {
                IndexKind::Local(PartitionSpec::Delimiter(b))
            }
        };
        Ok(PersistedDefinition {
            name: self.name.clone(),
            keyspace: self.keyspace.clone(),
            kind,
            extractor: match &self.extractor {
                ExtractorV1::JsonPointer(p) => PersistedExtractor::JsonPointer(p.clone()),
                ExtractorV1::Custom => PersistedExtractor::Custom,
            },
            projection: match &self.projection {
                ProjectionV1::KeysOnly => Projection::KeysOnly,
                ProjectionV1::Include(f) => Projection::Include(f.clone()),
                ProjectionV1::All => Projection::All,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sample() -> IndexDefinition {
        IndexDefinition {
            name: "by_email".into(),
            keyspace: "users".into(),
            kind: IndexKind::Local(PartitionSpec::Delimiter(b'#')),
            extractor: Extractor::JsonPointer("/email".into()),
            projection: Projection::Include(vec!["name".into()]),
        }
    }

    #[test]
    fn documented_example_is_exact() -> Result<()> {
        let bytes = sample().encode()?;
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"format":"sealdb.index","version":1,"name":"by_email","keyspace":"users","kind":{"local":{"delimiter":35}},"extractor":{"json_pointer":"/email"},"projection":{"include":["name"]}}"#
        );
        assert_eq!(IndexDefinition::decode(&bytes)?, sample().to_persisted());
        Ok(())
    }

    #[test]
    fn custom_marker_round_trip() -> Result<()> {
        let f: ExtractFn = Arc::new(|k: &[u8], _: &[u8]| vec![k.to_vec()]);
        let d = IndexDefinition {
            kind: IndexKind::Global,
            extractor: Extractor::Custom(f.clone()),
            projection: Projection::KeysOnly,
            ..sample()
        };
        let bytes = d.encode()?;
        assert!(String::from_utf8_lossy(&bytes).contains(r#""extractor":"custom""#));
        let p = IndexDefinition::decode(&bytes)?;
        assert!(p.needs_custom_extractor());
        assert_eq!(
            p.clone().into_definition(None).err(),
            Some(Error::MissingExtractor("by_email".into()))
        );
        let live = p.into_definition(Some(f))?;
        assert_eq!(
            live.extract(b"pk", b""),
            vec![crate::IndexValue::Bytes(b"pk".to_vec())]
        );
        Ok(())
    }

    #[test]
    fn pointer_definition_refuses_a_closure() -> Result<()> {
        let p = IndexDefinition::decode(&sample().encode()?)?;
        let f: ExtractFn = Arc::new(|_: &[u8], _: &[u8]| Vec::new());
        assert!(matches!(
            p.into_definition(Some(f)),
            Err(Error::InvalidDefinition(_))
        ));
        Ok(())
    }

    #[test]
    fn decode_rejects_bad_input() -> Result<()> {
        let good = String::from_utf8_lossy(&sample().encode()?).into_owned();
        let cases = [
            (good.replace("\"version\":1", "\"version\":2"), "version"),
            (good.replace("sealdb.index", "other"), "format"),
            (
                good.replace("\"name\":", "\"extra\":0,\"name\":"),
                "unknown field",
            ),
            (good.replace("by_email", "by email"), "invalid name"),
            (good.replace("/email", "email"), "invalid pointer"),
            ("{".to_owned(), "truncated"),
            (String::new(), "empty"),
        ];
        for (bytes, why) in cases {
            assert!(IndexDefinition::decode(bytes.as_bytes()).is_err(), "{why}");
        }
        assert_eq!(
            IndexDefinition::decode(good.replace("\"version\":1", "\"version\":2").as_bytes()),
            Err(Error::UnsupportedVersion(2))
        );
        Ok(())
    }

    #[test]
    fn encode_refuses_invalid() {
        let d = IndexDefinition {
            name: String::new(),
            ..sample()
        };
        assert!(matches!(d.encode(), Err(Error::InvalidDefinition(_))));
    }
}
