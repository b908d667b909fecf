use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use phlox_block::paths::dlq_path;
use phlox_metastore::metrics::{APPLY_DURATION_SECONDS, BLOCKS, DLQ_RECOVERED_TOTAL};
use phlox_metastore::{DlqReport, MetastoreNode};
use prometheus::Registry;
use prost::Message as _;
use ulid::Ulid;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_blocks_are_indexed_and_their_entries_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let config = config(1, dir.path(), "127.0.0.1:1");
    let node = MetastoreNode::start_with_registry(config, &registry).await.unwrap();
    node.wait_for_leader(WAIT).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());

    let request = add_request(7, 5_000, &[9]);
    let id = Ulid::from_string(&block_id(7)).unwrap();
    let entry = dlq_path(1, id);
    store.put(&entry, PutPayload::from(request.encode_to_vec())).await.unwrap();
    let garbage = dlq_path(2, Ulid::from_parts(1, 2));
    store.put(&garbage, PutPayload::from_static(b"not a protobuf \xff\xff")).await.unwrap();

    let report = node.recover_dlq_once(store.as_ref()).await.unwrap();
    assert_eq!(report, DlqReport { recovered: 1, failed: 1 });
    let blocks = node.client().query_blocks(query_all()).await.unwrap().blocks;
    assert_eq!(ids(&blocks), vec![block_id(7)]);
    assert!(matches!(store.head(&entry).await, Err(object_store::Error::NotFound { .. })));
    // The undecodable entry stays for an operator; a second pass changes nothing.
    assert!(store.head(&garbage).await.is_ok());
    let report = node.recover_dlq_once(store.as_ref()).await.unwrap();
    assert_eq!(report, DlqReport { recovered: 0, failed: 1 });

    let families = registry.gather();
    let family = |name: &str| families.iter().find(|f| f.name() == name).unwrap();
    assert_eq!(family(BLOCKS).get_metric()[0].get_gauge().get_value(), 1.0);
    assert_eq!(family(DLQ_RECOVERED_TOTAL).get_metric()[0].get_counter().get_value(), 1.0);
    let writes = family(APPLY_DURATION_SECONDS).get_metric()[0].get_histogram();
    assert_eq!(writes.get_sample_count(), 1);
    node.shutdown().await;
    assert!(registry.gather().is_empty(), "shutdown unregisters the metrics");
}
