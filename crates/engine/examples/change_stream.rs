//! A change stream with new and old images, a tailing reader, and a durable consumer position.
//!
//! `cargo run -p sealdb --example change_stream`

use sealdb::{Db, Options, StreamStart, StreamView};
use std::time::Duration;

fn main() -> sealdb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let keystore =
        tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let opts = Options {
        keystore_dir: Some(keystore.path().to_path_buf()),
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts)?;
    let ks = db.create_keyspace("accounts")?;
    db.enable_stream(
        &ks,
        StreamView::NewAndOldImages,
        Duration::from_secs(24 * 3600),
        0,
    )?;
    let writer = {
        let ks = ks.clone();
        std::thread::spawn(move || -> sealdb::Result<()> {
            ks.put(b"acct-1", b"100")?;
            ks.put(b"acct-1", b"75")?;
            ks.delete(b"acct-1")?;
            Ok(())
        })
    };
    let mut next = StreamStart::TrimHorizon;
    let mut seen = 0;
    while seen < 3 {
        let batch = db.read_stream(&ks, next, 100, 1 << 20)?;
        for r in &batch.records {
            println!(
                "{} {:?} {:?}: {:?} -> {:?}",
                r.seq,
                r.event,
                String::from_utf8_lossy(&r.key),
                r.old_image,
                r.new_image
            );
            db.commit_stream_position(&ks, "example-consumer", r.seq)?;
        }
        seen += batch.records.len();
        next = StreamStart::At(batch.next);
        if batch.records.is_empty() {
            db.wait_stream(&ks, batch.next.saturating_sub(1), Duration::from_secs(5))?;
        }
    }
    writer
        .join()
        .map_err(|_| sealdb::Error::invalid_argument("writer panicked".into()))??;
    println!(
        "consumer position: {:?}",
        db.stream_position(&ks, "example-consumer")?
    );
    Ok(())
}
