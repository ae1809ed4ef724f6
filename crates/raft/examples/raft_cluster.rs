//! A 3-node replicated sealdb cluster on 127.0.0.1, in one process:
//! `cargo run -p sealdb-raft --example raft_cluster`.
//!
//! Each node has its own directory and its own keystore (its own master keys); the nodes share
//! only the transport key that snapshots travel under. The example writes, reads, scans and
//! deletes through a client, shows a follower's leader redirect, stops the leader, and keeps
//! going on the new one.

use sealdb_raft::{Client, NodeConfig, RaftNode, StoreConfig};
use std::collections::BTreeMap;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let kms = root.path().join("transport-kms");
    sealdb_raft::ensure_transport_key(&kms, "transport")?;
    let transport = sealdb_raft::TransportKey::local_kms(&kms, "transport")?;

    let mut nodes = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let store = StoreConfig::for_node(root.path(), id, &kms, "transport");
        let node = RaftNode::start(NodeConfig::new(id, store, "127.0.0.1:0")).await?;
        println!("node {id} listening on {}", node.addr());
        addrs.insert(id, node.addr().to_string());
        nodes.insert(id, node);
    }
    if let Some(first) = nodes.get(&1) {
        first.initialize(addrs.clone()).await?;
    }

    let mut client = Client::new(addrs.values().cloned(), transport.clone());
    client.put("fruit/apple", "red").await?;
    client.put("fruit/banana", "yellow").await?;
    client.put("fruit/cherry", "dark red").await?;
    let leader = client.leader().unwrap_or_default().to_string();
    println!("wrote 3 keys through the leader at {leader}");
    println!(
        "get fruit/banana = {:?}",
        client
            .get("fruit/banana")
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    client.delete("fruit/apple").await?;
    for (k, v) in client.scan("fruit/", Some(b"fruit0".to_vec()), 100).await? {
        println!(
            "scan: {} = {}",
            String::from_utf8_lossy(&k),
            String::from_utf8_lossy(&v)
        );
    }

    // A follower refuses writes and names the leader.
    let leader_id = *addrs
        .iter()
        .find(|(_, a)| **a == leader)
        .map(|(id, _)| id)
        .ok_or("no leader")?;
    if let Some((id, follower)) = nodes.iter().find(|(id, _)| **id != leader_id) {
        match follower.put("fruit/date", "brown").await {
            Err(e) => println!("node {id} (a follower): {e}"),
            Ok(_) => println!("node {id} accepted a write?"),
        }
    }

    // Stop the leader: the others elect a new one, and the client finds it.
    if let Some(node) = nodes.remove(&leader_id) {
        node.shutdown().await?;
    }
    println!("stopped node {leader_id}, the leader");
    client.put("fruit/elderberry", "purple").await?;
    let cherry = client.get("fruit/cherry").await?;
    println!(
        "wrote through the new leader at {}; fruit/cherry = {:?}",
        client.leader().unwrap_or_default(),
        cherry.map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    for node in nodes.into_values() {
        node.shutdown().await?;
    }
    Ok(())
}
