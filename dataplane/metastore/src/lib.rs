//! The Phlox metastore: the block index, segment-writer membership and
//! tombstones, replicated with Raft ([openraft] 0.9) and stored in an
//! embedded [redb] file.
//!
//! ```text
//!  segment writers, DLQ        query frontend               peer voters
//!       │ AddBlock, Heartbeat        │ QueryBlocks               │ AppendEntries, Vote,
//!       ▼                            ▼                           │ InstallSnapshot (JSON)
//!  client() ──────┬────── MetastoreGrpcService                   ▼
//!                 ▼                                          RaftGrpcService
//!  service::route: validate; follower ─▶ forward once to the leader (gRPC)
//!                 │ leader: AddBlock ─▶ DedupGate (shadowed keys) │
//!                 │ client_write / ensure_linearizable           │
//!                 ▼                                              │
//!  openraft::Raft ◀──────────────────────────────────────────────┘
//!    ├── GrpcNetworkFactory ─▶ peer voters
//!    ├── LogStore ─▶ redb: log (binary) and vote (durable before ack),
//!    │               committed index, dedup keys of the log's segments
//!    ▼ committed entries
//!  StateMachineStore ── apply ─▶ fsm::MetastoreState (in memory)
//!    └── snapshots (binary, streamed) ─▶ files; restart = last snapshot + replay of the log after it
//! ```
//!
//! **State machine** ([`MetastoreState`]): sans-IO and deterministic. Blocks
//! are indexed by ULID and, per tenant, by the hour partitions their
//! datasets cover (a multi-tenant segment is listed under every tenant).
//! AddBlock is idempotent by block id. Exactly-once ingest: each level-0
//! block carries 16-byte dedup keys of its profile rows; the leader writes
//! the keys already held by an earlier block within the dedup window
//! ([`DEDUP_WINDOW_MS`] of block time) into the new block's
//! `Dataset.shadowed_keys` before proposing it, so that readers skip those
//! rows. The keys are kept beside each voter's log (`raft::dedup_keys`), not
//! in the state, which holds block metadata only. Queries select by
//! tenants, time range and matchers on `service_name` and `__profile_type__`.
//!
//! **Raft** (`raft`): [`TypeConfig`] with `u64` node ids and
//! [`openraft::BasicNode`] holding the gRPC address. The log, vote and
//! committed index live in `<data_dir>/metastore.redb`; writes Raft relies
//! on are durable before they are acknowledged. Messages between voters are
//! JSON inside `metastore.v1.RaftService` calls.
//!
//! **Service** (`service`): one path for the in-process client
//! ([`MetastoreNode::client`]) and the gRPC handler
//! ([`MetastoreGrpcService`]): validate, then run on the leader or forward
//! the request once to it. Errors map to gRPC statuses in one place
//! ([`MetastoreError`]).
//!
//! **Node** ([`MetastoreNode`]): starts all of the above from a
//! [`MetastoreConfig`], bootstraps a new cluster, runs dead-letter recovery
//! while leading, and exports Prometheus metrics ([`metrics`] names).
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod dlq;
mod error;
mod fsm;
pub mod metrics;
mod node;
mod raft;
mod service;

pub use config::{MAX_MESSAGE_SIZE, MetastoreConfig};
pub use dlq::DlqReport;
pub use error::{MetastoreError, Result};
pub use fsm::{
    CodecError, Command, CompactionPolicy, DEDUP_WINDOW_MS, Deletion, InvalidRequest, Job, Lease, MAX_LEVEL,
    MEMBER_EXPIRY_MS, Member, MetastoreState, PARTITION_MS, PROFILE_TYPE_LABEL, ROLLUP_DELAY_MS, ROLLUP_MIN_LEVEL,
    Response, RollupJob, SERVICE_NAME_LABEL, Tombstone,
};
pub use node::{MembershipView, MetastoreNode};
pub use raft::{RaftGrpcService, StoreError, TypeConfig};
pub use service::MetastoreGrpcService;
