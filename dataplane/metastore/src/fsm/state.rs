use phlox_proto::metastore::v1::{BlockMeta, QueryBlocksRequest};
use prost::Message as _;
use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use ulid::Ulid;

use super::add_block::apply_add_block;
use super::codec::{Blob, BlobBuf};
use super::compaction::{Jobs, apply_complete, apply_poll};
use super::dedup::DedupIndex;
use super::deletion::{Deletion, Deletions, apply_delete_range};
use super::index::{BlockIndex, IndexedBlock};
use super::membership::{Members, apply_heartbeat};
use super::query::query_blocks;
use super::retention::apply_retention;
use super::rollup::{RollupJob, drop_overlapping, drop_stale};
use super::tombstones::{Tombstones, apply_delete_blocks, apply_remove_tombstones};
use super::{Command, InvalidRequest, Member, Response, Tombstone};

/// Version of the serialized state (snapshots); bump on incompatible change.
/// Version 3 appends the rollup jobs (job id → bucket and covers); version
/// 2 (no rollups) is still read. A version-2 reader refuses version 3: it
/// would read rollup blocks as raw data.
const SNAPSHOT_VERSION: u32 = 3;
/// Version 2: binary, without rollup jobs.
const NO_ROLLUPS_SNAPSHOT_VERSION: u32 = 2;
/// Version 1: JSON, with the dedup index in the state.
const LEGACY_SNAPSHOT_VERSION: u32 = 1;

/// Everything the metastore replicates: the block index, segment-writer
/// membership, tombstones, compaction jobs and deletions — metadata that
/// grows with blocks, not with profiles. (The dedup keys of profile rows are
/// kept beside the Raft log, outside this state: see `raft::dedup_keys`.)
///
/// Pure and deterministic: [`MetastoreState::apply`] depends only on the
/// state and the command. Serde gives the snapshot form (binary in the
/// store, see `codec`; protobuf metadata as its encoding).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetastoreState {
    index: BlockIndex,
    /// The dedup index of a state written by Phlox before the keys left the
    /// state (a version-1 snapshot): applies the AddBlock entries of that
    /// version that follow the snapshot the way that version did. Not
    /// written to binary snapshots.
    legacy_dedup: Option<DedupIndex>,
    members: Members,
    tombstones: Tombstones,
    jobs: Jobs,
    deletions: Deletions,
}

impl MetastoreState {
    /// An empty state with the default dedup window.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state that decides dedup at apply, as Phlox did before the
    /// leader decided it, with a window of `window_ms` of block time: for
    /// the tests of that path.
    #[cfg(test)]
    pub(crate) fn with_legacy_dedup(window_ms: i64) -> Self {
        Self { legacy_dedup: Some(DedupIndex::new(window_ms)), ..Self::default() }
    }

    /// Applies one command.
    pub fn apply(&mut self, command: Command) -> Response {
        match command {
            Command::AddBlock { request, decided } => {
                let id = request.block.as_ref().map(|b| b.id.clone()).unwrap_or_default();
                let legacy = if decided { None } else { self.legacy_dedup.as_mut() };
                let response = apply_add_block(&mut self.index, legacy, &self.tombstones, request, decided);
                if let Response::AddBlock { added: true, .. } = response
                    && let Some(block) = Ulid::from_string(&id).ok().and_then(|u| self.index.get(&u))
                {
                    self.deletions.on_block_added(&id, block);
                }
                response
            }
            Command::Heartbeat { id, address, now_ms, draining } => {
                apply_heartbeat(&mut self.members, id, address, now_ms, draining)
            }
            Command::DeleteBlocks { ids, now_ms } => {
                let response = apply_delete_blocks(&mut self.index, &mut self.tombstones, &ids, now_ms);
                self.deletions.settle(&self.index, now_ms);
                response
            }
            Command::RemoveTombstones { keys } => apply_remove_tombstones(&mut self.tombstones, &keys),
            Command::ApplyRetention { now_ms, default_ms, overrides } => {
                let response = apply_retention(&mut self.index, &mut self.tombstones, now_ms, default_ms, &overrides);
                self.deletions.settle(&self.index, now_ms);
                response
            }
            Command::PollCompactionJob { worker, now_ms, lease_ms, policy } => {
                // Rollups whose covers left (compaction, retention, deletes)
                // go here, with the planning: queries never use them anyway
                // (they check every cover), so this is only their cleanup.
                drop_stale(&mut self.index, &mut self.tombstones, now_ms);
                apply_poll(&self.index, &mut self.jobs, &self.deletions, &worker, now_ms, lease_ms, &policy)
            }
            Command::CompleteCompactionJob { id, token, block, now_ms, no_output } => apply_complete(
                &mut self.index,
                &mut self.jobs,
                &mut self.tombstones,
                &mut self.deletions,
                &id,
                token,
                (!no_output).then_some(block),
                now_ms,
            ),
            Command::DeleteRange { tenant, start_ms, end_ms, now_ms } => {
                drop_overlapping(&mut self.index, &mut self.tombstones, &tenant, start_ms, end_ms, now_ms);
                apply_delete_range(
                    &mut self.index,
                    &mut self.tombstones,
                    &mut self.deletions,
                    tenant,
                    start_ms,
                    end_ms,
                    now_ms,
                )
            }
        }
    }

    /// Blocks of `request.tenants` overlapping `[start, end]`, each with only
    /// its matching datasets, ordered by `min_time` then id.
    pub fn query(&self, request: &QueryBlocksRequest) -> Result<Vec<BlockMeta>, InvalidRequest> {
        let mut blocks = query_blocks(&self.index, request)?;
        self.deletions.mark_deleted(&mut blocks);
        Ok(blocks)
    }

    /// Number of indexed blocks.
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// Compaction jobs by source level: (waiting for a worker, leased).
    pub fn compaction_jobs_by_level(&self) -> [(usize, usize); super::compaction::MAX_LEVEL as usize + 1] {
        let mut by_level = [(0, 0); super::compaction::MAX_LEVEL as usize + 1];
        for job in self.jobs.jobs.values().filter(|j| !j.rollup.as_ref().is_some_and(|r| r.empty)) {
            let slot = &mut by_level[(job.level as usize).min(super::compaction::MAX_LEVEL as usize)];
            if job.lease.is_some() {
                slot.1 += 1;
            } else {
                slot.0 += 1;
            }
        }
        by_level
    }

    /// The entries (block time, key) of the legacy dedup index, if the
    /// state was read from a version-1 snapshot.
    pub(crate) fn legacy_dedup_entries(&self) -> Vec<(i64, phlox_model::ProfileKey)> {
        self.legacy_dedup.as_ref().map(DedupIndex::entries).unwrap_or_default()
    }

    /// Full metadata of an indexed block.
    pub fn block(&self, id: &str) -> Option<BlockMeta> {
        let id = Ulid::from_string(id).ok()?;
        self.index.get(&id).map(IndexedBlock::to_meta)
    }

    /// Segment writers, by id.
    pub fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// Deletions of `tenant` (every tenant when empty), by id.
    pub fn deletions(&self, tenant: &str) -> Vec<Deletion> {
        self.deletions.list(tenant)
    }

    /// Pending tombstones, by object key.
    pub fn tombstones(&self) -> Vec<Tombstone> {
        self.tombstones.values().cloned().collect()
    }
}

/// Blocks serialize as a sequence of encoded `BlockMeta` (hex in JSON), in id order.
struct BlocksRepr<'a>(&'a BlockIndex);

impl Serialize for BlocksRepr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (_, block) in self.0.iter() {
            seq.serialize_element(&Blob(&block.encode_meta()))?;
        }
        seq.end()
    }
}

/// The state as it is stored: version 2 holds no dedup keys (they live
/// beside the Raft log, see `raft::dedup_keys`); version 1 (JSON) held the
/// dedup index, which is read into the legacy index.
#[derive(Serialize)]
struct StateRef<'a> {
    version: u32,
    blocks: BlocksRepr<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup: Option<&'a DedupIndex>,
    members: Vec<&'a Member>,
    tombstones: Vec<&'a Tombstone>,
    jobs: &'a Jobs,
    deletions: &'a Deletions,
    rollups: RollupJobs,
}

/// The rollup part of each rollup job, by job id.
type RollupJobs = std::collections::BTreeMap<String, RollupJob>;

fn rollup_jobs(jobs: &Jobs) -> RollupJobs {
    jobs.jobs.iter().filter_map(|(id, j)| j.rollup.clone().map(|r| (id.clone(), r))).collect()
}

#[derive(Deserialize)]
struct StateOwned {
    version: u32,
    blocks: Vec<BlobBuf>,
    #[serde(default)]
    dedup: Option<DedupIndex>,
    members: Vec<Member>,
    tombstones: Vec<Tombstone>,
    #[serde(default)]
    jobs: Jobs,
    #[serde(default)]
    deletions: Deletions,
    #[serde(default)]
    rollups: RollupJobs,
}

/// The binary format (every field always present, in this order; version 3
/// appends `rollups`).
#[derive(Serialize)]
struct StateRefBinary<'a> {
    version: u32,
    blocks: BlocksRepr<'a>,
    members: Vec<&'a Member>,
    tombstones: Vec<&'a Tombstone>,
    jobs: &'a Jobs,
    deletions: &'a Deletions,
    rollups: RollupJobs,
}

struct StateOwnedBinary {
    version: u32,
    blocks: Vec<BlobBuf>,
    members: Vec<Member>,
    tombstones: Vec<Tombstone>,
    jobs: Jobs,
    deletions: Deletions,
    rollups: RollupJobs,
}

impl<'de> Deserialize<'de> for StateOwnedBinary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StateOwnedBinary;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a binary metastore state")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = |what: &str| A::Error::custom(format!("state without {what}"));
                let version: u32 = seq.next_element()?.ok_or_else(|| missing("version"))?;
                let blocks = seq.next_element()?.ok_or_else(|| missing("blocks"))?;
                let members = seq.next_element()?.ok_or_else(|| missing("members"))?;
                let tombstones = seq.next_element()?.ok_or_else(|| missing("tombstones"))?;
                let jobs = seq.next_element()?.ok_or_else(|| missing("jobs"))?;
                let deletions = seq.next_element()?.ok_or_else(|| missing("deletions"))?;
                // Version 2 ends here.
                let rollups = if version >= SNAPSHOT_VERSION {
                    seq.next_element()?.ok_or_else(|| missing("rollups"))?
                } else {
                    RollupJobs::new()
                };
                Ok(StateOwnedBinary { version, blocks, members, tombstones, jobs, deletions, rollups })
            }
        }
        deserializer.deserialize_tuple(7, Visitor)
    }
}

impl Serialize for MetastoreState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return StateRef {
                version: if self.legacy_dedup.is_some() { LEGACY_SNAPSHOT_VERSION } else { SNAPSHOT_VERSION },
                blocks: BlocksRepr(&self.index),
                dedup: self.legacy_dedup.as_ref(),
                members: self.members.values().collect(),
                tombstones: self.tombstones.values().collect(),
                jobs: &self.jobs,
                deletions: &self.deletions,
                rollups: rollup_jobs(&self.jobs),
            }
            .serialize(serializer);
        }
        StateRefBinary {
            version: SNAPSHOT_VERSION,
            blocks: BlocksRepr(&self.index),
            members: self.members.values().collect(),
            tombstones: self.tombstones.values().collect(),
            jobs: &self.jobs,
            deletions: &self.deletions,
            rollups: rollup_jobs(&self.jobs),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MetastoreState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = if deserializer.is_human_readable() {
            StateOwned::deserialize(deserializer)?
        } else {
            let b = StateOwnedBinary::deserialize(deserializer)?;
            StateOwned {
                version: b.version,
                blocks: b.blocks,
                dedup: None,
                members: b.members,
                tombstones: b.tombstones,
                jobs: b.jobs,
                deletions: b.deletions,
                rollups: b.rollups,
            }
        };
        match (repr.version, &repr.dedup) {
            (SNAPSHOT_VERSION | NO_ROLLUPS_SNAPSHOT_VERSION, None) | (LEGACY_SNAPSHOT_VERSION, Some(_)) => {}
            (version, _) => return Err(D::Error::custom(format!("unknown state version {version}"))),
        }
        let mut index = BlockIndex::default();
        for BlobBuf(bytes) in repr.blocks {
            let meta = BlockMeta::decode(bytes.as_slice()).map_err(D::Error::custom)?;
            let id = Ulid::from_string(&meta.id).map_err(D::Error::custom)?;
            index.insert(id, IndexedBlock::new(meta));
        }
        Ok(Self {
            index,
            legacy_dedup: repr.dedup,
            members: repr.members.into_iter().map(|m| (m.id.clone(), m)).collect(),
            tombstones: repr.tombstones.into_iter().map(|t| (t.key.clone(), t)).collect(),
            jobs: {
                let mut jobs = repr.jobs;
                for (id, r) in repr.rollups {
                    if let Some(j) = jobs.jobs.get_mut(&id) {
                        j.rollup = Some(r);
                    }
                }
                jobs
            },
            deletions: repr.deletions,
        })
    }
}
