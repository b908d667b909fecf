use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, exponential_buckets};

pub(crate) const FLUSH_DURATION: &str = "phlox_segment_writer_flush_duration_seconds";
pub(crate) const SEGMENT_SIZE: &str = "phlox_segment_writer_segment_size_bytes";
pub(crate) const PROFILES: &str = "phlox_segment_writer_profiles_total";
pub(crate) const DEDUPLICATED: &str = "phlox_segment_writer_deduplicated_profiles_total";
pub(crate) const BUFFERED_BYTES: &str = "phlox_segment_writer_buffered_bytes";
pub(crate) const UPLOAD_RETRIES: &str = "phlox_segment_writer_upload_retries_total";
pub(crate) const FAILED_FLUSHES: &str = "phlox_segment_writer_failed_flushes_total";
pub(crate) const DLQ: &str = "phlox_segment_writer_dlq_blocks_total";

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
        };
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
