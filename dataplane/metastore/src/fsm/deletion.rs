//! Deleting a tenant's data in a time range.
//!
//! A deletion works in two steps, both through the same machinery as
//! retention and compaction:
//! 1. at once: every dataset of the tenant lying entirely inside the range
//!    leaves the index (with the block's tenant index, which would still
//!    list its series); blocks left without data are tombstoned;
//! 2. blocks whose datasets straddle a range edge are *pending*: the
//!    compaction planner gives them a job right away (whatever the level's
//!    thresholds), and every job of the tenant leased while the deletion is
//!    pending carries the range as an exclusion, so the merge drops the
//!    range's rows. A job leased *before* the deletion and completed after
//!    it did not drop them: its result becomes pending in turn.
//!
//! Blocks indexed while the deletion is pending (late data for the range)
//! become pending too. The deletion is done when no indexed block of the
//! tenant is pending. The id is a hash of (tenant, start, end), so a repeated
//! request (a client retry) updates the same deletion.

use std::collections::{BTreeMap, BTreeSet};

use phlox_block::is_tenant_index;
use phlox_proto::metastore::v1::{BlockMeta, Dataset, TimeRange};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::Response;
use super::index::{BlockIndex, IndexedBlock};
use super::tombstones::{Tombstone, Tombstones, object_key};

/// Most finished deletions kept for listing; the oldest go first.
const MAX_DONE: usize = 1000;

/// One deletion request and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub id: String,
    pub tenant: String,
    /// Unix ms, inclusive.
    pub start_ms: i64,
    /// Unix ms, inclusive.
    pub end_ms: i64,
    /// Proposer's clock at the (last) request.
    pub requested_ms: i64,
    /// When the last pending block was rewritten.
    pub done_ms: Option<i64>,
    pub datasets_removed: u64,
    pub blocks_tombstoned: u64,
    /// Blocks holding data of the range next to data outside it.
    pub pending: BTreeSet<String>,
}

impl Deletion {
    fn covers(&self, ds: &Dataset) -> bool {
        ds.min_time >= self.start_ms && ds.max_time <= self.end_ms
    }

    /// Whether `block` holds data of the tenant inside the range.
    fn touches(&self, block: &IndexedBlock) -> bool {
        touches(&self.tenant, self.start_ms, self.end_ms, block)
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> phlox_proto::metastore::v1::Deletion {
        phlox_proto::metastore::v1::Deletion {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            start: self.start_ms,
            end: self.end_ms,
            requested_at: self.requested_ms,
            done_at: self.done_ms.unwrap_or(0),
            datasets_removed: self.datasets_removed,
            blocks_tombstoned: self.blocks_tombstoned,
            blocks_pending: u32::try_from(self.pending.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Whether `block` holds data of `tenant` in `[start_ms, end_ms]`.
fn touches(tenant: &str, start_ms: i64, end_ms: i64, block: &IndexedBlock) -> bool {
    block.datasets.iter().any(|d| {
        !is_tenant_index(d) && block.dataset_tenant(d) == tenant && d.max_time >= start_ms && d.min_time <= end_ms
    })
}

/// Deletions by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deletions {
    by_id: BTreeMap<String, Deletion>,
}

/// The deletion id of a (tenant, range).
pub(crate) fn deletion_id(tenant: &str, start_ms: i64, end_ms: i64) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{tenant}\n{start_ms}\n{end_ms}").as_bytes()))
}

impl Deletions {
    /// Pending deletions of `tenant`.
    pub(crate) fn pending_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Deletion> + 'a {
        self.by_id.values().filter(move |d| d.done_ms.is_none() && d.tenant == tenant)
    }

    /// Writes into each dataset of a query answer the ranges of its
    /// tenant's pending deletions that overlap it, so readers skip the
    /// range's rows before compaction has rewritten the block.
    pub(crate) fn mark_deleted(&self, blocks: &mut [BlockMeta]) {
        if self.by_id.values().all(|d| d.done_ms.is_some()) {
            return;
        }
        for block in blocks {
            for ds in &mut block.datasets {
                let tenant = if ds.tenant.is_empty() { block.tenant.as_str() } else { ds.tenant.as_str() };
                let ranges: Vec<TimeRange> = self
                    .pending_of(tenant)
                    .filter(|d| d.start_ms <= ds.max_time && d.end_ms >= ds.min_time)
                    .map(|d| TimeRange { start: d.start_ms, end: d.end_ms })
                    .collect();
                ds.deleted = ranges;
            }
        }
    }

    /// (tenant, block id) pairs that a pending deletion needs rewritten.
    pub(crate) fn pending_blocks(&self) -> BTreeSet<(String, String)> {
        self.by_id
            .values()
            .filter(|d| d.done_ms.is_none())
            .flat_map(|d| d.pending.iter().map(|b| (d.tenant.clone(), b.clone())))
            .collect()
    }

    /// Deletions of `tenant` (every tenant when empty), by id.
    pub(crate) fn list(&self, tenant: &str) -> Vec<Deletion> {
        self.by_id.values().filter(|d| tenant.is_empty() || d.tenant == tenant).cloned().collect()
    }

    /// A block was indexed: late data of a pending range makes it pending.
    pub(crate) fn on_block_added(&mut self, id: &str, block: &IndexedBlock) {
        for d in self.by_id.values_mut().filter(|d| d.done_ms.is_none()) {
            if d.touches(block) {
                d.pending.insert(id.to_owned());
            }
        }
    }

    /// A job of `tenant` swapped `sources` for `output`; `applied` are the
    /// deletions whose ranges the job excluded. A pending deletion the job
    /// did not apply keeps the output pending if it holds the range's data.
    pub(crate) fn on_job_completed(&mut self, tenant: &str, applied: &[String], output: Option<(&str, &IndexedBlock)>) {
        for d in self.by_id.values_mut().filter(|d| d.done_ms.is_none() && d.tenant == tenant) {
            if let Some((id, block)) = output
                && !applied.contains(&d.id)
                && d.touches(block)
            {
                d.pending.insert(id.to_owned());
            }
        }
    }

    /// Drops pending blocks that no longer hold the range's data (rewritten,
    /// compacted, expired) and marks deletions with none left as done.
    pub(crate) fn settle(&mut self, index: &BlockIndex, now_ms: i64) {
        for d in self.by_id.values_mut().filter(|d| d.done_ms.is_none()) {
            let (tenant, start, end) = (d.tenant.as_str(), d.start_ms, d.end_ms);
            d.pending.retain(|id| {
                Ulid::from_string(id).ok().and_then(|u| index.get(&u)).is_some_and(|b| touches(tenant, start, end, b))
            });
            if d.pending.is_empty() {
                d.done_ms = Some(now_ms);
            }
        }
        let done: Vec<(i64, String)> =
            self.by_id.values().filter_map(|d| d.done_ms.map(|t| (t, d.id.clone()))).collect();
        if done.len() > MAX_DONE {
            let mut done = done;
            done.sort();
            for (_, id) in done.iter().take(done.len() - MAX_DONE) {
                self.by_id.remove(id);
            }
        }
    }
}

/// Applies a deletion of `tenant`'s data in `[start_ms, end_ms]`.
pub(crate) fn apply_delete_range(
    index: &mut BlockIndex,
    tombstones: &mut Tombstones,
    deletions: &mut Deletions,
    tenant: String,
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> Response {
    let id = deletion_id(&tenant, start_ms, end_ms);
    let mut deletion = deletions.by_id.remove(&id).unwrap_or_else(|| Deletion {
        id: id.clone(),
        tenant: tenant.clone(),
        start_ms,
        end_ms,
        requested_ms: now_ms,
        done_ms: None,
        datasets_removed: 0,
        blocks_tombstoned: 0,
        pending: BTreeSet::new(),
    });
    deletion.requested_ms = now_ms;
    deletion.done_ms = None;
    let touched: Vec<Ulid> = index.iter().filter(|(_, b)| deletion.touches(b)).map(|(id, _)| *id).collect();
    for block_id in touched {
        let Some(mut b) = index.remove(&block_id) else { continue };
        let header_tenant = b.header.tenant.clone();
        let before = b.datasets.len();
        let covered = |d: &Dataset, b_tenant: &str| {
            !is_tenant_index(d)
                && (if d.tenant.is_empty() { b_tenant } else { d.tenant.as_str() }) == tenant
                && deletion.covers(d)
        };
        b.datasets.retain(|d| !covered(d, &header_tenant));
        let removed = before - b.datasets.len();
        if removed > 0 {
            deletion.datasets_removed += removed as u64;
            // The tenant index would still list the removed series.
            b.datasets.retain(|d| {
                !(is_tenant_index(d) && (if d.tenant.is_empty() { &header_tenant } else { &d.tenant }) == &tenant)
            });
        }
        if b.datasets.iter().all(is_tenant_index) {
            let key = object_key(block_id, &b);
            tombstones.insert(
                key.clone(),
                Tombstone { key, block_id: b.header.id.clone(), tenant: header_tenant, deleted_at_ms: now_ms },
            );
            deletion.blocks_tombstoned += 1;
            continue;
        }
        if deletion.touches(&b) {
            deletion.pending.insert(block_id.to_string());
        }
        index.insert(block_id, b);
    }
    deletions.by_id.insert(id.clone(), deletion);
    deletions.settle(index, now_ms);
    match deletions.by_id.get(&id) {
        Some(d) => Response::Deleted(d.to_proto()),
        None => Response::Empty,
    }
}

/// The block metadata with only `tenant`'s datasets, for a job's sources.
pub(crate) fn tenant_meta(block: &IndexedBlock, tenant: &str) -> BlockMeta {
    let mut meta = block.to_meta();
    meta.datasets.retain(|d| block.dataset_tenant(d) == tenant);
    meta
}
