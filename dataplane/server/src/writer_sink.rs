//! The in-process segment writer as the distributor's [`ShardWriter`].

use std::sync::Arc;

use phlox_distributor::{ShardWriter, SinkError};
use phlox_pprof::SeriesProfile;
use phlox_segment_writer::{SegmentWriter, WriteError};

pub(crate) struct LocalWriter(pub(crate) Arc<SegmentWriter>);

#[async_trait::async_trait]
impl ShardWriter for LocalWriter {
    fn shards(&self) -> u32 {
        self.0.shards()
    }

    async fn push(&self, tenant: &str, shard: u32, profiles: Vec<SeriesProfile>) -> Result<(), SinkError> {
        self.0.push(tenant, shard, &profiles).await.map_err(|e| match e {
            WriteError::Overloaded { .. } => SinkError::Overloaded(e.to_string()),
            other => SinkError::Unavailable(other.to_string()),
        })
    }
}
