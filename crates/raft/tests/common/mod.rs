//! A cluster of sealdb-raft nodes in one process, on 127.0.0.1, for the tests.
#![allow(dead_code)]

use sealdb_raft::{NodeConfig, NodeId, RaftNode, StoreConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The transport key's name in the tests' KMS.
pub const TRANSPORT_KEY: &str = "cluster-transport";
/// Bound on every wait of the tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where node `id` of a cluster rooted at `root` keeps its data and keys.
pub fn store_config(root: &Path, id: NodeId) -> StoreConfig {
    StoreConfig::for_node(root, id, &root.join("transport-kms"), TRANSPORT_KEY)
}

/// Three (or `n`) nodes, each startable and stoppable.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub raft: openraft::Config,
    pub addrs: BTreeMap<NodeId, String>,
    pub nodes: BTreeMap<NodeId, RaftNode>,
}

impl Cluster {
    /// Starts nodes 1..=n on free ports and initializes them as one cluster.
    pub async fn start(n: u64, raft: openraft::Config) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        sealdb_raft::ensure_transport_key(&root.path().join("transport-kms"), TRANSPORT_KEY)
            .expect("transport key");
        let mut cluster = Cluster {
            root,
            raft,
            addrs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            let node = cluster.start_node(id, "127.0.0.1:0").await;
            cluster.addrs.insert(id, node.addr().to_string());
            cluster.nodes.insert(id, node);
        }
        cluster.nodes[&1]
            .initialize(cluster.addrs.clone())
            .await
            .expect("initialize");
        cluster.leader().await;
        cluster
    }

    async fn start_node(&self, id: NodeId, listen: &str) -> RaftNode {
        let mut config = NodeConfig::new(id, store_config(self.root.path(), id), listen);
        config.raft = self.raft.clone();
        RaftNode::start(config).await.expect("start node")
    }

    /// Starts node `id`, not yet a member, on a free port.
    pub async fn start_new(&mut self, id: NodeId) {
        let node = self.start_node(id, "127.0.0.1:0").await;
        self.addrs.insert(id, node.addr().to_string());
        self.nodes.insert(id, node);
    }

    /// The node directory of `id`.
    pub fn dir(&self, id: NodeId) -> PathBuf {
        store_config(self.root.path(), id).dir
    }

    /// Waits for a leader among the running nodes and returns its id.
    pub async fn leader(&self) -> NodeId {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            for node in self.nodes.values() {
                if let Some(l) = node.current_leader()
                    && self.nodes.contains_key(&l)
                    && self.nodes[&l].current_leader() == Some(l)
                {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader among {:?} within {WAIT:?}", self.nodes.keys());
    }

    /// Stops node `id` (cleanly closing its databases, as dropping it from the cluster).
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("running node");
        node.shutdown().await.expect("shutdown");
    }

    /// Starts node `id` again, on its old address, from its directory.
    pub async fn restart(&mut self, id: NodeId) {
        let addr = self.addrs[&id].clone();
        let node = self.start_node(id, &addr).await;
        self.nodes.insert(id, node);
    }

    /// A client of every node.
    pub fn client(&self) -> sealdb_raft::Client {
        sealdb_raft::Client::new(self.addrs.values().cloned(), self.transport()).with_timeout(WAIT)
    }

    /// The cluster's transport key.
    pub fn transport(&self) -> sealdb_raft::TransportKey {
        sealdb_raft::TransportKey::local_kms(&self.root.path().join("transport-kms"), TRANSPORT_KEY)
            .expect("transport key")
    }

    pub async fn shutdown(mut self) -> tempfile::TempDir {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
        self.root
    }
}

/// Every file under `dir` (recursively) with its contents.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Fails if any file under any of `dirs` holds any of `needles` in clear.
pub fn assert_nothing_in_clear(dirs: &[PathBuf], needles: &[&[u8]]) {
    let mut files = 0;
    for dir in dirs {
        for (path, bytes) in tree(dir) {
            files += 1;
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == *needle),
                    "{} holds {:?} in clear",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    assert!(files > 0, "no files under {dirs:?}");
}

/// The test's keys and values: distinctive bytes to grep for.
pub fn key(i: usize) -> Vec<u8> {
    format!("secret-key-{i:05}").into_bytes()
}

pub fn value(i: usize) -> Vec<u8> {
    format!("confidential-value-{i:05}").into_bytes()
}
