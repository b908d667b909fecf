//! [`MetastoreNode`]: storage, Raft, services and background tasks of one
//! metastore voter.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStore;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, SnapshotPolicy};
use phlox_proto::metastore::v1::metastore_service_server::MetastoreServiceServer;
use phlox_proto::metastore::v1::raft_service_server::RaftServiceServer;
use phlox_proto::metastore::v1::{BlockMeta, QueryBlocksRequest};
use phlox_proto::metastore_client::Metastore;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{MAX_MESSAGE_SIZE, MetastoreConfig};
use crate::dlq::{DlqReport, recover_once};
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, DEDUP_WINDOW_MS, Response, Tombstone};
use crate::metrics::{Metrics, StorageMetrics};
use crate::raft::{
    DedupKeys, GrpcNetworkFactory, LogStore, MetastoreRaft, RaftGrpcService, SharedState, StateMachineStore,
    StoreError, open_database, read_state,
};
use crate::service::{Core, DedupGate, Local, LocalMetastore, MetastoreGrpcService, now_ms};

/// How long [`MetastoreNode::shutdown`] waits for the storage to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`MetastoreNode::trigger_snapshot`] waits for the snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest snapshot chunk sent to a lagging follower (JSON makes the
/// message about four times larger).
const SNAPSHOT_CHUNK_SIZE: u64 = 1024 * 1024;
/// Timeout of sending one snapshot chunk, in ms.
const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;
/// Largest number of entries per AppendEntries (AddBlock entries can be large).
const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// One metastore voter: opens `<data_dir>/metastore.redb`, runs Raft, and
/// serves the metastore API. It binds no port: add [`Self::raft_service`]
/// and [`Self::metastore_service`] to the process's tonic server.
///
/// Call [`Self::shutdown`] before dropping it: dropping stops the node's
/// own tasks but not Raft.
/// Most log entries a healthy voter may have received and not applied.
pub(crate) const HEALTHY_APPLY_LAG: u64 = 1024;
/// Longest a healthy leader goes without hearing from a quorum.
pub(crate) const HEALTHY_QUORUM_ACK: Duration = Duration::from_secs(5);

/// A membership as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipView {
    /// The node answering.
    pub node_id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Voters: id → advertised gRPC address.
    pub voters: BTreeMap<u64, String>,
    /// Learners (being added): id → address.
    pub learners: BTreeMap<u64, String>,
}

fn write_error(e: RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>) -> MetastoreError {
    use openraft::error::ClientWriteError;
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MetastoreError::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MetastoreError::ChangeMembership(Box::new(e))
        }
        RaftError::Fatal(f) => f.into(),
    }
}

pub struct MetastoreNode {
    core: Arc<Core>,
    /// Fails `changed()` once the storage file is closed.
    storage_closed: watch::Receiver<()>,
    /// Where this node's metrics are registered (to unregister at shutdown).
    registry: Option<Registry>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for MetastoreNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetastoreNode").field("node_id", &self.core.node_id).finish_non_exhaustive()
    }
}

fn raft_config(config: &MetastoreConfig) -> Result<openraft::Config> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let raft = openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: ms(config.heartbeat_interval),
        election_timeout_min: ms(config.election_timeout_min),
        election_timeout_max: ms(config.election_timeout_max),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs_since_last),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_SIZE,
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
        ..Default::default()
    };
    Ok(raft.validate()?)
}

/// The initial voters: every peer, or this node alone.
fn initial_members(config: &MetastoreConfig) -> Result<BTreeMap<u64, BasicNode>> {
    if config.peers.is_empty() {
        return Ok(BTreeMap::from([(config.node_id, BasicNode::new(&config.advertise_address))]));
    }
    if !config.peers.iter().any(|(id, _)| *id == config.node_id) {
        return Err(MetastoreError::SelfNotInPeers { node_id: config.node_id });
    }
    Ok(config.peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect())
}

/// Initializes a new group, on one node only: the lowest id of the initial
/// voters. The others wait until its leader replicates to them, so a node
/// that joins a running group (a voter added later, with the new peer list)
/// never starts a group of its own.
async fn bootstrap(raft: &MetastoreRaft, node_id: u64, members: BTreeMap<u64, BasicNode>) -> Result<()> {
    if raft.is_initialized().await? {
        tracing::info!("metastore cluster already initialized");
        return Ok(());
    }
    let voters: Vec<u64> = members.keys().copied().collect();
    if voters.first() != Some(&node_id) {
        tracing::info!(?voters, "metastore: new node, waiting for the group's leader to add it");
        return Ok(());
    }
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(?voters, "initialized metastore cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::info!("metastore cluster already initialized");
            Ok(())
        }
        Err(RaftError::APIError(e)) => Err(MetastoreError::Initialize(Box::new(e))),
        Err(RaftError::Fatal(f)) => Err(f.into()),
    }
}

/// What [`open_raft`] opened.
struct Opened {
    raft: MetastoreRaft,
    shared: SharedState,
    storage_closed: watch::Receiver<()>,
    dedup: DedupGate,
}

/// Opens the store (restoring the last snapshot and the dedup keys) and
/// starts Raft on it.
async fn open_raft(
    config: &MetastoreConfig,
    raft_config: Arc<openraft::Config>,
    metrics: StorageMetrics,
) -> Result<Opened> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| MetastoreError::DataDir { path: dir.clone(), source })?;
    let sm_metrics = metrics.clone();
    let (db, storage_closed, state_machine, keys) = tokio::task::spawn_blocking(move || {
        let (db, storage_closed) = open_database(&dir)?;
        let keys = Arc::new(DedupKeys::open(&db, DEDUP_WINDOW_MS)?);
        let state_machine = StateMachineStore::open(Arc::clone(&db), sm_metrics.clone(), Arc::clone(&keys))?;
        state_machine.migrate_dedup_keys()?;
        sm_metrics.dedup_keys.set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
        Ok::<_, StoreError>((db, storage_closed, state_machine, keys))
    })
    .await
    .map_err(StoreError::from)??;
    let shared = state_machine.shared();
    let dedup = DedupGate::new(Arc::clone(&db), Arc::clone(&keys));
    let raft = MetastoreRaft::new(
        config.node_id,
        raft_config,
        GrpcNetworkFactory::new(config.node_id),
        LogStore::new(db, metrics, keys),
        state_machine,
    )
    .await?;
    Ok(Opened { raft, shared, storage_closed, dedup })
}

impl MetastoreNode {
    /// Starts a node with its metrics in the default Prometheus registry.
    pub async fn start(config: MetastoreConfig) -> Result<Self> {
        Self::start_with_registry(config, prometheus::default_registry()).await
    }

    /// Starts a node: opens storage (restoring the last snapshot), starts
    /// Raft and, with `bootstrap`, initializes the cluster if it is new.
    /// If another running node registered the metastore metrics in
    /// `registry` already, this node's metrics are kept but not exported.
    pub async fn start_with_registry(config: MetastoreConfig, registry: &Registry) -> Result<Self> {
        let raft_config = Arc::new(raft_config(&config)?);
        let members = initial_members(&config)?;
        let (metrics, registry) = match Metrics::new(registry) {
            Ok(metrics) => (metrics, Some(registry.clone())),
            Err(prometheus::Error::AlreadyReg) => {
                tracing::warn!("metastore metrics already registered, this node's are not exported");
                (Metrics::new(&Registry::new())?, None)
            }
            Err(e) => return Err(e.into()),
        };
        let Opened { raft, shared, storage_closed, dedup } =
            match open_raft(&config, raft_config, metrics.storage.clone()).await {
                Ok(opened) => opened,
                Err(e) => {
                    if let Some(registry) = &registry {
                        metrics.unregister(registry);
                    }
                    return Err(e);
                }
            };
        tracing::info!(node_id = config.node_id, address = %config.advertise_address, "metastore node started");
        let core = Arc::new(Core::new(config.node_id, raft, shared, metrics, config.leader_wait, dedup));
        let node = Self { core, storage_closed, registry, tasks: Mutex::new(Vec::new()) };
        node.spawn_metrics_task();
        if config.bootstrap
            && let Err(e) = bootstrap(&node.core.raft, config.node_id, members).await
        {
            node.shutdown().await;
            return Err(e);
        }
        Ok(node)
    }

    fn spawn_task(&self, task: JoinHandle<()>) {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(task);
    }

    fn spawn_metrics_task(&self) {
        let mut rx = self.core.raft.metrics();
        let metrics = self.core.metrics.clone();
        self.spawn_task(tokio::spawn(async move {
            loop {
                metrics.observe_raft(&rx.borrow_and_update());
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }));
    }

    /// Dedup keys this node holds for the window (also the
    /// `phlox_metastore_dedup_keys` gauge).
    pub fn dedup_key_count(&self) -> usize {
        self.core.dedup.key_count()
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> u64 {
        self.core.node_id
    }

    /// The Raft transport handler, for the gRPC server of this node.
    pub fn raft_service(&self) -> RaftServiceServer<RaftGrpcService> {
        RaftServiceServer::new(RaftGrpcService::new(self.core.raft.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The metastore API handler, for the gRPC server of this node.
    pub fn metastore_service(&self) -> MetastoreServiceServer<MetastoreGrpcService> {
        MetastoreServiceServer::new(MetastoreGrpcService::new(Arc::clone(&self.core)))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// In-process client: writes commit through Raft (forwarded to the
    /// leader when this node follows), reads are linearizable.
    pub fn client(&self) -> Arc<dyn Metastore> {
        Arc::new(LocalMetastore::new(Arc::clone(&self.core)))
    }

    /// Waits until some leader is known and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        self.core.wait_for_leader_within(None, timeout).await
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        self.core.raft.metrics().borrow().current_leader
    }

    /// Whether this node has a Raft log (it initialized the group or was
    /// replicated to); a new node that waits to be added has none.
    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(self.core.raft.is_initialized().await?)
    }

    /// The current membership and leader, as this node sees them.
    pub fn membership(&self) -> MembershipView {
        let m = self.core.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let addr = |id: u64| membership.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
        let voters: BTreeMap<u64, String> = membership.voter_ids().map(|id| (id, addr(id))).collect();
        let learners = membership.learner_ids().map(|id| (id, addr(id))).collect();
        MembershipView { node_id: m.id, leader: m.current_leader, voters, learners }
    }

    /// On the leader: makes `voters` (id → advertised address) the voting
    /// members. New voters are first added as learners and must catch up
    /// with the leader's log within `catch_up`; then the membership changes
    /// (joint consensus), and voters left out stop voting. Refused on a
    /// follower ([`MetastoreError::NotLeader`], naming the leader).
    pub async fn change_voters(&self, voters: BTreeMap<u64, String>, catch_up: Duration) -> Result<MembershipView> {
        if voters.is_empty() {
            return Err(MetastoreError::InvalidMembership("at least one voter is needed".to_owned()));
        }
        let current = self.membership();
        if current.leader != Some(self.core.node_id) {
            return Err(MetastoreError::NotLeader { leader: current.leader });
        }
        if current.voters.keys().eq(voters.keys()) && current.learners.is_empty() {
            return Ok(current);
        }
        for (id, addr) in voters.iter().filter(|(id, _)| !current.voters.contains_key(id)) {
            let add = self.core.raft.add_learner(*id, BasicNode::new(addr), true);
            match tokio::time::timeout(catch_up, add).await {
                Ok(Ok(_)) => tracing::info!(node = id, %addr, "metastore: learner caught up"),
                Ok(Err(e)) => return Err(write_error(e)),
                Err(_) => {
                    return Err(MetastoreError::Timeout { waiting_for: "a new voter to catch up with the leader" });
                }
            }
        }
        let ids: std::collections::BTreeSet<u64> = voters.keys().copied().collect();
        self.core.raft.change_membership(ids.clone(), false).await.map_err(write_error)?;
        tracing::info!(voters = ?ids, "metastore: membership changed");
        Ok(self.membership())
    }

    /// Whether this voter is part of a healthy Raft group, as far as it can
    /// tell: Raft runs, a leader is known, the node is a voter of the
    /// current membership and has applied what it received (within
    /// [`HEALTHY_APPLY_LAG`]); a leader has also heard from a quorum within
    /// [`HEALTHY_QUORUM_ACK`]. `/ready` of a metastore pod says this, so a
    /// rolling update replaces the next voter only once the group is whole.
    pub fn health(&self) -> std::result::Result<(), String> {
        let m = self.core.raft.metrics().borrow().clone();
        if let Err(e) = &m.running_state {
            return Err(format!("raft stopped: {e}"));
        }
        let Some(leader) = m.current_leader else {
            return Err("no metastore leader known".to_owned());
        };
        if !m.membership_config.membership().voter_ids().any(|v| v == m.id) {
            return Err(format!("node {} is not a voter of the current membership", m.id));
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        let lag = m.last_log_index.unwrap_or(0).saturating_sub(applied);
        if lag > HEALTHY_APPLY_LAG {
            return Err(format!("{lag} log entries received and not yet applied"));
        }
        let voters = m.membership_config.membership().voter_ids().count();
        if leader == m.id && voters > 1 {
            let ack = m.millis_since_quorum_ack.unwrap_or(u64::MAX);
            if ack > HEALTHY_QUORUM_ACK.as_millis() as u64 {
                return Err(format!("leader without a quorum for {ack} ms"));
            }
        }
        Ok(())
    }

    /// openraft metrics (role, term, log indexes, membership).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.core.raft.metrics()
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        self.core
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "metastore applied index")
            .await
            .map(|_| ())
            .map_err(|_| MetastoreError::Timeout { waiting_for: "applied index" })
    }

    /// Builds a snapshot of everything applied so far and waits until it is
    /// stored (the log before it may then be purged).
    pub async fn trigger_snapshot(&self) -> Result<()> {
        let applied = self.core.raft.metrics().borrow().last_applied;
        self.core.raft.trigger().snapshot().await?;
        if let Some(applied) = applied {
            self.core
                .raft
                .wait(Some(SNAPSHOT_TIMEOUT))
                .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied.index), "metastore snapshot")
                .await
                .map_err(|_| MetastoreError::Timeout { waiting_for: "snapshot" })?;
        }
        Ok(())
    }

    /// A query of this node's applied state, without confirming leadership:
    /// may lag the leader. For diagnostics and tests; clients use [`Self::client`].
    pub fn query_local(&self, request: &QueryBlocksRequest) -> Result<Vec<BlockMeta>> {
        Ok(read_state(&self.core.state, |applied| applied.state.query(request))?)
    }

    /// Pending tombstones in this node's applied state.
    pub fn tombstones(&self) -> Vec<Tombstone> {
        read_state(&self.core.state, |applied| applied.state.tombstones())
    }

    /// Removes blocks from the index and tombstones their objects. Runs on
    /// the leader only.
    pub async fn delete_blocks(&self, ids: Vec<String>) -> Result<u64> {
        crate::fsm::parse_ids(&ids)?;
        match self.write_on_leader(Command::DeleteBlocks { ids, now_ms: now_ms() }).await? {
            Response::BlocksDeleted { deleted } => Ok(deleted),
            Response::Rejected(e) => Err(e.into()),
            other => Err(MetastoreError::UnexpectedResponse(other)),
        }
    }

    /// Drops datasets older than their tenant's retention (`default_ms`,
    /// or per tenant in `overrides`; 0 keeps everything) and tombstones
    /// blocks left without data: (datasets, blocks). Runs on the leader only.
    pub async fn apply_retention(
        &self,
        default_ms: i64,
        overrides: std::collections::BTreeMap<String, i64>,
    ) -> Result<(u64, u64)> {
        match self.write_on_leader(Command::ApplyRetention { now_ms: now_ms(), default_ms, overrides }).await? {
            Response::RetentionApplied { datasets, blocks } => Ok((datasets, blocks)),
            Response::Rejected(e) => Err(e.into()),
            other => Err(MetastoreError::UnexpectedResponse(other)),
        }
    }

    /// Forgets tombstones whose objects are gone. Runs on the leader only.
    pub async fn remove_tombstones(&self, keys: Vec<String>) -> Result<u64> {
        match self.write_on_leader(Command::RemoveTombstones { keys }).await? {
            Response::TombstonesRemoved { removed } => Ok(removed),
            Response::Rejected(e) => Err(e.into()),
            other => Err(MetastoreError::UnexpectedResponse(other)),
        }
    }

    async fn write_on_leader(&self, command: Command) -> Result<Response> {
        match self.core.write_local(command).await? {
            Local::Done(response) => Ok(response),
            Local::NotLeader(leader, _) => Err(MetastoreError::NotLeader { leader }),
        }
    }

    /// One pass of dead-letter recovery over `store` (see [`DlqReport`]).
    pub async fn recover_dlq_once(&self, store: &dyn ObjectStore) -> Result<DlqReport> {
        recover_once(&self.core, store).await
    }

    /// Runs dead-letter recovery every `interval` while this node leads.
    pub fn spawn_dlq_recovery(&self, store: Arc<dyn ObjectStore>, interval: Duration) {
        let core = Arc::clone(&self.core);
        self.spawn_task(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if !core.is_leader() {
                    // The leader counts what is left; this node does not.
                    core.metrics.dlq_entries.set(0);
                    continue;
                }
                match recover_once(&core, store.as_ref()).await {
                    Ok(report) if report != DlqReport::default() => {
                        tracing::info!(recovered = report.recovered, failed = report.failed, "dead-letter pass done");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "dead-letter pass failed"),
                }
            }
        }));
    }

    /// Stops background tasks and Raft, and waits until the storage file is
    /// closed (so a new node may open the same directory).
    pub async fn shutdown(&self) {
        for task in self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            task.abort();
        }
        if let Err(error) = self.core.raft.shutdown().await {
            tracing::warn!(%error, "metastore raft did not stop cleanly");
        }
        self.core.metrics.raft_state.set(4);
        if let Some(registry) = &self.registry {
            self.core.metrics.unregister(registry);
        }
        // The state machine worker and replication tasks drop their store
        // handles shortly after Raft stops.
        let mut closed = self.storage_closed.clone();
        let wait = async { while closed.changed().await.is_ok() {} };
        if tokio::time::timeout(CLOSE_TIMEOUT, wait).await.is_err() {
            tracing::warn!(node_id = self.core.node_id, "metastore storage still open after shutdown");
        }
        tracing::info!(node_id = self.core.node_id, "metastore node stopped");
    }
}

impl Drop for MetastoreNode {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}
