//! Prometheus metrics of the metastore. Names are defined here only.

use std::time::Duration;

use openraft::BasicNode;
use openraft::{RaftMetrics, ServerState};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry};

/// Time to commit and apply a write, as the caller of the client sees it
/// (including forwarding to the leader). Label `command`.
pub const APPLY_DURATION_SECONDS: &str = "phlox_metastore_apply_duration_seconds";
/// Raft role of this node: 0 follower, 1 candidate, 2 leader, 3 learner, 4 shut down.
pub const RAFT_STATE: &str = "phlox_metastore_raft_state";
/// Current Raft term.
pub const RAFT_TERM: &str = "phlox_metastore_raft_term";
/// Blocks in this node's index.
pub const BLOCKS: &str = "phlox_metastore_blocks";
/// Dead-letter entries re-added to the index and removed from the bucket.
pub const DLQ_RECOVERED_TOTAL: &str = "phlox_metastore_dlq_recovered_total";

/// The metastore's collectors, registered once per node.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) apply_duration: HistogramVec,
    pub(crate) raft_state: IntGauge,
    pub(crate) raft_term: IntGauge,
    pub(crate) blocks: IntGauge,
    pub(crate) dlq_recovered: IntCounter,
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
            blocks: IntGauge::with_opts(Opts::new(BLOCKS, "Blocks in the metastore index."))?,
            dlq_recovered: IntCounter::with_opts(Opts::new(
                DLQ_RECOVERED_TOTAL,
                "Dead-letter entries re-added to the index.",
            ))?,
        };
        registry.register(Box::new(metrics.apply_duration.clone()))?;
        registry.register(Box::new(metrics.raft_state.clone()))?;
        registry.register(Box::new(metrics.raft_term.clone()))?;
        registry.register(Box::new(metrics.blocks.clone()))?;
        registry.register(Box::new(metrics.dlq_recovered.clone()))?;
        Ok(metrics)
    }

    /// Removes the collectors, so that a node started later in the same
    /// process can register its own.
    pub(crate) fn unregister(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(self.apply_duration.clone()),
            Box::new(self.raft_state.clone()),
            Box::new(self.raft_term.clone()),
            Box::new(self.blocks.clone()),
            Box::new(self.dlq_recovered.clone()),
        ];
        for collector in collectors {
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
