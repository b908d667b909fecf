use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) const RECEIVED_BYTES: &str = "phlox_distributor_received_bytes_total";
pub(crate) const RECEIVED_PROFILES: &str = "phlox_distributor_received_profiles_total";
pub(crate) const SERIES_PROFILES: &str = "phlox_distributor_series_profiles_total";
pub(crate) const DISCARDED_PROFILES: &str = "phlox_distributor_discarded_profiles_total";
pub(crate) const DISCARDED_BYTES: &str = "phlox_distributor_discarded_bytes_total";
pub(crate) const DATASET_SHARD_CHANGES: &str = "phlox_distributor_dataset_shard_changes_total";

/// Prometheus metrics of the distributor.
#[derive(Debug, Clone)]
pub struct DistributorMetrics {
    /// By `encoding`: `compressed` as received, `uncompressed` pprof bytes.
    pub received_bytes: IntCounterVec,
    pub received_profiles: IntCounter,
    pub series_profiles: IntCounter,
    /// Profiles of refused requests, by `reason`.
    pub discarded_profiles: IntCounterVec,
    /// Request bytes (as received) of refused requests, by `reason`.
    pub discarded_bytes: IntCounterVec,
    /// Datasets whose shard count followed their ingest rate, by `direction` (up, down).
    pub dataset_shard_changes: IntCounterVec,
    /// Requests waiting for a CPU of the decode pool.
    pub cpu_queued: IntGauge,
    /// Requests being decoded on the pool.
    pub cpu_running: IntGauge,
    /// Requests refused because the pool's queue was full.
    pub cpu_rejected: IntCounter,
}

impl DistributorMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            received_bytes: IntCounterVec::new(Opts::new(RECEIVED_BYTES, "Profile bytes received."), &["encoding"])?,
            received_profiles: IntCounter::with_opts(Opts::new(
                RECEIVED_PROFILES,
                "Profiles received (before the per-series split).",
            ))?,
            series_profiles: IntCounter::with_opts(Opts::new(
                SERIES_PROFILES,
                "Per-series profiles sent to segment writers.",
            ))?,
            discarded_profiles: IntCounterVec::new(
                Opts::new(DISCARDED_PROFILES, "Profiles of refused requests, by reason."),
                &["reason"],
            )?,
            discarded_bytes: IntCounterVec::new(
                Opts::new(DISCARDED_BYTES, "Bytes of refused requests as received, by reason."),
                &["reason"],
            )?,
            dataset_shard_changes: IntCounterVec::new(
                Opts::new(DATASET_SHARD_CHANGES, "Changes of a dataset's shard count with its ingest rate."),
                &["direction"],
            )?,
            cpu_queued: IntGauge::with_opts(Opts::new(
                "phlox_distributor_cpu_queued",
                "Ingest requests waiting for a CPU of the decode pool.",
            ))?,
            cpu_running: IntGauge::with_opts(Opts::new(
                "phlox_distributor_cpu_running",
                "Ingest requests being decoded on the pool.",
            ))?,
            cpu_rejected: IntCounter::with_opts(Opts::new(
                "phlox_distributor_cpu_rejected_total",
                "Ingest requests refused (429) because the decode pool's queue was full.",
            ))?,
        };
        registry.register(Box::new(m.cpu_queued.clone()))?;
        registry.register(Box::new(m.cpu_running.clone()))?;
        registry.register(Box::new(m.cpu_rejected.clone()))?;
        registry.register(Box::new(m.dataset_shard_changes.clone()))?;
        registry.register(Box::new(m.received_bytes.clone()))?;
        registry.register(Box::new(m.received_profiles.clone()))?;
        registry.register(Box::new(m.series_profiles.clone()))?;
        registry.register(Box::new(m.discarded_profiles.clone()))?;
        registry.register(Box::new(m.discarded_bytes.clone()))?;
        Ok(m)
    }
}
