//! The distributor: turns pushed profiles into per-series profiles on shards.
//!
//! ```text
//! PushRequest ─▶ labels: validate, relabel ─▶ raw profile: gunzip(limit) ─▶ decode ─▶ validate limits
//!             ─▶ profile id (client UUID, else derived from content) ─▶ split per series
//!             ─▶ placement: (tenant, service, series) → shard ─▶ ShardWriter::push per shard (all must ack)
//! ```
//!
//! The distributor holds no state. It answers only after every shard
//! acknowledged, i.e. after the data is durable and indexed.

mod cpu;
mod distributor;
mod error;
pub mod ingest;
mod limits;
mod metrics;
pub mod placement;
mod sink;

pub use cpu::CpuPool;
pub use distributor::{BuiltProfile, Distributor};
pub use error::PushError;
pub use limits::{Limits, LimitsStore, TenantLimits};
pub use metrics::DistributorMetrics;
pub use sink::{ShardWriter, SinkError};
