//! A key-value client of a cluster: sends each request to the leader it knows, follows the
//! leader redirects nodes answer with, and tries the other nodes when one does not answer.

use crate::keys::TransportKey;
use crate::network::{Conn, KvReply, KvRequest, Rpc, RpcReply};
use crate::{Error, NodeStatus, Op, Request, Result};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long one node may take to answer one request before the client tries another.
const PER_CALL: Duration = Duration::from_secs(2);
/// Pause before another round when no node knew a leader (an election is running).
const NO_LEADER_PAUSE: Duration = Duration::from_millis(50);

/// A client of a sealdb-raft cluster.
///
/// Writes are retried on another node when the one asked fails without answering, so a write
/// whose acknowledgement was lost may be applied twice: puts and deletes are idempotent, so the
/// state is the same.
pub struct Client {
    addrs: Vec<String>,
    transport: TransportKey,
    leader: Option<String>,
    conns: HashMap<String, Conn>,
    timeout: Duration,
}

impl Client {
    /// A client of the nodes at `addrs` (`host:port`), its connections sealed under the
    /// cluster's `transport` key, giving up on a request after 10 s without an answer from a
    /// leader.
    pub fn new<S: Into<String>>(
        addrs: impl IntoIterator<Item = S>,
        transport: TransportKey,
    ) -> Self {
        Client {
            addrs: addrs.into_iter().map(Into::into).collect(),
            transport,
            leader: None,
            conns: HashMap::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets how long a request may take, redirects and retries included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The leader's address, as last learnt.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    async fn call_one(&mut self, addr: &str, request: &Rpc) -> Result<KvReply> {
        let conn = self
            .conns
            .entry(addr.to_string())
            .or_insert_with(|| Conn::new(addr, self.transport.clone()));
        match conn.call(request, PER_CALL).await {
            Ok(RpcReply::Kv(reply)) => reply.map_err(Error::from),
            Ok(_) => Err(Error::malformed(
                "reply",
                format!("{addr} answered another kind"),
            )),
            Err(e) => Err(Error::io(format!("asking {addr}"), e)),
        }
    }

    async fn call(&mut self, request: KvRequest) -> Result<KvReply> {
        let deadline = Instant::now() + self.timeout;
        let request = Rpc::Kv(request);
        let mut last_error = None;
        while Instant::now() < deadline {
            let mut candidates: Vec<String> = self.leader.iter().cloned().collect();
            candidates.extend(
                self.addrs
                    .iter()
                    .filter(|a| Some(*a) != self.leader.as_ref())
                    .cloned(),
            );
            let mut redirected = false;
            for addr in candidates {
                match self.call_one(&addr, &request).await {
                    Ok(reply) => {
                        self.leader = Some(addr);
                        return Ok(reply);
                    }
                    Err(Error::NotLeader {
                        leader_addr: Some(leader),
                        ..
                    }) if leader != addr => {
                        // Follow the redirect at once.
                        self.leader = Some(leader);
                        redirected = true;
                        break;
                    }
                    Err(
                        e @ (Error::NotLeader { .. } | Error::Io { .. } | Error::Unavailable(_)),
                    ) => {
                        if self.leader.as_deref() == Some(addr.as_str()) {
                            self.leader = None;
                        }
                        last_error = Some(e);
                    }
                    // Anything else (a failed apply, a malformed reply) is the answer.
                    Err(e) => return Err(e),
                }
            }
            if !redirected {
                tokio::time::sleep(NO_LEADER_PAUSE).await;
            }
        }
        tracing::debug!("giving up: {last_error:?}");
        Err(Error::Timeout(self.timeout))
    }

    /// Replicates `request` (its operations applied atomically); returns its log index.
    pub async fn write(&mut self, request: Request) -> Result<u64> {
        match self.call(KvRequest::Write(request)).await? {
            KvReply::Written { index } => Ok(index),
            _ => Err(Error::malformed("reply", "not a write acknowledgement")),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<u64> {
        self.write(Request {
            ops: vec![Op::Put {
                key: key.into(),
                value: value.into(),
            }],
        })
        .await
    }

    /// Removes `key`.
    pub async fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<u64> {
        self.write(Request {
            ops: vec![Op::Delete { key: key.into() }],
        })
        .await
    }

    /// A linearizable read of `key` (served by the leader).
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        match self.call(KvRequest::Get(key.into())).await? {
            KvReply::Value(v) => Ok(v.map(ByteBuf::into_vec)),
            _ => Err(Error::malformed("reply", "not a value")),
        }
    }

    /// A linearizable scan of `[start, end)` (`end` `None` = to the end), at most `limit`
    /// pairs, in key order.
    pub async fn scan(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let request = KvRequest::Scan {
            start: start.into(),
            end: end.map(ByteBuf::from),
            limit,
        };
        match self.call(request).await? {
            KvReply::Pairs(pairs) => Ok(pairs
                .into_iter()
                .map(|(k, v)| (k.into_vec(), v.into_vec()))
                .collect()),
            _ => Err(Error::malformed("reply", "not key-value pairs")),
        }
    }

    /// The Raft state of the node at `addr` (its term, leader, log, applied and snapshot
    /// indexes).
    pub async fn status(&mut self, addr: &str) -> Result<NodeStatus> {
        match self.call_one(addr, &Rpc::Kv(KvRequest::Status)).await? {
            KvReply::Status(status) => Ok(status),
            _ => Err(Error::malformed("reply", "not a status")),
        }
    }

    /// What the node at `addr` alone has applied in `[start, end)`, at most `limit` pairs,
    /// without a leader check: a stale read, for follower reads and for checking a replica.
    pub async fn scan_local(
        &mut self,
        addr: &str,
        start: impl Into<Vec<u8>>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let request = Rpc::Kv(KvRequest::LocalScan {
            start: start.into(),
            end: end.map(ByteBuf::from),
            limit,
        });
        match self.call_one(addr, &request).await? {
            KvReply::Pairs(pairs) => Ok(pairs
                .into_iter()
                .map(|(k, v)| (k.into_vec(), v.into_vec()))
                .collect()),
            _ => Err(Error::malformed("reply", "not key-value pairs")),
        }
    }
}
