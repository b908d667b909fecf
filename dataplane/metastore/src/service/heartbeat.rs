//! Heartbeat: the proposer stamps the time, the apply answers the membership.

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{HeartbeatRequest, HeartbeatResponse};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed, now_ms};
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, InvalidRequest, Response, validate_heartbeat};

impl Routed for HeartbeatRequest {
    type Reply = HeartbeatResponse;

    fn write_name(&self) -> Option<&'static str> {
        Some("heartbeat")
    }

    fn validate(&self) -> Result<()> {
        let member = self.member.as_ref().ok_or(InvalidRequest::MissingMember)?;
        validate_heartbeat(&member.id)?;
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<HeartbeatResponse>> {
        let member = self.member.clone().unwrap_or_default();
        let command =
            Command::Heartbeat { id: member.id, address: member.address, now_ms: now_ms(), draining: member.draining };
        match core.write_local(command).await? {
            Local::Done(Response::Members(members)) => {
                Ok(Local::Done(HeartbeatResponse { members: members.into_iter().map(Into::into).collect() }))
            }
            Local::Done(Response::Rejected(e)) => Err(e.into()),
            Local::Done(other) => Err(MetastoreError::UnexpectedResponse(other)),
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(&self, mut client: MetastoreServiceClient<Channel>) -> Result<HeartbeatResponse, tonic::Status> {
        Ok(client.heartbeat(forwarded(self.clone())).await?.into_inner())
    }
}
