use std::path::PathBuf;

use openraft::BasicNode;
use openraft::error::{ChangeMembershipError, Fatal, InitializeError};

use crate::fsm::{InvalidRequest, Response};
use crate::raft::StoreError;

/// Errors of the metastore. Each maps to one gRPC status in
/// [`From<MetastoreError> for tonic::Status`](#impl-From<MetastoreError>-for-Status).
#[derive(Debug, thiserror::Error)]
pub enum MetastoreError {
    /// The request is malformed; retrying it will not help.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// No leader is known (an election is running or quorum is lost).
    #[error("no metastore leader")]
    NoLeader,
    /// A forwarded request reached a node that is not the leader; requests
    /// are forwarded at most once.
    #[error("metastore node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<u64>,
    },
    /// The leader could not confirm its leadership with a quorum.
    #[error("metastore quorum unavailable")]
    QuorumUnavailable,
    /// The leader answered a forwarded request with an error.
    #[error("metastore leader: {0}")]
    Forwarded(Box<tonic::Status>),
    /// The address of a peer or leader is not a valid URI authority.
    #[error("invalid metastore address {address:?}")]
    InvalidAddress {
        /// The address as configured or advertised.
        address: String,
    },
    /// The Raft node stopped (shut down or a storage failure).
    #[error("raft stopped: {0}")]
    Fatal(Box<Fatal<u64>>),
    /// A write was refused because of a membership change in progress.
    #[error(transparent)]
    ChangeMembership(Box<ChangeMembershipError<u64>>),
    /// The cluster could not be initialized.
    #[error("initialize metastore cluster: {0}")]
    Initialize(Box<InitializeError<u64, BasicNode>>),
    /// A membership change that cannot be made.
    #[error("invalid metastore membership: {0}")]
    InvalidMembership(String),
    /// `peers` does not list this node.
    #[error("node {node_id} is not among the configured peers")]
    SelfNotInPeers {
        /// This node's id.
        node_id: u64,
    },
    /// Raft timing settings are inconsistent.
    #[error("invalid raft config: {0}")]
    RaftConfig(Box<openraft::ConfigError>),
    /// The data directory could not be created.
    #[error("create data dir {path:?}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The redb store failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A wait on Raft progress (a leader, an applied index, a snapshot)
    /// ran out of time.
    #[error("timed out waiting for {waiting_for}")]
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// The state machine answered a command with a response of another kind.
    #[error("unexpected state machine response {0:?}")]
    UnexpectedResponse(Response),
    /// The bucket failed (dead-letter recovery).
    #[error("object store: {0}")]
    ObjectStore(Box<object_store::Error>),
    /// A dead-letter entry is not an `AddBlockRequest`.
    #[error("decode dead-letter entry {key}: {source}")]
    DlqDecode {
        /// Object key of the entry.
        key: String,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// The metrics could not be registered.
    #[error("register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Result with [`MetastoreError`].
pub type Result<T, E = MetastoreError> = std::result::Result<T, E>;

impl From<Fatal<u64>> for MetastoreError {
    fn from(e: Fatal<u64>) -> Self {
        Self::Fatal(Box::new(e))
    }
}

impl From<openraft::ConfigError> for MetastoreError {
    fn from(e: openraft::ConfigError) -> Self {
        Self::RaftConfig(Box::new(e))
    }
}

impl From<object_store::Error> for MetastoreError {
    fn from(e: object_store::Error) -> Self {
        Self::ObjectStore(Box::new(e))
    }
}

impl From<MetastoreError> for tonic::Status {
    fn from(e: MetastoreError) -> Self {
        use MetastoreError as E;
        match e {
            E::Forwarded(status) => *status,
            E::InvalidRequest(_) | E::DlqDecode { .. } | E::InvalidMembership(_) => {
                tonic::Status::invalid_argument(e.to_string())
            }
            E::NoLeader
            | E::NotLeader { .. }
            | E::QuorumUnavailable
            | E::Timeout { .. }
            | E::Fatal(_)
            | E::ChangeMembership(_) => tonic::Status::unavailable(e.to_string()),
            E::InvalidAddress { .. }
            | E::Initialize(_)
            | E::SelfNotInPeers { .. }
            | E::RaftConfig(_)
            | E::DataDir { .. }
            | E::Storage(_)
            | E::UnexpectedResponse(_)
            | E::ObjectStore(_)
            | E::Metrics(_) => tonic::Status::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_status_a_caller_can_act_on() {
        let invalid: tonic::Status = MetastoreError::from(InvalidRequest::MissingBlock).into();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
        let no_leader: tonic::Status = MetastoreError::NoLeader.into();
        assert_eq!(no_leader.code(), tonic::Code::Unavailable);
        let not_leader: tonic::Status = MetastoreError::NotLeader { leader: Some(2) }.into();
        assert_eq!(not_leader.code(), tonic::Code::Unavailable);
        let forwarded: tonic::Status = MetastoreError::Forwarded(Box::new(tonic::Status::not_found("x"))).into();
        assert_eq!((forwarded.code(), forwarded.message()), (tonic::Code::NotFound, "x"));
        let internal: tonic::Status = MetastoreError::UnexpectedResponse(Response::Empty).into();
        assert_eq!(internal.code(), tonic::Code::Internal);
    }
}
