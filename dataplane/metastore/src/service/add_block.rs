//! AddBlock: validate, decide the shadowed rows (leader), propose
//! [`Command::AddBlock`], answer from the apply.

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{AddBlockRequest, AddBlockResponse};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed};
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, Response, validate_add_block};

impl Routed for AddBlockRequest {
    type Reply = AddBlockResponse;

    fn write_name(&self) -> Option<&'static str> {
        Some("add_block")
    }

    fn validate(&self) -> Result<()> {
        validate_add_block(self)?;
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<AddBlockResponse>> {
        // Held (its keys visible to the next decision) until the write is done.
        let mut decided = core.dedup.decide(self)?;
        let command = Command::AddBlock { request: decided.take_request(), decided: true };
        match core.write_local(command).await? {
            Local::Done(Response::AddBlock { added, shadowed_profiles }) => {
                Ok(Local::Done(AddBlockResponse { added, shadowed_profiles }))
            }
            Local::Done(Response::Rejected(e)) => Err(e.into()),
            Local::Done(other) => Err(MetastoreError::UnexpectedResponse(other)),
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(&self, mut client: MetastoreServiceClient<Channel>) -> Result<AddBlockResponse, tonic::Status> {
        Ok(client.add_block(forwarded(self.clone())).await?.into_inner())
    }
}
