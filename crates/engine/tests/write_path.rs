//! The commit path under stress: batches near the sealed-block limit, a commit leader whose
//! user closure panics, a master key that becomes unusable while writers are queued, and a
//! failure that poisons the database while writers are queued. Writers are held in the queue
//! deterministically by an index extractor that blocks the commit leader on a gate.

mod common;

use common::TestDb;
use sealdb::{
    Db, Error, IndexDefinition, IndexKind, IndexQuery, MasterKey, Options, Projection, Query,
    StreamStart, StreamView, WriteBatch, WriteOptions,
};
use sealdb_crypto::LocalKms;
use sealdb_vfs::{CrashFs, FaultKind};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const MIB: usize = 1 << 20;

/// Fails the test instead of hanging when a write never returns.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Blocks the commit leader inside the extractor until released (once; then stays open).
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (entered, released)
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().expect("gate");
        st.0 = true;
        self.cv.notify_all();
        while !st.1 {
            st = self.cv.wait(st).expect("gate");
        }
    }

    fn wait_entered(&self) {
        let mut st = self.state.lock().expect("gate");
        while !st.0 {
            let (s, t) = self.cv.wait_timeout(st, TIMEOUT).expect("gate");
            assert!(!t.timed_out(), "the gated writer never became the leader");
            st = s;
        }
    }

    fn release(&self) {
        self.state.lock().expect("gate").1 = true;
        self.cv.notify_all();
    }
}

/// A keyspace `hooks` with a custom-extractor index: key `gate` blocks the leader on `gate`,
/// key `boom` panics, every other key indexes as `x`.
fn hooked_index(db: &Db, gate: &Arc<Gate>, projection: Projection) -> sealdb::ExtractFn {
    db.create_keyspace("hooks").expect("keyspace");
    let g = gate.clone();
    let extract: sealdb::ExtractFn = Arc::new(move |key: &[u8], _value: &[u8]| {
        if key == b"gate" {
            g.pass();
        }
        if key == b"boom" {
            panic!("extractor exploded on purpose");
        }
        vec![b"x".to_vec()]
    });
    db.create_index(
        IndexDefinition {
            name: "hooked".into(),
            keyspace: "hooks".into(),
            kind: IndexKind::Global,
            extractor: sealdb::Extractor::Custom(extract.clone()),
            projection,
        },
        &mut |_| {},
    )
    .expect("index");
    extract
}

/// Runs `f` on a thread; its result arrives on the returned channel (a panic drops the
/// sender, which the receiver sees as disconnected).
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn wait<T>(rx: &mpsc::Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(TIMEOUT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer (writers hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the writer panicked"),
    }
}

/// Starts a write of key `gate` to `hooks` (it becomes the commit leader and blocks), and
/// returns once it is blocked there.
fn hold_leader(db: &Db, gate: &Arc<Gate>) -> mpsc::Receiver<sealdb::Result<()>> {
    let hooks = db.keyspace("hooks").expect("keyspace");
    let rx = spawn(move || hooks.put(b"gate", b"held"));
    gate.wait_entered();
    rx
}

/// Long enough for spawned writers to queue behind the blocked leader.
fn let_writers_queue() {
    std::thread::sleep(Duration::from_millis(400));
}

/// For the tests with values of tens of MiB: the block limit is the same under every cipher,
/// and without encryption (and with no memtable flush) a debug build handles them in seconds
/// rather than minutes.
fn big_values_db(t: &TestDb) -> Db {
    Db::open(t.path(), big_values_options(t)).expect("open")
}

fn big_values_options(t: &TestDb) -> Options {
    Options {
        cipher: sealdb::CipherId::None,
        memtable_size: 1 << 30,
        ..t.options()
    }
}

fn assert_still_writable(db: &Db) {
    db.default_keyspace()
        .put_opt(b"afterwards", b"ok", WriteOptions::SYNC)
        .expect("the database must stay writable");
    assert_eq!(db.get(b"afterwards").expect("get"), Some(b"ok".to_vec()));
}

#[test]
fn a_batch_over_the_block_limit_is_refused_not_poisoning() {
    let t = TestDb::new();
    let db = big_values_db(&t);
    let ks = db.default_keyspace();
    let value = vec![7u8; 30 * MIB];
    let mut batch = WriteBatch::new();
    batch.put(&ks, b"a", &value).expect("first put fits");
    batch.put(&ks, b"b", &value).expect("second put fits");
    // The third takes the batch past one sealed block: refused where it is added, or at the
    // latest by `write`, with a typed error naming the size and the limit.
    let third = batch.put(&ks, b"c", &value);
    let refusal = match third {
        Err(e) => e,
        Ok(()) => {
            let mut whole = batch.clone();
            let e = db
                .write(std::mem::take(&mut whole), WriteOptions::SYNC)
                .expect_err("a 90 MiB batch cannot be one frame");
            batch = WriteBatch::new();
            batch.put(&ks, b"a", &value).expect("put");
            batch.put(&ks, b"b", &value).expect("put");
            e
        }
    };
    assert!(
        !matches!(refusal, Error::Poisoned { .. }),
        "an oversized batch must not poison the database: {refusal}"
    );
    match &refusal {
        Error::BatchTooLarge { size, limit, .. } => {
            assert!(*size > *limit, "{refusal}");
            let msg = refusal.to_string();
            assert!(msg.contains(&size.to_string()), "{msg}");
            assert!(msg.contains(&limit.to_string()), "{msg}");
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    // What fits still commits, and nothing of the refused batch is visible.
    db.write(batch, WriteOptions::SYNC).expect("60 MiB fits");
    assert_eq!(db.get(b"a").expect("get").map(|v| v.len()), Some(30 * MIB));
    assert_eq!(db.get(b"c").expect("get"), None);
    assert_still_writable(&db);
    drop((ks, db));
    let db = big_values_db(&t);
    assert_eq!(db.get(b"b").expect("get").map(|v| v.len()), Some(30 * MIB));
}

#[test]
fn an_index_expanded_batch_over_the_limit_is_refused_not_poisoning() {
    let t = TestDb::new();
    let db = big_values_db(&t);
    let docs = db.create_keyspace("docs").expect("keyspace");
    db.create_index(
        IndexDefinition {
            name: "by_tag".into(),
            keyspace: "docs".into(),
            kind: IndexKind::Global,
            extractor: sealdb::Extractor::JsonPointer("/tag".into()),
            projection: Projection::All,
        },
        &mut |_| {},
    )
    .expect("index");
    // A valid value (under the 32 MiB value limit) whose index entry copies it whole.
    let mut doc = br#"{"tag":"big","pad":""#.to_vec();
    doc.resize(32 * MIB - 16, b'p');
    doc.extend_from_slice(br#""}"#);
    let e = docs
        .put_opt(b"big", &doc, WriteOptions::SYNC)
        .expect_err("the batch with its index entry is over one sealed block");
    assert!(
        matches!(e, Error::BatchTooLarge { .. }),
        "expected BatchTooLarge, got {e:?}"
    );
    assert_eq!(docs.get(b"big").expect("get"), None);
    // The index holds nothing of it, and small documents go on.
    docs.put(b"small", br#"{"tag":"big"}"#).expect("put");
    let page = db
        .query_index(
            "by_tag",
            &IndexQuery::new(Query::Eq(sealdb::IndexValue::String("big".into()))),
        )
        .expect("query");
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].primary_key, b"small");
    assert_still_writable(&db);
}

#[test]
fn a_commit_group_merged_past_the_limit_is_split_not_poisoning() {
    let t = TestDb::new();
    let db = big_values_db(&t);
    let gate = Arc::new(Gate::default());
    let extract = hooked_index(&db, &gate, Projection::KeysOnly);
    let held = hold_leader(&db, &gate);
    // Three writers of 30 MiB each queue behind the held leader: one group of 90 MiB.
    let mut waiting = Vec::new();
    for k in 0..3u8 {
        let mut batch = WriteBatch::new();
        batch
            .put(&db.default_keyspace(), [b'k', k], vec![k; 30 * MIB])
            .expect("put");
        let db = db.clone();
        waiting.push(spawn(move || db.write(batch, WriteOptions::SYNC)));
    }
    let_writers_queue();
    gate.release();
    wait(&held, "held writer").expect("held writer");
    for (k, rx) in waiting.iter().enumerate() {
        wait(rx, "queued writer").unwrap_or_else(|e| panic!("writer {k}: {e}"));
    }
    for k in 0..3u8 {
        let v = db.get([b'k', k]).expect("get").expect("present");
        assert_eq!(v.len(), 30 * MIB);
        assert!(v.iter().all(|b| *b == k));
    }
    assert_still_writable(&db);
    drop(db);
    let opts = Options {
        custom_extractors: vec![sealdb::NamedExtractor {
            index: "hooked".into(),
            extract,
        }],
        ..big_values_options(&t)
    };
    let db = Db::open(t.path(), opts).expect("reopen");
    assert_eq!(
        db.get([b'k', 2]).expect("get").map(|v| v.len()),
        Some(30 * MIB)
    );
}

#[test]
fn a_commit_group_grown_by_index_entries_and_stream_records_is_split_not_poisoning() {
    let t = TestDb::new();
    let db = big_values_db(&t);
    let gate = Arc::new(Gate::default());
    hooked_index(&db, &gate, Projection::All);
    let hooks = db.keyspace("hooks").expect("keyspace");
    db.enable_stream(
        &hooks,
        StreamView::NewAndOldImages,
        Duration::from_secs(3600),
        0,
    )
    .expect("stream");
    // Alone, each overwrite below is about 40 MiB in the WAL (value and index copy) and
    // 40 MiB in the stream (new and old image): it fits. Two in one group do not.
    for key in [&b"big1"[..], b"big2"] {
        hooks
            .put_opt(key, vec![1u8; 20 * MIB], WriteOptions::SYNC)
            .expect("put");
    }
    let before = db.stats().commit_groups;
    let held = hold_leader(&db, &gate);
    let mut writers = Vec::new();
    for key in [&b"big1"[..], b"big2"] {
        let h = hooks.clone();
        writers.push(spawn(move || {
            h.put_opt(key, vec![2u8; 20 * MIB], WriteOptions::SYNC)
        }));
    }
    let_writers_queue();
    gate.release();
    wait(&held, "held writer").expect("held writer");
    for rx in &writers {
        wait(rx, "grouped writer").expect("an index-grown group must not poison");
    }
    // The held write, then the two overwrites in frames of their own.
    assert!(db.stats().commit_groups >= before + 3);
    let page = db
        .query_index(
            "hooked",
            &IndexQuery::new(Query::Eq(sealdb::IndexValue::Bytes(b"x".to_vec()))),
        )
        .expect("query");
    let big: Vec<_> = page
        .hits
        .iter()
        .filter(|h| h.primary_key.starts_with(b"big"))
        .collect();
    assert_eq!(big.len(), 2);
    assert!(
        big.iter()
            .all(|h| h.item.len() == 20 * MIB && h.item[0] == 2)
    );
    let records = db
        .read_stream(&hooks, StreamStart::TrimHorizon, 100, usize::MAX)
        .expect("stream")
        .records;
    let overwrites: Vec<_> = records
        .iter()
        .filter(|r| r.key.starts_with(b"big") && r.old_image.is_some())
        .collect();
    assert_eq!(overwrites.len(), 2, "one record per overwrite");
    for r in overwrites {
        assert_eq!(
            r.old_image.as_ref().map(|v| (v.len(), v[0])),
            Some((20 * MIB, 1))
        );
        assert_eq!(
            r.new_image.as_ref().map(|v| (v.len(), v[0])),
            Some((20 * MIB, 2))
        );
    }
    drop(hooks);
    assert_still_writable(&db);
}

#[test]
fn a_stream_record_over_the_block_limit_is_refused_not_poisoning() {
    let t = TestDb::new();
    let db = big_values_db(&t);
    let feed = db.create_keyspace("feed").expect("keyspace");
    db.enable_stream(
        &feed,
        StreamView::NewAndOldImages,
        Duration::from_secs(3600),
        0,
    )
    .expect("stream");
    // Largest values (32 MiB): the batch fits a WAL frame, but an overwrite's record
    // carries both images, over 64 MiB.
    let max = 32 * MIB;
    feed.put_opt(b"v", vec![1u8; max], WriteOptions::SYNC)
        .expect("an insert records one image");
    let e = feed
        .put_opt(b"v", vec![2u8; max], WriteOptions::SYNC)
        .expect_err("the change record cannot be one block");
    match &e {
        Error::BatchTooLarge { what, size, limit } => {
            assert!(what.contains("feed"), "names the stream: {e}");
            assert!(size > limit, "{e}");
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(feed.get(b"v").expect("get").map(|v| v[0]), Some(1));
    let records = db
        .read_stream(&feed, StreamStart::TrimHorizon, 100, usize::MAX)
        .expect("stream")
        .records;
    assert_eq!(records.len(), 1, "nothing of the refused batch is recorded");
    feed.put(b"small", b"1").expect("put");
    drop(feed);
    assert_still_writable(&db);
}

#[test]
fn a_panicking_index_extractor_fails_only_its_writer() {
    let t = TestDb::new();
    let db = t.open();
    let gate = Arc::new(Gate::default());
    hooked_index(&db, &gate, Projection::KeysOnly);
    let hooks = db.keyspace("hooks").expect("keyspace");

    // Alone: the panicking writer gets an error, and the next writer is not stuck.
    let h = hooks.clone();
    let boom = spawn(move || h.put(b"boom", b"1"));
    let e = wait(&boom, "panicking writer").expect_err("its extractor panicked");
    assert!(
        e.to_string().contains("extractor exploded on purpose"),
        "the error names the panic: {e}"
    );
    let h = hooks.clone();
    let next = spawn(move || h.put(b"calm", b"1"));
    wait(&next, "next writer").expect("next writer");

    // In one group with others: only the panicking batch fails.
    let held = hold_leader(&db, &gate);
    let mut writers = Vec::new();
    for key in [&b"ok1"[..], b"boom", b"ok2"] {
        let h = hooks.clone();
        let key = key.to_vec();
        writers.push((key.clone(), spawn(move || h.put(&key, b"v"))));
    }
    let_writers_queue();
    gate.release();
    wait(&held, "held writer").expect("held writer");
    for (key, rx) in &writers {
        let r = wait(rx, "grouped writer");
        if key == b"boom" {
            assert!(r.is_err(), "the panicking batch must fail");
        } else {
            r.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(key)));
        }
    }
    assert_eq!(hooks.get(b"boom").expect("get"), None);
    assert_eq!(hooks.get(b"ok2").expect("get"), Some(b"v".to_vec()));
    // The index matches the data: every committed key and nothing else.
    let page = db
        .query_index(
            "hooked",
            &IndexQuery::new(Query::Eq(sealdb::IndexValue::Bytes(b"x".to_vec()))),
        )
        .expect("query");
    let mut keys: Vec<Vec<u8>> = page.hits.into_iter().map(|h| h.primary_key).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            b"calm".to_vec(),
            b"gate".to_vec(),
            b"ok1".to_vec(),
            b"ok2".to_vec()
        ]
    );
    assert_still_writable(&db);
}

#[test]
fn a_write_racing_a_disabled_master_key_gets_key_unavailable() {
    let t = TestDb::new();
    let kms = LocalKms::open(&t.keystore.path().join("kms")).expect("kms");
    kms.create_key("k").expect("create");
    let opts = Options {
        master_key: MasterKey::LocalKms("k".into()),
        // Only the explicit check below changes the key state.
        key_check_interval: Duration::from_secs(3600),
        ..t.options()
    };
    let db = Db::open(t.path(), opts).expect("open");
    let gate = Arc::new(Gate::default());
    hooked_index(&db, &gate, Projection::KeysOnly);
    let held = hold_leader(&db, &gate);
    // This writer passes its own checks while the key is usable, then waits in the queue.
    let d = db.clone();
    let queued = spawn(move || d.put(b"queued", b"1"));
    let_writers_queue();
    kms.disable("k").expect("disable");
    db.check_master_key().expect_err("disabled");
    gate.release();
    wait(&held, "held writer").expect("the held writer was checked before the key went");
    let e = wait(&queued, "queued writer").expect_err("the key is unusable now");
    assert!(
        e.is_key_unavailable() && matches!(e, Error::KeyUnavailable { .. }),
        "expected KeyUnavailable (exit 3), got {e:?}"
    );
    kms.enable("k").expect("enable");
    db.check_master_key().expect("usable again");
    assert_still_writable(&db);
}

#[test]
fn a_refusal_after_poisoning_names_the_failure_once() {
    let t = TestDb::new();
    let fs = CrashFs::new();
    let opts = Options {
        fs: Arc::new(fs.clone()),
        background_work: false,
        ..t.options()
    };
    let db = Db::open("/db", opts).expect("open");
    let gate = Arc::new(Gate::default());
    hooked_index(&db, &gate, Projection::KeysOnly);
    let held = hold_leader(&db, &gate);
    let d = db.clone();
    let queued = spawn(move || d.put(b"queued", b"1"));
    let_writers_queue();
    // The held leader's WAL append fails: the database is poisoned while `queued` waits.
    fs.fail_after(0, FaultKind::AnyMutation);
    gate.release();
    let first = wait(&held, "held writer").expect_err("its append failed");
    let second = wait(&queued, "queued writer").expect_err("poisoned");
    let third = db.put(b"later", b"1").expect_err("poisoned");
    for e in [&first, &second, &third] {
        assert!(matches!(e, Error::Poisoned { .. }), "{e:?}");
        let msg = e.to_string();
        assert_eq!(
            msg.matches("read-only after an earlier failure").count(),
            1,
            "the prefix appears once: {msg}"
        );
        assert!(msg.contains("injected fault"), "names the cause: {msg}");
    }
}

/// Waits until `n` writers are queued behind the commit leader (no sleeping and hoping).
fn wait_for_queue(db: &Db, n: u64) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while db.stats().commit_queue < n {
        assert!(
            std::time::Instant::now() < deadline,
            "writers never queued behind the leader"
        );
        std::thread::yield_now();
    }
}

#[test]
fn writers_queued_behind_the_leader_commit_as_one_group_with_one_sync() {
    let t = TestDb::new();
    let db = t.open();
    let gate = Arc::new(Gate::default());
    hooked_index(&db, &gate, Projection::KeysOnly);
    let before = db.stats();
    let leader = hold_leader(&db, &gate);
    let writers: Vec<_> = (0..5)
        .map(|i| {
            let ks = db.default_keyspace();
            spawn(move || ks.put_opt(format!("w{i}").as_bytes(), b"v", WriteOptions::SYNC))
        })
        .collect();
    wait_for_queue(&db, 5);
    gate.release();
    wait(&leader, "leader").expect("the leader's put");
    for w in writers {
        wait(&w, "writer").expect("a queued put");
    }
    let after = db.stats();
    assert_eq!(after.batches - before.batches, 6);
    // The leader's own frame, then one frame and one sync for the five that queued.
    assert_eq!(after.commit_groups - before.commit_groups, 2, "{after:?}");
    assert_eq!(after.wal_syncs - before.wal_syncs, 1, "{after:?}");
    assert_eq!(after.commit_queue, 0);
    for i in 0..5 {
        assert_eq!(
            db.get(format!("w{i}").as_bytes()).expect("get"),
            Some(b"v".to_vec())
        );
    }
}
