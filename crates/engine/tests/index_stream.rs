//! Secondary indexes and change streams: queries of every kind, projections, paging, local
//! partitions, backfill, dropping, and model checks in which the index always equals the index
//! recomputed from the base data and the stream always equals the model's change log — across
//! flushes, compactions, reopens and crashes.

mod common;

use common::TestDb;
use proptest::prelude::*;
use sealdb::{
    Db, IndexDefinition, IndexKind, IndexQuery, IndexValue, Options, PartitionSpec, Projection,
    Query, StreamEvent, StreamStart, StreamView, WriteBatch, WriteOptions,
};
use sealdb_vfs::{CrashFs, FileSystem};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn def(
    name: &str,
    ks: &str,
    pointer: &str,
    kind: IndexKind,
    projection: Projection,
) -> IndexDefinition {
    IndexDefinition {
        name: name.into(),
        keyspace: ks.into(),
        kind,
        extractor: sealdb::Extractor::JsonPointer(pointer.into()),
        projection,
    }
}

fn item(color: &str, size: i64) -> Vec<u8> {
    format!(r#"{{"color":"{color}","size":{size},"name":"n-{color}-{size}"}}"#).into_bytes()
}

#[test]
fn queries_projections_paging_and_backfill() {
    let t = TestDb::new();
    let db = t.open();
    let items = db.create_keyspace("items").expect("ks");
    // Data before the index exists: the backfill must index it.
    for i in 0..300i64 {
        let color = ["red", "green", "blue"][(i % 3) as usize];
        items
            .put(format!("item{i:04}").as_bytes(), item(color, i))
            .expect("put");
    }
    items.put(b"not-json", b"plain bytes").expect("put");
    items.put(b"no-color", br#"{"size":5}"#).expect("put");
    let mut seen = 0;
    db.create_index(
        def(
            "by_color",
            "items",
            "/color",
            IndexKind::Global,
            Projection::Include(vec!["name".into()]),
        ),
        &mut |n| seen = n,
    )
    .expect("create index");
    assert!(seen >= 300);
    db.create_index(
        def(
            "by_size",
            "items",
            "/size",
            IndexKind::Global,
            Projection::KeysOnly,
        ),
        &mut |_| {},
    )
    .expect("create index");
    // Maintenance: updates move entries, deletes remove them.
    items.put(b"item0000", item("green", 0)).expect("put");
    items.delete(b"item0003").expect("delete");

    let q = |query: Query| IndexQuery::new(query);
    let reds = db
        .query_index("by_color", &q(Query::Eq(IndexValue::String("red".into()))))
        .expect("eq");
    assert_eq!(reds.hits.len(), 98); // 100 reds, minus item0000 (now green) and item0003 (gone)
    assert!(
        reds.hits
            .iter()
            .all(|h| h.item.starts_with(b"{\"name\":\"n-red"))
    );
    let greens = db
        .query_index(
            "by_color",
            &q(Query::Eq(IndexValue::String("green".into()))),
        )
        .expect("eq");
    assert_eq!(greens.hits.len(), 101);
    let small = db
        .query_index("by_size", &q(Query::Lt(IndexValue::Number(10.0))))
        .expect("lt");
    // Sizes 0..9 (item0003 deleted; "no-color" has size 5 too).
    assert_eq!(small.hits.len(), 10);
    let between = db
        .query_index(
            "by_size",
            &q(Query::Between(
                IndexValue::Number(100.0),
                IndexValue::Number(109.0),
            )),
        )
        .expect("between");
    assert_eq!(between.hits.len(), 10);
    let prefix = db
        .query_index(
            "by_color",
            &q(Query::BeginsWith(IndexValue::String("gr".into()))),
        )
        .expect("begins");
    assert_eq!(prefix.hits.len(), 101);
    // Paging with a continuation token, both directions.
    for reverse in [false, true] {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let mut query = q(Query::Ge(IndexValue::Number(0.0)));
            query.limit = 37;
            query.reverse = reverse;
            query.after = after.clone();
            let page = db.query_index("by_size", &query).expect("page");
            all.extend(page.hits.iter().map(|h| h.primary_key.clone()));
            match page.next {
                Some(tok) => after = Some(tok),
                None => break,
            }
        }
        assert_eq!(all.len(), 300, "reverse {reverse}"); // 299 items + "no-color"
        let mut sorted = all.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }
    // Fetching full items for a keys-only index.
    let mut fetch = q(Query::Eq(IndexValue::Number(42.0)));
    fetch.fetch_items = true;
    let got = db.query_index("by_size", &fetch).expect("fetch");
    assert_eq!(got.hits.len(), 1);
    assert_eq!(got.hits[0].item, item("red", 42));
    // Survives reopen, flush and compaction.
    db.compact().expect("compact");
    drop((items, db));
    let db = t.open();
    assert_eq!(db.list_indexes().len(), 2);
    assert!(db.list_indexes().iter().all(|i| i.ready));
    let reds = db
        .query_index("by_color", &q(Query::Eq(IndexValue::String("red".into()))))
        .expect("eq");
    assert_eq!(reds.hits.len(), 98);
    // Dropping removes it.
    db.drop_index("by_color").expect("drop");
    assert!(
        db.query_index("by_color", &q(Query::Eq(IndexValue::String("red".into()))))
            .is_err()
    );
    assert!(!db.keyspace_names().iter().any(|n| n.contains("by_color")));
}

#[test]
fn local_index_is_scoped_to_a_partition() {
    let t = TestDb::new();
    let db = t.open();
    let orders = db.create_keyspace("orders").expect("ks");
    db.create_index(
        def(
            "by_status",
            "orders",
            "/status",
            IndexKind::Local(PartitionSpec::Delimiter(b'#')),
            Projection::All,
        ),
        &mut |_| {},
    )
    .expect("index");
    for (k, status) in [
        ("alice#1", "open"),
        ("alice#2", "shipped"),
        ("bob#1", "open"),
        ("bob#2", "open"),
    ] {
        orders
            .put(
                k.as_bytes(),
                format!(r#"{{"status":"{status}"}}"#).as_bytes(),
            )
            .expect("put");
    }
    let mut query = IndexQuery::new(Query::Eq(IndexValue::String("open".into())));
    assert!(
        db.query_index("by_status", &query).is_err(),
        "local queries need a partition"
    );
    query.partition = Some(b"bob".to_vec());
    let page = db.query_index("by_status", &query).expect("query");
    let keys: Vec<_> = page.hits.iter().map(|h| h.primary_key.clone()).collect();
    assert_eq!(keys, vec![b"bob#1".to_vec(), b"bob#2".to_vec()]);
    assert_eq!(page.hits[0].item, br#"{"status":"open"}"#.to_vec());
}

#[test]
fn indexed_values_are_not_in_clear_on_disk() {
    let t = TestDb::new();
    {
        let db = t.open();
        let ks = db.create_keyspace("people").expect("ks");
        db.create_index(
            def(
                "by_email",
                "people",
                "/email",
                IndexKind::Global,
                Projection::All,
            ),
            &mut |_| {},
        )
        .expect("index");
        ks.put(b"p1", br#"{"email":"zebra-unique@example.org"}"#)
            .expect("put");
        db.flush().expect("flush");
        db.compact().expect("compact");
    }
    for f in walk(&t.path()) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !bytes.windows(12).any(|w| w == b"zebra-unique"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn streams_record_inserts_modifies_and_removes_in_commit_order() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.create_keyspace("feed").expect("ks");
    db.enable_stream(
        &ks,
        StreamView::NewAndOldImages,
        Duration::from_secs(86400),
        0,
    )
    .expect("enable");
    ks.put(b"a", b"1").expect("put");
    ks.put(b"a", b"2").expect("put");
    ks.put(b"a", b"2").expect("put (no change: no record)");
    ks.delete(b"a").expect("delete");
    ks.delete(b"missing")
        .expect("delete of an absent key: no record");
    let mut b = WriteBatch::new();
    b.put(&ks, b"x", b"1").expect("put");
    b.put(&ks, b"y", b"1").expect("put");
    db.write(b, WriteOptions::SYNC).expect("batch");
    let batch = db
        .read_stream(&ks, StreamStart::TrimHorizon, 100, 1 << 20)
        .expect("read");
    let events: Vec<_> = batch
        .records
        .iter()
        .map(|r| (r.event, r.key.clone()))
        .collect();
    assert_eq!(
        events,
        vec![
            (StreamEvent::Insert, b"a".to_vec()),
            (StreamEvent::Modify, b"a".to_vec()),
            (StreamEvent::Remove, b"a".to_vec()),
            (StreamEvent::Insert, b"x".to_vec()),
            (StreamEvent::Insert, b"y".to_vec()),
        ]
    );
    assert_eq!(batch.records[1].old_image.as_deref(), Some(&b"1"[..]));
    assert_eq!(batch.records[1].new_image.as_deref(), Some(&b"2"[..]));
    // A batch's records are contiguous and carry consecutive sequence numbers.
    assert_eq!(batch.records[4].seq, batch.records[3].seq + 1);
    // Tailing: a reader blocks until a write arrives.
    let last = batch.records.last().map(|r| r.seq).unwrap_or(0);
    let writer = {
        let ks = ks.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ks.put(b"late", b"1").expect("put");
        })
    };
    assert!(
        db.wait_stream(&ks, last, Duration::from_secs(10))
            .expect("wait")
    );
    writer.join().expect("join");
    // Consumer positions survive reopen.
    db.commit_stream_position(&ks, "reader-1", last)
        .expect("commit");
    drop((ks, db));
    let db = t.open();
    let ks = db.keyspace("feed").expect("ks");
    assert_eq!(
        db.stream_position(&ks, "reader-1").expect("pos"),
        Some(last)
    );
    let after = db
        .read_stream(&ks, StreamStart::After(last), 10, 1 << 20)
        .expect("read");
    assert_eq!(after.records.len(), 1);
    assert_eq!(after.records[0].key, b"late");
}

// ---- model check with crashes ----

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, color: u8, sync: bool },
    Delete { key: u8, sync: bool },
    Flush,
    Compact,
    Reopen,
    Crash { seed: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, 0u8..4, any::<bool>()).prop_map(|(key, color, sync)| Op::Put { key, color, sync }),
        3 => (0u8..12, any::<bool>()).prop_map(|(key, sync)| Op::Delete { key, sync }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
    ]
}

type Log = Vec<(u64, StreamEvent, Vec<u8>)>;
type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// One acknowledged write: its visible sequence number, whether synced, and the model after it.
type Pending = (u64, bool, Model, Log);

struct Harness {
    fs: CrashFs,
    keystore: tempfile::TempDir,
    db: Option<Db>,
    /// Committed state and change log, plus per-write (seq, synced) since the last reopen.
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    log: Log,
    pending: Vec<Pending>,
    /// The model as of the last reopen (what survives if no pending write does).
    base: (Model, Log),
}

impl Harness {
    fn options(&self) -> Options {
        Options {
            fs: Arc::new(self.fs.clone()),
            keystore_dir: Some(self.keystore.path().to_path_buf()),
            memtable_size: 2 << 10,
            background_work: false,
            l0_compaction_trigger: 2,
            ..Options::default()
        }
    }

    fn db(&self) -> Db {
        self.db.clone().expect("open")
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let db = self.db();
        let ks = db.keyspace("items").expect("ks");
        // Base data.
        let base: BTreeMap<Vec<u8>, Vec<u8>> = ks
            .iter()
            .expect("iter")
            .collect::<sealdb::Result<_>>()
            .expect("scan");
        prop_assert_eq!(&base, &self.model);
        // The index equals the index recomputed from the base data.
        for c in 0..4u8 {
            let q = IndexQuery::new(Query::Eq(IndexValue::String(format!("c{c}"))));
            let mut got: Vec<Vec<u8>> = db
                .query_index("by_color", &q)
                .expect("query")
                .hits
                .into_iter()
                .map(|h| h.primary_key)
                .collect();
            got.sort();
            let want: Vec<Vec<u8>> = self
                .model
                .iter()
                .filter(|(_, v)| v.windows(4).any(|w| w == format!("\"c{c}\"").as_bytes()))
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(got, want, "color c{}", c);
        }
        // The stream, from the trim horizon, equals the model's change log.
        let records = db
            .read_stream(&ks, StreamStart::TrimHorizon, 100_000, usize::MAX)
            .expect("read")
            .records;
        // Sequence numbers: strictly increasing, each at or below the write's visible one (a
        // write's index records follow its own records in the same batch).
        for (w, (r, (seq, _, _))) in records.windows(2).zip(records.iter().zip(&self.log)) {
            prop_assert!(w[0].seq < w[1].seq);
            prop_assert!(r.seq <= *seq);
        }
        let got: Vec<_> = records.into_iter().map(|r| (r.event, r.key)).collect();
        let want: Vec<_> = self.log.iter().map(|(_, e, k)| (*e, k.clone())).collect();
        prop_assert_eq!(&got, &want);
        Ok(())
    }

    fn reopen(&mut self, crash: Option<u64>) -> Result<(), TestCaseError> {
        self.db = None;
        if let Some(seed) = crash {
            self.fs.crash_keeping_prefix(seed);
        }
        self.db = Some(Db::open("/x/db", self.options()).expect("reopen"));
        let recovered = self.db().last_sequence();
        let last_synced = self.pending.iter().rposition(|(_, s, _, _)| *s);
        let keep = self
            .pending
            .iter()
            .take_while(|(seq, _, _, _)| *seq <= recovered)
            .count();
        if let Some(s) = last_synced {
            prop_assert!(keep > s, "synced write lost");
        }
        let (m, l) = if keep > 0 {
            let (_, _, m, l) = self.pending[keep - 1].clone();
            (m, l)
        } else {
            self.base.clone()
        };
        self.model = m;
        self.log = l;
        self.base = (self.model.clone(), self.log.clone());
        self.pending.clear();
        self.check()
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/x")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    let mut h = Harness {
        fs,
        keystore: tempfile::tempdir().expect("tmp"),
        db: None,
        model: BTreeMap::new(),
        log: Vec::new(),
        pending: Vec::new(),
        base: (BTreeMap::new(), Vec::new()),
    };
    h.db = Some(Db::open("/x/db", h.options()).expect("open"));
    {
        let db = h.db();
        let ks = db.create_keyspace("items").expect("ks");
        db.create_index(
            def(
                "by_color",
                "items",
                "/color",
                IndexKind::Global,
                Projection::KeysOnly,
            ),
            &mut |_| {},
        )
        .expect("index");
        db.enable_stream(&ks, StreamView::KeysOnly, Duration::from_secs(86400), 0)
            .expect("stream");
    }
    for op in ops {
        match op {
            Op::Reopen => {
                h.reopen(None)?;
                continue;
            }
            Op::Crash { seed } => {
                h.reopen(Some(*seed))?;
                continue;
            }
            _ => {}
        }
        let db = h.db();
        let ks = db.keyspace("items").expect("ks");
        match op {
            Op::Put { key, color, sync } => {
                let k = format!("k{key:02}").into_bytes();
                let v = format!(r#"{{"color":"c{color}"}}"#).into_bytes();
                let mut b = WriteBatch::new();
                b.put(&ks, &k, &v).expect("put");
                let seq = db.write(b, WriteOptions { sync: *sync }).expect("write");
                let event = match h.model.get(&k) {
                    None => Some(StreamEvent::Insert),
                    Some(old) if *old == v => None,
                    Some(_) => Some(StreamEvent::Modify),
                };
                if let Some(e) = event {
                    h.log.push((seq, e, k.clone()));
                }
                h.model.insert(k, v);
                h.pending.push((seq, *sync, h.model.clone(), h.log.clone()));
            }
            Op::Delete { key, sync } => {
                let k = format!("k{key:02}").into_bytes();
                let mut b = WriteBatch::new();
                b.delete(&ks, &k).expect("delete");
                let seq = db.write(b, WriteOptions { sync: *sync }).expect("write");
                if h.model.remove(&k).is_some() {
                    h.log.push((seq, StreamEvent::Remove, k.clone()));
                }
                h.pending.push((seq, *sync, h.model.clone(), h.log.clone()));
            }
            Op::Flush => db.flush().expect("flush"),
            Op::Compact => db.compact().expect("compact"),
            Op::Reopen | Op::Crash { .. } => {}
        }
    }
    h.check()?;
    h.reopen(None)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        .. ProptestConfig::default()
    })]

    #[test]
    fn indexes_and_streams_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn dropping_an_index_removes_its_files() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.create_keyspace("docs").expect("ks");
    for i in 0..500u32 {
        ks.put(
            format!("d{i}").as_bytes(),
            format!(r#"{{"tag":"t{}"}}"#, i % 7).as_bytes(),
        )
        .expect("put");
    }
    db.create_index(
        def("by_tag", "docs", "/tag", IndexKind::Global, Projection::All),
        &mut |_| {},
    )
    .expect("index");
    db.flush().expect("flush");
    let count = |db: &Db| {
        let mut n = 0;
        for e in walk(&t.path().join("tables")) {
            let _ = e;
            n += 1;
        }
        let _ = db;
        n
    };
    let before = count(&db);
    db.drop_index("by_tag").expect("drop");
    let after = count(&db);
    assert!(
        after < before,
        "index tables still on disk: {before} -> {after}"
    );
}

#[test]
fn a_stream_starts_at_enable_and_survives_reencryption() {
    let t = TestDb::new();
    {
        let db = t.open();
        let ks = db.create_keyspace("s").expect("ks");
        ks.put(b"before", b"1").expect("put");
        db.enable_stream(&ks, StreamView::NewImage, Duration::from_secs(3600), 0)
            .expect("enable");
        ks.put(b"after", b"2").expect("put");
        db.rotate_data_key().expect("rotate");
        ks.put(b"rotated", b"3").expect("put");
        db.reencrypt(&mut |_, _| {}).expect("reencrypt");
    }
    // Reopen replays the WAL: writes from before the stream existed must not appear in it,
    // and every file (stream segments included) must still open.
    let db = t.open();
    let ks = db.keyspace("s").expect("ks");
    let keys: Vec<_> = db
        .read_stream(&ks, StreamStart::TrimHorizon, 100, 1 << 20)
        .expect("read")
        .records
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, vec![b"after".to_vec(), b"rotated".to_vec()]);
    assert!(db.verify().errors.is_empty());
}
