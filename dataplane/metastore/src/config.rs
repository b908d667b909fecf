use std::path::PathBuf;
use std::time::Duration;

/// Largest gRPC message the metastore sends or accepts (Raft batches,
/// snapshot chunks, large AddBlock requests and query answers).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// Settings of one metastore node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetastoreConfig {
    /// Raft node id, unique in the cluster and stable across restarts.
    pub node_id: u64,
    /// Directory of `metastore.redb` (Raft log, vote, snapshot).
    pub data_dir: PathBuf,
    /// `host:port` where peers and clients reach this node's gRPC server.
    pub advertise_address: String,
    /// Every voter as `(node id, host:port)`, this node included. Empty (or
    /// only this node) means a single voter.
    pub peers: Vec<(u64, String)>,
    /// Initialize the cluster with `peers` as voters when the log is empty;
    /// only the lowest id of `peers` does, the others wait for its leader.
    /// Safe on restart and on every voter: it does nothing once initialized.
    pub bootstrap: bool,
    /// Raft cluster name (must match on all voters).
    pub cluster_name: String,
    /// Leader heartbeat interval. openraft 0.9 also uses it as the timeout
    /// of each AppendEntries call, so it must cover a batch write and fsync
    /// on a follower.
    pub heartbeat_interval: Duration,
    /// Election timeout range: a follower that hears no leader for a random
    /// time in `[min, max)` starts an election.
    pub election_timeout_min: Duration,
    /// See [`Self::election_timeout_min`].
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Log entries kept before the last snapshot, so that a follower that
    /// was down a while (a restarted pod) catches up from the log rather than
    /// from a snapshot transfer (which also carries every dedup key of the
    /// window). 10 000 entries are about 7 minutes at 2,000 profile rows/s
    /// in 8 shards (70 MB on disk).
    pub logs_kept_after_snapshot: u64,
    /// How long a client call waits for a leader during an election before
    /// it fails with `unavailable`.
    pub leader_wait: Duration,
}

impl MetastoreConfig {
    /// A single-voter node with default timings that bootstraps itself.
    pub fn new(node_id: u64, data_dir: impl Into<PathBuf>, advertise_address: impl Into<String>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            advertise_address: advertise_address.into(),
            peers: Vec::new(),
            bootstrap: true,
            cluster_name: "phlox-metastore".into(),
            heartbeat_interval: Duration::from_millis(200),
            election_timeout_min: Duration::from_millis(1_000),
            election_timeout_max: Duration::from_millis(2_000),
            snapshot_logs_since_last: 5_000,
            logs_kept_after_snapshot: 10_000,
            leader_wait: Duration::from_secs(5),
        }
    }

    /// The same node as one of several voters.
    pub fn with_peers(mut self, peers: Vec<(u64, String)>) -> Self {
        self.peers = peers;
        self
    }
}
