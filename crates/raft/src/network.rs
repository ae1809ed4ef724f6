//! The loopback transport of the example and the tests: sealed, length-prefixed CBOR frames
//! over tokio TCP, one request and one reply at a time per connection.
//!
//! Frame: a 4-byte big-endian length, then that many bytes. A connection opens with a
//! handshake under the cluster's [`TransportKey`]: the client sends `SDBRWIR1` and a fresh
//! random 256-bit secret wrapped by the transport key (through its KMS); the server unwraps it
//! and answers 32 random bytes; both derive the connection key
//! HKDF-SHA256(salt = those bytes, secret, "sealdb-raft wire v1"). Every later frame is
//! ChaCha20-Poly1305 under that key, nonce = direction byte (0 client→server, 1 back), three
//! zero bytes and a 64-bit big-endian frame counter: a frame that is altered, replayed,
//! reordered or from another connection fails to open and ends the connection. Only holders of
//! the transport key can connect, and nothing crosses in clear but the wrapped secret and the
//! server's random bytes. It carries Raft's RPCs and the key-value requests of
//! [`crate::Client`].

use crate::error::WireError;
use crate::keys::TransportKey;
use crate::{NodeId, Request, TypeConfig};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use sealdb_crypto::{DatabaseId, EncryptionContext, SecretKey};
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
    /// The node's Raft state.
    Status,
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
    Status(crate::NodeStatus),
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

/// The largest handshake frame: a wrapped key is about a hundred bytes, so an unauthenticated
/// peer cannot make a node allocate more than this.
const MAX_HANDSHAKE_FRAME: u32 = 4096;

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    read_frame_limited(stream, MAX_FRAME).await
}

async fn read_frame_limited(stream: &mut TcpStream, max: u32) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes, more than the {max} allowed"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn invalid_data(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

const WIRE_MAGIC: &[u8; 8] = b"SDBRWIR1";
/// The encryption context of wrapped connection secrets: never a database's, so a wrapped
/// connection secret can never pass for a wrapped data key, nor the reverse.
const WIRE_CONTEXT: EncryptionContext = EncryptionContext {
    database_id: DatabaseId(*b"sealdb-raft-wire"),
};
const SERVER_RANDOM_LEN: usize = 32;

/// One connection's frame sealing.
struct Session {
    cipher: ChaCha20Poly1305,
    /// 0 on the client side, 1 on the server side: the direction byte of sent frames.
    send_direction: u8,
    sent: u64,
    received: u64,
}

impl Session {
    fn new(secret: &SecretKey, server_random: &[u8], send_direction: u8) -> std::io::Result<Self> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(server_random), secret.expose());
        let mut key = [0u8; 32];
        hk.expand(b"sealdb-raft wire v1", &mut key)
            .map_err(|_| invalid_data("key derivation"))?;
        let cipher = ChaCha20Poly1305::new(&key.into());
        zeroize_key(&mut key);
        Ok(Session {
            cipher,
            send_direction,
            sent: 0,
            received: 0,
        })
    }

    fn nonce(direction: u8, counter: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[0] = direction;
        n[4..].copy_from_slice(&counter.to_be_bytes());
        Nonce::from(n)
    }

    fn seal(&mut self, plaintext: &[u8]) -> std::io::Result<Vec<u8>> {
        let nonce = Self::nonce(self.send_direction, self.sent);
        self.sent += 1;
        self.cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| invalid_data("sealing a frame"))
    }

    fn open(&mut self, sealed: &[u8]) -> std::io::Result<Vec<u8>> {
        let nonce = Self::nonce(1 - self.send_direction, self.received);
        self.received += 1;
        self.cipher
            .decrypt(&nonce, sealed)
            .map_err(|_| invalid_data("a frame that does not authenticate"))
    }
}

fn zeroize_key(key: &mut [u8; 32]) {
    key.iter_mut().for_each(|b| *b = 0);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// The client side of the handshake.
async fn client_handshake(
    stream: &mut TcpStream,
    transport: &TransportKey,
) -> std::io::Result<Session> {
    let secret = SecretKey::generate().map_err(invalid_data)?;
    let wrapped = transport
        .provider()
        .wrap(&secret, &WIRE_CONTEXT)
        .map_err(invalid_data)?;
    let mut hello = WIRE_MAGIC.to_vec();
    hello.extend_from_slice(&wrapped);
    write_frame(stream, &hello).await?;
    let server_random = read_frame_limited(stream, MAX_HANDSHAKE_FRAME).await?;
    if server_random.len() != SERVER_RANDOM_LEN {
        return Err(invalid_data("a handshake reply of the wrong length"));
    }
    Session::new(&secret, &server_random, 0)
}

/// The server side of the handshake: refuses a peer without the transport key.
async fn server_handshake(
    stream: &mut TcpStream,
    transport: &TransportKey,
) -> std::io::Result<Session> {
    let hello = read_frame_limited(stream, MAX_HANDSHAKE_FRAME).await?;
    let wrapped = hello
        .strip_prefix(WIRE_MAGIC.as_slice())
        .ok_or_else(|| invalid_data("not a sealdb-raft handshake"))?;
    let secret = transport
        .provider()
        .unwrap(wrapped, &WIRE_CONTEXT)
        .map_err(invalid_data)?;
    let mut server_random = [0u8; SERVER_RANDOM_LEN];
    sealdb_crypto::keys::fill_random(&mut server_random).map_err(invalid_data)?;
    write_frame(stream, &server_random).await?;
    Session::new(&secret, &server_random, 1)
}

/// One client connection to a node, (re)connected on demand.
pub(crate) struct Conn {
    addr: String,
    transport: TransportKey,
    stream: Option<(TcpStream, Session)>,
}

impl Conn {
    pub(crate) fn new(addr: impl Into<String>, transport: TransportKey) -> Self {
        Conn {
            addr: addr.into(),
            transport,
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
        let (stream, session) = match &mut self.stream {
            Some(s) => s,
            None => {
                let mut s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                let session = client_handshake(&mut s, &self.transport).await?;
                self.stream.insert((s, session))
            }
        };
        let sealed = session.seal(&crate::codec::encode(rpc))?;
        write_frame(stream, &sealed).await?;
        let bytes = session.open(&read_frame(stream).await?)?;
        crate::codec::decode(&bytes, "reply").map_err(invalid_data)
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
pub(crate) async fn serve<H: RpcHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    transport: TransportKey,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, most likely: give connections time to end rather
                    // than spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(serve_connection(stream, handler.clone(), transport.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<H: RpcHandler>(
    mut stream: TcpStream,
    handler: Arc<H>,
    transport: TransportKey,
) {
    let _ = stream.set_nodelay(true);
    let mut session = match server_handshake(&mut stream, &transport).await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!("refusing a connection: {e}");
            return;
        }
    };
    while let Ok(sealed) = read_frame(&mut stream).await {
        let rpc: Rpc = match session
            .open(&sealed)
            .map_err(|e| e.to_string())
            .and_then(|bytes| crate::codec::decode(&bytes, "request").map_err(|e| e.to_string()))
        {
            Ok(rpc) => rpc,
            Err(e) => {
                tracing::warn!("dropping a connection: {e}");
                return;
            }
        };
        let reply = handler.handle(rpc).await;
        let Ok(sealed) = session.seal(&crate::codec::encode(&reply)) else {
            return;
        };
        if write_frame(&mut stream, &sealed).await.is_err() {
            return;
        }
    }
}

/// openraft's network factory over this transport.
#[derive(Debug, Clone)]
pub struct Network {
    transport: TransportKey,
}

impl Network {
    /// Connections sealed under `transport`.
    pub fn new(transport: TransportKey) -> Self {
        Network { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        NetworkClient {
            target,
            conn: Conn::new(node.addr.clone(), self.transport.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let secret = SecretKey::from_bytes([7u8; 32]);
        let random = [9u8; SERVER_RANDOM_LEN];
        (
            Session::new(&secret, &random, 0).expect("client"),
            Session::new(&secret, &random, 1).expect("server"),
        )
    }

    #[test]
    fn frames_open_in_order_and_only_once() {
        let (mut client, mut server) = pair();
        let first = client.seal(b"first").expect("seal");
        assert!(
            !first.windows(5).any(|w| w == b"first"),
            "sealed frame in clear"
        );
        assert_eq!(server.open(&first).expect("open"), b"first");
        // A replay of the first frame is not the second.
        assert!(server.open(&first).is_err());
        let (mut client, mut server) = pair();
        let first = client.seal(b"first").expect("seal");
        let second = client.seal(b"second").expect("seal");
        assert_eq!(server.open(&first).expect("open"), b"first");
        assert_eq!(server.open(&second).expect("open"), b"second");
    }

    #[test]
    fn altered_reordered_or_reflected_frames_are_refused() {
        let (mut client, mut server) = pair();
        let mut frame = client.seal(b"payload").expect("seal");
        frame[0] ^= 1;
        assert!(server.open(&frame).is_err(), "a flipped bit opened");

        let (mut client, mut server) = pair();
        let _first = client.seal(b"one").expect("seal");
        let second = client.seal(b"two").expect("seal");
        assert!(server.open(&second).is_err(), "a reordered frame opened");

        let (mut client, _) = pair();
        let sent = client.seal(b"to the server").expect("seal");
        assert!(client.open(&sent).is_err(), "a reflected frame opened");

        let other = Session::new(&SecretKey::from_bytes([8u8; 32]), &[9u8; 32], 1);
        let (mut client, _) = pair();
        let frame = client.seal(b"x").expect("seal");
        assert!(
            other.expect("other").open(&frame).is_err(),
            "another connection's key opened"
        );
    }
}
