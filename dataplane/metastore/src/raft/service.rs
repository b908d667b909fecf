//! The receiving end of [`super::network`]: decodes peers' Raft messages,
//! hands them to the local Raft and returns its `Result` as JSON.

use std::fmt;

use bytes::Bytes;
use phlox_proto::metastore::v1::RaftPayload;
use phlox_proto::metastore::v1::raft_service_server::RaftService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::MetastoreRaft;

/// gRPC handler of `metastore.v1.RaftService` for one node; add it to the
/// server with [`crate::MetastoreNode::raft_service`].
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: MetastoreRaft,
}

impl fmt::Debug for RaftGrpcService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftGrpcService").finish_non_exhaustive()
    }
}

impl RaftGrpcService {
    pub(crate) fn new(raft: MetastoreRaft) -> Self {
        Self { raft }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("decode raft message: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = serde_json::to_vec(result).map_err(|e| Status::internal(format!("encode raft message: {e}")))?;
    Ok(Response::new(RaftPayload { data: Bytes::from(data) }))
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
