//! Rollup jobs: once an hour (or a day) of a tenant's data is settled in
//! blocks of level [`ROLLUP_MIN_LEVEL`] or more, a compaction worker sums the
//! tenant's rows of that bucket into a rollup block (one row per series and hour).
//! The raw blocks stay: the rollup lists them as its covers, and a query
//! reads it instead of their rows of the bucket only while every cover is
//! still indexed (see `phlox_query`'s planner).
//!
//! Planning is deterministic (it runs in the apply of a poll, like the
//! compaction planner) and converges: a bucket is planned again only when
//! the set of blocks holding its data changed (late data, a compaction of
//! its blocks, a deletion's rewrite), and a rollup whose covers left the
//! index is dropped at once.
//!
//! Every hour a dataset spans is planned; one that turns out to hold no row
//! (a gap inside a block's span) keeps its finished job, marked empty, in
//! place of a rollup. Once a day is over and settled, one job sums the
//! day's raw rows (per series and hour) into a day rollup, which replaces
//! the day's hour rollups: the hours of a day then share one object and one
//! symbol table.

use std::collections::{BTreeMap, BTreeSet};

use phlox_block::is_tenant_index;
use phlox_block::rollup::{DAY_MS, HOUR_MS, bucket_start, is_rollup};
use phlox_proto::metastore::v1::BlockMeta;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::compaction::{Job, Jobs, MAX_LEVEL};
use super::deletion::Deletions;
use super::index::{BlockIndex, IndexedBlock, MAX_PARTITIONS_PER_ENTRY, PARTITION_MS};
use super::tombstones::{Tombstones, tombstone_block};

/// Lowest compaction level of the blocks a rollup sums: level-0 segments
/// are shared by tenants and compacted within a minute. (A rollup over
/// blocks that are compacted again later is dropped with them and made
/// anew: the cost of one more read of the bucket.)
pub const ROLLUP_MIN_LEVEL: u32 = 1;
/// How long after a bucket's end its rollup is planned: late data of the
/// bucket arrives and is compacted meanwhile.
pub const ROLLUP_DELAY_MS: i64 = 10 * 60_000;

/// What a rollup job sums: the bucket and the blocks it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupJob {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Width of the result's rows' time buckets: an hour, or the whole day.
    pub step_ms: i64,
    /// Raw blocks whose rows of the bucket the result sums.
    pub covers: Vec<String>,
    /// Done, and the bucket held no row: kept (never leased) so that the
    /// bucket is planned again only when its blocks change.
    pub empty: bool,
}

/// The blocks of one tenant's hour.
#[derive(Default)]
struct Hour {
    blocks: BTreeSet<Ulid>,
    /// Every block is at [`ROLLUP_MIN_LEVEL`] or above.
    settled: bool,
}

/// Tenant of a rollup (rollups are single-tenant blocks).
fn rollup_tenant(block: &IndexedBlock) -> &str {
    &block.header.tenant
}

/// The rollup of each (tenant, start, end, step) (at most one: completing a
/// rollup replaces the bucket's earlier one).
fn current_rollups(index: &BlockIndex) -> BTreeMap<(String, i64, i64, i64), (Ulid, &IndexedBlock)> {
    index
        .iter()
        .filter(|(_, b)| is_rollup(&b.header))
        .map(|(id, b)| {
            let h = &b.header;
            ((rollup_tenant(b).to_owned(), h.rollup_start, h.rollup_end, h.rollup_step), (*id, b))
        })
        .collect()
}

/// Whether every cover of `rollup` is indexed with a dataset of its tenant.
fn covers_live(index: &BlockIndex, rollup: &IndexedBlock) -> bool {
    let tenant = rollup_tenant(rollup);
    rollup.header.rollup_covers.iter().all(|c| {
        Ulid::from_string(c)
            .ok()
            .and_then(|u| index.get(&u))
            .is_some_and(|b| b.datasets.iter().any(|d| !is_tenant_index(d) && b.dataset_tenant(d) == tenant))
    })
}

/// Drops (and tombstones) the rollups that a cover left.
pub(crate) fn drop_stale(index: &mut BlockIndex, tombstones: &mut Tombstones, now_ms: i64) {
    let stale: Vec<Ulid> =
        index.iter().filter(|(_, b)| is_rollup(&b.header) && !covers_live(index, b)).map(|(id, _)| *id).collect();
    for id in stale {
        if let Some(b) = index.remove(&id) {
            tombstone_block(tombstones, id, &b, now_ms);
        }
    }
}

/// Drops the rollups of `tenant` overlapping `[start_ms, end_ms]`: a
/// deletion there makes them wrong until the blocks are rewritten.
pub(crate) fn drop_overlapping(
    index: &mut BlockIndex,
    tombstones: &mut Tombstones,
    tenant: &str,
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) {
    let hit: Vec<Ulid> = index
        .iter()
        .filter(|(_, b)| {
            is_rollup(&b.header)
                && rollup_tenant(b) == tenant
                && b.header.rollup_start <= end_ms
                && b.header.rollup_end > start_ms
        })
        .map(|(id, _)| *id)
        .collect();
    for id in hit {
        if let Some(b) = index.remove(&id) {
            tombstone_block(tombstones, id, &b, now_ms);
        }
    }
}

/// Whether a pending deletion of `tenant` overlaps `[start_ms, end_ms)`.
fn deletion_overlaps(deletions: &Deletions, tenant: &str, start_ms: i64, end_ms: i64) -> bool {
    deletions.pending_of(tenant).any(|d| d.start_ms < end_ms && d.end_ms >= start_ms)
}

/// Plans rollup jobs (see the module's description).
pub(crate) fn plan(index: &BlockIndex, jobs: &mut Jobs, deletions: &Deletions, now_ms: i64) {
    let mut hours: BTreeMap<(String, i64), Hour> = BTreeMap::new();
    // Tenants with a block too wide to list per hour: their hours in its
    // range are never settled (queries read raw rows there).
    let mut wide: Vec<(String, i64, i64)> = Vec::new();
    for (id, b) in index.iter() {
        if is_rollup(&b.header) {
            continue;
        }
        let settled = b.header.compaction_level >= ROLLUP_MIN_LEVEL;
        for ds in b.datasets.iter().filter(|d| !is_tenant_index(d)) {
            let tenant = b.dataset_tenant(ds);
            let (first, last) = (ds.min_time.div_euclid(PARTITION_MS), ds.max_time.div_euclid(PARTITION_MS));
            if last.saturating_sub(first) >= MAX_PARTITIONS_PER_ENTRY {
                wide.push((tenant.to_owned(), ds.min_time, ds.max_time));
                continue;
            }
            for p in first..=last {
                let hour = hours
                    .entry((tenant.to_owned(), p * PARTITION_MS))
                    .or_insert_with(|| Hour { settled: true, ..Hour::default() });
                hour.blocks.insert(*id);
                hour.settled &= settled;
            }
        }
    }
    let rollups = current_rollups(index);
    let mut planned: Vec<Job> = Vec::new();
    let ready = |tenant: &str, start: i64, end: i64, settled: bool| {
        settled
            && end.saturating_add(ROLLUP_DELAY_MS) <= now_ms
            && !deletion_overlaps(deletions, tenant, start, end)
            && !wide.iter().any(|(t, lo, hi)| t == tenant && *lo < end && *hi >= start)
    };
    // Buckets whose job finished empty, with the covers it had.
    let empty: BTreeMap<(&str, i64, i64), &Vec<String>> = jobs
        .jobs
        .values()
        .filter_map(|j| {
            j.rollup.as_ref().filter(|r| r.empty).map(|r| ((j.tenant.as_str(), r.start_ms, r.step_ms), &r.covers))
        })
        .collect();
    let current = |tenant: &str, start: i64, end: i64, step: i64, covers: &Vec<String>| {
        rollups.get(&(tenant.to_owned(), start, end, step)).is_some_and(|(_, r)| r.header.rollup_covers == *covers)
            || empty.get(&(tenant, start, step)).is_some_and(|c| *c == covers)
    };
    let ids = |blocks: &BTreeSet<Ulid>| -> Vec<String> { blocks.iter().map(Ulid::to_string).collect() };
    // Per (tenant, day): its hours.
    let mut days: BTreeMap<(&str, i64), Vec<(i64, &Hour)>> = BTreeMap::new();
    for ((tenant, start), hour) in &hours {
        days.entry((tenant.as_str(), bucket_start(*start, DAY_MS))).or_default().push((*start, hour));
    }
    for ((tenant, day), day_hours) in days {
        let day_end = day + DAY_MS;
        let mut blocks = BTreeSet::new();
        let mut settled = true;
        for (_, h) in &day_hours {
            blocks.extend(h.blocks.iter().copied());
            settled &= h.settled;
        }
        if ready(tenant, day, day_end, settled) {
            // A day over and settled: its raw rows summed per hour (one
            // object, replacing the hours' rollups) and over the whole day.
            let covers = ids(&blocks);
            for step in [HOUR_MS, DAY_MS] {
                if !current(tenant, day, day_end, step, &covers) {
                    planned.push(rollup_job(tenant, (day, day_end), step, covers.clone()));
                }
            }
            continue;
        }
        for (start, hour) in day_hours {
            let end = start + HOUR_MS;
            if !ready(tenant, start, end, hour.settled) {
                continue;
            }
            let covers = ids(&hour.blocks);
            if !current(tenant, start, end, HOUR_MS, &covers) {
                planned.push(rollup_job(tenant, (start, end), HOUR_MS, covers));
            }
        }
    }
    let bucket = |j: &Job| j.rollup.as_ref().map(|x| (x.start_ms, x.end_ms, x.step_ms));
    for job in planned {
        let r = bucket(&job);
        // An older job of the bucket (other covers) that nobody holds goes.
        jobs.jobs.retain(|_, j| {
            !(j.tenant == job.tenant
                && bucket(j) == r
                && j.id != job.id
                && j.lease.as_ref().is_none_or(|l| l.expires_ms <= now_ms))
        });
        let busy = jobs.jobs.values().any(|j| j.tenant == job.tenant && bucket(j) == r);
        if !busy {
            jobs.jobs.insert(job.id.clone(), job);
        }
    }
}

/// A job summing the raw rows of `covers` in a bucket, per `step_ms`.
fn rollup_job(tenant: &str, (start_ms, end_ms): (i64, i64), step_ms: i64, covers: Vec<String>) -> Job {
    let key = format!("{tenant}\nrollup\n{start_ms}\n{end_ms}\n{step_ms}\n{}", covers.join(","));
    Job {
        id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes())),
        tenant: tenant.to_owned(),
        level: MAX_LEVEL,
        sources: covers.clone(),
        lease: None,
        exclude: Vec::new(),
        rollup: Some(RollupJob { start_ms, end_ms, step_ms, covers, empty: false }),
    }
}

#[allow(clippy::too_many_arguments)]
/// A worker finished a rollup job: index `block` if what it sums is still
/// what the index holds, else tombstone its object. Older rollups of the
/// bucket (and of the hours of a day) are dropped.
pub(crate) fn complete(
    index: &mut BlockIndex,
    tombstones: &mut Tombstones,
    deletions: &Deletions,
    job: &Job,
    rollup: &RollupJob,
    block: BlockMeta,
    new_id: Ulid,
    now_ms: i64,
) {
    let indexed = IndexedBlock::new(block);
    let valid = indexed.header.rollup_covers == rollup.covers
        && covers_live(index, &indexed)
        && !deletion_overlaps(deletions, &job.tenant, rollup.start_ms, rollup.end_ms);
    if !valid {
        tombstone_block(tombstones, new_id, &indexed, now_ms);
        return;
    }
    let replaced: Vec<Ulid> = index
        .iter()
        .filter(|(_, b)| {
            // The bucket's earlier rollup of this step, and for a day's
            // hours the rollups of its hours.
            is_rollup(&b.header)
                && rollup_tenant(b) == job.tenant
                && b.header.rollup_start >= rollup.start_ms
                && b.header.rollup_end <= rollup.end_ms
                && b.header.rollup_step == rollup.step_ms
        })
        .map(|(id, _)| *id)
        .collect();
    for id in replaced.into_iter().filter(|id| *id != new_id) {
        if let Some(b) = index.remove(&id) {
            tombstone_block(tombstones, id, &b, now_ms);
        }
    }
    index.insert(new_id, indexed);
}
