//! Crash test in the manner of RocksDB's `db_crashtest.py` and sled's crash tests: a child
//! process writes batches until it is killed with SIGKILL at a random moment; the parent
//! reopens the database and checks what survived. Repeated for many rounds on the same
//! database, so kills land during commits, group syncs, memtable flushes, compactions,
//! manifest switches and WAL recovery itself.
//!
//! ```text
//! sealdb-crashkill parent --rounds 200
//! ```
//!
//! What the child writes: batch `b` puts `--batch-keys` keys `b/<b>/<i>` (one set per batch)
//! and overwrites the same number of shared keys `s/<i>`, every value encoding `(b, i)`. About
//! one batch in four is synced; after each synced batch is acknowledged the child appends `b`
//! to the `acked` file and fsyncs it.
//!
//! What the parent checks after every kill:
//! - every acknowledged synced batch is fully present (durability);
//! - every batch is wholly present or wholly absent, and the shared keys all carry the same,
//!   newest batch number (atomicity, across overwrites, flushes and compactions);
//! - the batches present are exactly `1..=M` with no holes: a process kill loses nothing that
//!   reached the OS, so an acknowledged unsynced batch must survive too;
//! - `Db::verify()` authenticates every block of every live file without an error.
//!
//! Any failure is printed and the exit status is 1.

use clap::{Parser, Subcommand};
use sealdb::{Db, Options, WriteBatch, WriteOptions};
use sealdb_benches::rng::Rng;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(about = "sealdb crash test: SIGKILL a writing child at random, reopen, check")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Kill-and-check rounds (spawns `child` each round).
    Parent {
        /// Rounds (one kill each).
        #[arg(long, default_value_t = 200)]
        rounds: u32,
        /// Work directory (a fresh temporary directory by default; kept on failure).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keys per batch (and shared keys overwritten by every batch).
        #[arg(long, default_value_t = 8)]
        batch_keys: u32,
        /// Shortest time before the kill, milliseconds.
        #[arg(long, default_value_t = 50)]
        min_ms: u64,
        /// Longest time before the kill, milliseconds.
        #[arg(long, default_value_t = 800)]
        max_ms: u64,
    },
    /// Writes batches until killed (started by `parent`).
    Child {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        keystore: PathBuf,
        #[arg(long)]
        acked: PathBuf,
        /// First batch number to write.
        #[arg(long)]
        start_batch: u64,
        #[arg(long)]
        batch_keys: u32,
        #[arg(long)]
        seed: u64,
    },
}

/// Small memtables and tables, so that flushes and compactions run all the time and the kills
/// land in them too.
fn options(keystore: &Path) -> Options {
    Options {
        keystore_dir: Some(keystore.to_path_buf()),
        memtable_size: 256 << 10,
        target_file_size: 1 << 20,
        level1_bytes: 4 << 20,
        l0_compaction_trigger: 2,
        wal_segment_size: 1 << 20,
        block_cache_bytes: 4 << 20,
        ..Options::default()
    }
}

const VALUE_LEN: usize = 64;

fn value(batch: u64, i: u32) -> Vec<u8> {
    let mut v = format!("{batch}:{i}:").into_bytes();
    v.resize(VALUE_LEN, b'.');
    v
}

fn parse_value(v: &[u8]) -> Option<(u64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut parts = s.split(':');
    let b = parts.next()?.parse().ok()?;
    let i = parts.next()?.parse().ok()?;
    Some((b, i))
}

fn batch_key(batch: u64, i: u32) -> Vec<u8> {
    format!("b/{batch:012}/{i:04}").into_bytes()
}

fn shared_key(i: u32) -> Vec<u8> {
    format!("s/{i:04}").into_bytes()
}

fn child(
    db: &Path,
    keystore: &Path,
    acked: &Path,
    start: u64,
    batch_keys: u32,
    seed: u64,
) -> Result<()> {
    let db = Db::open(db, options(keystore))?;
    let ks = db.default_keyspace();
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acked)?;
    let mut rng = Rng::new(seed);
    for b in start.. {
        let mut batch = WriteBatch::new();
        for i in 0..batch_keys {
            batch.put(&ks, batch_key(b, i), value(b, i))?;
            batch.put(&ks, shared_key(i), value(b, i))?;
        }
        let sync = rng.below(4) == 0;
        db.write(batch, WriteOptions { sync })?;
        if sync {
            // One write call per line, so a kill cannot leave half a number followed by the
            // next round's line.
            acked.write_all(format!("{b}\n").as_bytes())?;
            acked.sync_data()?;
        }
    }
    Ok(())
}

/// What one reopen found.
#[derive(Debug, Default)]
struct Check {
    max_batch: u64,
    batches: u64,
    acked: usize,
    torn_tail: bool,
    files_verified: usize,
    failures: Vec<String>,
    lost_batches: u64,
}

fn check(db_dir: &Path, keystore: &Path, acked_path: &Path, batch_keys: u32) -> Result<Check> {
    let db = Db::open(db_dir, options(keystore))?;
    let ks = db.default_keyspace();
    let mut c = Check {
        torn_tail: db.open_stats().wal.torn_tail.is_some(),
        ..Check::default()
    };

    // Per-batch keys: count them and check each value against its key.
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for kv in ks.prefix(b"b/")? {
        let (k, v) = kv?;
        let ks_str = String::from_utf8_lossy(&k).into_owned();
        let mut parts = ks_str.split('/').skip(1);
        let (Some(b), Some(i)) = (parts.next(), parts.next()) else {
            c.failures.push(format!("unexpected key {ks_str}"));
            continue;
        };
        let (b, i): (u64, u32) = (b.parse()?, i.parse()?);
        if parse_value(&v) != Some((b, i)) || v.len() != VALUE_LEN {
            c.failures.push(format!(
                "key {ks_str} holds a wrong value {:?}",
                String::from_utf8_lossy(&v)
            ));
        }
        *counts.entry(b).or_default() += 1;
    }
    c.max_batch = counts.keys().next_back().copied().unwrap_or(0);
    c.batches = counts.len() as u64;
    for (b, n) in &counts {
        if *n != batch_keys {
            c.failures.push(format!(
                "batch {b} is torn: {n} of {batch_keys} keys present"
            ));
        }
    }
    let holes = c.max_batch - c.batches;
    if holes > 0 {
        c.lost_batches += holes;
        let first: Vec<u64> = (1..=c.max_batch)
            .filter(|b| !counts.contains_key(b))
            .take(5)
            .collect();
        c.failures.push(format!(
            "{holes} batches below the newest ({}) are missing, first {first:?}",
            c.max_batch
        ));
    }

    // Shared keys: every one written by the newest batch.
    if c.max_batch > 0 {
        for i in 0..batch_keys {
            let got = ks.get(shared_key(i))?.and_then(|v| parse_value(&v));
            if got != Some((c.max_batch, i)) {
                c.failures.push(format!(
                    "shared key {i} holds {got:?}, expected batch {} (atomicity across batches)",
                    c.max_batch
                ));
            }
        }
    }

    // Acknowledged synced batches: all present.
    let mut acked = std::fs::read_to_string(acked_path).unwrap_or_default();
    if !acked.is_empty() && !acked.ends_with('\n') {
        // The child was killed between the database's acknowledgement and the end of its
        // line: the batch counts as acknowledged. End the line so the next round's
        // numbers do not run into it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(acked_path)?
            .write_all(b"\n")?;
        acked.push('\n');
    }
    for line in acked.lines() {
        // A kill can cut the last line short before its fsync returned; such a batch was
        // never acknowledged. Only complete lines count.
        let Ok(b) = line.trim().parse::<u64>() else {
            continue;
        };
        c.acked += 1;
        if counts.get(&b) != Some(&batch_keys) {
            c.lost_batches += 1;
            c.failures.push(format!(
                "acknowledged synced batch {b} is not fully present"
            ));
        }
    }

    let report = db.verify();
    c.files_verified = report.files_checked;
    for e in &report.errors {
        c.failures.push(format!("verify: {e}"));
    }
    Ok(c)
}

fn parent(
    rounds: u32,
    dir: Option<PathBuf>,
    batch_keys: u32,
    min_ms: u64,
    max_ms: u64,
) -> Result<bool> {
    let tmp = tempfile::tempdir()?;
    let root = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let (db_dir, keystore, acked) = (root.join("db"), root.join("keystore"), root.join("acked"));
    let exe = std::env::current_exe()?;
    let mut rng = Rng::from_entropy();
    let started = Instant::now();
    let (mut survived, mut lost, mut torn_tails, mut child_exits) = (0u32, 0u64, 0u32, 0u32);
    let mut next_batch = 1u64;
    let mut last = Check::default();
    println!(
        "crash-kill: {rounds} rounds, SIGKILL after {min_ms}-{max_ms} ms, {batch_keys} keys per batch, in {}",
        root.display()
    );
    for round in 1..=rounds {
        let stderr_path = root.join("child.stderr");
        let mut child = Command::new(&exe)
            .arg("child")
            .arg("--db")
            .arg(&db_dir)
            .arg("--keystore")
            .arg(&keystore)
            .arg("--acked")
            .arg(&acked)
            .arg("--start-batch")
            .arg(next_batch.to_string())
            .arg("--batch-keys")
            .arg(batch_keys.to_string())
            .arg("--seed")
            .arg(rng.next_u64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()?;
        let wait = rng.range_inclusive(min_ms, max_ms);
        std::thread::sleep(Duration::from_millis(wait));
        child.kill()?; // SIGKILL on unix
        let status = child.wait()?;
        if status.signal() != Some(9) {
            child_exits += 1;
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            println!("round {round}: the child ended on its own ({status}) before the kill: {err}");
        }
        let c = match check(&db_dir, &keystore, &acked, batch_keys) {
            Ok(c) => c,
            Err(e) => Check {
                failures: vec![format!("reopen failed: {e}")],
                ..Check::default()
            },
        };
        torn_tails += u32::from(c.torn_tail);
        // Losses persist in the database, so each round sees all of them again.
        lost = lost.max(c.lost_batches);
        if c.failures.is_empty() && status.signal() == Some(9) {
            survived += 1;
        } else {
            for f in c.failures.iter().take(20) {
                println!("round {round}: FAIL {f}");
            }
        }
        if round % 20 == 0 || round == rounds {
            println!(
                "round {round}/{rounds}: killed after {wait} ms; batches 1..={} present, {} synced batches acknowledged, {} files verified",
                c.max_batch, c.acked, c.files_verified
            );
        }
        // Continue after the newest batch present: the one in flight at the kill (never
        // acknowledged) is absent, and its number is written again next round.
        next_batch = c.max_batch + 1;
        last = c;
    }
    let ok = survived == rounds && lost == 0 && child_exits == 0;
    println!(
        "crash-kill: {survived}/{rounds} rounds survived; writes lost: {lost} batches; \
         {} batches ({} keys) in the database, {} synced batches acknowledged; \
         torn WAL tails recovered: {torn_tails}; {:.0} s",
        last.batches,
        last.batches * u64::from(batch_keys),
        last.acked,
        started.elapsed().as_secs_f64()
    );
    if !ok {
        // Keep the evidence.
        let kept = tmp.keep();
        println!(
            "crash-kill: FAILED; work directory kept at {}",
            kept.display()
        );
    }
    Ok(ok)
}

fn main() -> Result<()> {
    match Args::parse().mode {
        Mode::Child {
            db,
            keystore,
            acked,
            start_batch,
            batch_keys,
            seed,
        } => child(&db, &keystore, &acked, start_batch, batch_keys, seed),
        Mode::Parent {
            rounds,
            dir,
            batch_keys,
            min_ms,
            max_ms,
        } => {
            if !parent(rounds, dir, batch_keys, min_ms, max_ms)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
