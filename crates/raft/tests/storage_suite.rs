//! openraft's own storage test suite against sealdb-raft's log store and state machine.
//!
//! Each store the suite builds is a fresh node: its own directory and its own keystore (so its
//! own owned master keys), sharing only the cluster's transport KMS. The suite's snapshot
//! transfer therefore crosses master keys the way a real follower's install does.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use sealdb_raft::{LogStore, NodeId, StateMachine, StoreConfig, TypeConfig, open_stores};
use std::sync::Arc;

struct Builder {
    kms: Arc<tempfile::TempDir>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, (Arc<tempfile::TempDir>, tempfile::TempDir)>
    for Builder
{
    async fn build(
        &self,
    ) -> Result<
        (
            (Arc<tempfile::TempDir>, tempfile::TempDir),
            LogStore,
            StateMachine,
        ),
        StorageError<NodeId>,
    > {
        let node = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            dir: node.path().join("node"),
            keystore_dir: node.path().join("keystore"),
            transport_kms_dir: self.kms.path().to_path_buf(),
            transport_key: "transport".into(),
        };
        let (log, sm) = open_stores(&config).expect("open stores");
        Ok(((self.kms.clone(), node), log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    let kms = tempfile::tempdir().expect("tempdir");
    sealdb_raft::ensure_transport_key(kms.path(), "transport").expect("transport key");
    if let Err(e) = Suite::test_all(Builder { kms: Arc::new(kms) }) {
        panic!("openraft's storage suite failed: {e}");
    }
}
