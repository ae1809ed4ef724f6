//! Three nodes as separate processes (`sealdb-raft-node`) on 127.0.0.1: the leader is killed
//! with SIGKILL, a new leader is elected, every acknowledged write is on both survivors, and the
//! killed node, restarted on its directory, catches up. Every wait is bounded.

mod common;

use common::{WAIT, assert_nothing_in_clear, key, value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRANSPORT_KEY: &str = "cluster-transport";

/// The node processes; killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Nodes {
    root: PathBuf,
    /// `--snapshot-every` for every node, if any.
    snapshot_every: Option<u64>,
    addrs: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
}

impl Nodes {
    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node{id}"))
    }

    fn spawn(&mut self, id: u64, init: bool) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealdb-raft-node"));
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--dir")
            .arg(self.dir(id))
            .arg("--keystore")
            .arg(self.root.join(format!("keystore{id}")))
            .arg("--transport-kms")
            .arg(self.root.join("transport-kms"))
            .arg("--transport-key")
            .arg(TRANSPORT_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (peer, addr) in &self.addrs {
            cmd.arg("--peer").arg(format!("{peer}={addr}"));
        }
        if init {
            cmd.arg("--init");
        }
        if let Some(n) = self.snapshot_every {
            cmd.arg("--snapshot-every").arg(n.to_string());
        }
        let child = cmd.spawn().expect("spawn sealdb-raft-node");
        self.children.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("running node");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Free loopback ports: bound, read and released (the nodes bind them right after).
fn free_addrs(n: u64) -> BTreeMap<u64, String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .zip(1..)
        .map(|(l, id)| (id, l.local_addr().expect("addr").to_string()))
        .collect()
}

/// Polls the node at `addr` until it has applied every write `0..n`.
async fn wait_replica_has_all(client: &mut sealdb_raft::Client, addr: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while Instant::now() < deadline {
        if let Ok(pairs) = client.scan_local(addr, key(0), None, u32::MAX).await {
            seen = pairs.len();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(|i| (key(i), value(i))).collect();
            if pairs == expected {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} has {seen} of the {n} acknowledged writes after {WAIT:?}");
}

fn leader_id(addrs: &BTreeMap<u64, String>, leader_addr: &str) -> u64 {
    *addrs
        .iter()
        .find(|(_, a)| a.as_str() == leader_addr)
        .map(|(id, _)| id)
        .expect("leader is a member")
}

fn node_dirs(root: &Path) -> Vec<PathBuf> {
    (1..=3).map(|id| root.join(format!("node{id}"))).collect()
}

async fn kill_the_leader_and_check(snapshot_every: Option<u64>) {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = Nodes {
        root: root.path().to_path_buf(),
        snapshot_every,
        addrs: free_addrs(3),
        children: BTreeMap::new(),
    };
    sealdb_raft::ensure_transport_key(&root.path().join("transport-kms"), TRANSPORT_KEY)
        .expect("transport key");
    for id in 1..=3 {
        nodes.spawn(id, id == 1);
    }
    let transport =
        sealdb_raft::TransportKey::local_kms(&root.path().join("transport-kms"), TRANSPORT_KEY)
            .expect("transport key");
    let mut client =
        sealdb_raft::Client::new(nodes.addrs.values().cloned(), transport).with_timeout(WAIT);
    for i in 0..30 {
        client
            .put(key(i), value(i))
            .await
            .expect("acknowledged put");
    }
    let old_leader = leader_id(&nodes.addrs, client.leader().expect("a leader answered"));
    nodes.kill(old_leader);

    for i in 30..60 {
        client
            .put(key(i), value(i))
            .await
            .expect("acknowledged put after the kill");
    }
    let new_leader = leader_id(&nodes.addrs, client.leader().expect("a leader answered"));
    assert_ne!(new_leader, old_leader, "the killed node still leads");
    let survivors: Vec<u64> = nodes.children.keys().copied().collect();
    for id in survivors {
        let addr = nodes.addrs[&id].clone();
        wait_replica_has_all(&mut client, &addr, 60).await;
    }

    if snapshot_every.is_some() {
        // Before the restart, the new leader's log must no longer reach back to what the
        // killed node has (at most 31 entries: the membership entries and 30 writes).
        let leader_addr = nodes.addrs[&new_leader].clone();
        let deadline = Instant::now() + WAIT;
        loop {
            let status = client.status(&leader_addr).await.expect("status");
            if status.purged.unwrap_or(0) > 35 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the leader never purged: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The killed node restarts on its directory and catches up.
    nodes.spawn(old_leader, false);
    let addr = nodes.addrs[&old_leader].clone();
    wait_replica_has_all(&mut client, &addr, 60).await;
    assert_eq!(client.get(key(59)).await.expect("get"), Some(value(59)));

    for id in 1..=3 {
        nodes.kill(id);
    }
    if snapshot_every.is_some() {
        // The restarted node's state is a restore of the new leader's backup: same database id.
        let id_of = |node: u64| {
            sealdb_crypto::KeysFile::peek(
                sealdb::Options::default().fs.as_ref(),
                &nodes.dir(node).join("state"),
            )
            .expect("peek KEYS")
            .database_id
        };
        assert_eq!(
            id_of(old_leader),
            id_of(new_leader),
            "node {old_leader} did not install node {new_leader}'s snapshot"
        );
    }
    assert_nothing_in_clear(
        &node_dirs(root.path()),
        &[b"secret-key-", b"confidential-value-"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_process_loses_no_acknowledged_write() {
    kill_the_leader_and_check(None).await;
}

/// The same with a snapshot every 10 entries and no log kept behind it: the leader purges its
/// log past what the killed node has before it restarts, so it catches up by a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_catches_up_by_snapshot() {
    kill_the_leader_and_check(Some(10)).await;
}

#[test]
fn a_node_whose_id_is_not_a_peer_refuses_to_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_sealdb-raft-node"))
        .arg("--id")
        .arg("4")
        .arg("--dir")
        .arg(root.path().join("node4"))
        .arg("--keystore")
        .arg(root.path().join("keystore4"))
        .arg("--transport-kms")
        .arg(root.path().join("transport-kms"))
        .arg("--peer")
        .arg("1=127.0.0.1:1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--id 4"), "{stderr}");
    assert!(
        !root.path().join("node4").exists(),
        "it created its directory anyway"
    );
}
