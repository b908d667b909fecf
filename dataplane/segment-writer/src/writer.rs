use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, SegmentBuilder, paths};
use phlox_model::ProfileKey;
use phlox_pprof::SeriesProfile;
use phlox_proto::metastore::v1::AddBlockRequest;
use phlox_proto::metastore_client::Metastore;
use prost::Message;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use ulid::Ulid;

use crate::recent::RecentKeys;
use crate::{SegmentWriterConfig, SegmentWriterMetrics, WriteError};

type Waiter = oneshot::Sender<Result<(), WriteError>>;

#[derive(Debug)]
struct Shard {
    builder: SegmentBuilder,
    waiters: Vec<Waiter>,
    /// Set by the flush loop when it takes its last segment.
    closed: bool,
}

struct Inner {
    config: SegmentWriterConfig,
    store: Arc<dyn ObjectStore>,
    metastore: Arc<dyn Metastore>,
    metrics: SegmentWriterMetrics,
    shards: Vec<Mutex<Shard>>,
    recent: Mutex<RecentKeys>,
    closing: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A running segment writer; see the crate docs.
#[derive(Debug)]
pub struct SegmentWriter {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it;
    // the buffers stay consistent (every mutation is a single push/swap).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SegmentWriter {
    /// Starts one flush loop per shard.
    pub fn start(
        config: SegmentWriterConfig,
        store: Arc<dyn ObjectStore>,
        metastore: Arc<dyn Metastore>,
        metrics: SegmentWriterMetrics,
    ) -> Self {
        let shards = (0..config.shards.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    builder: SegmentBuilder::new(config.max_stack_depth),
                    waiters: Vec::new(),
                    closed: false,
                })
            })
            .collect();
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            recent: Mutex::new(RecentKeys::new(config.dedup_window)),
            config,
            store,
            metastore,
            metrics,
            shards,
            closing: AtomicBool::new(false),
            shutdown,
        });
        let tasks = (0..inner.shards.len() as u32)
            .map(|shard| tokio::spawn(run_shard(Arc::clone(&inner), shard, inner.shutdown.subscribe())))
            .collect();
        Self { inner, tasks: Mutex::new(tasks) }
    }

    /// This writer's id (`created_by` of its segments, its membership id).
    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.inner.shards.len() as u32
    }

    /// Buffers profiles of one tenant on a shard and resolves once they are
    /// durable and indexed (or fails; then nothing of this push is acked).
    /// Profiles whose key this writer already made durable are skipped.
    pub async fn push(&self, tenant: &str, shard: u32, profiles: &[SeriesProfile]) -> Result<(), WriteError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(WriteError::ShuttingDown);
        }
        let metrics = &self.inner.metrics;
        metrics.ingested_bytes.inc_by(source_bytes(profiles));
        metrics.inflight_pushes.inc();
        let started = std::time::Instant::now();
        let result = self.push_inner(tenant, shard, profiles).await;
        metrics.inflight_pushes.dec();
        metrics.push_wait.observe(started.elapsed().as_secs_f64());
        result
    }

    async fn push_inner(&self, tenant: &str, shard: u32, profiles: &[SeriesProfile]) -> Result<(), WriteError> {
        let shards = self.inner.shards.len() as u32;
        let state = self.inner.shards.get(shard as usize).ok_or(WriteError::UnknownShard { shard, shards })?;
        let rx = {
            let recent = lock(&self.inner.recent);
            let mut s = lock(state);
            if s.closed {
                return Err(WriteError::ShuttingDown);
            }
            let limit = self.inner.config.max_buffered_bytes_per_shard;
            if s.builder.approx_bytes() >= limit {
                return Err(WriteError::Overloaded { limit });
            }
            let before = s.builder.approx_bytes();
            let mut pending = false;
            for p in profiles {
                if recent.contains(&ProfileKey::new(tenant, p.fingerprint, &p.id)) {
                    self.inner.metrics.deduplicated.inc();
                    continue;
                }
                if s.builder.add(tenant, p) {
                    self.inner.metrics.profiles.inc();
                } else {
                    self.inner.metrics.deduplicated.inc();
                }
                // Either added now or already in this segment: ack with it.
                pending = true;
            }
            if !pending {
                return Ok(());
            }
            self.inner.metrics.buffered_bytes.add((s.builder.approx_bytes() - before) as i64);
            let (tx, rx) = oneshot::channel();
            s.waiters.push(tx);
            rx
        };
        rx.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Stops accepting pushes, flushes every shard and waits for the acks.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<_> = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            if let Err(e) = t.await {
                warn!(error = %e, "segment flush loop ended abnormally");
            }
        }
    }
}

async fn run_shard(inner: Arc<Inner>, shard: u32, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(inner.config.segment_duration);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let (builder, waiters) = {
            let mut s = lock(&inner.shards[shard as usize]);
            s.closed |= last;
            let fresh = s.builder.successor();
            (std::mem::replace(&mut s.builder, fresh), std::mem::take(&mut s.waiters))
        };
        if !builder.is_empty() {
            inner.metrics.buffered_bytes.sub(builder.approx_bytes() as i64);
            let result = inner.flush(shard, builder).await;
            if result.is_err() {
                inner.metrics.failed_flushes.inc();
            }
            for w in waiters {
                let _ = w.send(result.clone());
            }
        } else {
            for w in waiters {
                let _ = w.send(Ok(()));
            }
        }
        if last {
            break;
        }
    }
}

impl Inner {
    async fn flush(&self, shard: u32, builder: SegmentBuilder) -> Result<(), WriteError> {
        let start = Instant::now();
        let id = Ulid::new();
        let header = BlockHeader { id, tenant: String::new(), shard, level: 0, created_by: self.config.id.clone() };
        let encoded = tokio::task::spawn_blocking(move || builder.finish(header))
            .await
            .map_err(|e| WriteError::Encode(e.to_string()))?
            .map_err(|e| WriteError::Encode(e.to_string()))?;
        let path = paths::segment_path(shard, id);
        let size = encoded.bytes.len();
        let bytes = encoded.bytes.clone();
        self.retry("upload", || {
            let (store, path, bytes) = (Arc::clone(&self.store), path.clone(), bytes.clone());
            async move { store.put(&path, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| e.to_string()) }
        })
        .await
        .map_err(WriteError::Upload)?;

        let keys = encoded.dataset_keys.clone();
        let request = AddBlockRequest { block: Some(encoded.meta), dataset_keys: encoded.dataset_keys };
        let registered = self
            .retry("register", || {
                let (m, r) = (Arc::clone(&self.metastore), request.clone());
                async move { m.add_block(r).await.map(|_| ()).map_err(|s| s.message().to_owned()) }
            })
            .await;
        if let Err(reason) = registered {
            self.dead_letter(shard, id, &request).await;
            return Err(WriteError::Registration(reason));
        }
        lock(&self.recent).insert_all(
            Instant::now(),
            keys.iter().flat_map(|k| k.chunks_exact(16)).map(|c| {
                let mut k = [0u8; 16];
                k.copy_from_slice(c);
                ProfileKey(k)
            }),
        );
        let elapsed = start.elapsed();
        self.metrics.flush_duration.observe(elapsed.as_secs_f64());
        self.metrics.segment_size.observe(size as f64);
        debug!(shard, block = %id, size, elapsed_ms = elapsed.as_millis() as u64, "segment flushed");
        Ok(())
    }

    /// Writes the registration request to `dlq/`, where the metastore
    /// leader picks it up. The push still fails: it is not indexed yet.
    async fn dead_letter(&self, shard: u32, id: Ulid, request: &AddBlockRequest) {
        let path = paths::dlq_path(shard, id);
        let body = Bytes::from(request.encode_to_vec());
        let res = self
            .retry("dead-letter", || {
                let (store, path, body) = (Arc::clone(&self.store), path.clone(), body.clone());
                async move { store.put(&path, PutPayload::from(body)).await.map(|_| ()).map_err(|e| e.to_string()) }
            })
            .await;
        match res {
            Ok(()) => {
                self.metrics.dlq.inc();
                warn!(shard, block = %id, "segment registration failed; block sent to the dead-letter prefix");
            }
            Err(error) => warn!(shard, block = %id, %error, "segment registration and dead-letter write failed"),
        }
    }

    async fn retry<F, Fut>(&self, what: &'static str, mut f: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut backoff = self.config.min_backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < self.config.max_attempts => {
                    warn!(what, attempt, %error, "segment step failed, retrying");
                    self.metrics.upload_retries.inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Uncompressed bytes of the source profiles of a push, each counted once
/// (a source split into many series profiles is shared by them).
fn source_bytes(profiles: &[SeriesProfile]) -> u64 {
    let mut sources = std::collections::HashSet::with_capacity(profiles.len().min(64));
    let mut bytes = 0u64;
    for p in profiles {
        if sources.insert(std::sync::Arc::as_ptr(&p.source)) {
            bytes += p.source.decoded_len as u64;
        }
    }
    bytes
}
