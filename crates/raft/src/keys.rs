//! The cluster's transport key: what snapshot packs and transport frames are sealed under.

use sealdb_crypto::{KeyProvider, LocalKms, SharedProvider};
use std::path::Path;
use std::sync::Arc;

/// The cluster's transport key: a master key every node (and every trusted client) may use,
/// through its KMS, and nothing else. It wraps the data keys inside a snapshot pack and the
/// per-connection secrets of the transport; its key material never leaves the KMS.
#[derive(Clone)]
pub struct TransportKey {
    provider: SharedProvider,
}

impl TransportKey {
    /// The key `name` of the local KMS at `kms_dir` (it must exist: see
    /// [`crate::ensure_transport_key`]).
    pub fn local_kms(kms_dir: &Path, name: &str) -> crate::Result<Self> {
        let kms = LocalKms::open(kms_dir)?;
        kms.describe(name)?;
        Ok(TransportKey {
            provider: Arc::new(kms.provider(name)),
        })
    }

    /// Any other key provider (for example a cloud KMS key all nodes may use).
    pub fn from_provider(provider: SharedProvider) -> Self {
        TransportKey { provider }
    }

    pub(crate) fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransportKey({:?})", self.provider.descriptor())
    }
}
