//! Cumulative statistics kept across opens in the sealed `STATS` file.
//!
//! The engine's counters ([`crate::Stats`]) start at zero in every process, so a command-line
//! program that opens, writes one batch and closes would always report "0 batches". The
//! counters of every earlier session are kept in `<db>/STATS` (format in docs/format.md):
//! read when the database opens, rewritten with this session's work added when a writable
//! handle closes cleanly (and before `keys reencrypt` decides which data keys are in use).
//!
//! They are statistics, not data: a missing `STATS` (a new, restored or older database) counts
//! from zero, and so does one that does not authenticate or parse — nothing else depends on
//! it, and refusing to open a database over its counters would help nobody; `verify` reports
//! such a file as an integrity failure. A crash loses the counts since the last clean close.

use sealdb_base::{DecodeError, PutBytes, Reader};
use sealdb_crypto::Keyring;
use sealdb_crypto::sealed::ArtifactKind;
use sealdb_vfs::FileSystem;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The live counters, bumped by the write path and the background jobs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub user_bytes: AtomicU64,
    pub commit_groups: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub rotations: AtomicU64,
    pub stalls: AtomicU64,
    pub stall_nanos: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_read_bytes: AtomicU64,
    pub compaction_write_bytes: AtomicU64,
}

/// The file's name in the database directory.
pub(crate) const STATS_FILE: &str = "STATS";

/// The payload's first eight bytes.
const MAGIC: &[u8; 8] = b"SDBSTATS";

/// The payload's format version.
const VERSION: u32 = 1;

/// How many counters version 1 stores (the order of [`Lifetime::to_array`]).
const COUNTERS: usize = 13;

/// Counters over the database's whole life: every earlier session's (from `STATS`) plus this
/// process's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CumulativeStats {
    /// Write batches committed.
    pub batches: u64,
    /// Records (puts and deletes) committed.
    pub records: u64,
    /// Bytes of keys and values written by users.
    pub user_bytes: u64,
    /// Commit groups (WAL appends).
    pub commit_groups: u64,
    /// WAL syncs.
    pub wal_syncs: u64,
    /// Memtable rotations.
    pub memtable_rotations: u64,
    /// Writes that had to wait for a flush or compaction.
    pub write_stalls: u64,
    /// Time writers spent stalled.
    pub write_stall_time: Duration,
    /// Flushes.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes: u64,
    /// Compactions.
    pub compactions: u64,
    /// Bytes read by compactions.
    pub compaction_read_bytes: u64,
    /// Bytes written by compactions.
    pub compaction_write_bytes: u64,
}

/// The counters as the file stores them, in file order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lifetime([u64; COUNTERS]);

impl Lifetime {
    /// A snapshot of this process's counters.
    pub(crate) fn of(c: &Counters) -> Self {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Self([
            l(&c.batches),
            l(&c.records),
            l(&c.user_bytes),
            l(&c.commit_groups),
            l(&c.wal_syncs),
            l(&c.rotations),
            l(&c.stalls),
            l(&c.stall_nanos),
            l(&c.flushes),
            l(&c.flush_bytes),
            l(&c.compactions),
            l(&c.compaction_read_bytes),
            l(&c.compaction_write_bytes),
        ])
    }

    /// Element-wise sum (saturating: a counter pinned at the maximum beats a wrapped one).
    pub(crate) fn plus(self, other: Self) -> Self {
        let mut out = self.0;
        for (o, b) in out.iter_mut().zip(other.0) {
            *o = o.saturating_add(b);
        }
        Self(out)
    }

    /// The public form.
    pub(crate) fn to_stats(self) -> CumulativeStats {
        let [
            batches,
            records,
            user_bytes,
            commit_groups,
            wal_syncs,
            memtable_rotations,
            write_stalls,
            stall_nanos,
            flushes,
            flush_bytes,
            compactions,
            compaction_read_bytes,
            compaction_write_bytes,
        ] = self.0;
        CumulativeStats {
            batches,
            records,
            user_bytes,
            commit_groups,
            wal_syncs,
            memtable_rotations,
            write_stalls,
            write_stall_time: Duration::from_nanos(stall_nanos),
            flushes,
            flush_bytes,
            compactions,
            compaction_read_bytes,
            compaction_write_bytes,
        }
    }

    /// The file's payload: magic, version, counter count, then the counters, little-endian.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * COUNTERS);
        out.put_raw(MAGIC).put_u32(VERSION).put_u32(COUNTERS as u32);
        for c in self.0 {
            out.put_u64(c);
        }
        out
    }

    /// Reads a payload. A later version may store more counters: the known ones are taken
    /// and the rest ignored; fewer than known leaves the missing ones at zero. An error names
    /// what makes it not a stats payload at all.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<8>("magic")? != *MAGIC {
            return Err(r.invalid("magic", "not SDBSTATS"));
        }
        if r.u32("version")? == 0 {
            return Err(r.invalid("version", "0 is not a version"));
        }
        let n = r.u32("counter count")?;
        if u64::from(n) * 8 != r.remaining() as u64 {
            return Err(r.invalid(
                "counter count",
                format!("{n} counters in {} bytes", r.remaining()),
            ));
        }
        let mut out = [0u64; COUNTERS];
        for i in 0..n as usize {
            let c = r.u64("counter")?;
            if let Some(slot) = out.get_mut(i) {
                *slot = c;
            }
        }
        r.finish("statistics payload")?;
        Ok(Self(out))
    }
}

/// The counters of earlier sessions; zero when there is no readable `STATS` (see the module
/// documentation for why that is not an error).
pub(crate) fn load(fs: &dyn FileSystem, dir: &Path, keyring: &Keyring) -> Lifetime {
    let path = dir.join(STATS_FILE);
    if !fs.exists(&path) {
        return Lifetime::default();
    }
    sealdb_crypto::sealed::read_small_sealed_file(fs, &path, keyring, ArtifactKind::Meta)
        .ok()
        .and_then(|p| Lifetime::decode(&p).ok())
        .unwrap_or_default()
}

/// Authenticates `STATS` and checks its payload (for `verify`): an integrity error naming the
/// file when either fails.
pub(crate) fn verify(fs: &dyn FileSystem, dir: &Path, keyring: &Keyring) -> crate::Result<()> {
    let path = dir.join(STATS_FILE);
    let payload =
        sealdb_crypto::sealed::read_small_sealed_file(fs, &path, keyring, ArtifactKind::Meta)?;
    match Lifetime::decode(&payload) {
        Ok(_) => Ok(()),
        Err(e) => Err(
            crate::Error::corruption(format!("not a statistics payload: {e}"))
                .in_file(&path)
                .caused_by(e),
        ),
    }
}

/// Replaces `STATS` atomically with `total`, sealed under the current data key.
pub(crate) fn store(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
    total: Lifetime,
) -> crate::Result<()> {
    sealdb_crypto::sealed::write_small_sealed_file(
        fs,
        &dir.join(STATS_FILE),
        keyring,
        ArtifactKind::Meta,
        &total.encode(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_tolerates_other_counter_counts() {
        let mut a = [0u64; COUNTERS];
        for (i, c) in a.iter_mut().enumerate() {
            *c = (i as u64 + 1) * 1_000_000_007;
        }
        let l = Lifetime(a);
        assert_eq!(Lifetime::decode(&l.encode()), Ok(l));
        // A future version with one more counter: the known ones are read.
        let mut longer = l.encode();
        longer[12..16].copy_from_slice(&(COUNTERS as u32 + 1).to_le_bytes());
        longer.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(Lifetime::decode(&longer), Ok(l));
        // Fewer counters: the rest are zero.
        let mut shorter = l.encode();
        shorter[12..16].copy_from_slice(&2u32.to_le_bytes());
        shorter.truncate(16 + 16);
        let s = Lifetime::decode(&shorter).expect("decodes");
        assert_eq!(s.0[1], a[1]);
        assert_eq!(s.0[2], 0);
        // Not a stats payload, or a count that disagrees with the length.
        assert!(Lifetime::decode(b"SDBHEAD\0....").is_err_and(|e| e.what == "magic"));
        let mut bad = l.encode();
        bad.pop();
        assert!(Lifetime::decode(&bad).is_err_and(|e| e.what == "counter count"));
    }

    #[test]
    fn sums_saturate() {
        let a = Lifetime([u64::MAX; COUNTERS]);
        let b = Lifetime([1; COUNTERS]);
        assert_eq!(a.plus(b), a);
        assert_eq!(b.plus(b).to_stats().batches, 2);
    }
}
