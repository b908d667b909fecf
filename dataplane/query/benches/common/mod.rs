//! What the query benches (and `tests/remote.rs`) share: a read-only
//! metastore over a fixed list of blocks.

use phlox_proto::metastore::v1::*;
use phlox_proto::metastore_client::Metastore;

/// Blocks as a metastore returns them: those overlapping the range, and
/// rollups only to readers that ask.
#[derive(Debug)]
pub(crate) struct Blocks(pub(crate) Vec<BlockMeta>);

#[async_trait::async_trait]
impl Metastore for Blocks {
    async fn add_block(&self, _: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("read-only"))
    }
    async fn query_blocks(&self, r: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status> {
        Ok(QueryBlocksResponse {
            blocks: self
                .0
                .iter()
                .filter(|b| b.max_time >= r.start && b.min_time <= r.end && (r.rollups || b.rollup_end == 0))
                .cloned()
                .collect(),
        })
    }
    async fn heartbeat(&self, _: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("read-only"))
    }
}
