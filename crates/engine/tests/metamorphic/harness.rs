//! The metamorphic check's harness: one database on a `CrashFs` beside its model, running
//! operations, resolving crashes against what was acknowledged, and recording every answer.

use super::ops::{Config, Inflight, MetaOp, Op, value_bytes};
use crate::common::model::{
    Model, ModelBatch, apply, crash_fs, engine_rows, engine_scan, key_bytes, model_scan, rows_of,
};
use proptest::prelude::*;
use sealdb::{Db, Error, Options, RestorePoint, Snapshot, WriteBatch, WriteOptions};
use sealdb_vfs::{CrashFs, FaultKind, FileSystem};
use std::path::Path;
use std::sync::Arc;

/// Keyspace slots: 0 is the default keyspace, 1 a permanent one, 2 one that is created and
/// dropped during the run.
const NAMES: [&str; 3] = ["default", "second", "temp"];
const TEMP: u8 = 2;
pub(crate) const DB: &str = "/m/db";
pub(crate) const BACKUPS: &str = "/m/backups";

/// The model's view of the database: the rows, and whether the `temp` keyspace exists.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    rows: Model,
    temp: bool,
}

impl State {
    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Batch { ops, .. } => apply(&mut self.rows, ops),
            Entry::Temp { create: true, .. } => self.temp = true,
            Entry::Temp { create: false, .. } => {
                self.temp = false;
                self.rows.retain(|(ks, _), _| *ks != TEMP);
            }
        }
    }

    fn rows_of(&self, ks: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        rows_of(&self.rows, ks)
    }

    fn exists(&self, ks: u8) -> bool {
        ks != TEMP || self.temp
    }
}

/// What happened since the last reopen, in order, so a crash can be resolved against it.
#[derive(Debug, Clone)]
enum Entry {
    /// A batch: its last sequence number (`None`: it failed in flight, outcome unknown) and
    /// whether it was synced.
    Batch {
        seq: Option<u64>,
        sync: bool,
        ops: ModelBatch,
    },
    /// `temp` created or dropped; `certain` is false for one a crash interrupted.
    Temp { create: bool, certain: bool },
}

pub(crate) struct Harness {
    cfg: Config,
    fs: CrashFs,
    keystore: tempfile::TempDir,
    db: Option<Db>,
    /// The state as of the last reopen, its sequence number, and what happened since.
    base: State,
    base_seq: u64,
    log: Vec<Entry>,
    snapshots: Vec<(Snapshot, State)>,
    backups: Vec<(String, State)>,
    counter: usize,
    /// Every answer the engine gave, for the metamorphic comparison.
    pub(crate) transcript: Vec<String>,
    pub(crate) coverage: Coverage,
}

/// What a case exercised, summed over its sessions.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    flushes: u64,
    compactions: u64,
    memtable_rotations: u64,
    /// The highest WAL segment number seen: rollovers (and reopens) start new segments.
    wal_segments: u64,
    crashes: u64,
    /// Crashes whose countdown ran out inside the operation (or a background job meanwhile).
    faults_inside_ops: u64,
}

impl Harness {
    pub(crate) fn new(cfg: Config) -> Self {
        let mut h = Self {
            cfg,
            fs: crash_fs(),
            keystore: tempfile::tempdir().expect("tmp"),
            db: None,
            base: State::default(),
            base_seq: 0,
            log: Vec::new(),
            snapshots: Vec::new(),
            backups: Vec::new(),
            counter: 0,
            transcript: Vec::new(),
            coverage: Coverage::default(),
        };
        h.db = Some(Db::open(DB, h.options()).expect("create"));
        h.db().create_keyspace(NAMES[1]).expect("keyspace");
        h
    }

    pub(crate) fn options(&self) -> Options {
        let c = &self.cfg;
        // With background work off nothing drains memtables or level 0 but the test's own
        // flushes and compactions, so a stall would never end: the limits are out of reach.
        let (max_immutable, stop) = if c.background_work {
            (3, c.l0_compaction_trigger + 6)
        } else {
            (1 << 20, 1 << 20)
        };
        Options {
            fs: Arc::new(self.fs.clone()),
            keystore_dir: Some(self.keystore.path().to_path_buf()),
            kms_dir: Some(self.keystore.path().join("kms")),
            cipher: c.cipher,
            block_size: c.block_size,
            memtable_size: c.memtable_size,
            max_immutable_memtables: max_immutable,
            wal_segment_size: c.wal_segment_size,
            block_cache_bytes: c.block_cache_bytes,
            bloom_bits_per_key: c.bloom_bits_per_key,
            compression: c.compression,
            l0_compaction_trigger: c.l0_compaction_trigger,
            l0_stop_writes: stop,
            target_file_size: c.target_file_size,
            level1_bytes: c.level1_bytes,
            level_size_ratio: c.level_size_ratio,
            background_work: c.background_work,
            ..Options::default()
        }
    }

    pub(crate) fn db(&self) -> Db {
        self.db.clone().expect("db open")
    }

    fn model(&self) -> State {
        let mut s = self.base.clone();
        for e in &self.log {
            s.apply(e);
        }
        s
    }

    /// The write as the model records it: writes to `temp` while it does not exist are left
    /// out (the engine has no handle to write them through).
    fn model_batch(&mut self, ops: &[(u8, u8, Option<u8>)]) -> ModelBatch {
        let temp = self.model().temp;
        let c = self.counter;
        ops.iter()
            .filter(|(ks, _, _)| *ks != TEMP || temp)
            .map(|(ks, k, v)| (*ks, key_bytes(*k), v.map(|v| value_bytes(v, c))))
            .collect()
    }

    fn engine_batch(&self, ops: &ModelBatch) -> WriteBatch {
        let db = self.db();
        let mut batch = WriteBatch::new();
        for (ks, k, v) in ops {
            let handle = db.keyspace(NAMES[*ks as usize]).expect("keyspace");
            match v {
                Some(v) => batch.put(&handle, k, v).expect("put"),
                None => batch.delete(&handle, k).expect("delete"),
            }
        }
        batch
    }

    fn write(&mut self, ops: ModelBatch, sync: bool) {
        if ops.is_empty() {
            return;
        }
        let seq = self
            .db()
            .write(self.engine_batch(&ops), WriteOptions { sync })
            .expect("write");
        self.log.push(Entry::Batch {
            seq: Some(seq),
            sync,
            ops,
        });
    }

    fn temp(&mut self, create: bool) {
        let db = self.db();
        let exists = self.model().temp;
        if create {
            db.create_keyspace(NAMES[2]).expect("create keyspace");
        } else if exists {
            db.drop_keyspace(NAMES[2]).expect("drop keyspace");
        } else {
            assert!(matches!(
                db.drop_keyspace(NAMES[2]),
                Err(Error::KeyspaceNotFound(_))
            ));
            return;
        }
        self.log.push(Entry::Temp {
            create,
            certain: true,
        });
    }

    fn scan(
        &mut self,
        ks: u8,
        lo: Option<u8>,
        hi: Option<u8>,
        reverse: bool,
    ) -> Result<(), TestCaseError> {
        let model = self.model();
        let name = NAMES[ks as usize];
        if !model.exists(ks) {
            prop_assert!(matches!(
                self.db().keyspace(name),
                Err(Error::KeyspaceNotFound(_))
            ));
            self.transcript.push(format!("scan {name}: no keyspace"));
            return Ok(());
        }
        let handle = self.db().keyspace(name).expect("keyspace");
        let got = engine_scan(&handle, lo, hi, reverse);
        let want = model_scan(&model.rows, ks, lo, hi, reverse);
        prop_assert_eq!(
            &got,
            &want,
            "scan {} {:?}..{:?} rev={}",
            name,
            lo,
            hi,
            reverse
        );
        self.transcript
            .push(format!("scan {name} {lo:?}..{hi:?} rev={reverse}: {got:?}"));
        Ok(())
    }

    pub(crate) fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.counter += 1;
        match op {
            Op::Put { ks, key, val, sync } => {
                let ops = self.model_batch(&[(*ks, *key, Some(*val))]);
                self.write(ops, *sync);
            }
            Op::Delete { ks, key, sync } => {
                let ops = self.model_batch(&[(*ks, *key, None)]);
                self.write(ops, *sync);
            }
            Op::Batch { ops, sync } => {
                let ops = self.model_batch(ops);
                self.write(ops, *sync);
            }
            Op::Get { ks, key } => {
                let model = self.model();
                let name = NAMES[*ks as usize];
                if model.exists(*ks) {
                    let got = self
                        .db()
                        .keyspace(name)
                        .expect("keyspace")
                        .get(key_bytes(*key))
                        .expect("get");
                    prop_assert_eq!(&got, &model.rows.get(&(*ks, key_bytes(*key))).cloned());
                    self.transcript.push(format!("get {name} {key}: {got:?}"));
                } else {
                    prop_assert!(matches!(
                        self.db().keyspace(name),
                        Err(Error::KeyspaceNotFound(_))
                    ));
                    self.transcript
                        .push(format!("get {name} {key}: no keyspace"));
                }
            }
            Op::Scan {
                ks,
                lo,
                hi,
                reverse,
            } => self.scan(*ks, *lo, *hi, *reverse)?,
            Op::TakeSnapshot => {
                if self.snapshots.len() < 4 {
                    let s = self.db().snapshot();
                    self.snapshots.push((s, self.model()));
                }
            }
            Op::ReadSnapshot { idx, ks, key } => {
                // The permanent keyspaces only: a snapshot does not pin a keyspace's existence.
                let ks = ks % 2;
                if let Some((snap, model)) = self.snapshots.get(*idx) {
                    let handle = self.db().keyspace(NAMES[ks as usize]).expect("keyspace");
                    let got = snap.get(&handle, key_bytes(*key)).expect("get");
                    prop_assert_eq!(&got, &model.rows.get(&(ks, key_bytes(*key))).cloned());
                    let all = crate::common::collect(snap.iter(&handle).expect("iter"));
                    prop_assert_eq!(&all, &model.rows_of(ks));
                    self.transcript
                        .push(format!("snapshot {idx} {ks} {key}: {got:?} {all:?}"));
                }
            }
            Op::Flush => self.db().flush().expect("flush"),
            Op::Compact => self.db().compact().expect("compact"),
            Op::Extra(MetaOp::RotateDataKey) => {
                let before = self.db().key_status().expect("status");
                let v = self.db().rotate_data_key().expect("rotate");
                let after = self.db().key_status().expect("status");
                prop_assert_ne!(format!("{before:?}"), format!("{after:?}"));
                prop_assert!(v > 0);
            }
            Op::Extra(MetaOp::Reencrypt) => {
                self.db().reencrypt(&mut |_, _| {}).expect("reencrypt");
                // Every live file is now under one data-key version: no snapshot or reader
                // here holds an older table open past the rewrite's version switch.
                if self.snapshots.is_empty() {
                    let in_use = self.db().data_key_versions_in_use().expect("versions");
                    prop_assert_eq!(in_use.len(), 1, "versions in use: {:?}", in_use);
                }
            }
            Op::Extra(MetaOp::CreateTemp) => self.temp(true),
            Op::Extra(MetaOp::DropTemp) => self.temp(false),
            Op::Extra(MetaOp::Backup) => {
                let info = self
                    .db()
                    .backup(Path::new(BACKUPS), &mut |_, _| {})
                    .expect("backup");
                prop_assert_eq!(info.sequence, self.db().last_sequence());
                self.backups.push((info.id, self.model()));
            }
            Op::Extra(MetaOp::Restore { idx }) => {
                if let Some((id, want)) = self.backups.get(*idx).cloned() {
                    self.restore(&id, &want)?;
                }
            }
            Op::Reopen => {
                self.close();
                self.db = Some(Db::open(DB, self.options()).expect("reopen"));
                self.base = self.model();
                self.log.clear();
                self.base_seq = self.db().last_sequence();
                self.check_all()?;
            }
            Op::Crash { seed } => {
                self.coverage.crashes += 1;
                self.close();
                self.fs.crash_keeping_prefix(*seed);
                self.recover()?;
            }
            Op::Extra(MetaOp::CrashDuring { after, seed, op }) => {
                self.crash_during(u64::from(*after), op)?;
                self.coverage.crashes += 1;
                self.coverage.faults_inside_ops += u64::from(self.fs.fault_fired());
                self.close();
                self.fs.crash_keeping_prefix(*seed);
                self.recover()?;
            }
        }
        Ok(())
    }

    /// Arms the countdown and runs `op`, which may fail once the "power" is gone; records in
    /// the log what the model must allow for.
    fn crash_during(&mut self, after: u64, op: &Inflight) -> Result<(), TestCaseError> {
        let db = self.db();
        self.fs.fail_after(after, FaultKind::AnyMutation);
        let result: sealdb::Result<()> = match op {
            Inflight::Write { ops, sync } => {
                let ops = self.model_batch(ops);
                if ops.is_empty() {
                    Ok(())
                } else {
                    let r = db.write(self.engine_batch(&ops), WriteOptions { sync: *sync });
                    self.log.push(Entry::Batch {
                        seq: r.as_ref().ok().copied(),
                        sync: *sync && r.is_ok(),
                        ops,
                    });
                    r.map(|_| ())
                }
            }
            Inflight::Flush => db.flush(),
            Inflight::Compact => db.compact(),
            Inflight::RotateDataKey => db.rotate_data_key().map(|_| ()),
            Inflight::Reencrypt => db.reencrypt(&mut |_, _| {}).map(|_| ()),
            Inflight::CreateTemp | Inflight::DropTemp => {
                let create = matches!(op, Inflight::CreateTemp);
                let exists = self.model().temp;
                if create || exists {
                    let r = if create {
                        db.create_keyspace(NAMES[2]).map(|_| ())
                    } else {
                        db.drop_keyspace(NAMES[2])
                    };
                    self.log.push(Entry::Temp {
                        create,
                        certain: r.is_ok(),
                    });
                    r
                } else {
                    Ok(())
                }
            }
            Inflight::Backup => {
                let model = self.model();
                db.backup(Path::new(BACKUPS), &mut |_, _| {})
                    .map(|info| self.backups.push((info.id, model)))
            }
        };
        prop_assert!(
            result.is_ok() || self.fs.fault_fired(),
            "{:?} failed with no fault injected: {:?}",
            op,
            result
        );
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        self.snapshots.clear();
        if let Some(db) = self.db.take() {
            let st = db.stats();
            self.coverage.flushes += st.flushes;
            self.coverage.compactions += st.compactions;
            self.coverage.memtable_rotations += st.memtable_rotations;
        }
        if let Ok(names) = self.fs.list_dir(&Path::new(DB).join("wal")) {
            for n in names {
                if let Some(num) = n.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
                    self.coverage.wal_segments = self.coverage.wal_segments.max(num);
                }
            }
        }
    }

    /// Reopens after a power cut and resolves the log against what survived: every batch up
    /// to the recovered sequence number (a batch boundary, past every acknowledged synced
    /// batch), plus an in-flight batch if recovery reached past the acknowledged ones; every
    /// keyspace change that returned, plus an interrupted one if the engine shows it.
    fn recover(&mut self) -> Result<(), TestCaseError> {
        let db = match Db::open(DB, self.options()) {
            Ok(db) => db,
            Err(e) => return Err(TestCaseError::fail(format!("reopen after crash: {e}"))),
        };
        let recovered = db.last_sequence();
        self.db = Some(db);
        let mut state = self.base.clone();
        let mut last_acked = self.base_seq;
        let mut prev = self.base_seq;
        for e in &self.log {
            match e {
                Entry::Batch {
                    seq: Some(seq),
                    sync,
                    ..
                } => {
                    last_acked = *seq;
                    if *seq <= recovered {
                        state.apply(e);
                        prev = *seq;
                    } else {
                        prop_assert!(!sync, "synced batch at seq {} lost ({})", seq, recovered);
                    }
                }
                Entry::Batch { seq: None, ops, .. } => {
                    if recovered > last_acked {
                        prop_assert_eq!(
                            recovered,
                            last_acked + ops.len() as u64,
                            "in-flight batch partly recovered"
                        );
                        state.apply(e);
                        prev = recovered;
                    }
                }
                Entry::Temp { certain: true, .. } => state.apply(e),
                Entry::Temp {
                    create,
                    certain: false,
                } => {
                    let present = self.db().keyspace(NAMES[2]).is_ok();
                    if present == *create {
                        state.apply(e);
                    }
                }
            }
        }
        prop_assert_eq!(recovered, prev, "recovered seq is not a batch boundary");
        self.base = state;
        self.base_seq = recovered;
        self.log.clear();
        self.check_all()
    }

    /// Restores backup `id` into a new directory and checks it holds exactly `want`.
    fn restore(&mut self, id: &str, want: &State) -> Result<(), TestCaseError> {
        let dest = format!("/m/restore-{}", self.counter);
        sealdb::restore_backup(
            Path::new(BACKUPS),
            Path::new(&dest),
            Some(id),
            RestorePoint::Backup,
            None,
            &self.options(),
            &mut |_, _| {},
        )
        .map_err(|e| TestCaseError::fail(format!("restore {id}: {e}")))?;
        let restored = Db::open(&dest, self.options())
            .map_err(|e| TestCaseError::fail(format!("open restored {id}: {e}")))?;
        for ks in 0..3u8 {
            let got = match restored.keyspace(NAMES[ks as usize]) {
                Ok(h) => Some(engine_rows(&h)),
                Err(Error::KeyspaceNotFound(_)) => None,
                Err(e) => return Err(TestCaseError::fail(format!("restored keyspace: {e}"))),
            };
            let expected = want.exists(ks).then(|| want.rows_of(ks));
            prop_assert_eq!(&got, &expected, "restored backup {} keyspace {}", id, ks);
            self.transcript.push(format!("restore {ks}: {got:?}"));
        }
        Ok(())
    }

    /// The whole database equals the model's base state.
    fn check_all(&mut self) -> Result<(), TestCaseError> {
        let want = self.base.clone();
        prop_assert_eq!(
            self.db().keyspace(NAMES[2]).is_ok(),
            want.temp,
            "temp keyspace existence"
        );
        for ks in 0..3u8 {
            if !want.exists(ks) {
                continue;
            }
            let got = engine_rows(&self.db().keyspace(NAMES[ks as usize]).expect("keyspace"));
            prop_assert_eq!(&got, &want.rows_of(ks), "keyspace {} after reopen", ks);
            self.transcript.push(format!("all {ks}: {got:?}"));
        }
        Ok(())
    }
}
