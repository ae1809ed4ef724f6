//! One sealdb-raft node as a process: `sealdb-raft-node --id 1 --dir … --peer 1=127.0.0.1:7001
//! --peer 2=… --peer 3=… [--init]`. Prints `listening on ADDR` once it serves, then runs until
//! killed. A restarted node (same arguments, without `--init`) recovers from its directory.

use clap::Parser;
use sealdb_raft::{NodeConfig, RaftNode, StoreConfig, ensure_transport_key};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Runs one node of a replicated sealdb cluster (loopback transport)")]
struct Args {
    /// This node's id; it must be one of the --peer ids.
    #[arg(long)]
    id: u64,
    /// The node's data directory.
    #[arg(long)]
    dir: PathBuf,
    /// The node's own keystore (its owned master keys), outside --dir.
    #[arg(long)]
    keystore: PathBuf,
    /// The local KMS directory holding the cluster's transport key (shared by all nodes).
    #[arg(long)]
    transport_kms: PathBuf,
    /// The transport key's name (created if missing).
    #[arg(long, default_value = "sealdb-raft-transport")]
    transport_key: String,
    /// Every member as ID=HOST:PORT, this node included.
    #[arg(long = "peer", value_parser = parse_peer, required = true)]
    peers: Vec<(u64, String)>,
    /// Initialize the cluster with every --peer as a voter (once, on one node).
    #[arg(long)]
    init: bool,
    /// Build a snapshot every N applied entries (openraft's default otherwise).
    #[arg(long)]
    snapshot_every: Option<u64>,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id = id
        .parse()
        .map_err(|e| format!("{id:?} is not a node id: {e}"))?;
    Ok((id, addr.to_string()))
}

async fn run(args: Args) -> sealdb_raft::Result<()> {
    let peers: BTreeMap<u64, String> = args.peers.into_iter().collect();
    let listen = peers.get(&args.id).cloned().ok_or_else(|| {
        sealdb_raft::Error::InvalidArgument(format!("--id {} is not among the --peer ids", args.id))
    })?;
    ensure_transport_key(&args.transport_kms, &args.transport_key)?;
    let store = StoreConfig {
        dir: args.dir,
        keystore_dir: args.keystore,
        transport_kms_dir: args.transport_kms,
        transport_key: args.transport_key,
    };
    let mut config = NodeConfig::new(args.id, store, listen);
    if let Some(n) = args.snapshot_every {
        config.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(n);
        config.raft.max_in_snapshot_log_to_keep = 0;
    }
    let node = RaftNode::start(config).await?;
    println!("listening on {}", node.addr());
    if args.init {
        node.initialize(peers).await?;
    }
    std::future::pending::<()>().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sealdb-raft-node: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealdb-raft-node: {e}");
            ExitCode::from(2)
        }
    }
}
