//! The request path shared by the in-process client and the gRPC service:
//! validate, run on this node when it leads, otherwise forward to the leader.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use tonic::transport::Channel;

use super::dedup_gate::DedupGate;
use super::forward::Forwarder;
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, Response};
use crate::metrics::Metrics;
use crate::raft::{MetastoreRaft, SharedState};

/// Attempts per call: a leader change during a call costs one more.
const MAX_ATTEMPTS: usize = 3;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A local component or a client of this node's gRPC service.
    Client,
    /// Another metastore node that believed this one leads; such requests
    /// are never forwarded again.
    Forwarded,
}

/// What running a call on this node gave.
pub(crate) enum Local<T> {
    Done(T),
    NotLeader(Option<u64>, Option<BasicNode>),
}

/// A request that runs on the leader: locally when this node leads, else
/// forwarded over gRPC.
pub(crate) trait Routed: Send + Sync {
    type Reply: Send;

    /// Label of the apply-duration metric, for writes.
    fn write_name(&self) -> Option<&'static str>;

    /// Checks the request before anything runs.
    fn validate(&self) -> Result<()>;

    /// Runs the request on this node.
    fn run_local(&self, core: &Core) -> impl Future<Output = Result<Local<Self::Reply>>> + Send;

    /// Sends the request to the leader.
    fn forward(
        &self,
        client: MetastoreServiceClient<Channel>,
    ) -> impl Future<Output = Result<Self::Reply, tonic::Status>> + Send;
}

/// One node's request path.
pub(crate) struct Core {
    pub(crate) node_id: u64,
    pub(crate) raft: MetastoreRaft,
    pub(crate) state: SharedState,
    pub(crate) metrics: Metrics,
    pub(crate) leader_wait: Duration,
    /// The dedup decision of level-0 AddBlocks (used when this node leads).
    pub(crate) dedup: DedupGate,
    forwarder: Forwarder,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// Wall clock in Unix ms (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl Core {
    pub(crate) fn new(
        node_id: u64,
        raft: MetastoreRaft,
        state: SharedState,
        metrics: Metrics,
        leader_wait: Duration,
        dedup: DedupGate,
    ) -> Self {
        Self { node_id, raft, state, metrics, leader_wait, dedup, forwarder: Forwarder::default() }
    }

    /// Runs a request where the leader is, recording write latency.
    pub(crate) async fn call<R: Routed>(&self, request: &R, origin: Origin) -> Result<R::Reply> {
        request.validate()?;
        let started = Instant::now();
        let result = self.route(request, origin).await;
        if let Some(name) = request.write_name() {
            self.metrics.observe_write(name, started.elapsed());
        }
        result
    }

    async fn route<R: Routed>(&self, request: &R, origin: Origin) -> Result<R::Reply> {
        let mut last_error = MetastoreError::NoLeader;
        for _ in 0..MAX_ATTEMPTS {
            let (hint_id, hint_node) = match request.run_local(self).await? {
                Local::Done(reply) => return Ok(reply),
                Local::NotLeader(id, node) => (id, node),
            };
            if origin == Origin::Forwarded {
                return Err(MetastoreError::NotLeader { leader: hint_id });
            }
            let (leader, address) = match (hint_id, hint_node) {
                (Some(id), Some(node)) if id != self.node_id => (id, node.addr),
                _ => {
                    let id = self.wait_for_leader(None).await?;
                    if id == self.node_id {
                        continue;
                    }
                    (id, self.address_of(id).ok_or(MetastoreError::NoLeader)?)
                }
            };
            let client = self.forwarder.client(&address)?;
            match request.forward(client).await {
                Ok(reply) => return Ok(reply),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tracing::debug!(leader, %address, %status, "forward to metastore leader failed, retrying");
                    last_error = MetastoreError::Forwarded(Box::new(status));
                    // Give the cluster a chance to elect someone else.
                    let _ = self.wait_for_leader(Some(leader)).await;
                }
                Err(status) => return Err(MetastoreError::Forwarded(Box::new(status))),
            }
        }
        Err(last_error)
    }

    /// Waits (up to `leader_wait`) until a leader other than `exclude` is known.
    pub(crate) async fn wait_for_leader(&self, exclude: Option<u64>) -> Result<u64> {
        self.wait_for_leader_within(exclude, self.leader_wait).await
    }

    pub(crate) async fn wait_for_leader_within(&self, exclude: Option<u64>, timeout: Duration) -> Result<u64> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| matches!(m.current_leader, Some(l) if Some(l) != exclude), "metastore leader known")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => {
                    MetastoreError::Timeout { waiting_for: "a metastore leader" }
                }
                openraft::metrics::WaitError::ShuttingDown => MetastoreError::NoLeader,
            })?;
        metrics.current_leader.ok_or(MetastoreError::NoLeader)
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == openraft::ServerState::Leader
    }

    fn address_of(&self, id: u64) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// Commits a command if this node leads.
    pub(crate) async fn write_local(&self, command: Command) -> Result<Local<Response>> {
        match self.raft.client_write(command).await {
            Ok(written) => Ok(Local::Done(written.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Ok(Local::NotLeader(f.leader_id, f.leader_node))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(MetastoreError::ChangeMembership(Box::new(e)))
            }
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    /// Confirms leadership for a linearizable read of the local state.
    pub(crate) async fn read_local(&self) -> Result<Local<()>> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(Local::Done(())),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Ok(Local::NotLeader(f.leader_id, f.leader_node))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(MetastoreError::QuorumUnavailable),
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }
}
