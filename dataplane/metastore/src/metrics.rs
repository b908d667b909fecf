//! Prometheus metrics of the metastore. Names are defined here only.

use std::time::Duration;

use openraft::BasicNode;
use openraft::{RaftMetrics, ServerState};
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Time to commit and apply a write, as the caller of the client sees it
/// (including forwarding to the leader). Label `command`.
pub const APPLY_DURATION_SECONDS: &str = "phlox_metastore_apply_duration_seconds";
/// Raft role of this node: 0 follower, 1 candidate, 2 leader, 3 learner, 4 shut down.
pub const RAFT_STATE: &str = "phlox_metastore_raft_state";
/// Current Raft term.
pub const RAFT_TERM: &str = "phlox_metastore_raft_term";
/// Blocks in this node's index.
pub const BLOCKS: &str = "phlox_metastore_blocks";
/// Compaction jobs in the index, by source `level` and `state` (waiting
/// for a worker, leased to one): the compaction backlog.
pub const COMPACTION_JOBS: &str = "phlox_metastore_compaction_jobs";
/// Dead-letter entries left in the bucket after the last recovery pass
/// (leader only; 0 elsewhere).
pub const DLQ_ENTRIES: &str = "phlox_metastore_dlq_entries";
/// Dead-letter entries re-added to the index and removed from the bucket.
pub const DLQ_RECOVERED_TOTAL: &str = "phlox_metastore_dlq_recovered_total";
/// Keys in this node's dedup index (profile rows of the dedup window).
pub const DEDUP_KEYS: &str = "phlox_metastore_dedup_keys";
/// Size of the last snapshot this node built or installed, bytes.
pub const SNAPSHOT_BYTES: &str = "phlox_metastore_snapshot_bytes";
/// Time the last snapshot build took (serialize and persist), seconds.
pub const SNAPSHOT_BUILD_SECONDS: &str = "phlox_metastore_snapshot_build_seconds";
/// Raft log entries written to this node's log.
pub const LOG_ENTRIES_TOTAL: &str = "phlox_metastore_log_entries_total";
/// Bytes of the Raft log entries written to this node's log (encoded).
pub const LOG_BYTES_TOTAL: &str = "phlox_metastore_log_bytes_total";

/// What the Raft storage (log and state machine) reports.
#[derive(Debug, Clone)]
pub(crate) struct StorageMetrics {
    pub(crate) blocks: IntGauge,
    pub(crate) compaction_jobs: IntGaugeVec,
    pub(crate) dedup_keys: IntGauge,
    pub(crate) snapshot_bytes: IntGauge,
    pub(crate) snapshot_build_seconds: Gauge,
    pub(crate) log_entries: IntCounter,
    pub(crate) log_bytes: IntCounter,
}

impl StorageMetrics {
    /// The collectors, not registered anywhere yet.
    pub(crate) fn new() -> prometheus::Result<Self> {
        Ok(Self {
            blocks: IntGauge::with_opts(Opts::new(BLOCKS, "Blocks in the metastore index."))?,
            compaction_jobs: IntGaugeVec::new(
                Opts::new(COMPACTION_JOBS, "Compaction jobs by source level and state (waiting, leased)."),
                &["level", "state"],
            )?,
            dedup_keys: IntGauge::with_opts(Opts::new(DEDUP_KEYS, "Profile-row keys in the dedup index."))?,
            snapshot_bytes: IntGauge::with_opts(Opts::new(
                SNAPSHOT_BYTES,
                "Size of the last metastore snapshot built or installed.",
            ))?,
            snapshot_build_seconds: Gauge::with_opts(Opts::new(
                SNAPSHOT_BUILD_SECONDS,
                "Time the last metastore snapshot build took.",
            ))?,
            log_entries: IntCounter::with_opts(Opts::new(LOG_ENTRIES_TOTAL, "Raft log entries written."))?,
            log_bytes: IntCounter::with_opts(Opts::new(LOG_BYTES_TOTAL, "Bytes of Raft log entries written."))?,
        })
    }

    fn collectors(&self) -> [Box<dyn prometheus::core::Collector>; 7] {
        [
            Box::new(self.blocks.clone()),
            Box::new(self.compaction_jobs.clone()),
            Box::new(self.dedup_keys.clone()),
            Box::new(self.snapshot_bytes.clone()),
            Box::new(self.snapshot_build_seconds.clone()),
            Box::new(self.log_entries.clone()),
            Box::new(self.log_bytes.clone()),
        ]
    }
}

/// The metastore's collectors, registered once per node.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) apply_duration: HistogramVec,
    pub(crate) raft_state: IntGauge,
    pub(crate) raft_term: IntGauge,
    pub(crate) storage: StorageMetrics,
    pub(crate) dlq_recovered: IntCounter,
    pub(crate) dlq_entries: IntGauge,
}

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            apply_duration: HistogramVec::new(
                HistogramOpts::new(APPLY_DURATION_SECONDS, "Time to commit and apply a metastore write.")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["command"],
            )?,
            raft_state: IntGauge::with_opts(Opts::new(
                RAFT_STATE,
                "Raft role: 0 follower, 1 candidate, 2 leader, 3 learner, 4 shut down.",
            ))?,
            raft_term: IntGauge::with_opts(Opts::new(RAFT_TERM, "Current Raft term."))?,
            storage: StorageMetrics::new()?,
            dlq_recovered: IntCounter::with_opts(Opts::new(
                DLQ_RECOVERED_TOTAL,
                "Dead-letter entries re-added to the index.",
            ))?,
            dlq_entries: IntGauge::with_opts(Opts::new(
                DLQ_ENTRIES,
                "Dead-letter entries left in the bucket after the last recovery pass.",
            ))?,
        };
        registry.register(Box::new(metrics.apply_duration.clone()))?;
        registry.register(Box::new(metrics.raft_state.clone()))?;
        registry.register(Box::new(metrics.raft_term.clone()))?;
        registry.register(Box::new(metrics.dlq_recovered.clone()))?;
        registry.register(Box::new(metrics.dlq_entries.clone()))?;
        for collector in metrics.storage.collectors() {
            registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// Removes the collectors, so that a node started later in the same
    /// process can register its own.
    pub(crate) fn unregister(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(self.apply_duration.clone()),
            Box::new(self.raft_state.clone()),
            Box::new(self.raft_term.clone()),
            Box::new(self.dlq_recovered.clone()),
            Box::new(self.dlq_entries.clone()),
        ];
        for collector in collectors.into_iter().chain(self.storage.collectors()) {
            // Not registered (already removed) is fine.
            let _ = registry.unregister(collector);
        }
    }

    pub(crate) fn observe_write(&self, command: &str, elapsed: Duration) {
        self.apply_duration.with_label_values(&[command]).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn observe_raft(&self, m: &RaftMetrics<u64, BasicNode>) {
        self.raft_state.set(state_code(m.state));
        self.raft_term.set(i64::try_from(m.current_term).unwrap_or(i64::MAX));
    }
}

fn state_code(state: ServerState) -> i64 {
    match state {
        ServerState::Follower => 0,
        ServerState::Candidate => 1,
        ServerState::Leader => 2,
        ServerState::Learner => 3,
        ServerState::Shutdown => 4,
    }
}
