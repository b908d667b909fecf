//! gRPC handler of `metastore.v1.MetastoreService`: the same path as the
//! in-process client, with errors mapped to statuses once.

use std::sync::Arc;

use phlox_proto::metastore::v1::metastore_service_server::MetastoreService;
use phlox_proto::metastore::v1::{
    AddBlockRequest, AddBlockResponse, HeartbeatRequest, HeartbeatResponse, ListSegmentWritersRequest,
    ListSegmentWritersResponse, QueryBlocksRequest, QueryBlocksResponse,
};
use tonic::{Request, Response, Status};

use super::forward::is_forwarded;
use super::route::{Core, Origin, Routed};

/// gRPC handler of `metastore.v1.MetastoreService` for one node; add it to
/// the server with [`crate::MetastoreNode::metastore_service`].
#[derive(Debug, Clone)]
pub struct MetastoreGrpcService {
    core: Arc<Core>,
}

impl MetastoreGrpcService {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    async fn handle<R: Routed>(&self, request: Request<R>) -> Result<Response<R::Reply>, Status> {
        let origin = if is_forwarded(&request) { Origin::Forwarded } else { Origin::Client };
        Ok(Response::new(self.core.call(&request.into_inner(), origin).await?))
    }
}

#[tonic::async_trait]
impl MetastoreService for MetastoreGrpcService {
    async fn add_block(&self, request: Request<AddBlockRequest>) -> Result<Response<AddBlockResponse>, Status> {
        self.handle(request).await
    }

    async fn query_blocks(
        &self,
        request: Request<QueryBlocksRequest>,
    ) -> Result<Response<QueryBlocksResponse>, Status> {
        self.handle(request).await
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.handle(request).await
    }

    async fn poll_compaction_job(
        &self,
        request: Request<phlox_proto::metastore::v1::PollCompactionJobRequest>,
    ) -> Result<Response<phlox_proto::metastore::v1::PollCompactionJobResponse>, Status> {
        self.handle(request).await
    }

    async fn complete_compaction_job(
        &self,
        request: Request<phlox_proto::metastore::v1::CompleteCompactionJobRequest>,
    ) -> Result<Response<phlox_proto::metastore::v1::CompleteCompactionJobResponse>, Status> {
        self.handle(request).await
    }

    async fn delete_range(
        &self,
        request: Request<phlox_proto::metastore::v1::DeleteRangeRequest>,
    ) -> Result<Response<phlox_proto::metastore::v1::DeleteRangeResponse>, Status> {
        self.handle(request).await
    }

    async fn list_deletions(
        &self,
        request: Request<phlox_proto::metastore::v1::ListDeletionsRequest>,
    ) -> Result<Response<phlox_proto::metastore::v1::ListDeletionsResponse>, Status> {
        self.handle(request).await
    }

    async fn list_segment_writers(
        &self,
        request: Request<ListSegmentWritersRequest>,
    ) -> Result<Response<ListSegmentWritersResponse>, Status> {
        self.handle(request).await
    }
}
