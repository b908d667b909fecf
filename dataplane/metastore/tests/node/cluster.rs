use phlox_metastore::{MetastoreConfig, MetastoreNode};
use phlox_proto::metastore_client::{GrpcMetastore, Metastore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::common::*;

struct Member {
    node: MetastoreNode,
    server: JoinHandle<()>,
    address: String,
}

/// Waits until `node` knows a leader other than `not`.
async fn leader_other_than(node: &MetastoreNode, not: Option<u64>) -> u64 {
    let mut metrics = node.metrics();
    let m = tokio::time::timeout(WAIT, metrics.wait_for(|m| matches!(m.current_leader, Some(l) if Some(l) != not)))
        .await
        .unwrap()
        .unwrap();
    m.current_leader.unwrap()
}

/// Polls `node.health()` until it is healthy (`want_ok`) or not; returns
/// the last answer.
async fn health_becomes(node: &MetastoreNode, want_ok: bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let h = node.health();
        if h.is_ok() == want_ok || tokio::time::Instant::now() >= deadline {
            return h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until every node has applied what `leader` has, then checks its
/// local index holds exactly `expected`.
async fn assert_replicated(members: &[&Member], leader: &Member, expected: &[String]) {
    let applied = leader.node.metrics().borrow().last_applied.unwrap().index;
    for m in members {
        m.node.wait_for_applied(applied, WAIT).await.unwrap();
        assert_eq!(ids(&m.node.query_local(&query_all()).unwrap()), expected, "node {}", m.node.node_id());
        let via_client = m.node.client().query_blocks(query_all()).await.unwrap().blocks;
        assert_eq!(ids(&via_client), expected, "client of node {}", m.node.node_id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_forward_and_survive_losing_the_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, peers) = listeners(3).await;
    let mut members = Vec::new();
    for (listener, (dir, (id, address))) in listeners.into_iter().zip(dirs.iter().zip(&peers)) {
        let config = MetastoreConfig { peers: peers.clone(), ..config(*id, dir.path(), address) };
        let node = start(config).await;
        let server = serve(&node, listener);
        members.push(Member { node, server, address: address.clone() });
    }

    // Under load the first election can be followed by another: wait until
    // every node knows the same leader, and that leader knows it leads.
    let deadline = tokio::time::Instant::now() + WAIT;
    let leader_id = loop {
        let mut seen = Vec::new();
        for m in &members {
            seen.push(leader_other_than(&m.node, None).await);
        }
        let agreed = seen.iter().all(|&l| l == seen[0])
            && members.iter().any(|m| m.node.node_id() == seen[0] && m.node.is_leader());
        if agreed {
            break seen[0];
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let leader = members.iter().position(|m| m.node.node_id() == leader_id).unwrap();
    let follower = (leader + 1) % 3;
    for m in &members {
        assert_eq!(health_becomes(&m.node, true).await, Ok(()), "node {}", m.node.node_id());
    }
    assert!(members[leader].node.is_leader());
    assert!(!members[follower].node.is_leader());

    // Through a follower's in-process client (forwarded), through the
    // leader, and through a follower's gRPC service (forwarded once).
    let via_follower = members[follower].node.client().add_block(add_request(1, 1_000, &[1])).await.unwrap();
    assert!(via_follower.added);
    let via_leader = members[leader].node.client().add_block(add_request(2, 2_000, &[2])).await.unwrap();
    assert!(via_leader.added);
    let channel = Endpoint::from_shared(format!("http://{}", members[follower].address)).unwrap().connect_lazy();
    let grpc = GrpcMetastore::new(channel);
    let again = grpc.add_block(add_request(1, 1_000, &[1])).await.unwrap();
    assert!(!again.added);
    let retried = grpc.add_block(add_request(3, 3_000, &[1, 2])).await.unwrap();
    assert_eq!((retried.added, retried.shadowed_profiles), (true, 2));
    let all = vec![block_id(1), block_id(2), block_id(3)];
    assert_replicated(&members.iter().collect::<Vec<_>>(), &members[leader], &all).await;

    // Stop the leader: the other two elect a new one and keep serving.
    let old = members.remove(leader);
    old.node.shutdown().await;
    old.server.abort();
    let new_leader_id = leader_other_than(&members[0].node, Some(leader_id)).await;
    assert_eq!(leader_other_than(&members[1].node, Some(leader_id)).await, new_leader_id);
    let new_leader = members.iter().position(|m| m.node.node_id() == new_leader_id).unwrap();
    let survivor = 1 - new_leader;
    let after = members[survivor].node.client().add_block(add_request(4, 4_000, &[4])).await.unwrap();
    assert!(after.added);
    let all = vec![block_id(1), block_id(2), block_id(3), block_id(4)];
    assert_replicated(&members.iter().collect::<Vec<_>>(), &members[new_leader], &all).await;
    // Two of three voters: a healthy group, both say so (a rolling update
    // may go on).
    for m in &members {
        assert_eq!(health_becomes(&m.node, true).await, Ok(()), "node {}", m.node.node_id());
    }

    // One of three: no quorum, the last voter says it is not healthy.
    let gone = members.remove(survivor);
    gone.node.shutdown().await;
    gone.server.abort();
    let last = &members[0];
    let why = health_becomes(&last.node, false).await.unwrap_err();
    assert!(why.contains("without a quorum") || why.contains("no metastore leader"), "{why}");

    for m in members {
        m.node.shutdown().await;
        m.server.abort();
    }
    // The directories go last, after every node has closed its store.
    drop(dirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_missed_the_purged_log_catches_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut listeners, peers) = listeners(3).await;
    // Node 3 is down for now: its port refuses connections.
    drop(listeners.pop());
    let node_config = |i: usize, bootstrap: bool| MetastoreConfig {
        peers: peers.clone(),
        bootstrap,
        logs_kept_after_snapshot: 0,
        ..config(peers[i].0, dirs[i].path(), &peers[i].1)
    };
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let node = start(node_config(i, true)).await;
        let server = serve(&node, listener);
        members.push(Member { node, server, address: peers[i].1.clone() });
    }
    let leader_id = leader_other_than(&members[0].node, None).await;
    let leader = members.iter().find(|m| m.node.node_id() == leader_id).unwrap();
    for n in 1..=3 {
        let added = members[0].node.client().add_block(add_request(n, n as i64, &[n as u8])).await;
        assert!(added.unwrap().added);
    }
    leader.node.trigger_snapshot().await.unwrap();
    let mut metrics = leader.node.metrics();
    tokio::time::timeout(WAIT, metrics.wait_for(|m| m.purged.is_some() && m.purged >= m.snapshot))
        .await
        .unwrap()
        .unwrap();

    // Node 3 comes up without bootstrapping and gets the state as a snapshot.
    let listener = TcpListener::bind(&peers[2].1).await.unwrap();
    let node = start(node_config(2, false)).await;
    let server = serve(&node, listener);
    let late = Member { node, server, address: peers[2].1.clone() };
    let expected = vec![block_id(1), block_id(2), block_id(3)];
    assert_replicated(&[&late], leader, &expected).await;
    assert!(late.node.metrics().borrow().snapshot.is_some());
    // The log before the snapshot was purged: node 3 got the dedup keys of
    // blocks 1-3 with the snapshot, so it could decide as a leader.
    assert_eq!(late.node.dedup_key_count(), 3);
    members.push(late);
    for m in members {
        m.node.shutdown().await;
        m.server.abort();
    }
}

/// A single voter grows to three and back: the new nodes (started with the
/// three-voter peer list) never form a group of their own; the leader adds
/// them as learners, they catch up and vote; shrinking removes two voters
/// before they stop, and the last one keeps serving alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_grows_to_three_and_shrinks_back_to_one() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, peers) = listeners(3).await;
    let mut listeners = listeners.into_iter();

    // Node 1 alone, with a block.
    let first = start(MetastoreConfig { peers: peers[..1].to_vec(), ..config(1, dirs[0].path(), &peers[0].1) }).await;
    let first = Member { server: serve(&first, listeners.next().unwrap()), node: first, address: peers[0].1.clone() };
    assert_eq!(leader_other_than(&first.node, None).await, 1);
    assert!(first.node.client().add_block(add_request(1, 1_000, &[1])).await.unwrap().added);

    // Nodes 2 and 3 start with the three-voter list: not the lowest id, they
    // wait to be added and do not elect a leader between themselves.
    let mut members = vec![first];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let node =
            start(MetastoreConfig { peers: peers.clone(), ..config(i as u64 + 1, dir.path(), &peers[i].1) }).await;
        members.push(Member { server: serve(&node, listeners.next().unwrap()), node, address: peers[i].1.clone() });
    }
    // Longer than two election timeouts (1 s at most each).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for m in &members[1..] {
        assert!(!m.node.is_initialized().await.unwrap(), "node {} has no log of its own", m.node.node_id());
        assert_eq!(m.node.leader(), None, "node {} is in no group", m.node.node_id());
        assert!(m.node.health().is_err());
    }
    assert_eq!(members[0].node.membership().voters.keys().copied().collect::<Vec<_>>(), vec![1]);

    // Grow: only the leader changes the membership.
    let three: std::collections::BTreeMap<u64, String> = peers.iter().cloned().collect();
    let refused = members[1].node.change_voters(three.clone(), WAIT).await.unwrap_err();
    assert!(matches!(refused, phlox_metastore::MetastoreError::NotLeader { .. }), "{refused}");
    let view = members[0].node.change_voters(three.clone(), WAIT).await.unwrap();
    assert_eq!(view.voters, three);
    assert!(view.learners.is_empty());
    for m in &members {
        assert_eq!(health_becomes(&m.node, true).await, Ok(()), "node {}", m.node.node_id());
        assert_eq!(leader_other_than(&m.node, None).await, 1);
    }
    assert!(members[2].node.client().add_block(add_request(2, 2_000, &[2])).await.unwrap().added);
    assert_replicated(&members.iter().collect::<Vec<_>>(), &members[0], &[block_id(1), block_id(2)]).await;
    // The same change again is a no-op.
    assert_eq!(members[0].node.change_voters(three, WAIT).await.unwrap().voters.len(), 3);

    // Shrink: voters 2 and 3 leave the membership first, then stop.
    let one: std::collections::BTreeMap<u64, String> = peers[..1].iter().cloned().collect();
    let view = members[0].node.change_voters(one.clone(), WAIT).await.unwrap();
    assert_eq!(view.voters, one);
    for m in members.drain(1..) {
        m.node.shutdown().await;
        m.server.abort();
    }
    let last = &members[0];
    assert_eq!(health_becomes(&last.node, true).await, Ok(()));
    assert!(last.node.client().add_block(add_request(3, 3_000, &[3])).await.unwrap().added);
    assert_eq!(ids(&last.node.query_local(&query_all()).unwrap()), vec![block_id(1), block_id(2), block_id(3)]);

    for m in members {
        m.node.shutdown().await;
        m.server.abort();
    }
    drop(dirs);
}
