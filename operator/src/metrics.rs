//! Prometheus metrics of the operator.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, exponential_buckets};

/// Reconcile counts, errors, durations and writes.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by result (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Failed reconciles by reason.
    pub errors: IntCounterVec,
    pub duration: Histogram,
    /// Writes to children by kind and action (`created`, `updated`, `deleted`).
    pub writes: IntCounterVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
    /// Autoscaler decisions by component and reason.
    pub decisions: IntCounterVec,
    /// Replica changes the autoscaler made, by component and direction.
    pub scale_events: IntCounterVec,
    /// Failed reads of load metrics (pods, Prometheus, drain state), by component.
    pub fetch_errors: IntCounterVec,
    /// Segment-writer drains by component and outcome (`started`,
    /// `drained`, `aborted`, `failed` to start, `timed_out`: still
    /// draining after the drain timeout, once per drain).
    pub drains: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            reconciles: IntCounterVec::new(
                Opts::new("phlox_operator_reconciles_total", "Reconciles of PyroscopeClusters by result."),
                &["result"],
            )?,
            errors: IntCounterVec::new(
                Opts::new("phlox_operator_reconcile_errors_total", "Failed reconciles by reason."),
                &["reason"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "phlox_operator_reconcile_duration_seconds",
                    "Time to reconcile one PyroscopeCluster.",
                )
                .buckets(exponential_buckets(0.005, 2.0, 12)?),
            )?,
            writes: IntCounterVec::new(
                Opts::new("phlox_operator_child_writes_total", "Writes to owned objects by kind and action."),
                &["kind", "action"],
            )?,
            leader: IntGauge::with_opts(Opts::new(
                "phlox_operator_leader",
                "1 while this replica holds the leader lease.",
            ))?,
            decisions: IntCounterVec::new(
                Opts::new("phlox_operator_autoscaler_decisions_total", "Autoscaler decisions by component and reason."),
                &["component", "reason"],
            )?,
            scale_events: IntCounterVec::new(
                Opts::new("phlox_operator_scale_events_total", "Replica changes by component and direction."),
                &["component", "direction"],
            )?,
            fetch_errors: IntCounterVec::new(
                Opts::new(
                    "phlox_operator_metric_fetch_errors_total",
                    "Failed reads of load metrics (pods, Prometheus, drain state) by component.",
                ),
                &["component"],
            )?,
            drains: IntCounterVec::new(
                Opts::new(
                    "phlox_operator_drains_total",
                    "Writer drains by component and outcome (started, drained, aborted, failed, timed_out).",
                ),
                &["component", "outcome"],
            )?,
            registry,
        };
        // The label values known in advance exist from the start (rate()
        // and increase() then see the first event, and dashboards their 0).
        for component in ["segment-writer", "query-backend"] {
            for direction in ["up", "down"] {
                m.scale_events.with_label_values(&[component, direction]);
            }
            m.fetch_errors.with_label_values(&[component]);
        }
        for outcome in ["started", "drained", "aborted", "failed", "timed_out"] {
            m.drains.with_label_values(&["segment-writer", outcome]);
        }
        for result in ["ok", "error"] {
            m.reconciles.with_label_values(&[result]);
        }
        for reason in crate::Error::REASONS {
            m.errors.with_label_values(&[reason]);
        }
        m.registry.register(Box::new(m.drains.clone()))?;
        m.registry.register(Box::new(m.decisions.clone()))?;
        m.registry.register(Box::new(m.scale_events.clone()))?;
        m.registry.register(Box::new(m.fetch_errors.clone()))?;
        m.registry.register(Box::new(m.reconciles.clone()))?;
        m.registry.register(Box::new(m.errors.clone()))?;
        m.registry.register(Box::new(m.duration.clone()))?;
        m.registry.register(Box::new(m.writes.clone()))?;
        m.registry.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
