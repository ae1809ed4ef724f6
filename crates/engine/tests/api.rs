//! The library's public API: byte-like arguments, range bounds of any byte-like key type,
//! the point helpers (`contains_key`, `first_key_value`, `last_key_value`), and what a second
//! open in the same process says while handles are alive.

mod common;

use common::{TestDb, collect};
use sealdb::{Db, Error, WriteBatch, WriteOptions};
use std::ops::Bound;

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn keys_and_values_may_be_any_byte_like_type() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.default_keyspace();
    ks.put("str-key", "str-value").expect("put &str");
    ks.put(String::from("string-key"), String::from("string-value"))
        .expect("put String");
    ks.put(b"array-key", b"array-value").expect("put &[u8; N]");
    ks.put(vec![1u8, 2], vec![3u8]).expect("put Vec<u8>");
    ks.put_opt("synced", [9u8].as_slice(), WriteOptions::SYNC)
        .expect("put_opt");
    db.put("via-db", "x").expect("Db::put");

    assert_eq!(ks.get("str-key").expect("get"), Some(b"str-value".to_vec()));
    assert_eq!(
        ks.get(String::from("string-key")).expect("get"),
        Some(b"string-value".to_vec())
    );
    assert_eq!(
        ks.get(b"array-key").expect("get"),
        Some(b"array-value".to_vec())
    );
    assert_eq!(ks.get([1u8, 2]).expect("get"), Some(vec![3u8]));
    assert_eq!(db.get("via-db").expect("get"), Some(b"x".to_vec()));

    let mut batch = WriteBatch::new();
    batch.put(&ks, "batched", "yes").expect("batch put");
    batch
        .delete(&ks, String::from("str-key"))
        .expect("batch delete");
    db.write(batch, WriteOptions::default()).expect("write");
    assert_eq!(ks.get("batched").expect("get"), Some(b"yes".to_vec()));
    ks.delete("array-key").expect("delete");
    db.delete(b"via-db").expect("Db::delete");
    assert_eq!(ks.get("str-key").expect("get"), None);
    assert_eq!(ks.get("array-key").expect("get"), None);
    assert_eq!(db.get("via-db").expect("get"), None);
}

#[test]
fn ranges_take_any_range_of_byte_like_keys() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.create_keyspace("r").expect("keyspace");
    for k in ["a", "ab", "b", "ba", "c"] {
        ks.put(k, format!("v-{k}")).expect("put");
    }
    assert_eq!(
        collect(ks.range("ab".."ba").expect("range")),
        vec![kv("ab", "v-ab"), kv("b", "v-b")]
    );
    assert_eq!(
        collect(ks.range("ab"..="ba").expect("range")),
        vec![kv("ab", "v-ab"), kv("b", "v-b"), kv("ba", "v-ba")]
    );
    assert_eq!(
        collect(ks.range(b"ba".as_slice()..).expect("range")),
        vec![kv("ba", "v-ba"), kv("c", "v-c")]
    );
    assert_eq!(
        collect(ks.range(..b"ab".to_vec()).expect("range")),
        vec![kv("a", "v-a")]
    );
    assert_eq!(
        collect(
            ks.range((Bound::Excluded(b"b".to_vec()), Bound::Unbounded))
                .expect("range")
        ),
        vec![kv("ba", "v-ba"), kv("c", "v-c")]
    );
    assert_eq!(collect(ks.range::<&[u8], _>(..).expect("range")).len(), 5);
    assert_eq!(
        collect(ks.prefix("b").expect("prefix")),
        vec![kv("b", "v-b"), kv("ba", "v-ba")]
    );
    assert_eq!(
        collect(ks.prefix(String::from("a")).expect("prefix")),
        vec![kv("a", "v-a"), kv("ab", "v-ab")]
    );
    // The default keyspace through Db has the same shape.
    db.put("k1", "1").expect("put");
    db.put("k2", "2").expect("put");
    assert_eq!(
        collect(db.range("k2"..).expect("range")),
        vec![kv("k2", "2")]
    );
}

#[test]
fn contains_first_and_last_on_a_keyspace() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.create_keyspace("points").expect("keyspace");
    assert!(!ks.contains_key("m").expect("contains"));
    assert_eq!(ks.first_key_value().expect("first"), None);
    assert_eq!(ks.last_key_value().expect("last"), None);

    for k in ["m", "c", "x"] {
        ks.put(k, k.to_uppercase()).expect("put");
    }
    // Another keyspace's keys are not this one's ends.
    db.put("a", "outside").expect("put");
    db.put("z", "outside").expect("put");
    assert!(ks.contains_key("m").expect("contains"));
    assert!(!ks.contains_key("a").expect("contains"));
    assert_eq!(ks.first_key_value().expect("first"), Some(kv("c", "C")));
    assert_eq!(ks.last_key_value().expect("last"), Some(kv("x", "X")));

    // Ends follow deletes, also once the data is in tables.
    ks.delete("c").expect("delete");
    ks.delete("x").expect("delete");
    db.flush().expect("flush");
    assert!(!ks.contains_key("c").expect("contains"));
    assert_eq!(ks.first_key_value().expect("first"), Some(kv("m", "M")));
    assert_eq!(ks.last_key_value().expect("last"), Some(kv("m", "M")));
}

#[test]
fn snapshots_answer_point_and_end_queries_as_of_their_sequence() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.default_keyspace();
    ks.put("b", "1").expect("put");
    ks.put("d", "1").expect("put");
    let snap = db.snapshot();
    ks.put("a", "2").expect("put");
    ks.put("e", "2").expect("put");
    ks.delete("b").expect("delete");

    assert!(snap.contains_key(&ks, "b").expect("contains"));
    assert!(!snap.contains_key(&ks, "a").expect("contains"));
    assert_eq!(snap.get(&ks, "d").expect("get"), Some(b"1".to_vec()));
    assert_eq!(
        snap.first_key_value(&ks).expect("first"),
        Some(kv("b", "1"))
    );
    assert_eq!(snap.last_key_value(&ks).expect("last"), Some(kv("d", "1")));
    assert_eq!(
        collect(snap.range(&ks, "a".."c").expect("range")),
        vec![kv("b", "1")]
    );
    assert_eq!(
        collect(snap.prefix(&ks, "d").expect("prefix")),
        vec![kv("d", "1")]
    );
    assert_eq!(collect(snap.iter(&ks).expect("iter")).len(), 2);
    // The live view moved on.
    assert_eq!(ks.first_key_value().expect("first"), Some(kv("a", "2")));
    assert_eq!(ks.last_key_value().expect("last"), Some(kv("e", "2")));
}

#[test]
fn a_live_keyspace_keeps_the_database_open_and_a_reopen_says_so() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.default_keyspace();
    ks.put("k", "v").expect("put");
    // The keyspace handle still holds the database: this is not the last handle.
    assert!(!db.close());
    let err = Db::open(t.path(), t.options()).expect_err("still open in this process");
    assert!(matches!(err, Error::InUseHere(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("in use by this process"), "{msg}");
    assert!(!msg.contains("another process"), "{msg}");

    drop(ks);
    let db = Db::open(t.path(), t.options()).expect("reopen once every handle is gone");
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
    let snap = db.snapshot();
    let clone = db.clone();
    assert!(!db.close());
    drop(snap);
    assert!(clone.close(), "the last handle closes the database");
    Db::open(t.path(), t.options()).expect("reopen after close");
}
