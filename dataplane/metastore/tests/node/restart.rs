use phlox_metastore::MetastoreNode;

use crate::common::*;

async fn single_voter(dir: &std::path::Path) -> MetastoreNode {
    let node = start(config(1, dir, "127.0.0.1:1")).await;
    assert_eq!(node.wait_for_leader(WAIT).await.unwrap(), 1);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_survive_a_restart_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_voter(dir.path()).await;
    let client = node.client();
    assert!(client.add_block(add_request(1, 1_000, &[1, 2])).await.unwrap().added);
    assert!(client.add_block(add_request(2, 2_000, &[3])).await.unwrap().added);
    let before = client.query_blocks(query_all()).await.unwrap().blocks;
    assert_eq!(ids(&before), vec![block_id(1), block_id(2)]);
    assert!(node.metrics().borrow().snapshot.is_none());
    drop(client);
    node.shutdown().await;
    drop(node);

    let node = single_voter(dir.path()).await;
    let client = node.client();
    assert_eq!(client.query_blocks(query_all()).await.unwrap().blocks, before);
    // Idempotence and the dedup index survive the restart too.
    assert!(!client.add_block(add_request(2, 2_000, &[3])).await.unwrap().added);
    let retry = client.add_block(add_request(3, 3_000, &[2, 3, 4])).await.unwrap();
    assert_eq!((retry.added, retry.shadowed_profiles), (true, 2));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_survive_a_restart_from_a_snapshot_and_the_log_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_voter(dir.path()).await;
    let client = node.client();
    for n in 1..=3 {
        assert!(client.add_block(add_request(n, n as i64 * 1_000, &[n as u8])).await.unwrap().added);
    }
    node.trigger_snapshot().await.unwrap();
    assert!(node.metrics().borrow().snapshot.is_some());
    assert!(client.add_block(add_request(4, 4_000, &[4])).await.unwrap().added);
    let before = client.query_blocks(query_all()).await.unwrap().blocks;
    assert_eq!(before.len(), 4);
    drop(client);
    node.shutdown().await;
    drop(node);

    let node = single_voter(dir.path()).await;
    let snapshot = node.metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the stored snapshot is loaded at start");
    let client = node.client();
    assert_eq!(client.query_blocks(query_all()).await.unwrap().blocks, before);
    let retry = client.add_block(add_request(5, 5_000, &[1, 4])).await.unwrap();
    assert_eq!(retry.shadowed_profiles, 2);
    node.shutdown().await;
}
