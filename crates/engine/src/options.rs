//! Options for opening a database, writing and reading.

use crate::manifest::FormatVersion;
use sealdb_crypto::{CipherId, KeyEvent, SharedProvider};
pub use sealdb_sstable::Compression;
use sealdb_vfs::{RealFs, SharedFs};
use std::path::PathBuf;
use std::sync::Arc;

/// Which master key wraps a *new* database's data keys. An existing database is always opened
/// with the key its KEYS file names; switching is a separate, online operation.
#[derive(Debug, Clone, Default)]
pub enum MasterKey {
    /// The engine-owned key, created in the keystore on first use (the default).
    #[default]
    Owned,
    /// A named key in the local file-backed KMS (see [`Options::kms_dir`]).
    LocalKms(String),
    /// Any other provider (for example AWS KMS), supplied by the application.
    Provider(SharedProvider),
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Create the database if the directory holds none (default true).
    pub create_if_missing: bool,
    /// Fail if a database already exists (default false).
    pub error_if_exists: bool,
    /// The master key for a new database.
    pub master_key: MasterKey,
    /// Where owned keys live; `None` = `$SEALDB_KEYSTORE` or the user's data directory. Must
    /// be outside the data directory.
    pub keystore_dir: Option<PathBuf>,
    /// Where the local KMS lives; `None` = `$SEALDB_KMS` or `kms/` beside the keystore.
    pub kms_dir: Option<PathBuf>,
    /// Extra providers the KEYS file may name (for example an AWS KMS key): consulted by
    /// descriptor when the database is opened.
    pub providers: Vec<SharedProvider>,
    /// The block cipher for a new database (`chacha20poly1305`, `aes256gcm` for CPUs with
    /// AES-NI, or `none` for baselines). An existing database keeps the cipher its KEYS file
    /// records. Which ChaCha20-Poly1305 implementation runs is `SEALDB_SEAL_BACKEND`
    /// (`fast`, the default with sealdb-crypto's `ring` feature, or `reference`).
    pub cipher: CipherId,
    /// Bytes of memtable after which it is frozen and a new one started.
    pub memtable_size: usize,
    /// Frozen memtables allowed to wait for flush before writers stall.
    pub max_immutable_memtables: usize,
    /// WAL segment size before rollover.
    pub wal_segment_size: u64,
    /// Bytes of decrypted blocks kept in memory (the cache never touches disk).
    pub block_cache_bytes: usize,
    /// Target plaintext size of a table's data block.
    pub block_size: usize,
    /// Bloom filter bits per key (0 disables filters).
    pub bloom_bits_per_key: u32,
    /// Compress table data blocks with LZ4 before sealing (see `docs/crypto.md` on the size
    /// side channel this opens).
    pub compression: Compression,
    /// Level-0 tables that trigger a compaction into level 1.
    pub l0_compaction_trigger: usize,
    /// Level-0 tables at which writers stall until compaction catches up.
    pub l0_stop_writes: usize,
    /// Target size of a table written by compaction.
    pub target_file_size: u64,
    /// Target total size of level 1; each deeper level is `level_size_ratio` times larger.
    pub level1_bytes: u64,
    /// Size ratio between adjacent levels.
    pub level_size_ratio: u64,
    /// Compaction write rate limit in bytes per second (0: unlimited): pacing that keeps
    /// background work from crowding foreground operations on small machines.
    pub compaction_rate_bytes_per_sec: u64,
    /// Told of every use of the master key (wrap, unwrap, check, refusal), for the
    /// application's audit trail.
    pub key_events: Option<KeyEventHook>,
    /// How often a running database re-verifies its master key with the provider (like
    /// DynamoDB's key cache); while the key is unusable, reads and writes fail with
    /// `KeyUnavailable`, and service resumes when it is usable again.
    pub key_check_interval: std::time::Duration,
    /// Rotate the data key automatically once the current version is this old.
    pub data_key_max_age: Option<std::time::Duration>,
    /// Keep a head record outside the data directory (in the keystore) naming the end of
    /// every chain — manifest position, KEYS generation, newest WAL segment and durable
    /// sequence, stream ends, clean shutdown — and refuse to open a data directory whose
    /// chains end earlier (a rollback, or a deleted or cut newest file). Default on.
    pub rollback_protection: bool,
    /// Accept a data directory older than its head record (a deliberate restore of an old
    /// copy); the head is reset to what was found.
    pub allow_rollback: bool,
    /// Open for reading only (like RocksDB's `OpenForReadOnly`): the WAL is replayed into
    /// memory, nothing on disk is written, created or deleted (no lock, no new WAL segment
    /// or manifest, no head update), and any number of read-only openers may run beside one
    /// writer. Writes, flushes, compactions and key changes fail with `Error::ReadOnly`.
    pub read_only: bool,
    /// Point-in-time recovery: keep WAL segments made obsolete by flushes (in
    /// `<db>/wal-archive/`) for this long (DynamoDB allows 1 to 35 days), so backups carry them
    /// and a restore can stop at any sequence number or time in the window.
    pub pitr_window: Option<std::time::Duration>,
    /// Closures for indexes defined with a custom extractor, by index name (they cannot be
    /// persisted, so the application registers them at every open).
    pub custom_extractors: Vec<NamedExtractor>,
    /// Run flushes and compactions on background threads (default). Off, they run only when
    /// asked (`flush`, `compact`), which deterministic tests use.
    pub background_work: bool,
    /// The filesystem (the real one, or a crashable one in tests).
    pub fs: SharedFs,
    /// The format version of a *new* database; `None` = [`FormatVersion::NEWEST`]. An
    /// existing database keeps the version its manifest records whatever this says (like
    /// pebble, nothing is upgraded implicitly): raise it with
    /// [`Db::ratchet_format`](crate::Db::ratchet_format). An older version keeps the
    /// database readable by older builds; see `docs/format.md`, "Format versions".
    pub format_version: Option<FormatVersion>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            create_if_missing: true,
            error_if_exists: false,
            master_key: MasterKey::Owned,
            keystore_dir: None,
            kms_dir: None,
            providers: Vec::new(),
            cipher: CipherId::ChaCha20Poly1305,
            memtable_size: 32 << 20,
            max_immutable_memtables: 4,
            wal_segment_size: 64 << 20,
            block_cache_bytes: 64 << 20,
            block_size: 4096,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            l0_compaction_trigger: 4,
            l0_stop_writes: 20,
            target_file_size: 32 << 20,
            level1_bytes: 128 << 20,
            level_size_ratio: 10,
            compaction_rate_bytes_per_sec: 0,
            background_work: true,
            custom_extractors: Vec::new(),
            pitr_window: None,
            key_events: None,
            key_check_interval: std::time::Duration::from_secs(300),
            data_key_max_age: None,
            rollback_protection: true,
            allow_rollback: false,
            read_only: false,
            fs: Arc::new(RealFs),
            format_version: None,
        }
    }
}

impl Options {
    /// The format version a new database gets.
    pub(crate) fn new_format_version(&self) -> FormatVersion {
        self.format_version.unwrap_or(FormatVersion::NEWEST)
    }

    /// The keystore directory in force: the option, else the environment/default.
    pub fn resolved_keystore_dir(&self) -> PathBuf {
        self.keystore_dir
            .clone()
            .unwrap_or_else(sealdb_crypto::default_keystore_dir)
    }

    /// The local KMS directory in force: the option, else `$SEALDB_KMS`, else `kms/` beside
    /// the keystore.
    pub fn resolved_kms_dir(&self) -> PathBuf {
        if let Some(d) = &self.kms_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("SEALDB_KMS").filter(|v| !v.is_empty()) {
            return PathBuf::from(d);
        }
        let ks = self.resolved_keystore_dir();
        match ks.parent() {
            Some(p) => p.join("kms"),
            None => PathBuf::from("kms"),
        }
    }
}

/// An application's extractor closure for the index of that name.
///
/// The closure runs on the commit path (for every write to the indexed keyspace, on the old
/// and the new value) and during backfill. If it panics, the panic is caught: the write (or
/// `create_index`) that needed it fails with `InvalidArgument` naming the index, the key and
/// the panic message, and every other writer goes on.
#[derive(Clone)]
pub struct NamedExtractor {
    /// The index name.
    pub index: String,
    /// `(primary key, value) -> index values`.
    pub extract: sealdb_index::ExtractFn,
}

impl std::fmt::Debug for NamedExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamedExtractor({})", self.index)
    }
}

/// Durability of one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Return only once the write is on durable media (`fdatasync` of the WAL). Without it the
    /// write is in the OS buffer: it survives a process crash but not a power cut.
    pub sync: bool,
}

impl WriteOptions {
    /// Synced writes.
    pub const SYNC: Self = Self { sync: true };
    /// Unsynced writes (the default).
    pub const NO_SYNC: Self = Self { sync: false };
}

/// A callback told of every use of the master key (wrap, unwrap, check, refusal). It must be
/// quick and must not call back into the database.
#[derive(Clone)]
pub struct KeyEventHook(pub Arc<dyn Fn(&KeyEvent) + Send + Sync>);

impl std::fmt::Debug for KeyEventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEventHook")
    }
}
