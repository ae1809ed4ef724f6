//! The AWS KMS key provider against a KMS-compatible server on loopback (moto).
//!
//! Needs `SEALDB_TEST_KMS_ENDPOINT` (for example `http://127.0.0.1:5599`, as printed by
//! `scripts/moto.sh start`); without it each test that needs the server says so and returns.
//! The SDK is configured explicitly (endpoint, region, static credentials), so it reads no
//! environment variable, no AWS configuration file and never calls a metadata service.
#![cfg(feature = "aws-kms")]

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use sealdb_crypto::{
    AwsKmsProvider, CipherId, DatabaseId, EncryptionContext, Error, KeyDescriptor, KeyProvider,
    KeyState, KeysFile, LocalKms, SecretKey, SharedProvider,
};
mod common;

use common::{db_fs, resolver};
use std::path::Path;
use std::sync::Arc;

const REGION: &str = "us-east-1";
const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";

fn endpoint() -> Option<String> {
    match std::env::var("SEALDB_TEST_KMS_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED: SEALDB_TEST_KMS_ENDPOINT is not set; run `scripts/moto.sh start` and \
                 set it to the URL printed to run the AWS KMS tests"
            );
            None
        }
    }
}

/// Administration of the test server's keys through the SDK, as an operator would.
struct Admin {
    rt: tokio::runtime::Runtime,
    client: Client,
    endpoint: String,
}

impl Admin {
    /// `None` (test skipped) when no server is configured.
    fn connect() -> Option<Self> {
        let endpoint = endpoint()?;
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Some(Self {
            rt,
            client: Client::from_conf(config),
            endpoint,
        })
    }

    fn create_key(&self) -> String {
        let out = self
            .rt
            .block_on(
                self.client
                    .create_key()
                    .description("sealdb test master key")
                    .send(),
            )
            .expect("CreateKey");
        out.key_metadata()
            .expect("key metadata")
            .key_id()
            .to_owned()
    }

    fn arn(&self, key_id: &str) -> String {
        let out = self
            .rt
            .block_on(self.client.describe_key().key_id(key_id).send())
            .expect("DescribeKey");
        out.key_metadata()
            .and_then(|m| m.arn())
            .expect("arn")
            .to_owned()
    }

    fn disable(&self, key_id: &str) {
        self.rt
            .block_on(self.client.disable_key().key_id(key_id).send())
            .expect("DisableKey");
    }

    fn enable(&self, key_id: &str) {
        self.rt
            .block_on(self.client.enable_key().key_id(key_id).send())
            .expect("EnableKey");
    }

    fn schedule_deletion(&self, key_id: &str, days: i32) {
        self.rt
            .block_on(
                self.client
                    .schedule_key_deletion()
                    .key_id(key_id)
                    .pending_window_in_days(days)
                    .send(),
            )
            .expect("ScheduleKeyDeletion");
    }

    fn cancel_deletion(&self, key_id: &str) {
        self.rt
            .block_on(self.client.cancel_key_deletion().key_id(key_id).send())
            .expect("CancelKeyDeletion");
    }

    fn provider(&self, key_id: &str) -> AwsKmsProvider {
        AwsKmsProvider::with_endpoint(key_id, &self.endpoint, REGION, ACCESS_KEY, SECRET_KEY)
            .expect("provider")
    }

    /// A new key, its provider, a fresh database's context, and a random data key wrapped
    /// under the key for that database.
    fn key_with_a_wrapped_data_key(
        &self,
    ) -> (
        String,
        AwsKmsProvider,
        EncryptionContext,
        SecretKey,
        Vec<u8>,
    ) {
        let key_id = self.create_key();
        let p = self.provider(&key_id);
        let ctx = ctx();
        let data_key = SecretKey::generate().expect("key");
        let wrapped = p.wrap(&data_key, &ctx).expect("wrap");
        (key_id, p, ctx, data_key, wrapped)
    }
}

fn ctx() -> EncryptionContext {
    EncryptionContext {
        database_id: DatabaseId::generate().expect("id"),
    }
}

fn state_of(err: Error) -> KeyState {
    match err {
        Error::KeyUnavailable {
            provider, state, ..
        } => {
            assert_eq!(provider, "aws-kms");
            state
        }
        other => panic!("expected KeyUnavailable, got {other:?}"),
    }
}

fn assert_wrong_key(err: Error, key_id: &str) {
    match err {
        Error::WrongMasterKey {
            provider,
            key_id: named,
        } => {
            assert_eq!(provider, "aws-kms");
            assert_eq!(named, key_id);
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
}

#[test]
fn wrap_unwrap_round_trip() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let key_id = admin.create_key();
    let p = admin.provider(&key_id);
    assert_eq!(
        p.descriptor(),
        KeyDescriptor::new("aws-kms", key_id.clone())
    );
    assert_eq!(p.check().expect("check"), KeyState::Enabled);

    let ctx = ctx();
    let data_key = SecretKey::generate().expect("key");
    let wrapped = p.wrap(&data_key, &ctx).expect("wrap");
    assert!(
        !wrapped
            .windows(data_key.expose().len())
            .any(|w| w == data_key.expose()),
        "wrapped blob contains the data key"
    );
    assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), data_key);
    // Wrapping twice gives different blobs that both unwrap.
    let again = p.wrap(&data_key, &ctx).expect("wrap");
    assert_ne!(again, wrapped);
    assert_eq!(p.unwrap(&again, &ctx).expect("unwrap"), data_key);

    // The key's ARN works as its id too.
    let by_arn = admin.provider(&admin.arn(&key_id));
    assert_eq!(
        by_arn.unwrap(&wrapped, &ctx).expect("unwrap by arn"),
        data_key
    );

    // Debug names the key and region, nothing else.
    let debug = format!("{p:?}");
    assert!(debug.contains(&key_id) && debug.contains(REGION), "{debug}");
}

#[test]
fn generate_data_key_makes_a_fresh_wrapped_key() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let p = admin.provider(&admin.create_key());
    let ctx = ctx();
    let (k1, w1) = p.generate_data_key(&ctx).expect("generate");
    let (k2, w2) = p.generate_data_key(&ctx).expect("generate");
    assert_ne!(k1, k2);
    assert_ne!(w1, w2);
    assert_eq!(p.unwrap(&w1, &ctx).expect("unwrap"), k1);
    assert_eq!(p.unwrap(&w2, &ctx).expect("unwrap"), k2);
    assert_ne!(k1.expose(), &[0u8; 32]);
}

#[test]
fn another_database_or_an_altered_blob_is_the_wrong_master_key() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let (key_id, p, ctx, data_key, wrapped) = admin.key_with_a_wrapped_data_key();

    // Unwrapping on behalf of another database: the encryption context differs.
    let other_db = self::ctx();
    assert_wrong_key(
        p.unwrap(&wrapped, &other_db).expect_err("other db"),
        &key_id,
    );

    // An altered ciphertext.
    let mut altered = wrapped.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert_wrong_key(p.unwrap(&altered, &ctx).expect_err("altered"), &key_id);
    assert_wrong_key(p.unwrap(&[], &ctx).expect_err("empty"), &key_id);
    assert_wrong_key(
        p.unwrap(b"not a kms ciphertext", &ctx).expect_err("junk"),
        &key_id,
    );

    // The original still opens.
    assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), data_key);
}

#[test]
fn a_blob_wrapped_under_one_key_does_not_unwrap_with_another() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let a = admin.provider(&admin.create_key());
    let b_id = admin.create_key();
    let b = admin.provider(&b_id);
    let ctx = ctx();
    let wrapped = a
        .wrap(&SecretKey::generate().expect("key"), &ctx)
        .expect("wrap");
    // Real KMS answers IncorrectKeyException (WrongMasterKey); moto answers
    // AccessDeniedException (KeyUnavailable). Either way no key comes back.
    let err = b
        .unwrap(&wrapped, &ctx)
        .expect_err("key b must not unwrap key a's blob");
    eprintln!("key b refused key a's blob: {err}");
    match err {
        Error::WrongMasterKey { key_id, .. } | Error::KeyUnavailable { key_id, .. } => {
            assert_eq!(key_id, b_id);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn a_disabled_key_is_unavailable_until_enabled() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let (key_id, p, ctx, data_key, wrapped) = admin.key_with_a_wrapped_data_key();

    admin.disable(&key_id);
    assert_eq!(state_of(p.check().expect_err("check")), KeyState::Disabled);
    assert_eq!(
        state_of(p.unwrap(&wrapped, &ctx).expect_err("unwrap")),
        KeyState::Disabled
    );
    assert_eq!(
        state_of(p.wrap(&data_key, &ctx).expect_err("wrap")),
        KeyState::Disabled
    );
    assert_eq!(
        state_of(p.generate_data_key(&ctx).expect_err("generate")),
        KeyState::Disabled
    );
    let message = p.check().expect_err("check").to_string();
    assert!(
        message.contains(&key_id) && message.contains("disabled"),
        "{message}"
    );

    admin.enable(&key_id);
    assert_eq!(p.check().expect("check"), KeyState::Enabled);
    assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), data_key);
}

#[test]
fn a_key_pending_deletion_is_unavailable_and_cancelling_leaves_it_disabled() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let (key_id, p, ctx, data_key, wrapped) = admin.key_with_a_wrapped_data_key();

    let before = sealdb_crypto::unix_now();
    admin.schedule_deletion(&key_id, 7);
    let after = sealdb_crypto::unix_now();
    let seven_days = 7 * 86_400;
    match state_of(p.check().expect_err("check")) {
        KeyState::PendingDeletion { deletion_at } => {
            // moto and KMS may round the date; allow a day either way.
            assert!(
                deletion_at + 86_400 >= before + seven_days
                    && deletion_at <= after + seven_days + 86_400,
                "deletion_at {deletion_at}, now {before}"
            );
        }
        other => panic!("expected PendingDeletion, got {other:?}"),
    }
    assert!(matches!(
        state_of(p.unwrap(&wrapped, &ctx).expect_err("unwrap")),
        KeyState::PendingDeletion { .. }
    ));
    assert!(matches!(
        state_of(p.wrap(&data_key, &ctx).expect_err("wrap")),
        KeyState::PendingDeletion { .. }
    ));

    // Cancelling returns the key disabled (as in AWS KMS), not enabled.
    admin.cancel_deletion(&key_id);
    assert_eq!(state_of(p.check().expect_err("check")), KeyState::Disabled);
    admin.enable(&key_id);
    assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), data_key);
}

#[test]
fn an_unknown_key_is_not_found() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let p = admin.provider("11111111-2222-3333-4444-555555555555");
    assert_eq!(state_of(p.check().expect_err("check")), KeyState::NotFound);
    assert_eq!(
        state_of(
            p.wrap(&SecretKey::generate().expect("key"), &ctx())
                .expect_err("wrap")
        ),
        KeyState::NotFound
    );
}

#[test]
fn an_unreachable_service_is_reported_as_such() {
    // Needs no server: nothing listens on port 1 of loopback.
    let p = AwsKmsProvider::with_endpoint(
        "11111111-2222-3333-4444-555555555555",
        "http://127.0.0.1:1",
        REGION,
        ACCESS_KEY,
        SECRET_KEY,
    )
    .expect("provider");
    match state_of(p.check().expect_err("check")) {
        KeyState::Unreachable(why) => assert!(why.contains("DescribeKey"), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(matches!(
        state_of(p.unwrap(b"blob", &ctx()).expect_err("unwrap")),
        KeyState::Unreachable(_)
    ));
}

#[test]
fn constructors_reject_empty_arguments() {
    for (key, url, region) in [
        ("", "http://127.0.0.1:1", REGION),
        ("k", "", REGION),
        ("k", "http://127.0.0.1:1", ""),
    ] {
        assert!(matches!(
            AwsKmsProvider::with_endpoint(key, url, region, ACCESS_KEY, SECRET_KEY),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn from_sdk_config_uses_the_given_configuration() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let key_id = admin.create_key();
    let sdk_config = admin.rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&admin.endpoint)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .load(),
    );
    let p = AwsKmsProvider::from_sdk_config(&key_id, &sdk_config).expect("provider");
    assert_eq!(p.region(), REGION);
    let ctx = ctx();
    let (key, wrapped) = p.generate_data_key(&ctx).expect("generate");
    assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), key);
}

#[test]
fn calls_work_from_inside_an_async_context_and_from_many_threads() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let p = Arc::new(admin.provider(&admin.create_key()));
    let ctx = ctx();
    let (key, wrapped) = p.generate_data_key(&ctx).expect("generate");

    // From a task of another runtime: Runtime::block_on would panic there.
    let inside = admin.rt.block_on(async { p.unwrap(&wrapped, &ctx) });
    assert_eq!(inside.expect("unwrap in async context"), key);

    // Concurrent callers share the provider's runtime.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..5 {
                        assert_eq!(p.unwrap(&wrapped, &ctx).expect("unwrap"), key);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
    });

    // Dropping the provider inside an async context does not panic either.
    let owned = Arc::try_unwrap(p).expect("sole owner");
    admin.rt.block_on(async move { drop(owned) });
}

#[test]
fn a_keys_file_under_an_aws_key_opens() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let aws: SharedProvider = Arc::new(admin.provider(&admin.create_key()));
    let fs = db_fs();
    let id = DatabaseId::generate().expect("id");
    let created = KeysFile::create(
        &fs,
        Path::new("/db"),
        aws.as_ref(),
        id,
        CipherId::ChaCha20Poly1305,
    )
    .expect("create");
    assert_eq!(created.master(), &aws.descriptor());
    let (opened, provider) =
        KeysFile::open(&fs, Path::new("/db"), resolver(vec![aws.clone()])).expect("open");
    assert_eq!(provider.descriptor(), aws.descriptor());
    assert_eq!(opened.database_id(), id);
    assert_eq!(
        opened.keyring().data_key(1).expect("v1"),
        created.keyring().data_key(1).expect("v1")
    );
}

#[test]
fn switching_between_an_aws_key_and_a_local_kms_key_and_back() {
    let Some(admin) = Admin::connect() else {
        return;
    };
    let aws_a: SharedProvider = Arc::new(admin.provider(&admin.create_key()));
    let aws_b: SharedProvider = Arc::new(admin.provider(&admin.create_key()));
    let kms_dir = tempfile::tempdir().expect("tmp");
    let kms = LocalKms::open(kms_dir.path()).expect("kms");
    kms.create_key("app").expect("create key");
    let local: SharedProvider = Arc::new(kms.provider("app"));
    let all = || vec![aws_a.clone(), aws_b.clone(), local.clone()];

    let fs = db_fs();
    let dir = Path::new("/db");
    let id = DatabaseId::generate().expect("id");
    let mut keys =
        KeysFile::create(&fs, dir, aws_a.as_ref(), id, CipherId::ChaCha20Poly1305).expect("create");
    let v2 = keys
        .add_data_key_version(&fs, aws_a.as_ref())
        .expect("rotate");
    let dk1 = keys.keyring().data_key(1).expect("v1").clone();
    let dk2 = keys.keyring().data_key(v2).expect("v2").clone();
    let same_keys = |file: &KeysFile| {
        assert_eq!(file.keyring().data_key(1).expect("v1"), &dk1);
        assert_eq!(file.keyring().data_key(v2).expect("v2"), &dk2);
    };

    for next in [&local, &aws_b, &local, &aws_a] {
        keys.switch_master_key(&fs, next.as_ref()).expect("switch");
        let (opened, provider) = KeysFile::open(&fs, dir, resolver(all())).expect("open");
        assert_eq!(provider.descriptor(), next.descriptor());
        assert_eq!(opened.master(), &next.descriptor());
        same_keys(&opened);
    }

    // Once switched away from an AWS key, that key no longer matters; while it is the master,
    // disabling it stops the database from opening with a typed error.
    keys.switch_master_key(&fs, aws_b.as_ref()).expect("switch");
    let b_id = aws_b.descriptor().key_id;
    admin.disable(&b_id);
    let err = KeysFile::open(&fs, dir, resolver(all())).expect_err("disabled master");
    assert_eq!(state_of(err), KeyState::Disabled);
    admin.disable(&aws_a.descriptor().key_id); // not the master: irrelevant
    admin.enable(&b_id);
    let (opened, _) = KeysFile::open(&fs, dir, resolver(all())).expect("open");
    same_keys(&opened);
}
