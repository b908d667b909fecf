//! Prometheus metrics of the read path: what a dashboard and the query
//! backend autoscaler need (in-flight work and latency).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, exponential_buckets,
};

pub(crate) const INFLIGHT_LEAVES: &str = "phlox_query_backend_inflight_leaves";
pub(crate) const LEAF_DURATION: &str = "phlox_query_backend_leaf_duration_seconds";
pub(crate) const QUERY_DURATION: &str = "phlox_query_frontend_request_duration_seconds";
pub(crate) const DATASETS: &str = "phlox_query_backend_datasets_total";
/// Read leaves waiting for an execution slot.
pub(crate) const QUEUED_LEAVES: &str = "phlox_query_backend_queued_leaves";
/// Wall time spent executing leaves, summed over slots: its rate divided by
/// the slots is the busy ratio.
pub(crate) const BUSY_SECONDS: &str = "phlox_query_backend_busy_seconds_total";
/// Leaves a backend executes at once.
/// Lookups of the decoded-symbols cache, by `result` (hit, miss).
pub(crate) const SYMBOL_CACHE_REQUESTS: &str = "phlox_query_backend_symbol_cache_requests_total";
pub(crate) const LEAF_SLOTS: &str = "phlox_query_backend_leaf_slots";

/// Metrics of the query frontend and backend.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    /// Read leaves executing now (the backend's load).
    pub inflight_leaves: IntGauge,
    /// Time to execute one read leaf.
    pub leaf_duration: Histogram,
    /// Time to answer a query, by method and status code.
    pub query_duration: HistogramVec,
    /// Datasets considered by read leaves: `outcome` is `read` (its series
    /// index was fetched), `rollup` (the same, of a rollup: summed rows),
    /// `skipped` (the tenant index showed no matching series) or `index` (a
    /// tenant index was read).
    pub datasets: IntCounterVec,
    /// Read leaves waiting for an execution slot.
    pub queued_leaves: IntGauge,
    /// Wall time spent executing leaves, summed.
    pub busy_seconds: prometheus::Counter,
    /// Execution slots of this backend.
    pub leaf_slots: IntGauge,
    /// Lookups of the decoded-symbols cache by result.
    pub symbol_cache_requests: IntCounterVec,
}

impl QueryMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            inflight_leaves: IntGauge::with_opts(Opts::new(INFLIGHT_LEAVES, "Read leaves executing now."))?,
            leaf_duration: Histogram::with_opts(
                HistogramOpts::new(LEAF_DURATION, "Time to execute one read leaf (one block).")
                    .buckets(exponential_buckets(0.001, 2.0, 14)?),
            )?,
            query_duration: HistogramVec::new(
                HistogramOpts::new(QUERY_DURATION, "Time to answer a query, by method and Connect code.")
                    .buckets(exponential_buckets(0.001, 2.0, 16)?),
                &["method", "code"],
            )?,
            datasets: IntCounterVec::new(
                Opts::new(DATASETS, "Datasets considered by read leaves, by outcome (read, rollup, skipped, index)."),
                &["outcome"],
            )?,
            queued_leaves: IntGauge::with_opts(Opts::new(QUEUED_LEAVES, "Read leaves waiting for a slot."))?,
            busy_seconds: prometheus::Counter::with_opts(Opts::new(
                BUSY_SECONDS,
                "Wall time spent executing read leaves, summed over slots.",
            ))?,
            leaf_slots: IntGauge::with_opts(Opts::new(LEAF_SLOTS, "Read leaves this backend executes at once."))?,
            symbol_cache_requests: IntCounterVec::new(
                Opts::new(SYMBOL_CACHE_REQUESTS, "Lookups of the decoded-symbols cache by result (hit, miss)."),
                &["result"],
            )?,
        };
        for result in ["hit", "miss"] {
            m.symbol_cache_requests.with_label_values(&[result]);
        }
        registry.register(Box::new(m.symbol_cache_requests.clone()))?;
        registry.register(Box::new(m.queued_leaves.clone()))?;
        registry.register(Box::new(m.busy_seconds.clone()))?;
        registry.register(Box::new(m.leaf_slots.clone()))?;
        registry.register(Box::new(m.datasets.clone()))?;
        registry.register(Box::new(m.inflight_leaves.clone()))?;
        registry.register(Box::new(m.leaf_duration.clone()))?;
        registry.register(Box::new(m.query_duration.clone()))?;
        Ok(m)
    }
}
