//! The segment writer against an in-memory bucket and a recording metastore.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use phlox_block::BlockReader;
use phlox_model::{Labels, ProfileId};
use phlox_pprof::testkit::ProfileBuilder;
use phlox_pprof::{Profile, SeriesProfile, split};
use phlox_proto::metastore::v1::*;
use phlox_proto::metastore_client::Metastore;
use phlox_segment_writer::{SegmentWriter, SegmentWriterConfig, SegmentWriterMetrics, WriteError};
use prost::Message;

/// Records registrations; fails the first `fail` calls.
#[derive(Debug, Default)]
struct RecordingMetastore {
    blocks: Mutex<Vec<AddBlockRequest>>,
    fail: AtomicU32,
}

#[async_trait::async_trait]
impl Metastore for RecordingMetastore {
    async fn add_block(&self, request: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status> {
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err(tonic::Status::unavailable("no leader"));
        }
        self.blocks.lock().unwrap().push(request);
        Ok(AddBlockResponse { added: true, shadowed_profiles: 0 })
    }
    async fn query_blocks(&self, _: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("not needed"))
    }
    async fn heartbeat(&self, _: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("not needed"))
    }
}

fn profiles(service: &str, id: u8, value: i64) -> Vec<SeriesProfile> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(1_700_000_000_000_000_000);
    b.sample(&["main", "work"], &[value], &[]);
    let p = Arc::new(Profile::decode(&b.encode()).unwrap());
    split(&Labels::from_pairs([("__name__", "process_cpu"), ("service_name", service)]), p, ProfileId([id; 16]), 0)
        .unwrap()
}

struct Fixture {
    store: Arc<dyn ObjectStore>,
    metastore: Arc<RecordingMetastore>,
    writer: Arc<SegmentWriter>,
    metrics: SegmentWriterMetrics,
}

fn fixture(config: SegmentWriterConfig) -> Fixture {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let metastore = Arc::new(RecordingMetastore::default());
    let metrics = SegmentWriterMetrics::new(&prometheus::Registry::new()).unwrap();
    let writer = Arc::new(SegmentWriter::start(
        config,
        Arc::clone(&store),
        Arc::clone(&metastore) as Arc<dyn Metastore>,
        metrics.clone(),
    ));
    Fixture { store, metastore, writer, metrics }
}

fn fast() -> SegmentWriterConfig {
    SegmentWriterConfig {
        segment_duration: Duration::from_millis(20),
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        max_attempts: 3,
        shards: 2,
        ..Default::default()
    }
}

async fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<Path> {
    store.list(Some(&Path::from(prefix))).map_ok(|m| m.location).try_collect().await.unwrap()
}

async fn stored_totals(f: &Fixture) -> Vec<i64> {
    let mut totals = Vec::new();
    let requests = f.metastore.blocks.lock().unwrap().clone();
    for req in requests {
        let r = BlockReader::from_meta(Arc::clone(&f.store), req.block.unwrap()).unwrap();
        for i in 0..r.meta().datasets.len() {
            if phlox_block::is_tenant_index(&r.meta().datasets[i]) {
                continue;
            }
            let ds = r.dataset(i).await.unwrap();
            let all: Vec<u32> = (0..ds.series().len() as u32).collect();
            totals.extend(ds.profiles(&all, i64::MIN, i64::MAX).await.unwrap().iter().map(|r| r.total));
        }
    }
    totals.sort();
    totals
}

#[tokio::test]
async fn push_is_acked_only_after_the_object_is_stored_and_registered() {
    let f = fixture(fast());
    let (a, b) = (profiles("shop", 1, 10), profiles("cart", 2, 20));
    let (w1, w2) = (Arc::clone(&f.writer), Arc::clone(&f.writer));
    let (r1, r2) = tokio::join!(async move { w1.push("t1", 0, &a).await }, async move { w2.push("t2", 0, &b).await },);
    r1.unwrap();
    r2.unwrap();
    // Both pushes landed in the same window: one object for shard 0 with two datasets.
    let blocks = f.metastore.blocks.lock().unwrap().clone();
    assert_eq!(blocks.len(), 1);
    let meta = blocks[0].block.clone().unwrap();
    assert_eq!(meta.shard, 0);
    let ds: Vec<(&str, &str)> = meta.datasets.iter().map(|d| (d.tenant.as_str(), d.name.as_str())).collect();
    assert_eq!(ds, [("t1", "shop"), ("t2", "cart")]);
    assert_eq!(keys(&f.store, "segments/0000").await.len(), 1);
    let reader = BlockReader::open(Arc::clone(&f.store), keys(&f.store, "segments").await[0].clone()).await.unwrap();
    assert_eq!(reader.meta(), &meta);
    assert_eq!(stored_totals(&f).await, vec![10, 20]);
    assert_eq!(f.metrics.profiles.get(), 2);
    assert_eq!(f.metrics.flush_duration.get_sample_count(), 1);
    f.writer.shutdown().await;
}

#[tokio::test]
async fn a_retried_push_is_stored_once() {
    let f = fixture(fast());
    let p = profiles("shop", 7, 5);
    f.writer.push("t", 1, &p).await.unwrap();
    f.writer.push("t", 1, &p).await.unwrap();
    // Same push twice within one window.
    let (w1, w2, p1, p2) =
        (Arc::clone(&f.writer), Arc::clone(&f.writer), profiles("shop", 8, 6), profiles("shop", 8, 6));
    let (r1, r2) = tokio::join!(async move { w1.push("t", 1, &p1).await }, async move { w2.push("t", 1, &p2).await });
    r1.unwrap();
    r2.unwrap();
    assert_eq!(stored_totals(&f).await, vec![5, 6]);
    assert_eq!(f.metrics.profiles.get(), 2);
    assert_eq!(f.metrics.deduplicated.get(), 2);
    // Another tenant with the same profile id is a different profile.
    f.writer.push("other", 1, &p).await.unwrap();
    assert_eq!(stored_totals(&f).await, vec![5, 5, 6]);
    f.writer.shutdown().await;
}

#[tokio::test]
async fn failed_registration_fails_the_push_and_dead_letters_the_block() {
    let f = fixture(fast());
    f.metastore.fail.store(3, Ordering::SeqCst); // every attempt of the first flush
    let err = f.writer.push("t", 0, &profiles("shop", 1, 10)).await.unwrap_err();
    assert!(matches!(err, WriteError::Registration(ref m) if m.contains("no leader")), "{err}");
    let dlq = keys(&f.store, "dlq").await;
    assert_eq!(dlq.len(), 1);
    let body = f.store.get(&dlq[0]).await.unwrap().bytes().await.unwrap();
    let req = AddBlockRequest::decode(body).unwrap();
    let meta = req.block.unwrap();
    assert_eq!(meta.datasets[0].name, "shop");
    assert_eq!(req.dataset_keys[0].len(), 16);
    // The object itself is in the bucket, so the DLQ entry can be indexed later.
    assert_eq!(keys(&f.store, "segments").await.len(), 1);
    assert_eq!(f.metrics.dlq.get(), 1);
    // A retried push is written again and acked (the metastore dedups keys).
    f.writer.push("t", 0, &profiles("shop", 1, 10)).await.unwrap();
    assert_eq!(f.metastore.blocks.lock().unwrap().len(), 1);
    f.writer.shutdown().await;
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let f = fixture(fast());
    f.metastore.fail.store(2, Ordering::SeqCst);
    f.writer.push("t", 0, &profiles("shop", 1, 10)).await.unwrap();
    assert_eq!(f.metastore.blocks.lock().unwrap().len(), 1);
    assert_eq!(f.metrics.upload_retries.get(), 2);
    assert!(keys(&f.store, "dlq").await.is_empty());
    f.writer.shutdown().await;
}

#[tokio::test]
async fn shutdown_flushes_buffered_pushes_and_then_refuses_new_ones() {
    let f = fixture(SegmentWriterConfig { segment_duration: Duration::from_secs(3600), ..fast() });
    let w = Arc::clone(&f.writer);
    let pending = tokio::spawn(async move { w.push("t", 1, &profiles("shop", 1, 42)).await });
    // Let the push reach the buffer, then shut down: it must be flushed.
    while f.metrics.profiles.get() == 0 {
        tokio::task::yield_now().await;
    }
    f.writer.shutdown().await;
    pending.await.unwrap().unwrap();
    assert_eq!(stored_totals(&f).await, vec![42]);
    assert_eq!(f.writer.push("t", 1, &profiles("shop", 2, 1)).await, Err(WriteError::ShuttingDown));
}

#[tokio::test]
async fn full_buffers_reject_pushes() {
    let f = fixture(SegmentWriterConfig {
        segment_duration: Duration::from_secs(3600),
        max_buffered_bytes_per_shard: 1,
        ..fast()
    });
    let w = Arc::clone(&f.writer);
    let first = tokio::spawn(async move { w.push("t", 0, &profiles("shop", 1, 1)).await });
    while f.metrics.profiles.get() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(f.writer.push("t", 0, &profiles("shop", 2, 1)).await, Err(WriteError::Overloaded { limit: 1 }));
    assert_eq!(f.writer.push("t", 9, &[]).await, Err(WriteError::UnknownShard { shard: 9, shards: 2 }));
    f.writer.shutdown().await;
    first.await.unwrap().unwrap();
}
