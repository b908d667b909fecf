//! The compaction worker: polls the metastore for a job, merges the job's
//! source blocks (one tenant's datasets) into one block a level up, writes
//! it, and completes the job with its lease's fencing token. A worker that
//! dies mid-job loses nothing: the lease expires, another worker redoes the
//! job and writes the same object (its id is derived from the job).
//! Also: the leader deletes tombstoned objects after a grace period.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::{BlockHeader, BlockReader, paths};
use phlox_metastore::MetastoreNode;
use phlox_proto::metastore::v1::{CompactionJob, CompleteCompactionJobRequest, PollCompactionJobRequest};
use phlox_proto::metastore_client::Metastore;
use prometheus::{IntCounterVec, Opts, Registry};
use tracing::{info, warn};
use ulid::Ulid;

/// Planning policy and pacing of a worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) id: String,
    pub(crate) min_blocks: Vec<u32>,
    pub(crate) max_age_ms: Vec<i64>,
    pub(crate) poll_interval: Duration,
    pub(crate) lease: Duration,
}

pub(crate) struct CompactionWorker {
    config: WorkerConfig,
    metastore: Arc<dyn Metastore>,
    store: Arc<dyn ObjectStore>,
    jobs: IntCounterVec,
    blocks: IntCounterVec,
    recording: Option<Recording>,
}

/// Recording rules: evaluated over level-0 jobs, exported after the job
/// completed (so a job redone after a lost lease is not counted twice).
pub(crate) struct Recording {
    pub(crate) rules: Arc<phlox_recording::RuleStore>,
    pub(crate) exporter: Arc<phlox_recording::remote_write::Exporter>,
    pub(crate) profiles: prometheus::IntCounter,
}

impl Recording {
    pub(crate) fn new(
        rules: Arc<phlox_recording::RuleStore>,
        exporter: Arc<phlox_recording::remote_write::Exporter>,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        let profiles = prometheus::IntCounter::new(
            "phlox_recording_evaluated_profiles_total",
            "Profiles that fed at least one recording rule.",
        )?;
        registry.register(Box::new(profiles.clone()))?;
        Ok(Self { rules, exporter, profiles })
    }

    /// The tenant's rules, compiled (a rule that no longer validates is skipped).
    async fn evaluator(&self, tenant: &str) -> Option<phlox_recording::Evaluator> {
        let rules = match self.rules.list(tenant).await {
            Ok(r) => r,
            Err(e) => {
                warn!(tenant, error = %e, "cannot read the recording rules; this job records nothing");
                return None;
            }
        };
        let compiled: Vec<_> = rules
            .iter()
            .filter_map(|r| match phlox_recording::CompiledRule::new(r) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(tenant, rule = %r.id, error = %e, "skipping an invalid recording rule");
                    None
                }
            })
            .collect();
        (!compiled.is_empty()).then(|| phlox_recording::Evaluator::new(compiled))
    }
}

impl CompactionWorker {
    pub(crate) fn new(
        config: WorkerConfig,
        metastore: Arc<dyn Metastore>,
        store: Arc<dyn ObjectStore>,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        let jobs = IntCounterVec::new(
            Opts::new("phlox_compaction_worker_jobs_total", "Compaction jobs by result (done, stale, failed)."),
            &["result"],
        )?;
        let blocks = IntCounterVec::new(
            Opts::new("phlox_compaction_worker_blocks_total", "Blocks read (source) and written (output, rollup)."),
            &["kind"],
        )?;
        // Every result from the start, so that rate() sees the first one.
        for result in ["done", "stale", "failed"] {
            jobs.with_label_values(&[result]);
        }
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(blocks.clone()))?;
        Ok(Self { config, metastore, store, jobs, blocks, recording: None })
    }

    /// Evaluates recording rules over level-0 jobs and exports the samples.
    pub(crate) fn with_recording(mut self, recording: Recording) -> Self {
        self.recording = Some(recording);
        self
    }

    /// Polls and runs jobs until the process ends.
    /// Polls for jobs until `stop` turns true; the job at hand is finished
    /// first, so a worker stopping on SIGTERM completes (or leaves to its
    /// lease) what it holds and takes nothing new.
    pub(crate) fn spawn(self, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *stop.borrow_and_update() {
                    info!("compaction worker stopped");
                    return;
                }
                let request = PollCompactionJobRequest {
                    worker: self.config.id.clone(),
                    min_blocks: self.config.min_blocks.clone(),
                    max_age_ms: self.config.max_age_ms.clone(),
                    lease_ms: self.config.lease.as_millis() as i64,
                };
                match self.metastore.poll_compaction_job(request).await {
                    Ok(r) => {
                        if let Some(job) = r.job {
                            self.run(job).await;
                            continue;
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot poll for compaction jobs"),
                }
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    async fn run(&self, job: CompactionJob) {
        let result = self.compact(&job).await;
        let outcome = match result {
            Ok(()) => "done",
            Err(e) if e.code() == tonic::Code::InvalidArgument => {
                // Another worker's lease or a finished job: the output is the same object.
                info!(job = %job.id, reason = %e.message(), "compaction job superseded");
                "stale"
            }
            Err(e) => {
                warn!(job = %job.id, error = %e, "compaction job failed; its lease will expire and it will be redone");
                "failed"
            }
        };
        self.jobs.with_label_values(&[outcome]).inc();
    }

    async fn compact(&self, job: &CompactionJob) -> Result<(), tonic::Status> {
        let internal = |e: String| tonic::Status::internal(e);
        let readers = job
            .sources
            .iter()
            .map(|m| BlockReader::from_meta(Arc::clone(&self.store), m.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(e.to_string()))?;
        if job.rollup_end > 0 {
            return self.rollup(job, readers).await;
        }
        let id = output_id(job);
        let level = if job.output_level > 0 { job.output_level } else { job.level + 1 };
        let header =
            BlockHeader { id, tenant: job.tenant.clone(), shard: 0, level, created_by: self.config.id.clone() };
        let exclude: Vec<(i64, i64)> = job.exclude.iter().map(|r| (r.start, r.end)).collect();
        // Merging is CPU-bound (decode, re-encode, compress): run it on a
        // blocking thread so that the runtime keeps serving pushes and queries.
        // Level-0 jobs see every profile for the first time: recording rules
        // are evaluated over the rows they import.
        let mut evaluator = match &self.recording {
            Some(r) if job.level == 0 => r.evaluator(&job.tenant).await,
            _ => None,
        };
        let (tenant, handle) = (job.tenant.clone(), tokio::runtime::Handle::current());
        let (merged, evaluator) = tokio::task::spawn_blocking(move || {
            let merged = match evaluator.as_mut() {
                Some(e) => handle.block_on(phlox_block::compact_observed(&readers, &tenant, header, &exclude, e)),
                None => handle.block_on(phlox_block::compact_excluding(&readers, &tenant, header, &exclude)),
            };
            (merged, evaluator)
        })
        .await
        .map_err(|e| internal(format!("compaction task: {e}")))?;
        let encoded = match merged {
            Ok(encoded) => encoded,
            // A deletion's ranges held every row: the sources go, nothing replaces them.
            Err(phlox_block::BlockError::Empty) if !job.exclude.is_empty() => {
                self.blocks.with_label_values(&["source"]).inc_by(job.sources.len() as u64);
                self.metastore
                    .complete_compaction_job(CompleteCompactionJobRequest {
                        id: job.id.clone(),
                        token: job.token,
                        block: None,
                    })
                    .await?;
                info!(job = %job.id, tenant = %job.tenant, sources = job.sources.len(), "rewrite left nothing: sources removed");
                return Ok(());
            }
            Err(e) => return Err(internal(e.to_string())),
        };
        self.store_and_complete(job, level, id, encoded).await?;
        self.blocks.with_label_values(&["output"]).inc();
        if let (Some(recording), Some(evaluator)) = (&self.recording, evaluator) {
            recording.profiles.inc_by(evaluator.profiles);
            let oldest_profile_ms = evaluator.oldest_ms.unwrap_or(0);
            let series: Vec<phlox_recording::remote_write::Series> = evaluator
                .into_series()
                .into_iter()
                .map(|(labels, samples)| phlox_recording::remote_write::Series {
                    labels,
                    samples: samples.into_iter().collect(),
                })
                .collect();
            if !series.is_empty() {
                recording.exporter.submit(phlox_recording::remote_write::Batch {
                    tenant: job.tenant.clone(),
                    series,
                    oldest_profile_ms,
                });
            }
        }
        info!(job = %job.id, tenant = %job.tenant, level, excluded = job.exclude.len(), sources = job.sources.len(), block = %id, "compacted");
        Ok(())
    }
}

impl CompactionWorker {
    /// Writes a job's result to the bucket, then completes the job with it.
    async fn store_and_complete(
        &self,
        job: &CompactionJob,
        level: u32,
        id: Ulid,
        encoded: phlox_block::EncodedBlock,
    ) -> Result<(), tonic::Status> {
        let path = paths::object_path(&job.tenant, 0, level, id);
        self.store
            .put(&path, PutPayload::from(encoded.bytes))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        self.blocks.with_label_values(&["source"]).inc_by(job.sources.len() as u64);
        self.metastore
            .complete_compaction_job(CompleteCompactionJobRequest {
                id: job.id.clone(),
                token: job.token,
                block: Some(encoded.meta),
            })
            .await?;
        Ok(())
    }

    /// A rollup job: sums the sources' rows of the bucket into a rollup
    /// block, writes it and hands it to the metastore (the sources stay).
    async fn rollup(&self, job: &CompactionJob, readers: Vec<BlockReader>) -> Result<(), tonic::Status> {
        let internal = |e: String| tonic::Status::internal(e);
        let id = output_id(job);
        let level = job.output_level;
        let header =
            BlockHeader { id, tenant: job.tenant.clone(), shard: 0, level, created_by: self.config.id.clone() };
        let (tenant, start, end) = (job.tenant.clone(), job.rollup_start, job.rollup_end);
        let (covers, step) = (job.rollup_covers.clone(), job.rollup_step);
        let handle = tokio::runtime::Handle::current();
        let rolled = tokio::task::spawn_blocking(move || {
            handle.block_on(phlox_block::rollup::rollup(&readers, &tenant, header, (start, end), step, Some(&covers)))
        })
        .await
        .map_err(|e| internal(format!("rollup task: {e}")))?;
        let encoded = match rolled {
            Ok(encoded) => encoded,
            // No row in the bucket: the metastore remembers it as empty.
            Err(phlox_block::BlockError::Empty) => {
                self.metastore
                    .complete_compaction_job(CompleteCompactionJobRequest {
                        id: job.id.clone(),
                        token: job.token,
                        block: None,
                    })
                    .await?;
                info!(job = %job.id, tenant = %job.tenant, start, end, "rollup bucket holds no row");
                return Ok(());
            }
            Err(e) => return Err(internal(e.to_string())),
        };
        self.store_and_complete(job, level, id, encoded).await?;
        self.blocks.with_label_values(&["rollup"]).inc();
        info!(job = %job.id, tenant = %job.tenant, start, end, sources = job.sources.len(), block = %id, "rolled up");
        Ok(())
    }
}

/// The output block id of a job: the newest source's time, bits from the
/// job id, so a redone job writes the same object.
fn output_id(job: &CompactionJob) -> Ulid {
    let newest = job.sources.iter().filter_map(|s| Ulid::from_string(&s.id).ok()).map(|u| u.timestamp_ms()).max();
    // The exclusions are part of the identity: a job redone under a
    // deletion writes a different object than its earlier lease did.
    let mut key = job.id.clone();
    for r in &job.exclude {
        key.push_str(&format!("\n{}..{}", r.start, r.end));
    }
    let bits = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
    Ulid::from_parts(newest.unwrap_or(0), bits)
}

/// On the metastore leader: applies each tenant's `retention_period` every
/// `every` (re-reading the configuration, so overrides apply without a
/// restart).
pub(crate) fn spawn_retention(
    node: Arc<MetastoreNode>,
    config: crate::reload::Current,
    every: Duration,
    registry: &Registry,
) -> anyhow::Result<()> {
    let deleted = IntCounterVec::new(
        Opts::new("phlox_metastore_retention_deleted_total", "Datasets and blocks deleted by retention."),
        &["kind"],
    )?;
    registry.register(Box::new(deleted.clone()))?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if !node.is_leader() {
                continue;
            }
            let config = Arc::clone(&config.borrow());
            let default_ms = config.limits.retention_period.as_millis() as i64;
            let overrides = match config.tenant_limits() {
                Ok(t) => t.into_iter().map(|(t, l)| (t, l.retention_period.as_millis() as i64)).collect(),
                Err(e) => {
                    warn!(error = %e, "invalid per-tenant limits; retention skipped");
                    continue;
                }
            };
            match node.apply_retention(default_ms, overrides).await {
                Ok((0, 0)) => {}
                Ok((datasets, blocks)) => {
                    deleted.with_label_values(&["dataset"]).inc_by(datasets);
                    deleted.with_label_values(&["block"]).inc_by(blocks);
                    info!(datasets, blocks, "retention applied");
                }
                Err(e) => warn!(error = %e, "cannot apply retention"),
            }
        }
    });
    Ok(())
}

/// On the metastore leader: deletes objects tombstoned more than `grace`
/// ago (queries that listed them have finished), then forgets them.
pub(crate) fn spawn_tombstone_cleaner(node: Arc<MetastoreNode>, store: Arc<dyn ObjectStore>, grace: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if !node.is_leader() {
                continue;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let mut gone = Vec::new();
            for t in node.tombstones() {
                if now - t.deleted_at_ms < grace.as_millis() as i64 {
                    continue;
                }
                match store.delete(&object_store::path::Path::from(t.key.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => gone.push(t.key),
                    Err(e) => warn!(key = %t.key, error = %e, "cannot delete a tombstoned object"),
                }
            }
            if !gone.is_empty() {
                let n = gone.len();
                match node.remove_tombstones(gone).await {
                    Ok(_) => info!(objects = n, "deleted tombstoned objects"),
                    Err(e) => warn!(error = %e, "cannot forget tombstones"),
                }
            }
        }
    });
}
