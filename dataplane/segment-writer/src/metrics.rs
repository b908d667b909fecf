use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, exponential_buckets};

pub(crate) const FLUSH_DURATION: &str = "phlox_segment_writer_flush_duration_seconds";
pub(crate) const SEGMENT_SIZE: &str = "phlox_segment_writer_segment_size_bytes";
pub(crate) const PROFILES: &str = "phlox_segment_writer_profiles_total";
pub(crate) const DEDUPLICATED: &str = "phlox_segment_writer_deduplicated_profiles_total";
pub(crate) const BUFFERED_BYTES: &str = "phlox_segment_writer_buffered_bytes";
pub(crate) const UPLOAD_RETRIES: &str = "phlox_segment_writer_upload_retries_total";
pub(crate) const FAILED_FLUSHES: &str = "phlox_segment_writer_failed_flushes_total";
pub(crate) const DLQ: &str = "phlox_segment_writer_dlq_blocks_total";
/// Uncompressed pprof bytes pushed (each source profile once per push):
/// its rate is the writer's ingest load, what the autoscaler scales on.
pub(crate) const INGESTED_BYTES: &str = "phlox_segment_writer_ingested_bytes_total";
/// Pushes waiting for their segment to be durable.
pub(crate) const INFLIGHT_PUSHES: &str = "phlox_segment_writer_inflight_pushes";
/// Time from a push's arrival to its ack (segment window + flush).
pub(crate) const PUSH_WAIT: &str = "phlox_segment_writer_push_wait_seconds";

/// Prometheus metrics of a segment writer.
#[derive(Debug, Clone)]
pub struct SegmentWriterMetrics {
    pub flush_duration: Histogram,
    pub segment_size: Histogram,
    pub profiles: IntCounter,
    pub deduplicated: IntCounter,
    pub buffered_bytes: IntGauge,
    pub upload_retries: IntCounter,
    pub failed_flushes: IntCounter,
    pub dlq: IntCounter,
    pub ingested_bytes: IntCounter,
    pub inflight_pushes: IntGauge,
    pub push_wait: Histogram,
}

impl SegmentWriterMetrics {
    /// Creates the metrics and registers them (already registered metrics
    /// of another writer in the same registry are an error).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            flush_duration: Histogram::with_opts(
                HistogramOpts::new(
                    FLUSH_DURATION,
                    "Time from the end of a segment window to the ack: encode, upload, register.",
                )
                .buckets(exponential_buckets(0.005, 2.0, 12)?),
            )?,
            segment_size: Histogram::with_opts(
                HistogramOpts::new(SEGMENT_SIZE, "Size of the segment objects written.")
                    .buckets(exponential_buckets(1024.0, 4.0, 10)?),
            )?,
            profiles: IntCounter::with_opts(Opts::new(PROFILES, "Series profiles written to segments."))?,
            deduplicated: IntCounter::with_opts(Opts::new(
                DEDUPLICATED,
                "Series profiles skipped because their key was already written.",
            ))?,
            buffered_bytes: IntGauge::with_opts(Opts::new(BUFFERED_BYTES, "Bytes buffered in open segments."))?,
            upload_retries: IntCounter::with_opts(Opts::new(
                UPLOAD_RETRIES,
                "Retried object uploads and registrations.",
            ))?,
            failed_flushes: IntCounter::with_opts(Opts::new(
                FAILED_FLUSHES,
                "Segments whose pushes were answered with an error.",
            ))?,
            dlq: IntCounter::with_opts(Opts::new(
                DLQ,
                "Blocks written to the dead-letter prefix after a failed registration.",
            ))?,
            ingested_bytes: IntCounter::with_opts(Opts::new(
                INGESTED_BYTES,
                "Uncompressed pprof bytes pushed to this writer (each source profile once per push).",
            ))?,
            inflight_pushes: IntGauge::with_opts(Opts::new(
                INFLIGHT_PUSHES,
                "Pushes waiting for their segment to be durable.",
            ))?,
            push_wait: Histogram::with_opts(
                HistogramOpts::new(PUSH_WAIT, "Time from a push's arrival to its ack (segment window + flush).")
                    .buckets(exponential_buckets(0.01, 2.0, 12)?),
            )?,
        };
        registry.register(Box::new(m.ingested_bytes.clone()))?;
        registry.register(Box::new(m.inflight_pushes.clone()))?;
        registry.register(Box::new(m.push_wait.clone()))?;
        registry.register(Box::new(m.flush_duration.clone()))?;
        registry.register(Box::new(m.segment_size.clone()))?;
        registry.register(Box::new(m.profiles.clone()))?;
        registry.register(Box::new(m.deduplicated.clone()))?;
        registry.register(Box::new(m.buffered_bytes.clone()))?;
        registry.register(Box::new(m.upload_retries.clone()))?;
        registry.register(Box::new(m.failed_flushes.clone()))?;
        registry.register(Box::new(m.dlq.clone()))?;
        Ok(m)
    }
}
