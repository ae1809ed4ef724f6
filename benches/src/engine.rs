//! The engines under test behind one trait: sealdb encrypted, sealdb plaintext (`none`
//! cipher), and — behind the `fjall` and `rocksdb` cargo features — the peers people would
//! pick instead. Every engine is configured alike (see `docs/benchmarks.md`, "Comparable
//! settings"): the same block-cache budget, 32 MiB memtables, 4 KiB data blocks, bloom filters
//! at 10 bits per key, index and filter blocks held outside the block cache, compression off,
//! the write-ahead log on, and a synced write meaning one `fdatasync` of that log before the
//! call returns.

use std::path::{Path, PathBuf};

/// Errors from any engine, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Results of engine calls.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// Memtable size used for every engine.
pub const MEMTABLE_BYTES: usize = 32 << 20;
/// Data block size used for every engine.
pub const BLOCK_BYTES: usize = 4096;
/// Bloom filter bits per key used for every engine.
pub const BLOOM_BITS_PER_KEY: u32 = 10;

/// An engine the harness can drive. All methods may be called from several threads at once.
pub trait Engine: Send + Sync {
    /// One put; `sync` returns only after the write-ahead log is `fdatasync`ed.
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()>;
    /// Many puts as one atomic, unsynced batch (the load phase).
    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;
    /// A point read; the value's length if the key is present. Engines return the value the
    /// way their users get it (an owned copy, a shared slice, a pinned slice).
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;
    /// Seeks to `start` and reads up to `n` entries in order, touching every key and value;
    /// returns the entries read.
    fn scan(&self, start: &[u8], n: usize) -> Result<usize>;
    /// Writes every memtable out to tables and waits for it.
    fn flush(&self) -> Result<()>;
    /// Flushes, then compacts everything into the last level and waits for it.
    fn compact(&self) -> Result<()>;
    /// Write amplification as the engine itself reports it, if it does.
    fn engine_write_amp(&self) -> Option<f64> {
        None
    }
    /// A one-line description of the engine's internal state, for stderr.
    fn describe(&self) -> String {
        String::new()
    }
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// sealdb with ChaCha20-Poly1305 (the product).
    SealdbChacha,
    /// sealdb with AES-256-GCM (cipher id 2): the cipher-agility alternative on AES-NI CPUs.
    SealdbAes,
    /// sealdb with the `none` cipher: identical framing, crc32 instead of the tag.
    SealdbNone,
    /// fjall 3 (feature `fjall`).
    Fjall,
    /// RocksDB through the `rocksdb` crate (feature `rocksdb`).
    Rocksdb,
}

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Block cache budget in bytes.
    pub cache_bytes: usize,
    /// Keystore directory for sealdb's owned master key (outside every data directory).
    pub keystore: PathBuf,
}

impl EngineKind {
    /// Every engine, compiled in or not, in table order.
    pub const ALL: [EngineKind; 5] = [
        EngineKind::SealdbChacha,
        EngineKind::SealdbAes,
        EngineKind::SealdbNone,
        EngineKind::Fjall,
        EngineKind::Rocksdb,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::SealdbChacha => "sealdb-chacha",
            Self::SealdbAes => "sealdb-aes",
            Self::SealdbNone => "sealdb-none",
            Self::Fjall => "fjall",
            Self::Rocksdb => "rocksdb",
        }
    }

    /// Parses a name given by [`EngineKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether this build includes the engine (peers need their cargo feature).
    pub fn compiled_in(self) -> bool {
        match self {
            Self::SealdbChacha | Self::SealdbAes | Self::SealdbNone => true,
            Self::Fjall => cfg!(feature = "fjall"),
            Self::Rocksdb => cfg!(feature = "rocksdb"),
        }
    }

    /// The cargo feature that compiles the engine in, if one is needed.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Self::SealdbChacha | Self::SealdbAes | Self::SealdbNone => None,
            Self::Fjall => Some("fjall"),
            Self::Rocksdb => Some("rocksdb"),
        }
    }

    /// Opens (creating if needed) the engine's database in `dir`.
    pub fn open(self, dir: &Path, cfg: &EngineConfig) -> Result<Box<dyn Engine>> {
        match self {
            Self::SealdbChacha => Ok(Box::new(SealEngine::open(
                dir,
                cfg,
                sealdb::CipherId::ChaCha20Poly1305,
            )?)),
            Self::SealdbAes => Ok(Box::new(SealEngine::open(
                dir,
                cfg,
                sealdb::CipherId::Aes256Gcm,
            )?)),
            Self::SealdbNone => Ok(Box::new(SealEngine::open(
                dir,
                cfg,
                sealdb::CipherId::None,
            )?)),
            #[cfg(feature = "fjall")]
            Self::Fjall => Ok(Box::new(peers::FjallEngine::open(dir, cfg)?)),
            #[cfg(feature = "rocksdb")]
            Self::Rocksdb => Ok(Box::new(peers::RocksEngine::open(dir, cfg)?)),
            #[allow(unreachable_patterns, reason = "reachable when a peer feature is off")]
            other => Err(format!(
                "engine {} is not compiled in: build with --features {}",
                other.name(),
                other.feature().unwrap_or("?")
            )
            .into()),
        }
    }
}

/// sealdb, encrypted or plaintext.
pub struct SealEngine {
    db: sealdb::Db,
    ks: sealdb::Keyspace,
}

impl SealEngine {
    /// Opens sealdb in `dir` with `cipher` (used only when the database is created).
    pub fn open(dir: &Path, cfg: &EngineConfig, cipher: sealdb::CipherId) -> Result<Self> {
        let opts = sealdb::Options {
            cipher,
            keystore_dir: Some(cfg.keystore.clone()),
            block_cache_bytes: cfg.cache_bytes,
            memtable_size: MEMTABLE_BYTES,
            block_size: BLOCK_BYTES,
            bloom_bits_per_key: BLOOM_BITS_PER_KEY,
            compression: sealdb::Compression::None,
            ..sealdb::Options::default()
        };
        let db = sealdb::Db::open(dir, opts)?;
        let ks = db.default_keyspace();
        Ok(Self { db, ks })
    }

    /// The database (for statistics).
    pub fn db(&self) -> &sealdb::Db {
        &self.db
    }
}

impl Engine for SealEngine {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        Ok(self.ks.put_opt(key, value, sealdb::WriteOptions { sync })?)
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = sealdb::WriteBatch::new();
        for (k, v) in pairs {
            batch.put(&self.ks, k, v)?;
        }
        self.db.write(batch, sealdb::WriteOptions::NO_SYNC)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| v.len()))
    }

    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let iter = self.ks.range(start..)?;
        let mut count = 0;
        for kv in iter.take(n) {
            let (k, v) = kv?;
            std::hint::black_box((k.len(), v.len()));
            count += 1;
        }
        Ok(count)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush()?)
    }

    fn compact(&self) -> Result<()> {
        Ok(self.db.compact()?)
    }

    fn engine_write_amp(&self) -> Option<f64> {
        Some(self.db.stats().write_amplification())
    }

    fn describe(&self) -> String {
        let s = self.db.stats();
        let levels: Vec<String> = s.levels.iter().map(|l| l.files.to_string()).collect();
        format!(
            "files per level [{}], batches {} in {} commit groups ({:.2} per group), stalls {} ({:?}), flushes {}, compactions {}, cache hit ratio {:.3}, write amp {:.2}",
            levels.join(","),
            s.batches,
            s.commit_groups,
            s.batches as f64 / s.commit_groups.max(1) as f64,
            s.write_stalls,
            s.write_stall_time,
            s.flushes,
            s.compactions,
            s.cache_hit_ratio(),
            s.write_amplification()
        )
    }
}

#[cfg(any(feature = "fjall", feature = "rocksdb"))]
mod peers {
    use super::{BLOCK_BYTES, BLOOM_BITS_PER_KEY, Engine, EngineConfig, MEMTABLE_BYTES, Result};
    use std::path::Path;

    /// fjall 3: one keyspace in one database.
    #[cfg(feature = "fjall")]
    pub struct FjallEngine {
        db: fjall::Database,
        ks: fjall::Keyspace,
    }

    #[cfg(feature = "fjall")]
    impl FjallEngine {
        pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
            use fjall::config::{
                BlockSizePolicy, BloomConstructionPolicy, CompressionPolicy, FilterPolicy,
                FilterPolicyEntry, PinningPolicy,
            };
            let db = fjall::Database::builder(dir)
                .cache_size(cfg.cache_bytes as u64)
                .open()?;
            let ks = db.keyspace("bench", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES as u64)
                    .data_block_size_policy(BlockSizePolicy::all(BLOCK_BYTES as u32))
                    .data_block_compression_policy(CompressionPolicy::all(
                        fjall::CompressionType::None,
                    ))
                    .index_block_compression_policy(CompressionPolicy::all(
                        fjall::CompressionType::None,
                    ))
                    .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(
                        BloomConstructionPolicy::BitsPerKey(BLOOM_BITS_PER_KEY as f32),
                    )))
                    // Index and filter blocks live outside the block cache, as in sealdb
                    // and in RocksDB's default, so "cache cold" means the same for all.
                    .index_block_pinning_policy(PinningPolicy::all(true))
                    .filter_block_pinning_policy(PinningPolicy::all(true))
            })?;
            Ok(Self { db, ks })
        }
    }

    #[cfg(feature = "fjall")]
    impl Engine for FjallEngine {
        fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
            // The insert reaches the journal's OS buffer before it returns
            // (`manual_journal_persist` is off); a synced write then `fdatasync`s it.
            self.ks.insert(key, value)?;
            if sync {
                self.db.persist(fjall::PersistMode::SyncData)?;
            }
            Ok(())
        }

        fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
            let mut batch = self.db.batch();
            for (k, v) in pairs {
                batch.insert(&self.ks, k.as_slice(), v.as_slice());
            }
            batch.commit()?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.ks.get(key)?.map(|v| v.len()))
        }

        fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
            let mut count = 0;
            for guard in self.ks.range(start..).take(n) {
                let (k, v) = guard.into_inner()?;
                std::hint::black_box((k.len(), v.len()));
                count += 1;
            }
            Ok(count)
        }

        fn flush(&self) -> Result<()> {
            self.ks.rotate_memtable_and_wait()?;
            Ok(())
        }

        fn compact(&self) -> Result<()> {
            self.flush()?;
            self.ks.major_compact()?;
            Ok(())
        }

        fn describe(&self) -> String {
            format!(
                "tables {}, L0 tables {}, compactions {}, time compacting {:?}",
                self.ks.table_count(),
                self.ks.l0_table_count(),
                self.db.compactions_completed(),
                self.db.time_compacting()
            )
        }
    }

    /// RocksDB through the `rocksdb` crate: the default column family.
    #[cfg(feature = "rocksdb")]
    pub struct RocksEngine {
        db: rocksdb::DB,
        sync: rocksdb::WriteOptions,
        nosync: rocksdb::WriteOptions,
    }

    #[cfg(feature = "rocksdb")]
    impl RocksEngine {
        pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
            use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.set_compression_type(DBCompressionType::None);
            opts.set_bottommost_compression_type(DBCompressionType::None);
            opts.set_write_buffer_size(MEMTABLE_BYTES);
            let mut table = BlockBasedOptions::default();
            let cache = Cache::new_lru_cache(cfg.cache_bytes);
            table.set_block_cache(&cache);
            table.set_block_size(BLOCK_BYTES);
            table.set_bloom_filter(f64::from(BLOOM_BITS_PER_KEY), false);
            // Default: index and filter blocks are held by the table readers, outside the
            // block cache (as in sealdb).
            table.set_cache_index_and_filter_blocks(false);
            opts.set_block_based_table_factory(&table);
            let db = rocksdb::DB::open(&opts, dir)?;
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            let nosync = rocksdb::WriteOptions::default();
            Ok(Self { db, sync, nosync })
        }
    }

    #[cfg(feature = "rocksdb")]
    impl Engine for RocksEngine {
        fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
            let wo = if sync { &self.sync } else { &self.nosync };
            self.db.put_opt(key, value, wo)?;
            Ok(())
        }

        fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
            let mut batch = rocksdb::WriteBatch::default();
            for (k, v) in pairs {
                batch.put(k, v);
            }
            self.db.write_opt(batch, &self.nosync)?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get_pinned(key)?.map(|v| v.len()))
        }

        fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
            let mut it = self.db.raw_iterator();
            it.seek(start);
            let mut count = 0;
            while count < n && it.valid() {
                if let (Some(k), Some(v)) = (it.key(), it.value()) {
                    std::hint::black_box((k.len(), v.len()));
                }
                count += 1;
                it.next();
            }
            it.status()?;
            Ok(count)
        }

        fn flush(&self) -> Result<()> {
            self.db.flush()?;
            Ok(())
        }

        fn compact(&self) -> Result<()> {
            self.db.flush()?;
            self.db.compact_range::<&[u8], &[u8]>(None, None);
            Ok(())
        }

        fn describe(&self) -> String {
            let files: Vec<String> = (0..7)
                .map(|l| {
                    self.db
                        .property_value(format!("rocksdb.num-files-at-level{l}").as_str())
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "?".into())
                })
                .collect();
            format!("files per level [{}]", files.join(","))
        }
    }
}

/// Disk space taken by the files under `dir` (recursively), in bytes: allocated blocks on
/// unix (what `du` reports, so preallocated-but-sparse journals count only what they use),
/// file lengths elsewhere.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&e.path()),
            Ok(m) => total += file_bytes(&m),
            Err(_) => {}
        }
    }
    total
}

#[cfg(unix)]
fn file_bytes(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks() * 512
}

#[cfg(not(unix))]
fn file_bytes(m: &std::fs::Metadata) -> u64 {
    m.len()
}

/// Bytes this process has passed to `write`-family system calls so far (`wchar` in
/// `/proc/self/io`), on Linux; `None` elsewhere. Engine-agnostic write amplification is the
/// change in this over a run divided by the user bytes written (nothing else in the harness
/// writes much while it runs).
pub fn process_write_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/io").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(kind: EngineKind) {
        let dir = tempfile::tempdir().expect("tempdir");
        let keystore = tempfile::tempdir().expect("keystore");
        let cfg = EngineConfig {
            cache_bytes: 1 << 20,
            keystore: keystore.path().to_path_buf(),
        };
        let e = kind.open(&dir.path().join("db"), &cfg).expect("open");
        e.put(b"k1", b"v1", false).expect("put");
        e.put(b"k2", b"value2", true).expect("synced put");
        let pairs: Vec<_> = (0..100u32)
            .map(|i| (format!("b{i:03}").into_bytes(), vec![7u8; 10]))
            .collect();
        e.put_batch(&pairs).expect("batch");
        assert_eq!(e.get(b"k1").expect("get"), Some(2));
        assert_eq!(e.get(b"k2").expect("get"), Some(6));
        assert_eq!(e.get(b"nope").expect("get"), None);
        assert_eq!(e.scan(b"b050", 10).expect("scan"), 10);
        assert_eq!(e.scan(b"b095", 100).expect("scan"), 5 + 2);
        e.flush().expect("flush");
        e.compact().expect("compact");
        assert_eq!(e.get(b"b099").expect("get"), Some(10));
        assert_eq!(e.scan(b"", 1000).expect("scan"), 102);
        drop(e);
        // Reopens and still finds everything.
        let e = kind.open(&dir.path().join("db"), &cfg).expect("reopen");
        assert_eq!(e.get(b"k2").expect("get"), Some(6));
        assert!(dir_size(&dir.path().join("db")) > 0);
    }

    #[test]
    fn every_compiled_engine_round_trips() {
        for kind in EngineKind::ALL {
            if kind.compiled_in() {
                roundtrip(kind);
            } else {
                assert!(
                    kind.open(
                        Path::new("/nonexistent"),
                        &EngineConfig {
                            cache_bytes: 0,
                            keystore: PathBuf::new(),
                        }
                    )
                    .is_err()
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in EngineKind::ALL {
            assert_eq!(EngineKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EngineKind::from_name("leveldb"), None);
    }
}
