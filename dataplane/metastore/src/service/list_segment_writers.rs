//! ListSegmentWriters: a linearizable read of the membership (followers
//! forward), for distributors that place shards on writers.

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{ListSegmentWritersRequest, ListSegmentWritersResponse};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed};
use crate::error::Result;
use crate::raft::read_state;

impl Routed for ListSegmentWritersRequest {
    type Reply = ListSegmentWritersResponse;

    fn write_name(&self) -> Option<&'static str> {
        None
    }

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<ListSegmentWritersResponse>> {
        match core.read_local().await? {
            Local::Done(()) => {
                let members = read_state(&core.state, |applied| applied.state.members());
                Ok(Local::Done(ListSegmentWritersResponse { members: members.into_iter().map(Into::into).collect() }))
            }
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(
        &self,
        mut client: MetastoreServiceClient<Channel>,
    ) -> Result<ListSegmentWritersResponse, tonic::Status> {
        Ok(client.list_segment_writers(forwarded(*self)).await?.into_inner())
    }
}
