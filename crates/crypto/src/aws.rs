//! AWS KMS as a [`KeyProvider`], through the official AWS SDK for Rust (cargo feature
//! `aws-kms`).
//!
//! The master key is a symmetric AWS KMS key; it never leaves KMS. Data keys are wrapped with
//! `Encrypt` (or made by `GenerateDataKey`) and unwrapped with `Decrypt`, always with the
//! encryption context `{"sealdb:database-id": <database id in hex>}`, so a wrapped data key
//! cannot be moved to another database: KMS refuses to decrypt it under another context.
//!
//! The provider's trait is synchronous; the SDK is async. Each provider owns a small tokio
//! current-thread runtime, built once, and drives every call with `block_on`. A call made from
//! inside an async context (where `block_on` would panic) is driven on a short-lived helper
//! thread instead; it still blocks the calling task, as any synchronous call does. Each call is
//! a network round trip (a few milliseconds in-region): the engine caches unwrapped data keys
//! and calls the provider only to open, rotate, switch keys and re-verify the key.
//!
//! Before every wrap and unwrap the key is checked with `DescribeKey` and must be `Enabled`.
//! Real KMS refuses to use a disabled key by itself, but the check makes the refusal uniform
//! (and local KMS emulators, which may not enforce key states on `Decrypt`, behave the same).
//!
//! Errors map onto the crate's typed errors: a ciphertext that does not authenticate under this
//! key and context is [`Error::WrongMasterKey`]; a disabled key, a key pending deletion, an
//! unknown key, and an unreachable or refusing service are [`Error::KeyUnavailable`] with the
//! matching [`KeyState`].

use crate::keys::SecretKey;
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider};
use crate::{Error, KeyState, Result};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, EncryptionAlgorithmSpec};
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::runtime::Runtime;
use zeroize::Zeroize;

/// Provider kind string of AWS KMS keys, as stored in key descriptors.
pub const PROVIDER: &str = "aws-kms";
/// The encryption-context key every wrap is bound to; its value is the database id in hex.
pub const CONTEXT_KEY: &str = "sealdb:database-id";

/// Longest wait for a TCP (and TLS) connection to KMS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one attempt of one call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for one call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(45);

/// A master key held in AWS KMS.
///
/// Cheap to share (`Arc`) between threads; every method blocks the calling thread for one or
/// two KMS round trips. `Debug` shows the key id and region only.
pub struct AwsKmsProvider {
    key_id: String,
    region: String,
    client: Client,
    /// Always `Some` until dropped (taken in `Drop` to shut it down safely).
    runtime: Option<Runtime>,
}

impl AwsKmsProvider {
    /// A provider for `key_id` (a key id, key ARN, alias name `alias/...` or alias ARN, as
    /// given: it is stored in the KEYS file as is) configured by the standard AWS configuration
    /// chain: environment variables (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`, ...), the shared config and credentials files, SSO, web identity,
    /// and the container and instance metadata services.
    ///
    /// Fails with [`Error::InvalidArgument`] if no region is configured. Credentials are
    /// resolved lazily, at the first call: a missing credential surfaces then, as
    /// [`Error::KeyUnavailable`]. Outside AWS, where the chain's last resort (the instance
    /// metadata service) cannot answer, set `AWS_EC2_METADATA_DISABLED=true` to skip that probe.
    pub fn from_env(key_id: &str) -> Result<Self> {
        let runtime = new_runtime()?;
        let sdk_config = drive(
            &runtime,
            aws_config::defaults(BehaviorVersion::latest()).load(),
        );
        Self::build(key_id, &sdk_config, runtime)
    }

    /// A provider for `key_id` configured by an already loaded AWS configuration (for callers
    /// that build their own with `aws_config`). Default timeouts are added where `config`
    /// sets none.
    pub fn from_sdk_config(key_id: &str, config: &aws_config::SdkConfig) -> Result<Self> {
        Self::build(key_id, config, new_runtime()?)
    }

    /// A provider for `key_id` at an explicit endpoint with static credentials, for tests and
    /// KMS-compatible local servers (`http://127.0.0.1:5599`). Consults no environment
    /// variable, no configuration file and no metadata service.
    pub fn with_endpoint(
        key_id: &str,
        endpoint_url: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self> {
        validate_key_id(key_id)?;
        if region.is_empty() {
            return Err(Error::invalid_argument("AWS region is empty".into()));
        }
        if endpoint_url.is_empty() {
            return Err(Error::invalid_argument("KMS endpoint URL is empty".into()));
        }
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(endpoint_url)
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "sealdb-static",
            ))
            .timeout_config(with_default_timeouts(None))
            .build();
        Ok(Self {
            key_id: key_id.to_owned(),
            region: region.to_owned(),
            client: Client::from_conf(config),
            runtime: Some(new_runtime()?),
        })
    }

    fn build(key_id: &str, sdk_config: &aws_config::SdkConfig, runtime: Runtime) -> Result<Self> {
        validate_key_id(key_id)?;
        let region = sdk_config
            .region()
            .map(|r| r.as_ref().to_owned())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "no AWS region configured for KMS key {key_id}: set AWS_REGION or a \
                     profile's region"
                ))
            })?;
        let config = aws_sdk_kms::config::Builder::from(sdk_config)
            .timeout_config(with_default_timeouts(sdk_config.timeout_config()))
            .build();
        Ok(Self {
            key_id: key_id.to_owned(),
            region,
            client: Client::from_conf(config),
            runtime: Some(runtime),
        })
    }

    /// The key id as given (and as stored in descriptors).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The AWS region the client calls.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The SDK client (for administration: creating, disabling or describing keys). Its calls
    /// are async and need a tokio runtime of the caller's.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a new symmetric KMS key with this provider's client and returns its id
    /// (administration for tools and tests; needs `kms:CreateKey`).
    pub fn admin_create_key(&self, description: &str) -> Result<String> {
        let client = self.client.clone();
        let description = description.to_owned();
        let out = self
            .block_on(async move { client.create_key().description(description).send().await })?;
        out.map_err(|e| self.unavailable(KeyState::Unreachable(format!("CreateKey: {e}"))))?
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| {
                self.unavailable(KeyState::Unreachable("CreateKey returned no key".into()))
            })
    }

    /// Enables or disables a KMS key (administration for tools and tests).
    pub fn admin_set_enabled(&self, key_id: &str, enabled: bool) -> Result<()> {
        let client = self.client.clone();
        let key_id = key_id.to_owned();
        let r = self.block_on(async move {
            if enabled {
                client
                    .enable_key()
                    .key_id(key_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                client
                    .disable_key()
                    .key_id(key_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })?;
        r.map_err(|e| self.unavailable(KeyState::Unreachable(format!("EnableKey/DisableKey: {e}"))))
    }

    /// Runs `fut` to completion on the provider's runtime.
    fn block_on<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| self.unavailable(KeyState::Unreachable("provider shut down".into())))?;
        Ok(drive(runtime, fut))
    }

    fn descriptor_parts(&self) -> (String, String) {
        (PROVIDER.to_owned(), self.key_id.clone())
    }

    fn unavailable(&self, state: KeyState) -> Error {
        let (provider, key_id) = self.descriptor_parts();
        Error::KeyUnavailable {
            provider,
            key_id,
            state,
        }
    }

    fn wrong_key(&self) -> Error {
        let (provider, key_id) = self.descriptor_parts();
        Error::WrongMasterKey { provider, key_id }
    }

    /// The key's state as `DescribeKey` reports it, `Enabled` included.
    fn describe(&self) -> Result<KeyState> {
        let out = self
            .block_on(self.client.describe_key().key_id(&self.key_id).send())?
            .map_err(|e| self.map_sdk_error("DescribeKey", e, false))?;
        let meta = out.key_metadata().ok_or_else(|| {
            self.unavailable(KeyState::Unreachable(
                "DescribeKey returned no key metadata".into(),
            ))
        })?;
        use aws_sdk_kms::types::KeyState as Aws;
        let deletion_at = || {
            meta.deletion_date()
                .and_then(|d| u64::try_from(d.secs()).ok())
                .unwrap_or(0)
        };
        Ok(match meta.key_state() {
            Some(Aws::Enabled) => KeyState::Enabled,
            Some(Aws::Disabled) => KeyState::Disabled,
            // A primary multi-Region key waiting for its replicas' deletion is on its way to
            // deletion as well; it carries a deletion date.
            Some(Aws::PendingDeletion | Aws::PendingReplicaDeletion) => KeyState::PendingDeletion {
                deletion_at: deletion_at(),
            },
            Some(other) => KeyState::Unreachable(format!("key state {}", other.as_str())),
            None => KeyState::Unreachable("DescribeKey reported no key state".into()),
        })
    }

    /// Maps a failed SDK call to the crate's typed errors. Never includes key material (KMS
    /// error messages carry none; request bodies are not part of the error).
    fn map_sdk_error<E, R>(
        &self,
        operation: &str,
        err: SdkError<E, R>,
        resolve_state: bool,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let Some(service) = err.as_service_error() else {
            // Construction, dispatch (connection refused, DNS, TLS), timeout, or an
            // unparseable response: the service could not be reached.
            let why = match &err {
                SdkError::TimeoutError(_) => format!("{operation} timed out"),
                _ => format!("{operation} failed: {}", DisplayErrorContext(&err)),
            };
            return self.unavailable(KeyState::Unreachable(why));
        };
        let code = service.code().unwrap_or("unknown error");
        let message = service.message().unwrap_or("");
        let detail = || {
            if message.is_empty() {
                format!("{operation}: {code}")
            } else {
                format!("{operation}: {code}: {message}")
            }
        };
        match code {
            "InvalidCiphertextException" | "IncorrectKeyException" => self.wrong_key(),
            "DisabledException" => self.unavailable(KeyState::Disabled),
            "NotFoundException" => self.unavailable(KeyState::NotFound),
            // Pending deletion, or another state that forbids the operation: ask which.
            "KMSInvalidStateException" => {
                let state = match resolve_state.then(|| self.describe()) {
                    Some(Ok(state @ (KeyState::Disabled | KeyState::PendingDeletion { .. }))) => {
                        state
                    }
                    _ => KeyState::Unreachable(detail()),
                };
                self.unavailable(state)
            }
            _ => self.unavailable(KeyState::Unreachable(detail())),
        }
    }

    fn context_value(context: &EncryptionContext) -> String {
        context.database_id.to_hex()
    }
}

impl KeyProvider for AwsKmsProvider {
    fn descriptor(&self) -> KeyDescriptor {
        KeyDescriptor::new(PROVIDER, self.key_id.clone())
    }

    /// `Encrypt` with the data key as plaintext, bound to the database id. The key must be
    /// enabled.
    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        self.check()?;
        // The request takes an owned buffer: this copy, the request's JSON (base64) body and
        // the HTTP/TLS buffers that carry it are SDK- and hyper-owned and dropped without
        // zeroizing; they are short-lived heap copies we cannot reach.
        let plaintext = Blob::new(data_key.expose().to_vec());
        let out = self
            .block_on(
                self.client
                    .encrypt()
                    .key_id(&self.key_id)
                    .plaintext(plaintext)
                    .encryption_context(CONTEXT_KEY, Self::context_value(context))
                    .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
                    .send(),
            )?
            .map_err(|e| self.map_sdk_error("Encrypt", e, true))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .filter(|blob| !blob.is_empty())
            .ok_or_else(|| {
                self.unavailable(KeyState::Unreachable(
                    "Encrypt returned no ciphertext".into(),
                ))
            })
    }

    /// `Decrypt` naming this key and the database id. The key must be enabled; a blob wrapped
    /// by another key, for another database, or altered is [`Error::WrongMasterKey`].
    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<SecretKey> {
        self.check()?;
        if wrapped.is_empty() {
            return Err(self.wrong_key());
        }
        let mut out = self
            .block_on(
                self.client
                    .decrypt()
                    .key_id(&self.key_id)
                    .ciphertext_blob(Blob::new(wrapped))
                    .encryption_context(CONTEXT_KEY, Self::context_value(context))
                    .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
                    .send(),
            )?
            .map_err(|e| self.map_sdk_error("Decrypt", e, true))?;
        // We zeroize the decoded plaintext we receive; the response's raw JSON body (base64
        // plaintext) in the SDK's and hyper's buffers is dropped without zeroizing.
        let mut plaintext = out
            .plaintext
            .take()
            .map(Blob::into_inner)
            .unwrap_or_default();
        let key = SecretKey::from_slice(&plaintext).map_err(|_| self.wrong_key());
        plaintext.zeroize();
        key
    }

    /// `DescribeKey`: `Ok(Enabled)`, or [`Error::KeyUnavailable`] with the key's state.
    fn check(&self) -> Result<KeyState> {
        match self.describe()? {
            KeyState::Enabled => Ok(KeyState::Enabled),
            state => Err(self.unavailable(state)),
        }
    }

    /// `GenerateDataKey` (AES_256: 32 bytes) bound to the database id. The key must be enabled.
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(SecretKey, Vec<u8>)> {
        self.check()?;
        let mut out = self
            .block_on(
                self.client
                    .generate_data_key()
                    .key_id(&self.key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .encryption_context(CONTEXT_KEY, Self::context_value(context))
                    .send(),
            )?
            .map_err(|e| self.map_sdk_error("GenerateDataKey", e, true))?;
        // As in `unwrap`: our decoded copy is zeroized, the raw response body is not.
        let mut plaintext = out
            .plaintext
            .take()
            .map(Blob::into_inner)
            .unwrap_or_default();
        let key = SecretKey::from_slice(&plaintext);
        plaintext.zeroize();
        let key = key.map_err(|_| {
            self.unavailable(KeyState::Unreachable(
                "GenerateDataKey returned a data key that is not 32 bytes".into(),
            ))
        })?;
        let wrapped = out
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .filter(|blob| !blob.is_empty())
            .ok_or_else(|| {
                self.unavailable(KeyState::Unreachable(
                    "GenerateDataKey returned no ciphertext".into(),
                ))
            })?;
        Ok((key, wrapped))
    }
}

impl fmt::Debug for AwsKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsProvider")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Drop for AwsKmsProvider {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside an async context panics (it would block waiting for
            // its tasks); shutting it down in the background does not.
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                drop(runtime);
            }
        }
    }
}

fn validate_key_id(key_id: &str) -> Result<()> {
    if key_id.is_empty() {
        return Err(Error::invalid_argument("AWS KMS key id is empty".into()));
    }
    Ok(())
}

fn new_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime for AWS KMS", e))
}

/// `timeouts` with ours filled in where it sets none.
fn with_default_timeouts(timeouts: Option<&TimeoutConfig>) -> TimeoutConfig {
    let given = |get: fn(&TimeoutConfig) -> Option<Duration>| timeouts.and_then(get);
    let mut builder = TimeoutConfig::builder()
        .connect_timeout(given(TimeoutConfig::connect_timeout).unwrap_or(CONNECT_TIMEOUT))
        .operation_attempt_timeout(
            given(TimeoutConfig::operation_attempt_timeout).unwrap_or(ATTEMPT_TIMEOUT),
        )
        .operation_timeout(given(TimeoutConfig::operation_timeout).unwrap_or(OPERATION_TIMEOUT));
    builder.set_read_timeout(given(TimeoutConfig::read_timeout));
    builder.build()
}

/// Runs `fut` on `runtime`. `Runtime::block_on` panics when called from inside an async
/// context (any tokio runtime's thread): there the future is driven on a helper thread.
fn drive<F>(runtime: &Runtime, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(fut);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(fut))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
