//! A global index on a JSON field and a local index scoped to a partition of the primary key,
//! maintained atomically with every write; queries with paging.
//!
//! `cargo run -p sealdb --example secondary_index`

use sealdb::{
    Db, Extractor, IndexDefinition, IndexKind, IndexQuery, IndexValue, Options, PartitionSpec,
    Projection, Query,
};

fn main() -> sealdb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let keystore =
        tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
    let opts = Options {
        keystore_dir: Some(keystore.path().to_path_buf()),
        ..Options::default()
    };
    let db = Db::open(dir.path().join("db"), opts)?;
    let orders = db.create_keyspace("orders")?;
    // Primary keys are "<customer>#<order>": the local index's partition is the customer.
    for (k, v) in [
        ("alice#1", r#"{"status":"open","total":30}"#),
        ("alice#2", r#"{"status":"shipped","total":12}"#),
        ("bob#1", r#"{"status":"open","total":99}"#),
    ] {
        orders.put(k.as_bytes(), v.as_bytes())?;
    }
    db.create_index(
        IndexDefinition {
            name: "by_total".into(),
            keyspace: "orders".into(),
            kind: IndexKind::Global,
            extractor: Extractor::JsonPointer("/total".into()),
            projection: Projection::KeysOnly,
        },
        &mut |n| println!("backfilled {n} items"),
    )?;
    db.create_index(
        IndexDefinition {
            name: "status_per_customer".into(),
            keyspace: "orders".into(),
            kind: IndexKind::Local(PartitionSpec::Delimiter(b'#')),
            extractor: Extractor::JsonPointer("/status".into()),
            projection: Projection::All,
        },
        &mut |_| {},
    )?;
    let big = db.query_index(
        "by_total",
        &IndexQuery::new(Query::Ge(IndexValue::Number(20.0))),
    )?;
    for hit in &big.hits {
        println!(
            "total {} -> {}",
            hit.value,
            String::from_utf8_lossy(&hit.primary_key)
        );
    }
    let mut q = IndexQuery::new(Query::Eq(IndexValue::String("open".into())));
    q.partition = Some(b"alice".to_vec());
    for hit in db.query_index("status_per_customer", &q)?.hits {
        println!(
            "alice's open order {} = {}",
            String::from_utf8_lossy(&hit.primary_key),
            String::from_utf8_lossy(&hit.item)
        );
    }
    Ok(())
}
