//! Compaction jobs: the planner groups a tenant's blocks of one level into
//! a job, a worker takes it under a lease (with a fencing token), and
//! completing it swaps the sources for the merged block atomically: the
//! tenant's datasets leave the sources, sources left empty are tombstoned.
//!
//! Deterministic: planning runs inside the apply of a poll, from the state
//! and the command (its clock and policy) only.

use std::collections::BTreeMap;

use phlox_block::is_tenant_index;
use phlox_proto::metastore::v1::{BlockMeta, CompactionJob, PollCompactionJobResponse, TimeRange};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::deletion::{Deletions, tenant_meta};
use super::index::{BlockIndex, IndexedBlock};
use super::tombstones::{Tombstone, Tombstones, object_key};
use super::{InvalidRequest, Response};

/// Highest level a compaction produces.
pub const MAX_LEVEL: u32 = 3;
/// Most sources of one job.
pub(crate) const MAX_SOURCES: usize = 64;

/// When the blocks of a level are compacted: `min_blocks[level]` blocks of
/// a tenant, or as soon as the oldest is `max_age_ms[level]` old (for level
/// 0 even alone: it splits a shared segment into the tenant's own block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionPolicy {
    pub min_blocks: Vec<u32>,
    pub max_age_ms: Vec<i64>,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self { min_blocks: vec![20, 10, 10], max_age_ms: vec![60_000, 600_000, 3_600_000] }
    }
}

/// A worker's hold on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: String,
    pub expires_ms: i64,
    /// Fencing token: only the current holder can complete the job.
    pub token: u64,
}

/// A planned compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    /// Level of the sources; the result is one level up.
    pub level: u32,
    /// Source block ids, in order.
    pub sources: Vec<String>,
    pub lease: Option<Lease>,
    /// Deletions whose ranges the current lease excludes.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A rollup job: sums the sources' rows of a bucket; they stay. Stored
    /// beside the jobs (state version 3), so that a job keeps the binary
    /// layout of version 2.
    #[serde(skip)]
    pub rollup: Option<super::rollup::RollupJob>,
}

impl Job {
    /// Level of the result: one up, but a rewrite of top-level blocks (for
    /// a deletion) stays at the top.
    pub fn output_level(&self) -> u32 {
        (self.level + 1).min(MAX_LEVEL)
    }
}

/// Jobs by id and the last fencing token handed out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Jobs {
    pub(crate) jobs: BTreeMap<String, Job>,
    pub(crate) last_token: u64,
}

fn created_ms(id: &Ulid) -> i64 {
    id.timestamp_ms() as i64
}

/// Plans jobs for every (tenant, level) group of blocks not yet in a job.
/// `forced` (tenant, block id) pairs are pending a deletion's rewrite: their
/// group is planned at once, even alone and at the top level.
fn plan(
    index: &BlockIndex,
    jobs: &mut Jobs,
    now_ms: i64,
    policy: &CompactionPolicy,
    forced: &std::collections::BTreeSet<(String, String)>,
) {
    // A rollup job does not hold its sources: compacting one only makes
    // the rollup stale.
    let taken: std::collections::BTreeSet<(&str, &str)> = jobs
        .jobs
        .values()
        .filter(|j| j.rollup.is_none())
        .flat_map(|j| j.sources.iter().map(move |s| (j.tenant.as_str(), s.as_str())))
        .collect();
    let mut groups: BTreeMap<(String, u32), Vec<Ulid>> = BTreeMap::new();
    for (id, block) in index.iter() {
        if phlox_block::rollup::is_rollup(&block.header) {
            continue;
        }
        let level = block.header.compaction_level;
        let idstr = block.header.id.as_str();
        let mut tenants: Vec<&str> = block.datasets.iter().map(|d| block.dataset_tenant(d)).collect();
        tenants.sort_unstable();
        tenants.dedup();
        for t in tenants {
            let rewrite = forced.contains(&(t.to_owned(), idstr.to_owned()));
            if (level < MAX_LEVEL || rewrite) && !taken.contains(&(t, idstr)) {
                groups.entry((t.to_owned(), level)).or_default().push(*id);
            }
        }
    }
    let mut new_jobs = Vec::new();
    for ((tenant, level), mut ids) in groups {
        ids.sort();
        let rewrite = ids.iter().any(|id| forced.contains(&(tenant.clone(), id.to_string())));
        if level >= MAX_LEVEL {
            // Top-level blocks are only rewritten, one job per pending block.
            ids.retain(|id| forced.contains(&(tenant.clone(), id.to_string())));
        }
        let l = level as usize;
        let min = policy.min_blocks.get(l).copied().unwrap_or(u32::MAX).max(1) as usize;
        let max_age = policy.max_age_ms.get(l).copied().unwrap_or(i64::MAX);
        let old = ids.first().is_some_and(|id| now_ms.saturating_sub(created_ms(id)) >= max_age);
        let enough_for_age = if level == 0 { !ids.is_empty() } else { ids.len() >= 2 };
        if ids.len() < min && !(old && enough_for_age) && !rewrite {
            continue;
        }
        let chunk_len = if level >= MAX_LEVEL { 1 } else { MAX_SOURCES };
        for chunk in ids.chunks(chunk_len) {
            let chunk_rewrite = chunk.iter().any(|id| forced.contains(&(tenant.clone(), id.to_string())));
            if level > 0 && chunk.len() < 2 && !chunk_rewrite {
                continue;
            }
            let sources: Vec<String> = chunk.iter().map(Ulid::to_string).collect();
            let key = format!("{tenant}\n{level}\n{}", sources.join(","));
            let id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()));
            new_jobs.push(Job {
                id,
                tenant: tenant.clone(),
                level,
                sources,
                lease: None,
                exclude: Vec::new(),
                rollup: None,
            });
        }
    }
    for j in new_jobs {
        jobs.jobs.entry(j.id.clone()).or_insert(j);
    }
}

/// A worker asks for a job: plan, then lease the first free (or expired) one.
pub(crate) fn apply_poll(
    index: &BlockIndex,
    jobs: &mut Jobs,
    deletions: &Deletions,
    worker: &str,
    now_ms: i64,
    lease_ms: i64,
    policy: &CompactionPolicy,
) -> Response {
    if worker.is_empty() {
        return Response::Rejected(InvalidRequest::MissingWorker);
    }
    plan(index, jobs, now_ms, policy, &deletions.pending_blocks());
    super::rollup::plan(index, jobs, deletions, now_ms);
    let Some(job) = jobs.jobs.values_mut().find(|j| {
        j.lease.as_ref().is_none_or(|l| l.expires_ms <= now_ms) && !j.rollup.as_ref().is_some_and(|r| r.empty)
    }) else {
        return Response::CompactionJob(PollCompactionJobResponse { job: None });
    };
    jobs.last_token += 1;
    let token = jobs.last_token;
    let expires_ms = now_ms.saturating_add(lease_ms);
    job.lease = Some(Lease { worker: worker.to_owned(), expires_ms, token });
    let pending: Vec<_> = deletions.pending_of(&job.tenant).collect();
    job.exclude = pending.iter().map(|d| d.id.clone()).collect();
    let exclude = pending.iter().map(|d| TimeRange { start: d.start_ms, end: d.end_ms }).collect();
    let sources = job
        .sources
        .iter()
        .filter_map(|s| Ulid::from_string(s).ok())
        .filter_map(|id| index.get(&id))
        .map(|b| tenant_meta(b, &job.tenant))
        .collect();
    Response::CompactionJob(PollCompactionJobResponse {
        job: Some(CompactionJob {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            level: job.level,
            token,
            sources,
            lease_expires: expires_ms,
            exclude,
            output_level: job.output_level(),
            rollup_start: job.rollup.as_ref().map_or(0, |r| r.start_ms),
            rollup_end: job.rollup.as_ref().map_or(0, |r| r.end_ms),
            rollup_covers: job.rollup.as_ref().map(|r| r.covers.clone()).unwrap_or_default(),
            rollup_step: job.rollup.as_ref().map_or(0, |r| r.step_ms),
        }),
    })
}

/// A worker finished a job: swap its sources for `block` (`None` when the
/// job's exclusions removed every row).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_complete(
    index: &mut BlockIndex,
    jobs: &mut Jobs,
    tombstones: &mut Tombstones,
    deletions: &mut Deletions,
    id: &str,
    token: u64,
    block: Option<BlockMeta>,
    now_ms: i64,
) -> Response {
    let Some(job) = jobs.jobs.get(id) else {
        return Response::Rejected(InvalidRequest::UnknownJob { id: id.to_owned() });
    };
    if job.lease.as_ref().map(|l| l.token) != Some(token) {
        return Response::Rejected(InvalidRequest::StaleLease { id: id.to_owned(), token });
    }
    if let Some(rollup) = job.rollup.clone() {
        let Some(block) = block else {
            // No row in the bucket (a gap inside a block's span): the job
            // stays, marked, so that the bucket is not planned again until
            // its blocks change.
            if let Some(j) = jobs.jobs.get_mut(id) {
                j.lease = None;
                j.rollup = Some(super::rollup::RollupJob { empty: true, ..rollup });
            }
            return Response::JobCompleted;
        };
        let Ok(new_id) = Ulid::from_string(&block.id) else {
            return Response::Rejected(InvalidRequest::InvalidBlockId { id: block.id.clone() });
        };
        if block.tenant != job.tenant
            || (block.rollup_start, block.rollup_end, block.rollup_step)
                != (rollup.start_ms, rollup.end_ms, rollup.step_ms)
            || block.datasets.is_empty()
        {
            return Response::Rejected(InvalidRequest::JobResultMismatch { id: id.to_owned() });
        }
        let Some(job) = jobs.jobs.remove(id) else {
            return Response::Rejected(InvalidRequest::UnknownJob { id: id.to_owned() });
        };
        super::rollup::complete(index, tombstones, deletions, &job, &rollup, block, new_id, now_ms);
        return Response::JobCompleted;
    }
    let new_id = match &block {
        Some(block) => {
            let Ok(new_id) = Ulid::from_string(&block.id) else {
                return Response::Rejected(InvalidRequest::InvalidBlockId { id: block.id.clone() });
            };
            if block.tenant != job.tenant || block.compaction_level != job.output_level() || block.datasets.is_empty() {
                return Response::Rejected(InvalidRequest::JobResultMismatch { id: id.to_owned() });
            }
            Some(new_id)
        }
        // Only exclusions can leave nothing.
        None if !job.exclude.is_empty() => None,
        None => return Response::Rejected(InvalidRequest::MissingBlock),
    };
    let job = match jobs.jobs.remove(id) {
        Some(j) => j,
        None => return Response::Rejected(InvalidRequest::UnknownJob { id: id.to_owned() }),
    };
    if let (Some(new_id), Some(block)) = (new_id, block) {
        index.insert(new_id, IndexedBlock::new(block));
    }
    for source in job.sources.iter().filter_map(|s| Ulid::from_string(s).ok()) {
        let Some(mut b) = index.remove(&source) else { continue };
        let header_tenant = b.header.tenant.clone();
        b.datasets.retain(|d| {
            let t = if d.tenant.is_empty() { header_tenant.as_str() } else { d.tenant.as_str() };
            t != job.tenant
        });
        // A segment left with only tenant indexes holds no data either.
        if b.datasets.iter().all(is_tenant_index) {
            let key = object_key(source, &b);
            tombstones.insert(
                key.clone(),
                Tombstone { key, block_id: b.header.id.clone(), tenant: header_tenant, deleted_at_ms: now_ms },
            );
        } else {
            index.insert(source, b);
        }
    }
    let output = new_id.and_then(|u| index.get(&u).map(|b| (u.to_string(), b)));
    deletions.on_job_completed(&job.tenant, &job.exclude, output.as_ref().map(|(id, b)| (id.as_str(), *b)));
    deletions.settle(index, now_ms);
    Response::JobCompleted
}
