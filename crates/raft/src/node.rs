//! One replicated node: openraft over the sealdb stores, serving Raft and key-value requests
//! on the loopback transport.

use crate::error::WireError;
use crate::network::{self, KvReply, KvRequest, Network, Rpc, RpcHandler, RpcReply};
use crate::store::{StateMachine, StoreConfig, open_stores};
use crate::{Error, NodeId, NodeStatus, Op, Raft, Request, Result};
use openraft::BasicNode;
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's id in the cluster.
    pub id: NodeId,
    /// Where it keeps its data and which keys it uses.
    pub store: StoreConfig,
    /// The address to listen on (`127.0.0.1:0` picks a free port; [`RaftNode::addr`] says
    /// which). The address other nodes reach it at is the bound one.
    pub listen: String,
    /// openraft's settings (timeouts, snapshot policy).
    pub raft: openraft::Config,
}

impl NodeConfig {
    /// A node with [`default_raft_config`].
    pub fn new(id: NodeId, store: StoreConfig, listen: impl Into<String>) -> Self {
        NodeConfig {
            id,
            store,
            listen: listen.into(),
            raft: default_raft_config(),
        }
    }
}

/// openraft settings for a loopback cluster: a 100 ms heartbeat and elections after
/// 400–800 ms of silence, so a lost leader is replaced within about a second.
pub fn default_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "sealdb".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..openraft::Config::default()
    }
}

fn not_leader(f: ForwardToLeader<NodeId, BasicNode>) -> Error {
    Error::NotLeader {
        leader_id: f.leader_id,
        leader_addr: f.leader_node.map(|n| n.addr),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::Fatal(f) => Error::Unavailable(f.to_string()),
        e => Error::Raft(e.to_string()),
    }
}

/// What the server task and the node's own methods share.
struct Shared {
    raft: Raft,
    sm: StateMachine,
}

impl Shared {
    async fn write(&self, request: Request) -> Result<u64> {
        match self.raft.client_write(request).await {
            Ok(reply) => Ok(reply.data.index),
            Err(e) => Err(write_error(e)),
        }
    }

    /// Waits until this node is a leader confirmed by a quorum and has applied everything
    /// committed before the call: a read after it sees every acknowledged write.
    async fn read_barrier(&self) -> Result<()> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(Error::Unavailable(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(Error::Unavailable(f.to_string())),
        }
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_barrier().await?;
        self.sm.get(key)
    }

    async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.read_barrier().await?;
        self.sm.scan(start, end, limit)
    }

    fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        NodeStatus {
            id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
        }
    }

    async fn kv(&self, request: KvRequest) -> Result<KvReply> {
        Ok(match request {
            KvRequest::Write(r) => KvReply::Written {
                index: self.write(r).await?,
            },
            KvRequest::Get(key) => KvReply::Value(self.get(&key).await?.map(ByteBuf::from)),
            KvRequest::Scan { start, end, limit } => KvReply::Pairs(
                self.scan(&start, end.as_deref().map(|e| &e[..]), limit as usize)
                    .await?
                    .into_iter()
                    .map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v)))
                    .collect(),
            ),
            KvRequest::Status => KvReply::Status(self.status()),
            KvRequest::LocalScan { start, end, limit } => KvReply::Pairs(
                self.sm
                    .scan(&start, end.as_deref().map(|e| &e[..]), limit as usize)?
                    .into_iter()
                    .map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v)))
                    .collect(),
            ),
        })
    }
}

impl RpcHandler for Shared {
    async fn handle(&self, rpc: Rpc) -> RpcReply {
        match rpc {
            Rpc::AppendEntries(r) => RpcReply::AppendEntries(self.raft.append_entries(r).await),
            Rpc::Vote(r) => RpcReply::Vote(self.raft.vote(r).await),
            Rpc::InstallSnapshot(r) => {
                RpcReply::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Rpc::Kv(r) => RpcReply::Kv(self.kv(r).await.map_err(WireError::from)),
        }
    }
}

/// A running node of a replicated sealdb cluster. It runs on the tokio runtime it was started
/// on; stop it with [`RaftNode::shutdown`] (dropping the handle alone leaves its tasks running
/// until the runtime ends).
pub struct RaftNode {
    id: NodeId,
    addr: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    log_open: std::sync::Weak<()>,
}

/// How long [`RaftNode::shutdown`] waits for openraft's tasks to let go of the log database.
const LOG_CLOSE_WAIT: Duration = Duration::from_secs(5);

impl RaftNode {
    /// Opens the node's stores (creating them on first start), starts openraft and serves the
    /// transport on `config.listen`. A restarted node recovers its log, vote and state from
    /// its directory and rejoins by itself.
    pub async fn start(config: NodeConfig) -> Result<Self> {
        let raft_config = config
            .raft
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("raft settings: {e}")))?;
        let listener = network::bind(&config.listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?
            .to_string();
        let transport = config.store.transport()?;
        let (log, sm) = open_stores(&config.store)?;
        let log_open = log.open_signal();
        let network = Network::new(transport.clone());
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm.clone())
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let shared = Arc::new(Shared { raft, sm });
        let server = tokio::spawn(network::serve(listener, shared.clone(), transport));
        Ok(RaftNode {
            id: config.id,
            addr,
            shared,
            server,
            log_open,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address this node serves on (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The openraft handle (metrics, membership changes).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// This node's state machine: what it has applied (not a linearizable read).
    pub fn state_machine(&self) -> &StateMachine {
        &self.shared.sm
    }

    /// Makes `members` (id → address) the cluster's first membership, all voters. Call it on
    /// one node of a new cluster; on a node that already has a log it does nothing.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<()> {
        let members: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.shared.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Adds node `id` at `addr` as a learner (run on the leader): it receives the log (or a
    /// snapshot) but does not vote. Returns once it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> Result<()> {
        self.shared
            .raft
            .add_learner(id, BasicNode::new(addr.into()), true)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Makes `voters` the cluster's voting members (run on the leader), through joint
    /// consensus; nodes left out stop voting and are removed from the membership.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<()> {
        self.shared
            .raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// This node's Raft state.
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// The leader this node knows of, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// Waits until this node knows a leader (at most `timeout`) and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let metrics = self
            .shared
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|_| Error::Timeout(timeout))?;
        metrics.current_leader.ok_or(Error::Timeout(timeout))
    }

    /// Waits until this node has applied the log up to `index` (at most `timeout`).
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        self.shared
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "caught up")
            .await
            .map(|_| ())
            .map_err(|_| Error::Timeout(timeout))
    }

    /// Replicates `request` (its operations applied atomically) and returns its log index
    /// once a quorum has it durably and it is applied here. Fails with
    /// [`Error::NotLeader`] on a follower.
    pub async fn write(&self, request: Request) -> Result<u64> {
        self.shared.write(request).await
    }

    /// Sets `key` to `value` (replicated; see [`RaftNode::write`]).
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<u64> {
        self.write(Request {
            ops: vec![Op::Put {
                key: key.into(),
                value: value.into(),
            }],
        })
        .await
    }

    /// Removes `key` (replicated; see [`RaftNode::write`]).
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<u64> {
        self.write(Request {
            ops: vec![Op::Delete { key: key.into() }],
        })
        .await
    }

    /// A linearizable read of `key` (on the leader; [`Error::NotLeader`] elsewhere).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.shared.get(key).await
    }

    /// A linearizable scan of `[start, end)`, at most `limit` pairs (on the leader).
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.shared.scan(start, end, limit).await
    }

    /// Stops the node: openraft, the server, and the databases (closed cleanly, within
    /// 5 s), so that the same directory can be started again at once.
    pub async fn shutdown(self) -> Result<()> {
        let shut = self.shared.raft.shutdown().await;
        self.server.abort();
        let _ = self.server.await;
        self.shared.sm.close();
        drop(self.shared);
        shut.map_err(|e| Error::Raft(format!("shutting down: {e}")))?;
        // openraft's tasks drop their log handles as they end; the sync thread closes the
        // database after them.
        let deadline = tokio::time::Instant::now() + LOG_CLOSE_WAIT;
        while self.log_open.upgrade().is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Raft(format!(
                    "the log database was still open {LOG_CLOSE_WAIT:?} after shutdown"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
