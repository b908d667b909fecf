//! QueryBlocks: a linearizable read of the leader's state (followers forward).

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{QueryBlocksRequest, QueryBlocksResponse};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed};
use crate::error::Result;
use crate::fsm::validate_query;
use crate::raft::read_state;

impl Routed for QueryBlocksRequest {
    type Reply = QueryBlocksResponse;

    fn write_name(&self) -> Option<&'static str> {
        None
    }

    fn validate(&self) -> Result<()> {
        validate_query(self)?;
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<QueryBlocksResponse>> {
        match core.read_local().await? {
            Local::Done(()) => {
                let blocks = read_state(&core.state, |applied| applied.state.query(self))?;
                Ok(Local::Done(QueryBlocksResponse { blocks }))
            }
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(&self, mut client: MetastoreServiceClient<Channel>) -> Result<QueryBlocksResponse, tonic::Status> {
        Ok(client.query_blocks(forwarded(self.clone())).await?.into_inner())
    }
}
