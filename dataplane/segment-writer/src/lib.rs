//! The segment writer: buffers per shard for one segment window, then
//! writes ONE object per shard holding every (tenant, service) dataset,
//! registers it in the metastore, and only then acks the pushes of that
//! segment.
//!
//! ```text
//! push(tenant, shard, profiles) ──▶ shard buffer (SegmentBuilder) ──┐ waiter
//!                                                                   │
//! every segment window, per shard:                                  ▼
//!   finish ─▶ put segments/<shard>/<ulid>.block (retries) ─▶ AddBlock ─▶ ack waiters
//!                                                     └─ AddBlock failed ─▶ put dlq/… ─▶ fail waiters
//! ```
//!
//! A push is acknowledged only when its object is in the bucket AND indexed.
//! When registration fails the block goes to the dead-letter prefix (the
//! metastore leader re-adds it) and the push fails, so the client retries;
//! the retry is deduplicated by profile key (see ARCHITECTURE.md).

mod config;
mod error;
mod metrics;
mod recent;
mod writer;

pub use config::SegmentWriterConfig;
pub use error::WriteError;
pub use metrics::SegmentWriterMetrics;
pub use writer::SegmentWriter;
