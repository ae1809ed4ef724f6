//! Three nodes on 127.0.0.1 in one process: writes through the leader, the leader dropped, a
//! new leader, every acknowledged write on the survivors, the dropped node back and caught up
//! by log and, with aggressive snapshot settings, by snapshot; nothing in clear anywhere.

mod common;

use common::{Cluster, WAIT, assert_nothing_in_clear, key, value};
use sealdb_crypto::{KeysFile, OwnedKeyProvider, SharedProvider};
use std::path::Path;
use std::sync::Arc;

/// Every acknowledged write `0..n` is applied on node `id`.
async fn assert_has_all(cluster: &Cluster, id: u64, n: usize, last_index: u64) {
    let node = &cluster.nodes[&id];
    node.wait_for_applied(last_index, WAIT)
        .await
        .unwrap_or_else(|e| panic!("node {id} did not catch up to {last_index}: {e}"));
    for i in 0..n {
        assert_eq!(
            node.state_machine().get(&key(i)).expect("local read"),
            Some(value(i)),
            "node {id} misses acknowledged write {i}"
        );
    }
}

async fn write_range(client: &mut sealdb_raft::Client, range: std::ops::Range<usize>) -> u64 {
    let mut last = 0;
    for i in range {
        last = client
            .put(key(i), value(i))
            .await
            .expect("acknowledged put");
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_dropped_new_leader_elected_and_it_rejoins_by_log() {
    let mut cluster = Cluster::start(3, sealdb_raft::default_raft_config()).await;
    let mut client = cluster.client();
    write_range(&mut client, 0..40).await;
    let old_leader = cluster.leader().await;

    // A follower redirects to the leader.
    let follower = *cluster
        .nodes
        .keys()
        .find(|id| **id != old_leader)
        .expect("follower");
    match cluster.nodes[&follower].put(key(0), value(0)).await {
        Err(sealdb_raft::Error::NotLeader {
            leader_id,
            leader_addr,
        }) => {
            // The redirect names the leader and its address (the one it had when asked: an
            // election in between would change it, so compare with what it names).
            let named = leader_id.expect("a known leader");
            assert_ne!(named, follower);
            assert_eq!(leader_addr.as_deref(), Some(cluster.addrs[&named].as_str()));
        }
        other => panic!("a follower accepted a write: {other:?}"),
    }

    let old_leader = cluster.leader().await;
    cluster.stop(old_leader).await;
    let last = write_range(&mut client, 40..80).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    let survivors: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in survivors {
        assert_has_all(&cluster, id, 80, last).await;
    }

    // The old leader comes back, catches up from the log, and serves as a follower.
    cluster.restart(old_leader).await;
    assert_has_all(&cluster, old_leader, 80, last).await;

    // Reads, deletes and scans through the client (linearizable, at the leader).
    assert_eq!(client.get(key(79)).await.expect("get"), Some(value(79)));
    let del = client.delete(key(3)).await.expect("delete");
    assert_eq!(client.get(key(3)).await.expect("get"), None);
    let scanned = client.scan(key(0), Some(key(6)), 100).await.expect("scan");
    let keys: Vec<Vec<u8>> = scanned.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![key(0), key(1), key(2), key(4), key(5)]);
    for id in [1, 2, 3] {
        cluster.nodes[&id]
            .wait_for_applied(del, WAIT)
            .await
            .expect("delete applied");
        assert_eq!(
            cluster.nodes[&id]
                .state_machine()
                .get(&key(3))
                .expect("read"),
            None
        );
    }

    let dirs: Vec<_> = [1, 2, 3].iter().map(|id| cluster.dir(*id)).collect();
    let _root = cluster.shutdown().await;
    assert_nothing_in_clear(&dirs, &[b"secret-key-", b"confidential-value-"]);
}

/// Opens the KEYS file in `dir` with only the owned key in `keystore`.
fn opens_with(dir: &Path, keystore: &Path) -> Result<(), sealdb_crypto::Error> {
    let fs = sealdb::Options::default().fs;
    let summary = KeysFile::peek(fs.as_ref(), dir)?;
    KeysFile::open(fs.as_ref(), dir, |_| {
        Ok(Arc::new(OwnedKeyProvider::open(keystore, summary.database_id)?) as SharedProvider)
    })
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_by_snapshot_under_its_own_key() {
    let raft = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..sealdb_raft::default_raft_config()
    };
    let mut cluster = Cluster::start(3, raft).await;
    let leader = cluster.leader().await;
    let lagging = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("follower");
    cluster.stop(lagging).await;
    let replaced = KeysFile::peek(
        sealdb::Options::default().fs.as_ref(),
        &cluster.dir(lagging).join("state"),
    )
    .expect("peek")
    .database_id;

    let mut client = cluster.client();
    let last = write_range(&mut client, 0..60).await;
    // The leader's log no longer holds what the stopped node misses: only a snapshot helps.
    // (Snapshots are built and the log purged in the background: wait for it, bounded.)
    cluster.nodes[&leader]
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.map(|l| l.index).unwrap_or(0) > 10,
            "the leader purged its log past 10",
        )
        .await
        .expect("the leader purged its log");

    cluster.restart(lagging).await;
    assert_has_all(&cluster, lagging, 60, last).await;
    let installed = cluster.nodes[&lagging].raft().metrics().borrow().snapshot;
    assert!(
        installed.is_some(),
        "node {lagging} caught up without a snapshot"
    );

    let dirs: Vec<_> = [1, 2, 3].iter().map(|id| cluster.dir(*id)).collect();
    let root = cluster.shutdown().await;
    // Each database in the node's directory opens with the node's own keystore, and not with
    // the leader's: nothing there is under the leader's master key (the restored state has
    // the leader's database id, so the leader's keystore does hold a key for it).
    let own = root.path().join(format!("keystore{lagging}"));
    let leaders = root.path().join(format!("keystore{leader}"));
    for db in ["state", "log"] {
        let dir = dirs[(lagging - 1) as usize].join(db);
        opens_with(&dir, &own).unwrap_or_else(|e| panic!("{db} under its own key: {e}"));
        assert!(
            opens_with(&dir, &leaders).is_err(),
            "{db} opens under the leader's key"
        );
    }
    assert_eq!(
        KeysFile::peek(
            sealdb::Options::default().fs.as_ref(),
            &dirs[(lagging - 1) as usize].join("state")
        )
        .expect("peek")
        .database_id,
        KeysFile::peek(
            sealdb::Options::default().fs.as_ref(),
            &dirs[(leader - 1) as usize].join("state")
        )
        .expect("peek")
        .database_id,
        "the state was not restored from the leader's snapshot"
    );
    // The replaced state's master key is shredded along with it.
    assert!(
        !OwnedKeyProvider::key_path(&own, replaced).exists(),
        "the replaced state's key is still in node {lagging}'s keystore"
    );
    // After the install the node writes under a data key of its own.
    let versions = KeysFile::peek(
        sealdb::Options::default().fs.as_ref(),
        &dirs[(lagging - 1) as usize].join("state"),
    )
    .expect("peek")
    .versions;
    assert!(versions.len() >= 2, "no data key of its own: {versions:?}");
    assert_nothing_in_clear(&dirs, &[b"secret-key-", b"confidential-value-"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_node_and_removes_one() {
    let mut cluster = Cluster::start(3, sealdb_raft::default_raft_config()).await;
    let mut client = cluster.client();
    let last = write_range(&mut client, 0..20).await;

    // A fourth node starts empty, joins as a learner, catches up, then becomes a voter.
    cluster.start_new(4).await;
    let leader = cluster.leader().await;
    let addr4 = cluster.addrs[&4].clone();
    cluster.nodes[&leader]
        .add_learner(4, addr4)
        .await
        .expect("add learner");
    assert_has_all(&cluster, 4, 20, last).await;
    cluster.nodes[&leader]
        .change_membership([1, 2, 3, 4].into())
        .await
        .expect("promote");

    // Remove a follower: the membership no longer names it, and writes go on without it.
    let leader = cluster.leader().await;
    let removed = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("follower");
    let remaining: std::collections::BTreeSet<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    cluster.nodes[&leader]
        .change_membership(remaining.clone())
        .await
        .expect("remove");
    cluster.stop(removed).await;
    let last = write_range(&mut client, 20..30).await;
    for id in remaining {
        assert_has_all(&cluster, id, 30, last).await;
        let voters: Vec<u64> = cluster.nodes[&id]
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        assert!(
            !voters.contains(&removed),
            "node {id} still counts {removed} as a voter"
        );
    }
    let _root = cluster.shutdown().await;
}

/// Forwards one connection at a time from a local port to `target`, recording every byte.
async fn recording_proxy(target: String) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (mut in_r, mut in_w) = inbound.into_split();
            let (mut out_r, mut out_w) = outbound.into_split();
            let up = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = in_r.read(&mut buf).await {
                    if n == 0 || out_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    up.lock().extend_from_slice(&buf[..n]);
                }
            });
            let down = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = out_r.read(&mut buf).await {
                    if n == 0 || in_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    down.lock().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_carries_nothing_in_clear_and_refuses_strangers() {
    let cluster = Cluster::start(3, sealdb_raft::default_raft_config()).await;
    let leader = cluster.leader().await;
    let (proxy, seen) = recording_proxy(cluster.addrs[&leader].clone()).await;
    let mut client = sealdb_raft::Client::new([proxy], cluster.transport()).with_timeout(WAIT);
    for i in 0..5 {
        client
            .put(key(i), value(i))
            .await
            .expect("put through the proxy");
    }
    assert_eq!(client.get(key(4)).await.expect("get"), Some(value(4)));
    let bytes = seen.lock().clone();
    assert!(
        bytes.len() > 200,
        "the proxy saw only {} bytes",
        bytes.len()
    );
    for needle in [b"secret-key-".as_slice(), b"confidential-value-".as_slice()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(needle)
        );
    }

    // A client holding another key named like the transport key gets no answer.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    sealdb_raft::ensure_transport_key(elsewhere.path(), common::TRANSPORT_KEY).expect("key");
    let stranger_key =
        sealdb_raft::TransportKey::local_kms(elsewhere.path(), common::TRANSPORT_KEY).expect("key");
    let mut stranger = sealdb_raft::Client::new(cluster.addrs.values().cloned(), stranger_key)
        .with_timeout(std::time::Duration::from_secs(1));
    match stranger.put(key(99), value(99)).await {
        Err(sealdb_raft::Error::Timeout(_)) => {}
        other => panic!("a client without the transport key got {other:?}"),
    }
    // Raw garbage before the handshake: a huge length, then a hello that is no wrapped key.
    // Each connection is dropped without an answer, and the node serves on.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for junk in [
        u32::MAX.to_be_bytes().to_vec(),
        [&8u32.to_be_bytes()[..], b"SDBRWIR1"].concat(),
    ] {
        let mut raw = tokio::net::TcpStream::connect(&cluster.addrs[&leader])
            .await
            .expect("connect");
        raw.write_all(&junk).await.expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the node answered junk: {read:?}"
        );
    }
    let mut client = cluster.client();
    assert_eq!(client.get(key(99)).await.expect("get"), None);
    let _root = cluster.shutdown().await;
}
