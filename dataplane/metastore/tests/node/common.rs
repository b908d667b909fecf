use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use phlox_metastore::{MetastoreConfig, MetastoreNode};
use phlox_proto::metastore::v1::{AddBlockRequest, BlockMeta, Dataset, QueryBlocksRequest};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use ulid::Ulid;

/// Upper bound for anything that waits on Raft (elections, replication).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn block_id(n: u64) -> String {
    Ulid::from_parts(1_700_000_000_000 + n, u128::from(n)).to_string()
}

/// A level-0 segment with one dataset of tenant `t`, service `api`, at
/// `[time, time + 10]`, with the given dedup keys.
pub(crate) fn add_request(n: u64, time: i64, keys: &[u8]) -> AddBlockRequest {
    let dataset = Dataset {
        tenant: "t".into(),
        name: "api".into(),
        min_time: time,
        max_time: time + 10,
        profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
        ..Default::default()
    };
    AddBlockRequest {
        block: Some(BlockMeta {
            format_version: 1,
            id: block_id(n),
            shard: 1,
            min_time: time,
            max_time: time + 10,
            size: 100,
            created_by: "test".into(),
            datasets: vec![dataset],
            ..Default::default()
        }),
        dataset_keys: vec![Bytes::from(keys.iter().flat_map(|k| [*k; 16]).collect::<Vec<u8>>())],
    }
}

pub(crate) fn query_all() -> QueryBlocksRequest {
    QueryBlocksRequest { tenants: vec!["t".into()], start: 0, end: i64::MAX, matchers: vec![], rollups: false }
}

pub(crate) fn ids(blocks: &[BlockMeta]) -> Vec<String> {
    blocks.iter().map(|b| b.id.clone()).collect()
}

/// A node config with quicker elections than the defaults.
pub(crate) fn config(node_id: u64, dir: &Path, address: &str) -> MetastoreConfig {
    MetastoreConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(500),
        election_timeout_max: Duration::from_millis(1_000),
        ..MetastoreConfig::new(node_id, dir, address)
    }
}

pub(crate) async fn start(config: MetastoreConfig) -> MetastoreNode {
    MetastoreNode::start_with_registry(config, &Registry::new()).await.unwrap()
}

/// Serves a node's Raft and metastore services on `listener`.
pub(crate) fn serve(node: &MetastoreNode, listener: TcpListener) -> JoinHandle<()> {
    let router =
        tonic::transport::Server::builder().add_service(node.raft_service()).add_service(node.metastore_service());
    tokio::spawn(async move {
        router.serve_with_incoming(TcpIncoming::from(listener)).await.unwrap();
    })
}

/// `n` loopback listeners and the peer list `(id, address)` of voters 1..=n
/// on them.
pub(crate) async fn listeners(n: usize) -> (Vec<TcpListener>, Vec<(u64, String)>) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers =
        listeners.iter().enumerate().map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string())).collect();
    (listeners, peers)
}
