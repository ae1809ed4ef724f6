//! A snapshot is verified before it is installed: a pack altered anywhere, or sealed under
//! another cluster's transport key, is refused and the follower's state is left as it was.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta};
use sealdb_raft::{NodeId, Op, Request, StateMachine, StoreConfig, TypeConfig, open_stores};
use std::io::Cursor;
use std::path::Path;

fn node(root: &Path, id: NodeId, kms: &Path) -> StateMachine {
    sealdb_raft::ensure_transport_key(kms, "transport").expect("transport key");
    let (_log, sm) =
        open_stores(&StoreConfig::for_node(root, id, kms, "transport")).expect("open stores");
    sm
}

fn put(index: u64, key: &str, value: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            ops: vec![Op::Put {
                key: key.into(),
                value: value.into(),
            }],
        }),
    }
}

async fn install(
    sm: &mut StateMachine,
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    bytes: Vec<u8>,
) -> bool {
    sm.install_snapshot(meta, Box::new(Cursor::new(bytes)))
        .await
        .is_ok()
}

#[tokio::test]
async fn altered_or_foreign_snapshots_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let kms = root.path().join("kms");
    let mut leader = node(root.path(), 1, &kms);
    let mut follower = node(root.path(), 2, &kms);
    leader
        .apply([put(1, "shipped-key", "shipped-value")])
        .await
        .expect("apply");
    follower
        .apply([put(1, "local-key", "local-value")])
        .await
        .expect("apply");
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let pack = snapshot.snapshot.into_inner();
    let meta = snapshot.meta;

    // Any altered byte: in the framing, a file name, a sealed file, the key envelope.
    let positions = 24;
    for n in 0..positions {
        let at = 8 + (pack.len() - 9) * n / (positions - 1);
        let mut altered = pack.clone();
        altered[at] ^= 0x20;
        assert!(
            !install(&mut follower, &meta, altered).await,
            "a pack altered at byte {at} of {} was installed",
            pack.len()
        );
    }
    // A truncated pack.
    assert!(!install(&mut follower, &meta, pack[..pack.len() / 2].to_vec()).await);
    // A pack from a cluster with another transport key (same name, other KMS).
    let stranger_root = tempfile::tempdir().expect("tempdir");
    let mut stranger = node(stranger_root.path(), 9, &stranger_root.path().join("kms"));
    stranger
        .apply([put(1, "foreign-key", "foreign-value")])
        .await
        .expect("apply");
    let foreign = stranger
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert!(!install(&mut follower, &foreign.meta, foreign.snapshot.into_inner()).await);

    // Nothing changed on the follower.
    assert_eq!(
        follower.get(b"local-key").expect("read"),
        Some(b"local-value".to_vec())
    );
    assert_eq!(follower.get(b"shipped-key").expect("read"), None);

    // The intact pack installs.
    assert!(
        install(&mut follower, &meta, pack).await,
        "the intact pack was refused"
    );
    assert_eq!(
        follower.get(b"shipped-key").expect("read"),
        Some(b"shipped-value".to_vec())
    );
    assert_eq!(follower.get(b"local-key").expect("read"), None);
}

fn packs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect()
}

#[tokio::test]
async fn the_current_snapshot_is_the_pack_its_metadata_names_or_none() {
    let root = tempfile::tempdir().expect("tempdir");
    let kms = root.path().join("kms");
    let mut sm = node(root.path(), 1, &kms);
    let dir = StoreConfig::for_node(root.path(), 1, &kms, "transport").dir;
    sm.apply([put(1, "a", "1")]).await.expect("apply");
    let first = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    sm.apply([put(2, "b", "2")]).await.expect("apply");
    let second = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
    // One pack: the newest; the older one is gone.
    assert_eq!(packs(&dir).len(), 1);
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(current.meta, second.meta);
    assert_eq!(current.snapshot.into_inner(), second.snapshot.into_inner());
    // Metadata whose pack is not here (as after a crash during an install, when the restored
    // state still carries the sender's metadata): no current snapshot, never a mismatched one.
    for p in packs(&dir) {
        std::fs::remove_file(p).expect("rm");
    }
    assert!(sm.get_current_snapshot().await.expect("read").is_none());
}
