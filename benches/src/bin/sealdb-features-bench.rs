//! What secondary indexes and change streams cost, side by side in one run, for sealdb
//! encrypted and plaintext: put latency and throughput with 0, 1 and 3 indexes; index query
//! latency (exact and range); put cost with the stream off and with each view type; and the
//! time from commit to delivery to a tailing reader.
//!
//! `cargo run --release -p sealdb-benches --bin sealdb-features-bench -- --items 200000`

use clap::Parser;
use sealdb::{
    CipherId, Db, Extractor, IndexDefinition, IndexKind, IndexQuery, IndexValue, Options,
    Projection, Query, StreamStart, StreamView,
};
use sealdb_benches::Latency;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "cost of secondary indexes and change streams (HDR histograms)")]
struct Args {
    /// Items written per configuration (the index query runs over this many).
    #[arg(long, default_value_t = 200_000)]
    items: u64,
    /// Index queries per query kind.
    #[arg(long, default_value_t = 20_000)]
    queries: u64,
    /// Run only the put-cost rows with the stream off and with each view type (skips the
    /// index rows and the tailing reader), to compare stream on vs off quickly.
    #[arg(long)]
    streams_only: bool,
    /// Ciphers to run: `chacha`, `none` or both (comma-separated) [default: both].
    #[arg(long, value_delimiter = ',')]
    ciphers: Vec<String>,
}

fn value(i: u64) -> Vec<u8> {
    format!(
        r#"{{"city":"city-{}","age":{},"team":"t{}","pad":"{}"}}"#,
        i % 1000,
        i % 97,
        i % 13,
        "x".repeat(40)
    )
    .into_bytes()
}

fn key(i: u64) -> Vec<u8> {
    format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes()
}

fn open(dir: &std::path::Path, keystore: &std::path::Path, cipher: CipherId) -> Db {
    let opts = Options {
        cipher,
        keystore_dir: Some(keystore.to_path_buf()),
        ..Options::default()
    };
    Db::open(dir, opts).expect("open")
}

fn index(name: &str, pointer: &str) -> IndexDefinition {
    IndexDefinition {
        name: name.into(),
        keyspace: "items".into(),
        kind: IndexKind::Global,
        extractor: Extractor::JsonPointer(pointer.into()),
        projection: Projection::KeysOnly,
    }
}

fn row(name: &str, test: &str, lat: &Latency, elapsed: Duration) {
    let tput = lat.count() as f64 / elapsed.as_secs_f64().max(1e-9);
    println!("{name:<14} {test:<34} {} {tput:>12.0}", lat.summary());
}

fn puts(db: &Db, n: u64) -> (Latency, Duration) {
    let ks = db.keyspace("items").expect("ks");
    let mut lat = Latency::new();
    let start = Instant::now();
    for i in 0..n {
        let (k, v) = (key(i), value(i));
        let t = Instant::now();
        ks.put(&k, &v).expect("put");
        lat.record(t.elapsed());
    }
    (lat, start.elapsed())
}

fn main() {
    let args = Args::parse();
    let root = tempfile::tempdir().expect("tmp");
    let keystore = tempfile::tempdir().expect("keystore");
    println!(
        "{:<14} {:<34} {:>9} {:>9} {:>9} {:>10} {:>12}",
        "engine", "test", "p50 us", "p99 us", "p99.9 us", "max us", "ops/s"
    );
    for (name, cipher) in [
        ("sealdb-chacha", CipherId::ChaCha20Poly1305),
        ("sealdb-none", CipherId::None),
    ] {
        let short = name.trim_start_matches("sealdb-");
        if !args.ciphers.is_empty() && !args.ciphers.iter().any(|c| c == short) {
            continue;
        }
        // Indexes: 0, 1, 3.
        for n_idx in [0usize, 1, 3] {
            if args.streams_only {
                break;
            }
            let db = open(
                &root.path().join(format!("{name}-idx{n_idx}")),
                keystore.path(),
                cipher,
            );
            db.create_keyspace("items").expect("ks");
            for (i, (nm, p)) in [
                ("by_city", "/city"),
                ("by_age", "/age"),
                ("by_team", "/team"),
            ]
            .iter()
            .enumerate()
            {
                if i < n_idx {
                    db.create_index(index(nm, p), &mut |_| {}).expect("index");
                }
            }
            let (lat, el) = puts(&db, args.items);
            row(name, &format!("put, {n_idx} indexes"), &lat, el);
            if n_idx >= 1 {
                let mut eq = Latency::new();
                let start = Instant::now();
                for q in 0..args.queries {
                    let query = IndexQuery::new(Query::Eq(IndexValue::String(format!(
                        "city-{}",
                        q % 1000
                    ))));
                    let t = Instant::now();
                    let page = db.query_index("by_city", &query).expect("query");
                    eq.record(t.elapsed());
                    assert!(!page.hits.is_empty());
                }
                row(
                    name,
                    "index query exact (~items/1000 hits)",
                    &eq,
                    start.elapsed(),
                );
                let mut range = Latency::new();
                let start = Instant::now();
                for q in 0..args.queries {
                    let lo = format!("city-{:03}", q % 900);
                    let mut query = IndexQuery::new(Query::Ge(IndexValue::String(lo)));
                    query.limit = 100;
                    let t = Instant::now();
                    let page = db.query_index("by_city", &query).expect("query");
                    range.record(t.elapsed());
                    assert!(!page.hits.is_empty());
                }
                row(
                    name,
                    "index query range (limit 100)",
                    &range,
                    start.elapsed(),
                );
            }
        }
        // Streams: off and each view type.
        for view in [
            None,
            Some(StreamView::KeysOnly),
            Some(StreamView::NewImage),
            Some(StreamView::OldImage),
            Some(StreamView::NewAndOldImages),
        ] {
            let label = view.map_or("off".to_string(), |v| v.as_str().to_string());
            let db = open(
                &root.path().join(format!("{name}-stream-{label}")),
                keystore.path(),
                cipher,
            );
            let ks = db.create_keyspace("items").expect("ks");
            if let Some(v) = view {
                db.enable_stream(&ks, v, Duration::from_secs(86400), 0)
                    .expect("stream");
            }
            let (lat, el) = puts(&db, args.items);
            row(name, &format!("put, stream {label}"), &lat, el);
        }
        if args.streams_only {
            continue;
        }
        // Commit-to-delivery latency to a tailing reader.
        let db = open(
            &root.path().join(format!("{name}-tail")),
            keystore.path(),
            cipher,
        );
        let ks = db.create_keyspace("items").expect("ks");
        db.enable_stream(
            &ks,
            StreamView::NewAndOldImages,
            Duration::from_secs(86400),
            0,
        )
        .expect("stream");
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, Instant>>> =
            Arc::default();
        let reader = {
            let (db, ks, stop, sent) = (db.clone(), ks.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut lat = Latency::new();
                let mut next = StreamStart::TrimHorizon;
                let mut after = 0;
                while !stop.load(Ordering::Relaxed) {
                    db.wait_stream(&ks, after, Duration::from_millis(100))
                        .expect("wait");
                    let b = db.read_stream(&ks, next, 1000, 1 << 20).expect("read");
                    let now = Instant::now();
                    for r in &b.records {
                        if let Some(t) = sent.lock().expect("lock").remove(&r.key) {
                            lat.record(now.duration_since(t));
                        }
                        after = r.seq;
                    }
                    next = StreamStart::At(b.next);
                }
                lat
            })
        };
        let start = Instant::now();
        for i in 0..20_000u64 {
            let k = key(i);
            sent.lock().expect("lock").insert(k.clone(), Instant::now());
            ks.put(&k, value(i)).expect("put");
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let lat = reader.join().expect("reader");
        row(
            name,
            "stream commit-to-delivery (tail)",
            &lat,
            start.elapsed(),
        );
    }
}
