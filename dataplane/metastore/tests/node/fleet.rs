//! Exactly once at the metastore bench's rate (2,000 profile rows/s: 8
//! shards × 125 rows per 500 ms segment), across a leader change and a
//! voter's restart: every retried row is shadowed, no fresh row is.

use bytes::Bytes;
use phlox_metastore::{MetastoreConfig, MetastoreNode};
use phlox_proto::metastore::v1::{AddBlockRequest, BlockMeta, Dataset};
use phlox_proto::metastore_client::Metastore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::*;

const SHARDS: u64 = 8;
const ROWS: u64 = 125;

struct Voter {
    node: MetastoreNode,
    server: JoinHandle<()>,
}

/// The 16-byte key of row `n` (distinct for distinct `n`).
fn key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k[8..].copy_from_slice(&(!n).to_le_bytes());
    k
}

/// Segment `n` at block time `time` holding the rows `rows` (two datasets).
fn segment(n: u64, time: i64, rows: &[u64]) -> AddBlockRequest {
    let (a, b) = rows.split_at(rows.len() / 2);
    let dataset = |name: &str| Dataset {
        tenant: "t".into(),
        name: name.into(),
        min_time: time,
        max_time: time + 500,
        profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
        ..Default::default()
    };
    AddBlockRequest {
        block: Some(BlockMeta {
            format_version: 1,
            id: block_id(n),
            shard: (n % SHARDS) as u32,
            min_time: time,
            max_time: time + 500,
            datasets: vec![dataset("api"), dataset("web")],
            ..Default::default()
        }),
        dataset_keys: [a, b]
            .iter()
            .map(|rows| Bytes::from(rows.iter().flat_map(|r| key(*r)).collect::<Vec<u8>>()))
            .collect(),
    }
}

/// One round of fresh segments (one per shard, concurrently, through the
/// given voters); returns the rows' numbers and the rows shadowed.
async fn round(voters: &[&Voter], round: u64) -> (Vec<u64>, u64) {
    let time = 1_700_000_000_000 + round as i64 * 500;
    let mut rows = Vec::new();
    let calls = (0..SHARDS).map(|shard| {
        let first = (round * SHARDS + shard) * ROWS;
        let these: Vec<u64> = (first..first + ROWS).collect();
        rows.extend_from_slice(&these);
        let client = voters[shard as usize % voters.len()].node.client();
        async move { client.add_block(segment(round * SHARDS + shard, time, &these)).await.unwrap() }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.added));
    (rows, answers.iter().map(|a| a.shadowed_profiles).sum())
}

async fn start_voter(peers: &[(u64, String)], i: usize, dir: &std::path::Path, listener: TcpListener) -> Voter {
    let config = MetastoreConfig { peers: peers.to_vec(), ..config(peers[i].0, dir, &peers[i].1) };
    let node = start(config).await;
    let server = serve(&node, listener);
    Voter { node, server }
}

fn live(voters: &[Option<Voter>]) -> Vec<usize> {
    (0..voters.len()).filter(|i| voters[*i].is_some()).collect()
}

fn refs(voters: &[Option<Voter>]) -> Vec<&Voter> {
    voters.iter().flatten().collect()
}

async fn leader_of(voters: &[&Voter]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(i) = voters.iter().position(|v| v.node.is_leader()) {
            return i;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_retried_at_fleet_rate_count_once_across_a_leader_change_and_a_restart() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, peers) = listeners(3).await;
    let mut voters: Vec<Option<Voter>> = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        voters.push(Some(start_voter(&peers, i, dirs[i].path(), listener).await));
    }

    // 20 s of block time at 2,000 rows/s: nothing is shadowed.
    let mut next_round = 0;
    let mut sent = Vec::new();
    for _ in 0..40 {
        let (rows, shadowed) = round(&refs(&voters), next_round).await;
        assert_eq!(shadowed, 0, "round {next_round}");
        sent.extend(rows);
        next_round += 1;
    }

    // The leader goes; rows retried through the survivors (from the first
    // round and the last before the change) are shadowed, fresh ones not.
    let leader = live(&voters)[leader_of(&refs(&voters)).await];
    let gone = voters[leader].take().unwrap();
    gone.node.shutdown().await;
    gone.server.abort();
    let retried: Vec<u64> = sent[..50].iter().chain(&sent[sent.len() - 50..]).copied().collect();
    let fresh: Vec<u64> = (1_000_000..1_000_100).collect();
    let rows: Vec<u64> = retried.iter().chain(&fresh).copied().collect();
    let client = refs(&voters)[0].node.client();
    let answer = client.add_block(segment(10_000, 1_700_000_000_000 + next_round as i64 * 500, &rows)).await.unwrap();
    assert_eq!((answer.added, answer.shadowed_profiles), (true, retried.len() as u64));
    for _ in 0..20 {
        let (rows, shadowed) = round(&refs(&voters), next_round).await;
        assert_eq!(shadowed, 0, "round {next_round}");
        sent.extend(rows);
        next_round += 1;
    }

    // The old leader comes back on its data, then the current leader goes:
    // the retry of rows from every phase is still shadowed, once each.
    let listener = TcpListener::bind(&peers[leader].1).await.unwrap();
    voters[leader] = Some(start_voter(&peers, leader, dirs[leader].path(), listener).await);
    let back = voters[leader].as_ref().unwrap();
    let applied = refs(&voters).iter().map(|v| v.node.metrics().borrow().last_applied.map_or(0, |l| l.index)).max();
    back.node.wait_for_applied(applied.unwrap(), WAIT).await.unwrap();
    let current = live(&voters)[leader_of(&refs(&voters)).await];
    if current != leader {
        let gone = voters[current].take().unwrap();
        gone.node.shutdown().await;
        gone.server.abort();
    }
    let retried: Vec<u64> = [sent[7], sent[40 * 1000 + 3], sent[sent.len() - 1], 1_000_050].to_vec();
    let client = refs(&voters)[0].node.client();
    let answer =
        client.add_block(segment(10_001, 1_700_000_000_000 + next_round as i64 * 500, &retried)).await.unwrap();
    assert_eq!((answer.added, answer.shadowed_profiles), (true, 4));
    let fresh = client
        .add_block(segment(10_002, 1_700_000_000_000 + next_round as i64 * 500, &[2_000_000, 2_000_001]))
        .await
        .unwrap();
    assert_eq!((fresh.added, fresh.shadowed_profiles), (true, 0));

    for v in voters.into_iter().flatten() {
        v.node.shutdown().await;
        v.server.abort();
    }
    drop(dirs);
}
