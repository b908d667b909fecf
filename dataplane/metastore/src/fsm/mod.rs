//! The sans-IO state machine: [`MetastoreState`] applies [`Command`]s
//! deterministically and answers queries. No clock, no I/O, no async; the
//! Raft glue in `crate::raft` feeds it committed log entries.
//!
//! One file per API: `add_block` (validate, apply, dedup shadowing),
//! `query`, `membership` (heartbeats), `tombstones` (deletes); `index` and
//! `dedup` are the data structures they share.

mod add_block;
mod codec;
mod command;
mod compaction;
mod dedup;
mod deletion;
mod index;
mod invalid;
mod membership;
mod query;
mod retention;
mod rollup;
mod state;
mod tombstones;

#[cfg(test)]
mod tests;

pub(crate) use add_block::validate_add_block;
#[cfg(test)]
pub(crate) use codec::BINARY_V1;
pub use codec::CodecError;
pub(crate) use codec::{decode_stored, encode_stored, encode_stored_vec};
pub use command::{Command, Response};
pub use compaction::{CompactionPolicy, Job, Lease, MAX_LEVEL};
pub use dedup::DEDUP_WINDOW_MS;
pub(crate) use dedup::KEY_LEN;
pub use deletion::Deletion;
pub use index::PARTITION_MS;
pub use invalid::InvalidRequest;
pub(crate) use membership::validate_heartbeat;
pub use membership::{MEMBER_EXPIRY_MS, Member};
pub(crate) use query::validate_query;
pub use query::{PROFILE_TYPE_LABEL, SERVICE_NAME_LABEL};
pub use rollup::{ROLLUP_DELAY_MS, ROLLUP_MIN_LEVEL, RollupJob};
pub use state::MetastoreState;
pub use tombstones::Tombstone;
pub(crate) use tombstones::parse_ids;
