//! What the metamorphic check draws: the engine options of a case ([`Config`]) and the
//! operations, with the operations a crash can interrupt ([`Inflight`]).

use crate::common::model::{
    DrawnBatch, batch, batch_ops, crash, delete, get, put, read_snapshot, scan,
};
use proptest::prelude::*;
use sealdb::{CipherId, Compression};

/// Engine options drawn per case. Every field changes layout, timing or encoding only, never
/// what a read returns.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) block_size: usize,
    pub(crate) memtable_size: usize,
    pub(crate) wal_segment_size: u64,
    pub(crate) compression: Compression,
    pub(crate) cipher: CipherId,
    pub(crate) bloom_bits_per_key: u32,
    pub(crate) l0_compaction_trigger: usize,
    pub(crate) target_file_size: u64,
    pub(crate) level1_bytes: u64,
    pub(crate) level_size_ratio: u64,
    pub(crate) block_cache_bytes: usize,
    pub(crate) background_work: bool,
}

pub(crate) fn config() -> impl Strategy<Value = Config> {
    (
        (
            prop::sample::select(vec![128usize, 256, 512, 1024, 4096]),
            1usize << 10..16 << 10,
            1u64 << 10..16 << 10,
            prop_oneof![Just(Compression::None), Just(Compression::Lz4)],
            prop_oneof![
                Just(CipherId::None),
                Just(CipherId::ChaCha20Poly1305),
                Just(CipherId::Aes256Gcm)
            ],
            prop::sample::select(vec![0u32, 1, 4, 10, 16]),
        ),
        (
            2usize..6,
            512u64..8 << 10,
            1u64 << 10..32 << 10,
            2u64..8,
            prop::sample::select(vec![0usize, 4 << 10, 64 << 20]),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (block_size, memtable_size, wal_segment_size, compression, cipher, bloom),
                (trigger, target, level1, ratio, cache, background),
            )| Config {
                block_size,
                memtable_size,
                wal_segment_size,
                compression,
                cipher,
                bloom_bits_per_key: bloom,
                l0_compaction_trigger: trigger,
                target_file_size: target,
                level1_bytes: level1,
                level_size_ratio: ratio,
                block_cache_bytes: cache,
                background_work: background,
            },
        )
}

/// An operation the engine can be stopped inside by a crash.
#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    Write {
        ops: DrawnBatch,
        sync: bool,
    },
    Flush,
    Compact,
    RotateDataKey,
    Reencrypt,
    CreateTemp,
    DropTemp,
    /// A backup: one that returned must survive the crash and restore exactly; the debris of
    /// one that did not must not disturb later backups and restores.
    Backup,
}

/// The operations this check draws: those it shares with `tests/model.rs`, and [`MetaOp`].
pub(crate) type Op = crate::common::model::Op<MetaOp>;

/// The operations only this check draws.
#[derive(Debug, Clone)]
pub(crate) enum MetaOp {
    /// A new data-key version made current.
    RotateDataKey,
    /// Every file rewritten under the current data key.
    Reencrypt,
    /// The `temp` keyspace created.
    CreateTemp,
    /// The `temp` keyspace dropped (refused if it does not exist).
    DropTemp,
    /// An online backup into the backup directory.
    Backup,
    /// Backup `idx` (if taken) restored into a new directory and compared with the model.
    Restore { idx: usize },
    /// A power cut at the `after`-th filesystem mutation from the start of `op`.
    CrashDuring { after: u16, seed: u64, op: Inflight },
}

/// Batches across all three keyspaces, of one to seven writes.
fn drawn_batch() -> impl Strategy<Value = DrawnBatch> {
    batch_ops(0u8..3, 0u8..32, 1..8)
}

fn inflight() -> impl Strategy<Value = Inflight> {
    prop_oneof![
        4 => (drawn_batch(), any::<bool>()).prop_map(|(ops, sync)| Inflight::Write { ops, sync }),
        2 => Just(Inflight::Flush),
        2 => Just(Inflight::Compact),
        1 => Just(Inflight::RotateDataKey),
        1 => Just(Inflight::Reencrypt),
        1 => Just(Inflight::CreateTemp),
        1 => Just(Inflight::DropTemp),
        1 => Just(Inflight::Backup),
    ]
}

/// Operations that lose no data: the metamorphic comparison needs both runs to keep the same
/// writes, and what a crash keeps depends on the file layout.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    let ks = 0u8..3;
    let key = 0u8..32;
    prop_oneof![
        12 => put(ks.clone(), key.clone()),
        3 => delete(ks.clone(), key.clone()),
        3 => batch(ks.clone(), key.clone(), 1..8),
        4 => get(ks.clone(), key.clone()),
        2 => scan(ks.clone(), key.clone()),
        1 => Just(Op::TakeSnapshot),
        2 => read_snapshot(ks, key),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Extra(MetaOp::RotateDataKey)),
        1 => Just(Op::Extra(MetaOp::Reencrypt)),
        1 => Just(Op::Extra(MetaOp::CreateTemp)),
        1 => Just(Op::Extra(MetaOp::DropTemp)),
        1 => Just(Op::Extra(MetaOp::Backup)),
        1 => (0usize..4).prop_map(|idx| Op::Extra(MetaOp::Restore { idx })),
    ]
}

/// Every operation, power cuts included (about one in ten).
pub(crate) fn op_or_crash() -> impl Strategy<Value = Op> {
    prop_oneof![
        36 => op(),
        2 => crash(),
        // Mostly small countdowns: a write is one or two mutations, a flush a few dozen.
        2 => (prop_oneof![3 => 0u16..8, 2 => 0u16..64, 1 => 0u16..400], any::<u64>(), inflight())
            .prop_map(|(after, seed, op)| Op::Extra(MetaOp::CrashDuring { after, seed, op })),
    ]
}

/// Values of very different sizes (1 to ~300 bytes), so blocks, memtables and segments fill
/// unevenly; the counter makes every write's value distinct.
pub(crate) fn value_bytes(v: u8, counter: usize) -> Vec<u8> {
    let mut out = vec![v; 1 + (v as usize * 7) % 300];
    out.extend_from_slice(format!("#{counter}").as_bytes());
    out
}
