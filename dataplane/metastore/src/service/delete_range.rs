//! DeleteRange (a write: the leader removes covered datasets and marks the
//! rest for rewriting) and ListDeletions (a linearizable read).

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{
    DeleteRangeRequest, DeleteRangeResponse, ListDeletionsRequest, ListDeletionsResponse,
};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed, now_ms};
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, InvalidRequest, Response};
use crate::raft::read_state;

impl Routed for DeleteRangeRequest {
    type Reply = DeleteRangeResponse;

    fn write_name(&self) -> Option<&'static str> {
        Some("delete_range")
    }

    fn validate(&self) -> Result<()> {
        if self.tenant.is_empty() {
            return Err(InvalidRequest::MissingTenant.into());
        }
        if self.start > self.end {
            return Err(InvalidRequest::InvalidQueryRange { start: self.start, end: self.end }.into());
        }
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<DeleteRangeResponse>> {
        let command = Command::DeleteRange {
            tenant: self.tenant.clone(),
            start_ms: self.start,
            end_ms: self.end,
            now_ms: now_ms(),
        };
        match core.write_local(command).await? {
            Local::Done(Response::Deleted(d)) => Ok(Local::Done(DeleteRangeResponse { deletion: Some(d) })),
            Local::Done(Response::Rejected(e)) => Err(e.into()),
            Local::Done(other) => Err(MetastoreError::UnexpectedResponse(other)),
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(&self, mut client: MetastoreServiceClient<Channel>) -> Result<DeleteRangeResponse, tonic::Status> {
        Ok(client.delete_range(forwarded(self.clone())).await?.into_inner())
    }
}

impl Routed for ListDeletionsRequest {
    type Reply = ListDeletionsResponse;

    fn write_name(&self) -> Option<&'static str> {
        None
    }

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<ListDeletionsResponse>> {
        match core.read_local().await? {
            Local::Done(()) => {
                let deletions = read_state(&core.state, |applied| applied.state.deletions(&self.tenant));
                Ok(Local::Done(ListDeletionsResponse { deletions: deletions.iter().map(|d| d.to_proto()).collect() }))
            }
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(
        &self,
        mut client: MetastoreServiceClient<Channel>,
    ) -> Result<ListDeletionsResponse, tonic::Status> {
        Ok(client.list_deletions(forwarded(self.clone())).await?.into_inner())
    }
}
