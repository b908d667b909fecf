use phlox_proto::metastore::v1::AddBlockRequest;
use serde::{Deserialize, Serialize};

use super::codec::proto_message;
use super::{InvalidRequest, Member};

/// A write to the metastore state, as stored in the Raft log.
///
/// Commands are deterministic: anything that depends on the clock (`now_ms`)
/// is chosen by the proposer and carried in the command, never read at apply
/// time, so every voter computes the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Index a block (idempotent by block id).
    AddBlock {
        /// The request as the segment writer or compactor sent it; for a
        /// level-0 segment, with each dataset's `shadowed_keys` set by the
        /// leader that proposed it.
        #[serde(with = "proto_message")]
        request: AddBlockRequest,
        /// The proposer decided `shadowed_keys`. False in entries written by
        /// Phlox before the leader decided (the apply decided then).
        #[serde(default)]
        decided: bool,
    },
    /// A segment writer is alive at `address`.
    Heartbeat {
        /// Member id.
        id: String,
        /// Its gRPC address.
        address: String,
        /// Proposer's wall clock, Unix ms.
        now_ms: i64,
        /// The writer is leaving the placement.
        #[serde(default)]
        draining: bool,
    },
    /// Remove blocks from the index and tombstone their objects.
    DeleteBlocks {
        /// Block ids (ULIDs); unknown ids are skipped.
        ids: Vec<String>,
        /// Proposer's wall clock, Unix ms.
        now_ms: i64,
    },
    /// A compaction worker asks for a job (planning runs first).
    PollCompactionJob {
        worker: String,
        /// Proposer's wall clock, Unix ms.
        now_ms: i64,
        lease_ms: i64,
        policy: super::compaction::CompactionPolicy,
    },
    /// A compaction worker finished a job: swap its sources for `block`.
    CompleteCompactionJob {
        id: String,
        token: u64,
        #[serde(with = "proto_message")]
        block: phlox_proto::metastore::v1::BlockMeta,
        now_ms: i64,
        /// The job's exclusions removed every row: `block` is empty and
        /// the sources are swapped for nothing.
        #[serde(default)]
        no_output: bool,
    },
    /// Delete `tenant`'s data in `[start_ms, end_ms]` (Unix ms, inclusive).
    DeleteRange { tenant: String, start_ms: i64, end_ms: i64, now_ms: i64 },
    /// Drop datasets older than their tenant's retention (ms; 0 keeps all).
    ApplyRetention { now_ms: i64, default_ms: i64, overrides: std::collections::BTreeMap<String, i64> },
    /// Forget tombstones whose objects have been deleted from the bucket.
    RemoveTombstones {
        /// Object keys of the tombstones.
        keys: Vec<String>,
    },
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Entries that carry no command (blank and membership entries).
    Empty,
    /// Result of [`Command::AddBlock`].
    AddBlock {
        /// False when the block was already indexed or tombstoned.
        added: bool,
        /// Profile rows whose dedup key an earlier block holds.
        shadowed_profiles: u64,
    },
    /// Result of [`Command::Heartbeat`]: the live membership, by id.
    Members(Vec<Member>),
    /// Result of [`Command::DeleteBlocks`].
    BlocksDeleted {
        /// Blocks that were indexed and are now tombstoned.
        deleted: u64,
    },
    /// Result of [`Command::RemoveTombstones`].
    TombstonesRemoved {
        /// Tombstones that existed and are now gone.
        removed: u64,
    },
    /// Result of [`Command::PollCompactionJob`]: a leased job, or none.
    CompactionJob(#[serde(with = "proto_message")] phlox_proto::metastore::v1::PollCompactionJobResponse),
    /// Result of [`Command::ApplyRetention`].
    RetentionApplied {
        /// Datasets removed from the index.
        datasets: u64,
        /// Blocks left without data and tombstoned.
        blocks: u64,
    },
    /// Result of [`Command::CompleteCompactionJob`].
    JobCompleted,
    /// Result of [`Command::DeleteRange`]: the deletion and its progress.
    Deleted(#[serde(with = "proto_message")] phlox_proto::metastore::v1::Deletion),
    /// The command was refused and changed nothing.
    Rejected(InvalidRequest),
}
