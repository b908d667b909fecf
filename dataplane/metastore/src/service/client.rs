//! The in-process [`Metastore`] client: what components in the same binary
//! use instead of gRPC.

use std::sync::Arc;

use phlox_proto::metastore::v1::{
    AddBlockRequest, AddBlockResponse, HeartbeatRequest, HeartbeatResponse, ListSegmentWritersRequest,
    ListSegmentWritersResponse, QueryBlocksRequest, QueryBlocksResponse,
};
use phlox_proto::metastore_client::Metastore;

use super::route::{Core, Origin};

/// In-process client of one node: writes commit through Raft (or are
/// forwarded to the leader), reads are linearizable.
#[derive(Debug, Clone)]
pub(crate) struct LocalMetastore {
    core: Arc<Core>,
}

impl LocalMetastore {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[async_trait::async_trait]
impl Metastore for LocalMetastore {
    async fn add_block(&self, request: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn query_blocks(&self, request: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn poll_compaction_job(
        &self,
        request: phlox_proto::metastore::v1::PollCompactionJobRequest,
    ) -> Result<phlox_proto::metastore::v1::PollCompactionJobResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn complete_compaction_job(
        &self,
        request: phlox_proto::metastore::v1::CompleteCompactionJobRequest,
    ) -> Result<phlox_proto::metastore::v1::CompleteCompactionJobResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn delete_range(
        &self,
        request: phlox_proto::metastore::v1::DeleteRangeRequest,
    ) -> Result<phlox_proto::metastore::v1::DeleteRangeResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn list_deletions(
        &self,
        request: phlox_proto::metastore::v1::ListDeletionsRequest,
    ) -> Result<phlox_proto::metastore::v1::ListDeletionsResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }

    async fn list_segment_writers(
        &self,
        request: ListSegmentWritersRequest,
    ) -> Result<ListSegmentWritersResponse, tonic::Status> {
        Ok(self.core.call(&request, Origin::Client).await?)
    }
}
