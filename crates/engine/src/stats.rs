//! What the engine reports: the public statistics types ([`Stats`], [`OpenStats`],
//! [`LevelStats`]), read from the live counters of `lifestats`.

use sealdb_wal::RecoveryStats;
use std::time::Duration;

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Whether this open created the database.
    pub created: bool,
    /// WAL recovery: segments, batches and records replayed, and any torn tail cut off.
    pub wal: RecoveryStats,
    /// What the chain ends were checked against: a head record, a legacy rollback counter,
    /// or nothing (trusted as found — a new database, or a first open at this path).
    pub head: crate::head::HeadOrigin,
}

/// Counters of the engine's work since open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write batches committed.
    pub batches: u64,
    /// Records (puts and deletes) committed.
    pub records: u64,
    /// Commit groups (WAL frames) written: `batches / groups` is the group-commit factor.
    pub commit_groups: u64,
    /// Writers queued for commit right now, behind the group being written (a gauge, not a
    /// counter).
    pub commit_queue: u64,
    /// WAL syncs (`fdatasync`) performed.
    pub wal_syncs: u64,
    /// Memtable rotations.
    pub memtable_rotations: u64,
    /// Writes that had to wait for memtable space (back-pressure).
    pub write_stalls: u64,
    /// Total time writers spent stalled.
    pub write_stall_time: Duration,
    /// Bytes in the active memtable.
    pub active_memtable_bytes: u64,
    /// Frozen memtables awaiting flush.
    pub immutable_memtables: u64,
    /// Bytes in frozen memtables.
    pub immutable_memtable_bytes: u64,
    /// The newest visible sequence number.
    pub last_sequence: u64,
    /// The counters over the database's whole life (earlier sessions' from the sealed
    /// `STATS` file, plus this process's), where the fields above count since open.
    pub cumulative: crate::CumulativeStats,
    /// Per level (summed over keyspaces): table count and bytes.
    pub levels: Vec<LevelStats>,
    /// Block cache hits and misses.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
    /// Memtable flushes and the table bytes they wrote.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Bytes compactions read.
    pub compaction_read_bytes: u64,
    /// Bytes compactions wrote.
    pub compaction_write_bytes: u64,
    /// Bytes of records committed by users (keys, values, framing).
    pub user_bytes: u64,
}

/// The tables of one level (or of one keyspace, from [`Keyspace::table_stats`](crate::Keyspace::table_stats)): count and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Tables.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Stats {
    /// Block cache hit ratio (0 when unused).
    pub fn cache_hit_ratio(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }

    /// Table bytes written (flush plus compaction) per byte committed: the write
    /// amplification of the tree (the WAL adds about one more).
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes == 0 {
            0.0
        } else {
            (self.flush_bytes + self.compaction_write_bytes) as f64 / self.user_bytes as f64
        }
    }
}
