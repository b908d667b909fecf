//! Raft RPCs to peers over gRPC (`RaftService`): each openraft request and
//! its `Result<response, RaftError>` travel as JSON in a `RaftPayload`.

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use phlox_proto::metastore::v1::RaftPayload;
use phlox_proto::metastore::v1::raft_service_client::RaftServiceClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use super::TypeConfig;
use crate::config::MAX_MESSAGE_SIZE;

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

/// Creates one [`GrpcNetwork`] per peer.
#[derive(Debug, Clone)]
pub(crate) struct GrpcNetworkFactory {
    node_id: u64,
}

impl GrpcNetworkFactory {
    pub(crate) fn new(node_id: u64) -> Self {
        Self { node_id }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcNetwork { node_id: self.node_id, target, node: node.clone(), client: None }
    }
}

/// The connection to one peer; the channel is created lazily and reused.
#[derive(Debug)]
pub(crate) struct GrpcNetwork {
    node_id: u64,
    target: u64,
    node: BasicNode,
    client: Option<RaftServiceClient<Channel>>,
}

/// An error with a plain message, for openraft's error wrappers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

pub(crate) fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true))
}

impl GrpcNetwork {
    fn client(&mut self) -> Result<RaftServiceClient<Channel>, Unreachable> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let channel = phlox_proto::tls::connect_lazy(endpoint(&self.node.addr).map_err(|e| Unreachable::new(&e))?);
        let client = RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn call<Req, Resp, E>(&mut self, kind: RPCTypes, request: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let data = serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = RaftPayload { data: Bytes::from(data) };
        let mut client = self.client()?;
        let ttl = option.hard_ttl();
        let sent = async {
            match kind {
                RPCTypes::Vote => client.vote(payload).await,
                RPCTypes::AppendEntries => client.append_entries(payload).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let response = match tokio::time::timeout(ttl, sent).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(self.status_error(status)),
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: kind,
                    id: self.node_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
        };
        let result: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&response.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }

    fn status_error<E: Error>(&mut self, status: tonic::Status) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
        let error = Message(format!("{}: {}", status.code(), status.message()));
        if status.code() == tonic::Code::Unavailable {
            // Reconnect on the next call; openraft backs off meanwhile.
            self.client = None;
            RPCError::Unreachable(Unreachable::new(&error))
        } else {
            RPCError::Network(NetworkError::new(&error))
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, Infallible> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>, Infallible> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
