//! Verification of a whole database: every table, the WAL chain, the streams and their
//! consumers, the KEYS file and the statistics.

use super::context::JobContext;
use crate::version::table_error;
use crate::{Error, Result};
use parking_lot::Mutex;
use sealdb_crypto::{ArtifactKind, KeysFile};
use std::path::Path;

/// What `verify` checked, per kind of artifact, and every failure it found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files checked, all kinds together.
    pub files_checked: usize,
    /// Live tables (data and index keyspaces).
    pub tables: usize,
    /// Live WAL segments (`wal/`).
    pub wal_segments: usize,
    /// Archived WAL segments kept for point-in-time recovery (`wal-archive/`).
    pub archived_wal_segments: usize,
    /// Stream segments (`streams/<keyspace>/`).
    pub stream_segments: usize,
    /// Stream consumer-position files (`CONSUMERS`).
    pub consumer_files: usize,
    /// The live manifest and `CURRENT`.
    pub manifest_files: usize,
    /// The `KEYS` file.
    pub keys_files: usize,
    /// The lifetime statistics file (`STATS`), when there is one.
    pub stats_files: usize,
    /// Every failure found (each names its file and block).
    pub errors: Vec<Error>,
}

/// Authenticates every live artifact: every block of every table, the WAL and archived WAL
/// chains, every retained stream record and each `CONSUMERS` file, the manifest and
/// `CURRENT`, and `KEYS`; and checks that what is on disk is what this process wrote (the
/// manifest's edit count, `KEYS`' generation, the consumer positions).
pub(crate) fn verify(
    ctx: &JobContext<'_>,
    keys: &Mutex<KeysFile>,
    progress: &mut dyn FnMut(u64, u64),
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let version = ctx.versions.live();
    // One step per table, and a last one for everything else.
    let total = version
        .keyspaces
        .values()
        .flatten()
        .map(|level| level.len() as u64)
        .sum::<u64>()
        + 1;
    progress(0, total);
    for levels in version.keyspaces.values() {
        for level in levels {
            for t in level {
                report.tables += 1;
                report
                    .errors
                    .extend(t.table.verify().into_iter().map(table_error));
                progress(report.tables as u64, total);
            }
        }
    }
    let keyring = ctx.tables.keyring();
    {
        // Flushes move segments from the WAL into the archive and trim the archive: hold
        // them off while the chains are read. (A read-only handle cannot hold off another
        // process's writer: it retries instead.)
        let _flush = ctx.versions.lock_flushes();
        // Below the oldest segment this process knows of, a segment's absence is expected.
        let oldest = (!ctx.opts.read_only)
            .then(|| ctx.wal.segment_numbers().first().copied())
            .flatten();
        match with_retries(ctx, || {
            verify_wal_chain(ctx, ctx.wal.dir(), &keyring, oldest)
        }) {
            Ok(n) => report.wal_segments += n,
            Err(e) => report.errors.push(e),
        }
        let archive = ctx.tables.path.join(crate::pitr::ARCHIVE_DIR);
        if ctx.tables.fs.exists(&archive) {
            // Archive trimming removes its oldest segments: the chain starts at the oldest left.
            match with_retries(ctx, || verify_wal_chain(ctx, &archive, &keyring, None)) {
                Ok(n) => report.archived_wal_segments += n,
                Err(e) => report.errors.push(e),
            }
        }
    }
    let streams = ctx.streams.read().clone();
    for s in streams.values() {
        report.stream_segments += s.log.segment_paths().len();
        // Every retained record, read the way consumers read them.
        let mut at = sealdb_stream::StartAt::TrimHorizon;
        let mut restarts = 0;
        loop {
            match s.log.read(at, 4096, 4 << 20) {
                Ok(b) if b.records.is_empty() => break,
                Ok(b) => at = sealdb_stream::StartAt::At(b.next),
                // Retention trimmed the records being read: the rest is still checked.
                Err(sealdb_stream::Error::Trimmed { .. }) if restarts < 3 => {
                    restarts += 1;
                    at = sealdb_stream::StartAt::TrimHorizon;
                }
                Err(e) => {
                    report.errors.push(crate::streams::stream_err(e));
                    break;
                }
            }
        }
        let path = s.dir.join(sealdb_stream::POSITIONS_FILE);
        if ctx.tables.fs.exists(&path) {
            report.consumer_files += 1;
            if let Err(e) = with_retries(ctx, || verify_consumers(ctx, s, &keyring)) {
                report.errors.push(e);
            }
        }
    }
    report.manifest_files += 2;
    if let Err(e) = with_retries(ctx, || ctx.versions.manifest().verify_on_disk(&keyring)) {
        report.errors.push(e);
    }
    report.keys_files += 1;
    if let Err(e) = with_retries(ctx, || {
        // Key operations rewrite KEYS under this lock.
        let keys = keys.lock();
        verify_keys_file(ctx, &keyring, keys.generation())
    }) {
        report.errors.push(e);
    }
    // Opening tolerates a bad STATS (it is only counters); verify still names it.
    if ctx
        .tables
        .fs
        .exists(&ctx.tables.path.join(crate::lifestats::STATS_FILE))
    {
        report.stats_files += 1;
        if let Err(e) = with_retries(ctx, || {
            crate::lifestats::verify(ctx.tables.fs.as_ref(), ctx.tables.path, &keyring)
        }) {
            report.errors.push(e);
        }
    }
    report.files_checked = report.tables
        + report.wal_segments
        + report.archived_wal_segments
        + report.stream_segments
        + report.consumer_files
        + report.manifest_files
        + report.keys_files
        + report.stats_files;
    progress(total, total);
    report
}

/// Runs a check of files a writer may be changing: once for a writable handle (this process
/// is the writer and holds it off), a few times for a read-only one, whose view can be
/// overtaken by another process's writer between listing and reading.
fn with_retries<T>(ctx: &JobContext<'_>, mut check: impl FnMut() -> Result<T>) -> Result<T> {
    let attempts = if ctx.opts.read_only { 4 } else { 1 };
    let mut attempt = 1;
    loop {
        match check() {
            Err(e) if attempt < attempts && crate::state::retry_read_only(&e) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Reads the WAL chain in `dir` the way recovery does, from segment `oldest` (or the oldest
/// present): every frame authenticates, each segment ends where its successor says it does
/// (a segment closed by a recovery may end without an end frame), and only the newest may
/// end in a partial block. Returns how many segments it read.
fn verify_wal_chain(
    ctx: &JobContext<'_>,
    dir: &Path,
    keyring: &sealdb_crypto::Keyring,
    oldest: Option<u64>,
) -> Result<usize> {
    let oldest = match oldest {
        Some(n) => n,
        None => crate::pitr::numbered(ctx.tables.fs, dir)?
            .first()
            .map_or(0, |(n, _)| *n),
    };
    let opts = sealdb_wal::WalOptions {
        segment_size: ctx.opts.wal_segment_size,
        cipher: ctx.tables.cipher,
    };
    let stats =
        sealdb_wal::Wal::replay_read_only(ctx.tables.fs, dir, keyring, opts, oldest, &mut |_| {
            Ok(())
        })?;
    Ok(stats.segments)
}

/// A stream's `CONSUMERS` file authenticates; for a writable handle it must also hold the
/// positions last committed (no commit runs while they are locked).
fn verify_consumers(
    ctx: &JobContext<'_>,
    s: &crate::streams::LiveStream,
    keyring: &sealdb_crypto::Keyring,
) -> Result<()> {
    let path = s.dir.join(sealdb_stream::POSITIONS_FILE);
    if ctx.opts.read_only {
        // Loading would also remove a writer's in-flight temporary file: only authenticate.
        sealdb_crypto::sealed::read_small_sealed_file(
            ctx.tables.fs.as_ref(),
            &path,
            keyring,
            ArtifactKind::Meta,
        )?;
        return Ok(());
    }
    let positions = s.positions.lock();
    let on_disk = sealdb_stream::ConsumerPositions::load(
        ctx.tables.fs.as_ref(),
        &s.dir,
        keyring,
        positions.stream(),
        Some(positions.generation()),
    )
    .map_err(crate::streams::stream_err)?;
    if on_disk != *positions {
        return Err(Error::corruption(format!(
            "{} does not hold the consumer positions last committed",
            path.display()
        )));
    }
    Ok(())
}

/// `KEYS` authenticates under the data key it names and is the generation this handle wrote
/// or read (not an older copy put back; a read-only handle accepts a newer one, written by
/// the writer since).
fn verify_keys_file(
    ctx: &JobContext<'_>,
    keyring: &sealdb_crypto::Keyring,
    generation: u64,
) -> Result<()> {
    let path = ctx
        .tables
        .path
        .join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    let payload = sealdb_crypto::sealed::read_small_sealed_file(
        ctx.tables.fs.as_ref(),
        &path,
        keyring,
        ArtifactKind::Keys,
    )?;
    let found = sealdb_crypto::KeysFile::decode_payload_untrusted(&payload)?;
    if found < generation || (found > generation && !ctx.opts.read_only) {
        return Err(Error::corruption(format!(
            "{} is at generation {found}, but this database wrote generation {generation}",
            path.display()
        )));
    }
    Ok(())
}
