//! Open a database with the default owned key, write, read, scan, snapshot.
//!
//! `cargo run -p sealdb --example quickstart`

use sealdb::{Db, Options, WriteBatch, WriteOptions};

fn main() -> sealdb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let keystore =
        tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let opts = Options {
        keystore_dir: Some(keystore.path().to_path_buf()),
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts)?;
    println!(
        "database {} sealed with {}",
        db.database_id(),
        db.cipher().name()
    );
    let users = db.create_keyspace("users")?;
    let mut batch = WriteBatch::new();
    for (k, v) in [("u1", "ada"), ("u2", "grace"), ("u3", "edsger")] {
        batch.put(&users, k.as_bytes(), v.as_bytes())?;
    }
    db.write(batch, WriteOptions::SYNC)?;
    let snapshot = db.snapshot();
    users.delete(b"u2")?;
    println!("now: {:?}", users.get(b"u2")?);
    println!(
        "at the snapshot: {:?}",
        snapshot.get(&users, b"u2")?.map(String::from_utf8)
    );
    for item in users.range(b"u1".as_slice()..)?.rev() {
        let (k, v) = item?;
        println!(
            "{} = {}",
            String::from_utf8_lossy(&k),
            String::from_utf8_lossy(&v)
        );
    }
    Ok(())
}
