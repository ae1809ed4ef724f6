//! The loopback transport of the example and the tests: length-prefixed CBOR frames over
//! tokio TCP, one request and one reply at a time per connection.
//!
//! Frame: a 4-byte big-endian length, then that many bytes of CBOR. It carries Raft's RPCs
//! (log entries, votes, snapshot chunks — a snapshot chunk is part of a sealed pack, log
//! entries are not sealed: see `docs/replication.md`) and the key-value requests of
//! [`crate::Client`]. It is meant for 127.0.0.1; across machines it needs TLS.

use crate::error::WireError;
use crate::{NodeId, Request, TypeConfig};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest frame accepted: snapshot chunks are far smaller (openraft's default chunk is
/// 3 MiB), so anything larger is a broken or hostile peer.
const MAX_FRAME: u32 = 64 << 20;

/// A key-value request of a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum KvRequest {
    Write(Request),
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    Scan {
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        end: Option<serde_bytes::ByteBuf>,
        limit: u32,
    },
    /// A scan of what the node asked has applied, without asking the leader (may be stale).
    LocalScan {
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        end: Option<serde_bytes::ByteBuf>,
        limit: u32,
    },
}

/// A key-value reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum KvReply {
    Written { index: u64 },
    Value(Option<serde_bytes::ByteBuf>),
    Pairs(Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>),
}

/// Everything a node is asked over the transport.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Kv(KvRequest),
}

/// A node's answer to an [`Rpc`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Kv(Result<KvReply, WireError>),
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than the {MAX_FRAME} allowed"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn invalid_data(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// One client connection to a node, (re)connected on demand.
pub(crate) struct Conn {
    addr: String,
    stream: Option<TcpStream>,
}

impl Conn {
    pub(crate) fn new(addr: impl Into<String>) -> Self {
        Conn {
            addr: addr.into(),
            stream: None,
        }
    }

    /// Sends `rpc` and waits for the reply, within `timeout`. Any failure drops the
    /// connection (the next call reconnects): a reply cannot be matched to a request after a
    /// timeout.
    pub(crate) async fn call(&mut self, rpc: &Rpc, timeout: Duration) -> std::io::Result<RpcReply> {
        let result = tokio::time::timeout(timeout, self.call_inner(rpc)).await;
        match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply from {} within {timeout:?}", self.addr),
                ))
            }
        }
    }

    async fn call_inner(&mut self, rpc: &Rpc) -> std::io::Result<RpcReply> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                self.stream.insert(s)
            }
        };
        write_frame(stream, &crate::store::encode(rpc)).await?;
        let bytes = read_frame(stream).await?;
        crate::store::decode(&bytes, "reply").map_err(invalid_data)
    }
}

/// What serves the RPCs a node receives.
pub(crate) trait RpcHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, rpc: Rpc) -> impl Future<Output = RpcReply> + Send;
}

/// Accepts connections on `listener` and answers each request with `handler`, until the task
/// is aborted; aborting it also ends every connection it accepted (they live in its
/// `JoinSet`), so a stopped node answers nothing.
pub(crate) async fn serve<H: RpcHandler>(listener: TcpListener, handler: Arc<H>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    continue;
                };
                connections.spawn(serve_connection(stream, handler.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<H: RpcHandler>(mut stream: TcpStream, handler: Arc<H>) {
    let _ = stream.set_nodelay(true);
    while let Ok(bytes) = read_frame(&mut stream).await {
        let rpc: Rpc = match crate::store::decode(&bytes, "request") {
            Ok(rpc) => rpc,
            Err(e) => {
                tracing::warn!("dropping a connection: {e}");
                return;
            }
        };
        let reply = handler.handle(rpc).await;
        if write_frame(&mut stream, &crate::store::encode(&reply))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// openraft's network factory over this transport.
#[derive(Debug, Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        NetworkClient {
            target,
            conn: Conn::new(node.addr.clone()),
        }
    }
}

/// openraft's connection to one peer over this transport.
pub struct NetworkClient {
    target: NodeId,
    conn: Conn,
}

impl NetworkClient {
    async fn send<E: std::error::Error>(
        &mut self,
        rpc: Rpc,
        option: &RPCOption,
    ) -> Result<RpcReply, RPCError<NodeId, BasicNode, E>> {
        self.conn
            .call(&rpc, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&invalid_data(format!(
            "node {} answered with the wrong kind of reply",
            self.target
        ))))
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.send(Rpc::AppendEntries(rpc), &option).await? {
            RpcReply::AppendEntries(Ok(r)) => Ok(r),
            RpcReply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.send(Rpc::InstallSnapshot(rpc), &option).await? {
            RpcReply::InstallSnapshot(Ok(r)) => Ok(r),
            RpcReply::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.send(Rpc::Vote(rpc), &option).await? {
            RpcReply::Vote(Ok(r)) => Ok(r),
            RpcReply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }
}

/// Binds a listener on `addr` (for example `127.0.0.1:0`).
pub(crate) async fn bind(addr: &str) -> crate::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::io(format!("listening on {addr}"), e))
}
