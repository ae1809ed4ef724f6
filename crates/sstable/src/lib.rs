//! sealdb-sstable: sorted tables of internal entries, every block sealed.
//!
//! A table is one sealed file (artifact kind `table`, or `index` for secondary-index tables):
//! data blocks of prefix-compressed entries, then an index block, a bloom-filter block, a
//! properties block and a footer, which is the file's final block. The byte layout is in
//! `docs/format.md`, section "SSTable".
//!
//! What this crate owns: building tables ([`TableBuilder`]), reading them ([`Table`],
//! [`TableIter`]), and caching decoded blocks in memory ([`BlockCache`]).
//!
//! What it must never do: write a byte of a key, value, key range, filter or property outside
//! a sealed block (the sealed-file header is the only clear text); return data from a block
//! that failed authentication; panic or allocate from an unchecked length on bytes read from
//! disk. Every I/O goes through the `sealdb-vfs` seam.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod block;
mod bloom;
mod builder;
mod cache;
mod coding;
mod iter;
mod meta;
mod table;

pub use builder::TableBuilder;
pub use cache::BlockCache;
pub use iter::TableIter;
pub use meta::{TABLE_FORMAT_VERSION, TABLE_MAGIC, TableProperties};
pub use table::{Table, TableMeta};

use sealdb_crypto::{ArtifactKind, CipherId};

/// Longest user key and value a table accepts: the WAL's limits, which every layer shares.
pub use sealdb_base::{MAX_KEY_LEN, MAX_VALUE_LEN};
/// Largest sequence number: the trailer keeps the kind in its low 8 bits.
pub const MAX_SEQ: u64 = (1 << 56) - 1;
/// Largest `block_size` option.
pub const MAX_BLOCK_SIZE: usize = 16 << 20;

/// One internal entry as an iterator yields it, and what it records about its key: the types
/// memtables yield too, so entries move between the two without conversion.
pub use sealdb_base::{Entry, ValueKind};

/// Per-table compression of data blocks (metadata blocks are never compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Blocks are stored as built.
    #[default]
    None,
    /// Blocks are LZ4 compressed before sealing, when that saves at least an eighth.
    Lz4,
}

impl Compression {
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Lz4 => 1,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<Self> {
        match t {
            0 => Some(Self::None),
            1 => Some(Self::Lz4),
            _ => None,
        }
    }
}

/// How a table is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block before compression (a block is cut once it reaches this).
    pub block_size: usize,
    /// Bloom filter bits per distinct user key (0: no filter; at most 64).
    pub bloom_bits_per_key: u32,
    /// Data-block compression.
    pub compression: Compression,
    /// The sealed-file kind: [`ArtifactKind::Table`] or [`ArtifactKind::Index`].
    pub kind: ArtifactKind,
    /// How blocks are sealed.
    pub cipher: CipherId,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            block_size: 4096,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            kind: ArtifactKind::Table,
            cipher: CipherId::ChaCha20Poly1305,
        }
    }
}

/// Errors of the table layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sealing, key or integrity errors from the crypto layer; integrity errors name the file
    /// and the byte offset of the failing block.
    #[error(transparent)]
    Crypto(#[from] sealdb_crypto::Error),
    /// A block authenticated but its contents are not a valid table (a bug, or a file
    /// forged under the `none` cipher).
    #[error("corrupt table {file}{}: {reason}", block.map(|b| format!(" at block offset {b}")).unwrap_or_default())]
    Corruption {
        /// The file.
        file: String,
        /// Byte offset of the block at fault, if one is.
        block: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error outside the sealed framing (opening the file).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A caller passed something unusable (out-of-order entries, oversized keys, bad options).
    #[error("invalid argument{}: {what}", sealdb_crypto::place(file, at))]
    InvalidArgument {
        /// What is wrong.
        what: String,
        /// The file concerned, if known.
        file: Option<std::path::PathBuf>,
        /// The byte offset within it, if known.
        at: Option<u64>,
        /// The lower-level error this comes from, if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
}

sealdb_crypto::structured_error_builders!(Error {
    invalid_argument => InvalidArgument,
});

impl Error {
    /// Whether this error means the file's bytes are damaged or not what they claim to be
    /// (an integrity failure or corrupt contents), as opposed to I/O, keys or arguments.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Corruption { .. } | Self::Crypto(sealdb_crypto::Error::Integrity { .. })
        )
    }

    /// The block offset the error names, if any.
    pub fn block_offset(&self) -> Option<u64> {
        match self {
            Self::Corruption { block, .. } => *block,
            Self::Crypto(sealdb_crypto::Error::Integrity { block, .. }) => *block,
            _ => None,
        }
    }

    pub(crate) fn corrupt(file: &str, block: Option<u64>, reason: impl Into<String>) -> Self {
        Self::Corruption {
            file: file.to_string(),
            block,
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Fuzzing entry points

#[cfg(feature = "fuzzing")]
const FUZZ_PATH: &str = "/fuzz.sst";

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// The fixed keyring fuzz targets use: database id all zeros, data-key version 1 with a fixed
/// key. Never use it for real data.
pub fn fuzz_keyring() -> Result<sealdb_crypto::Keyring> {
    let mut versions = std::collections::BTreeMap::new();
    versions.insert(1, sealdb_crypto::SecretKey::from_bytes([0x5e; 32]));
    Ok(sealdb_crypto::Keyring::new(
        sealdb_crypto::DatabaseId([0; 16]),
        versions,
        1,
    )?)
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// Decodes a decrypted data block fully (its sealed plaintext: compression tag, then the
/// block) and returns its entry count. For the `sstable_block` fuzz target.
pub fn decode_data_block_for_fuzz(bytes: &[u8]) -> Result<usize> {
    block::DataBlock::decode(bytes.to_vec())
        .map(|b| b.len())
        .map_err(|reason| Error::corrupt("<fuzz>", None, reason))
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// Decodes a decrypted metadata block: the first byte picks the decoder (0 footer, 1 index,
/// 2 filter, 3 properties), the rest is its plaintext. For a fuzz target.
pub fn decode_meta_block_for_fuzz(bytes: &[u8]) -> Result<()> {
    let (which, rest) = bytes
        .split_first()
        .ok_or_else(|| Error::invalid_argument("empty input".into()))?;
    let r = match which % 4 {
        0 => meta::Footer::decode(rest).map(|_| ()),
        1 => meta::IndexBlock::decode(rest.to_vec(), 64).map(|_| ()),
        2 => bloom::BloomFilter::decode(rest).map(|f| {
            f.may_contain(b"probe");
        }),
        _ => meta::TableProperties::decode(rest).map(|_| ()),
    };
    r.map_err(|reason| Error::corrupt("<fuzz>", None, reason))
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// Writes `bytes` as a table file into an in-memory [`sealdb_vfs::CrashFs`] and opens,
/// iterates (both ways), probes and verifies it under [`fuzz_keyring`], once expecting the
/// `none` cipher and once ChaCha20-Poly1305. Returns the entries read if either open
/// succeeded, else the first error. Must never panic, whatever the bytes.
pub fn open_table_bytes_for_fuzz(bytes: &[u8]) -> Result<u64> {
    let keyring = fuzz_keyring()?;
    let mut total = 0u64;
    let mut opened = false;
    let mut first_err = None;
    for cipher in [CipherId::None, CipherId::ChaCha20Poly1305] {
        match fuzz_one(bytes, &keyring, cipher) {
            Ok(n) => {
                opened = true;
                total += n;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (opened, first_err) {
        (false, Some(e)) => Err(e),
        _ => Ok(total),
    }
}

#[cfg(feature = "fuzzing")]
fn fuzz_one(bytes: &[u8], keyring: &sealdb_crypto::Keyring, cipher: CipherId) -> Result<u64> {
    use sealdb_vfs::FileSystem;
    use std::ops::Bound;
    let fs = sealdb_vfs::CrashFs::new();
    let path = std::path::Path::new(FUZZ_PATH);
    let io = |e| Error::Io {
        path: FUZZ_PATH.into(),
        source: e,
    };
    let mut f = fs.create_new(path).map_err(io)?;
    f.append(bytes).map_err(io)?;
    drop(f);
    let expected = sealdb_crypto::Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    let table = Table::open(
        &fs,
        path,
        keyring,
        &expected,
        Some(BlockCache::new(1 << 20)),
    )?;
    let mut n = 0u64;
    let mut last = None;
    for e in table.iter(Bound::Unbounded, Bound::Unbounded) {
        let e = e?;
        n += 1;
        last = Some(e.key);
    }
    let mut back = table.iter(Bound::Unbounded, Bound::Unbounded);
    for _ in 0..64 {
        match back.next_back() {
            Some(r) => {
                r?;
            }
            None => break,
        }
    }
    if let Some(k) = last {
        let _ = table.get(&k, MAX_SEQ)?;
        let mut it = table.iter(Bound::Included(k.clone()), Bound::Unbounded);
        it.seek_back(&k);
        let _ = it.next_back();
    }
    let _ = table.get(b"", MAX_SEQ)?;
    let _ = table.verify();
    Ok(n)
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
/// Builds a table with [`fuzz_keyring`] in memory and returns its file bytes: seeds for the
/// table fuzz target's corpus. `entries` must be in internal order.
pub fn build_table_bytes_for_fuzz(
    entries: &[Entry],
    cipher: CipherId,
    compression: Compression,
) -> Result<Vec<u8>> {
    let keyring = fuzz_keyring()?;
    let fs = sealdb_vfs::CrashFs::new();
    let path = std::path::Path::new(FUZZ_PATH);
    let opts = TableOptions {
        block_size: 256,
        compression,
        cipher,
        ..TableOptions::default()
    };
    let mut b = TableBuilder::create(&fs, path, &keyring, &opts)?;
    for e in entries {
        b.add(&e.key, e.seq, e.kind, &e.value)?;
    }
    b.finish()?;
    fs.contents(path).map_err(|e| Error::Io {
        path: FUZZ_PATH.into(),
        source: e,
    })
}
