//! Issue acceptance with AWS KMS (a local KMS-compatible server, moto, on loopback):
//! switching owned → local KMS → AWS KMS → owned under a running mixed workload fails no
//! operation, `verify` passes, and a disabled AWS key takes the database offline until it is
//! enabled again. Runs with `--features aws-kms` and `SEALDB_TEST_KMS_ENDPOINT` set (the CI
//! script starts moto); skipped otherwise.
#![cfg(feature = "aws-kms")]

mod common;

use common::{TestDb, collect};
use sealdb::{Db, Error, KeyState, MasterKey, Options, WriteOptions};
use sealdb_crypto::{AwsKmsProvider, KeyProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn endpoint() -> Option<String> {
    let e = std::env::var("SEALDB_TEST_KMS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    if e.is_none() {
        eprintln!(
            "SKIPPED: set SEALDB_TEST_KMS_ENDPOINT (scripts/moto.sh start) to run AWS KMS tests"
        );
    }
    e
}

fn provider(endpoint: &str, key_id: &str) -> AwsKmsProvider {
    AwsKmsProvider::with_endpoint(key_id, endpoint, "us-east-1", "testing", "testing")
        .expect("provider")
}

#[test]
fn switch_owned_local_aws_owned_under_load() {
    let Some(ep) = endpoint() else { return };
    let admin = provider(&ep, "alias/none");
    let key = admin
        .admin_create_key("sealdb switch test")
        .expect("create key");
    let aws: Arc<AwsKmsProvider> = Arc::new(provider(&ep, &key));
    let t = TestDb::new();
    let kms = sealdb_crypto::LocalKms::open(&t.keystore.path().join("kms")).expect("kms");
    kms.create_key("local").expect("local key");
    let opts = Options {
        providers: vec![aws.clone()],
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let worker = {
        let (db, stop, ops) = (db.clone(), stop.clone(), ops.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("k{i}");
                db.default_keyspace()
                    .put_opt(
                        k.as_bytes(),
                        b"v",
                        WriteOptions {
                            sync: i.is_multiple_of(7),
                        },
                    )
                    .expect("put during switch");
                assert_eq!(db.get(k.as_bytes()).expect("get"), Some(b"v".to_vec()));
                i += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
            i
        })
    };
    let wait = |n: u64| {
        let target = ops.load(Ordering::Relaxed) + n;
        while ops.load(Ordering::Relaxed) < target {
            std::thread::yield_now();
        }
    };
    wait(100);
    db.switch_master_key(MasterKey::LocalKms("local".into()))
        .expect("to local kms");
    wait(100);
    let d = db
        .switch_master_key(MasterKey::Provider(aws.clone()))
        .expect("to aws kms");
    assert_eq!(d.provider, "aws-kms");
    wait(100);
    db.switch_master_key(MasterKey::Owned)
        .expect("back to owned");
    wait(100);
    stop.store(true, Ordering::Relaxed);
    let written = worker.join().expect("worker");
    assert!(db.verify().errors.is_empty());
    drop(db);
    let db = Db::open(t.path(), opts).expect("reopen");
    assert_eq!(
        collect(db.default_keyspace().iter().expect("iter")).len() as u64,
        written
    );
}

#[test]
fn a_disabled_aws_key_takes_the_database_offline() {
    let Some(ep) = endpoint() else { return };
    let admin = provider(&ep, "alias/none");
    let key = admin
        .admin_create_key("sealdb disable test")
        .expect("create key");
    let aws: Arc<AwsKmsProvider> = Arc::new(provider(&ep, &key));
    let t = TestDb::new();
    let opts = Options {
        master_key: MasterKey::Provider(aws.clone()),
        providers: vec![aws.clone()],
        key_check_interval: Duration::from_millis(50),
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    db.default_keyspace()
        .put_opt(b"a", b"1", WriteOptions::SYNC)
        .expect("put");
    admin.admin_set_enabled(&key, false).expect("disable");
    assert!(matches!(
        aws.check(),
        Err(sealdb_crypto::Error::KeyUnavailable { .. })
    ));
    let err = db.check_master_key().expect_err("disabled");
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::Disabled,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(db.get(b"a").is_err());
    admin.admin_set_enabled(&key, true).expect("enable");
    db.check_master_key().expect("enabled");
    assert_eq!(db.get(b"a").expect("get"), Some(b"1".to_vec()));
}
