//! Replicated synced puts against single-node sealdb synced puts, with 1, 4 and 16 clients:
//! `cargo run --release -p sealdb-raft --example raft_bench -- --seconds 3`.
//!
//! Replicated: a 3-node cluster on 127.0.0.1 in this process; each client is a task with its
//! own [`sealdb_raft::Client`] (its own TCP connection to the leader), each put acknowledged
//! once a quorum has the entry in a synced log write and the leader applied it. Single node:
//! one sealdb database, each client a thread doing `put_opt(.., WriteOptions::SYNC)`. Latency
//! per put is recorded in sealdb-latency's HDR recorder. A measurement, not a test.

use clap::Parser;
use sealdb_latency::Latency;
use sealdb_raft::{Client, NodeConfig, RaftNode, StoreConfig};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds of puts per configuration.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Client counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
}

fn report(mode: &str, clients: usize, latency: &Latency, elapsed: Duration) {
    println!(
        "{mode:<12} {clients:>7} {:>8} {:>10.0} {:>9.1} {:>9.1} {:>9.1}",
        latency.count(),
        latency.count() as f64 / elapsed.as_secs_f64(),
        latency.quantile_us(0.50),
        latency.quantile_us(0.99),
        latency.max_us(),
    );
}

fn key(client: usize, i: u64) -> Vec<u8> {
    format!("bench/{client:02}/{i:012}").into_bytes()
}

fn single_node(
    root: &std::path::Path,
    clients: usize,
    run: Duration,
    value: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let opts = sealdb::Options {
        keystore_dir: Some(root.join(format!("single-keystore-{clients}"))),
        ..Default::default()
    };
    let db = sealdb::Db::open(root.join(format!("single-{clients}")), opts)?;
    let keyspace = db.create_keyspace("bench")?;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let keyspace = keyspace.clone();
            let value = value.to_vec();
            std::thread::spawn(move || -> sealdb::Result<Latency> {
                let mut latency = Latency::new();
                let mut i = 0;
                while start.elapsed() < run {
                    let t = Instant::now();
                    keyspace.put_opt(key(c, i), &value, sealdb::WriteOptions::SYNC)?;
                    latency.record(t.elapsed());
                    i += 1;
                }
                Ok(latency)
            })
        })
        .collect();
    let mut all = Latency::new();
    for h in handles {
        let latency = h.join().map_err(|_| "a client thread panicked")??;
        all.merge(&latency);
    }
    report("sealdb", clients, &all, start.elapsed());
    drop(keyspace);
    db.close();
    Ok(())
}

async fn replicated(
    addrs: &BTreeMap<u64, String>,
    transport: &sealdb_raft::TransportKey,
    clients: usize,
    run: Duration,
    value: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut client = Client::new(addrs.values().cloned(), transport.clone());
            let value = value.to_vec();
            tokio::spawn(async move {
                let mut latency = Latency::new();
                let mut i = 0;
                while start.elapsed() < run {
                    let t = Instant::now();
                    client.put(key(c, i), value.clone()).await?;
                    latency.record(t.elapsed());
                    i += 1;
                }
                Ok::<_, sealdb_raft::Error>(latency)
            })
        })
        .collect();
    let mut all = Latency::new();
    for t in tasks {
        all.merge(&t.await??);
    }
    report("raft-3", clients, &all, start.elapsed());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let run = Duration::from_secs_f64(args.seconds);
    let value = vec![b'v'; args.value_size];
    let root = tempfile::tempdir()?;
    println!(
        "{:<12} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "mode", "clients", "puts", "puts/s", "p50_us", "p99_us", "max_us"
    );
    for &clients in &args.clients {
        single_node(root.path(), clients, run, &value)?;
    }

    let kms = root.path().join("transport-kms");
    sealdb_raft::ensure_transport_key(&kms, "transport")?;
    let transport = sealdb_raft::TransportKey::local_kms(&kms, "transport")?;
    let mut nodes = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let store = StoreConfig::for_node(root.path(), id, &kms, "transport");
        let node = RaftNode::start(NodeConfig::new(id, store, "127.0.0.1:0")).await?;
        addrs.insert(id, node.addr().to_string());
        nodes.push(node);
    }
    if let Some(first) = nodes.first() {
        first.initialize(addrs.clone()).await?;
        first.wait_for_leader(Duration::from_secs(10)).await?;
    }
    // Warm up: the first write finds the leader.
    Client::new(addrs.values().cloned(), transport.clone())
        .put("warm-up", "x")
        .await?;
    for &clients in &args.clients {
        replicated(&addrs, &transport, clients, run, &value).await?;
    }
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
