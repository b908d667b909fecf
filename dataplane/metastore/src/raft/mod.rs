//! openraft glue: the type config, storage on redb, the gRPC network and
//! the gRPC handler that feeds peers' messages to the local Raft.

mod dedup_keys;
mod log_store;
mod network;
mod service;
mod state_machine;
mod store;

pub(crate) use dedup_keys::DedupKeys;
pub(crate) use log_store::LogStore;
pub(crate) use network::{GrpcNetworkFactory, endpoint};
pub use service::RaftGrpcService;
pub(crate) use state_machine::{SharedState, StateMachineStore, read_state};
pub use store::StoreError;
pub(crate) use store::{Db, open_database};

use crate::fsm::{Command, Response};

openraft::declare_raft_types!(
    /// Types of the metastore Raft group.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The Raft handle of the metastore.
pub(crate) type MetastoreRaft = openraft::Raft<TypeConfig>;

#[cfg(test)]
mod tests;
