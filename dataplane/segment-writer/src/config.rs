use std::time::Duration;

/// Settings of a segment writer.
#[derive(Debug, Clone)]
pub struct SegmentWriterConfig {
    /// Instance id, recorded as `created_by` in every object.
    pub id: String,
    /// Number of shards this writer owns.
    pub shards: u32,
    /// The segment window: how long a shard buffers before it flushes.
    pub segment_duration: Duration,
    /// Attempts for the object upload and the metastore registration.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Pushes are rejected (429) once a shard buffers this many bytes.
    pub max_buffered_bytes_per_shard: usize,
    /// Frames kept per stack (root-most).
    pub max_stack_depth: usize,
    /// How long the writer remembers the keys of durable profiles to skip
    /// retried pushes without writing them again. The metastore enforces
    /// exactly-once over its own window regardless.
    pub dedup_window: Duration,
}

impl Default for SegmentWriterConfig {
    fn default() -> Self {
        Self {
            id: "segment-writer-0".into(),
            shards: 4,
            segment_duration: Duration::from_millis(500),
            max_attempts: 5,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_buffered_bytes_per_shard: 64 << 20,
            max_stack_depth: phlox_block::DEFAULT_MAX_STACK_DEPTH,
            dedup_window: Duration::from_secs(3600),
        }
    }
}
