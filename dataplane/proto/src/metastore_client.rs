//! The metastore as the other components see it: a small trait, implemented
//! in-process by `phlox-metastore` and remotely by [`GrpcMetastore`].

use std::sync::Arc;

use crate::metastore::v1::{
    AddBlockRequest, AddBlockResponse, HeartbeatRequest, HeartbeatResponse, ListSegmentWritersRequest,
    ListSegmentWritersResponse, QueryBlocksRequest, QueryBlocksResponse,
    metastore_service_client::MetastoreServiceClient,
};

/// The block index API. Errors are gRPC statuses so that the in-process and
/// the remote implementation fail the same way.
#[async_trait::async_trait]
pub trait Metastore: Send + Sync + 'static {
    /// Registers a block. Idempotent: adding the same block id twice indexes it once.
    async fn add_block(&self, request: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status>;
    /// Blocks of the tenants overlapping a time range, with matching datasets only.
    async fn query_blocks(&self, request: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status>;
    /// Segment-writer heartbeat; returns the current membership.
    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status>;
    /// The segment-writer membership (a read), for distributors.
    async fn list_segment_writers(
        &self,
        _request: ListSegmentWritersRequest,
    ) -> Result<ListSegmentWritersResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("this metastore does not list segment writers"))
    }
    /// A compaction worker asks for a job.
    async fn poll_compaction_job(
        &self,
        _request: crate::metastore::v1::PollCompactionJobRequest,
    ) -> Result<crate::metastore::v1::PollCompactionJobResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("this metastore does not plan compaction"))
    }
    /// A compaction worker finished a job.
    async fn complete_compaction_job(
        &self,
        _request: crate::metastore::v1::CompleteCompactionJobRequest,
    ) -> Result<crate::metastore::v1::CompleteCompactionJobResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("this metastore does not plan compaction"))
    }
    /// Deletes a tenant's data in a time range (idempotent).
    async fn delete_range(
        &self,
        _request: crate::metastore::v1::DeleteRangeRequest,
    ) -> Result<crate::metastore::v1::DeleteRangeResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("this metastore does not delete ranges"))
    }
    /// Deletions and their progress (a read).
    async fn list_deletions(
        &self,
        _request: crate::metastore::v1::ListDeletionsRequest,
    ) -> Result<crate::metastore::v1::ListDeletionsResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("this metastore does not delete ranges"))
    }
}

#[async_trait::async_trait]
impl<T: Metastore + ?Sized> Metastore for Arc<T> {
    async fn add_block(&self, request: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status> {
        (**self).add_block(request).await
    }
    async fn query_blocks(&self, request: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status> {
        (**self).query_blocks(request).await
    }
    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status> {
        (**self).heartbeat(request).await
    }
    async fn list_segment_writers(
        &self,
        request: ListSegmentWritersRequest,
    ) -> Result<ListSegmentWritersResponse, tonic::Status> {
        (**self).list_segment_writers(request).await
    }
    async fn poll_compaction_job(
        &self,
        request: crate::metastore::v1::PollCompactionJobRequest,
    ) -> Result<crate::metastore::v1::PollCompactionJobResponse, tonic::Status> {
        (**self).poll_compaction_job(request).await
    }
    async fn complete_compaction_job(
        &self,
        request: crate::metastore::v1::CompleteCompactionJobRequest,
    ) -> Result<crate::metastore::v1::CompleteCompactionJobResponse, tonic::Status> {
        (**self).complete_compaction_job(request).await
    }
    async fn delete_range(
        &self,
        request: crate::metastore::v1::DeleteRangeRequest,
    ) -> Result<crate::metastore::v1::DeleteRangeResponse, tonic::Status> {
        (**self).delete_range(request).await
    }
    async fn list_deletions(
        &self,
        request: crate::metastore::v1::ListDeletionsRequest,
    ) -> Result<crate::metastore::v1::ListDeletionsResponse, tonic::Status> {
        (**self).list_deletions(request).await
    }
}

/// Calls `call` again (up to 4 retries, 100 ms doubling) when the metastore
/// is unreachable or its connection closed under the call (`Cancelled`): a
/// voter that just died or restarted, a leader change. Every metastore
/// call is idempotent (AddBlock by block id, heartbeats, reads; a repeated
/// job completion is refused as unknown).
async fn retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match call().await {
            Err(s) if attempt < 4 && retryable(s.code()) => {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            r => return r,
        }
    }
}

/// Codes that say the call may not have reached a working metastore.
fn retryable(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
}

/// A remote metastore reached over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcMetastore {
    client: MetastoreServiceClient<tonic::transport::Channel>,
}

impl GrpcMetastore {
    /// A client over a channel (connected lazily by tonic).
    pub fn new(channel: tonic::transport::Channel) -> Self {
        // Query answers and AddBlock requests of large segments exceed
        // tonic's 4 MiB default; the metastore server accepts 256 MiB.
        const MAX_MESSAGE: usize = 256 << 20;
        let client = MetastoreServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Self { client }
    }
}

#[async_trait::async_trait]
impl Metastore for GrpcMetastore {
    async fn add_block(&self, request: AddBlockRequest) -> Result<AddBlockResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.add_block(r).await?.into_inner()) }
        })
        .await
    }
    async fn query_blocks(&self, request: QueryBlocksRequest) -> Result<QueryBlocksResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.query_blocks(r).await?.into_inner()) }
        })
        .await
    }
    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.heartbeat(r).await?.into_inner()) }
        })
        .await
    }
    async fn list_segment_writers(
        &self,
        request: ListSegmentWritersRequest,
    ) -> Result<ListSegmentWritersResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request);
            async move { Ok(c.list_segment_writers(r).await?.into_inner()) }
        })
        .await
    }
    async fn poll_compaction_job(
        &self,
        request: crate::metastore::v1::PollCompactionJobRequest,
    ) -> Result<crate::metastore::v1::PollCompactionJobResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.poll_compaction_job(r).await?.into_inner()) }
        })
        .await
    }
    async fn complete_compaction_job(
        &self,
        request: crate::metastore::v1::CompleteCompactionJobRequest,
    ) -> Result<crate::metastore::v1::CompleteCompactionJobResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.complete_compaction_job(r).await?.into_inner()) }
        })
        .await
    }
    async fn delete_range(
        &self,
        request: crate::metastore::v1::DeleteRangeRequest,
    ) -> Result<crate::metastore::v1::DeleteRangeResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.delete_range(r).await?.into_inner()) }
        })
        .await
    }
    async fn list_deletions(
        &self,
        request: crate::metastore::v1::ListDeletionsRequest,
    ) -> Result<crate::metastore::v1::ListDeletionsResponse, tonic::Status> {
        retry(|| {
            let (mut c, r) = (self.client.clone(), request.clone());
            async move { Ok(c.list_deletions(r).await?.into_inner()) }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_cut_by_a_restart_is_retried_and_a_refusal_is_not() {
        // A connection closed under the call (the metastore restarted), then an answer.
        let calls = AtomicU32::new(0);
        let r = retry(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(tonic::Status::cancelled("operation was canceled")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A refusal is the answer: not retried.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::invalid_argument("bad matcher")) }
        })
        .await;
        assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Unreachable for good: four retries, then the error.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::unavailable("tcp connect error")) }
        })
        .await;
        assert_eq!(r.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}
