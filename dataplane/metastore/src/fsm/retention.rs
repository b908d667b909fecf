//! Retention: datasets whose newest profile is older than their tenant's
//! retention leave the index; blocks left without data are tombstoned.
//! A tenant that lost datasets in a block also loses that block's tenant
//! index (it would still list the removed series).

use std::collections::{BTreeMap, BTreeSet};

use phlox_block::is_tenant_index;
use ulid::Ulid;

use super::Response;
use super::index::BlockIndex;
use super::tombstones::{Tombstone, Tombstones, object_key};

/// Applies retention at `now_ms`: `default_ms` for every tenant but those
/// in `overrides` (milliseconds; 0 or less keeps everything).
pub(crate) fn apply_retention(
    index: &mut BlockIndex,
    tombstones: &mut Tombstones,
    now_ms: i64,
    default_ms: i64,
    overrides: &BTreeMap<String, i64>,
) -> Response {
    let cutoff = |tenant: &str| {
        let r = overrides.get(tenant).copied().unwrap_or(default_ms);
        (r > 0).then(|| now_ms.saturating_sub(r))
    };
    let expired: Vec<Ulid> = index
        .iter()
        .filter(|(_, b)| {
            b.datasets
                .iter()
                .any(|d| !is_tenant_index(d) && cutoff(b.dataset_tenant(d)).is_some_and(|c| d.max_time < c))
        })
        .map(|(id, _)| *id)
        .collect();
    let (mut datasets, mut blocks) = (0u64, 0u64);
    for id in expired {
        let Some(mut b) = index.remove(&id) else { continue };
        let header_tenant = b.header.tenant.clone();
        let tenant_of = |d: &phlox_proto::metastore::v1::Dataset| {
            if d.tenant.is_empty() { header_tenant.clone() } else { d.tenant.clone() }
        };
        let mut touched = BTreeSet::new();
        b.datasets.retain(|d| {
            if is_tenant_index(d) {
                return true;
            }
            let t = tenant_of(d);
            let keep = cutoff(&t).is_none_or(|c| d.max_time >= c);
            if !keep {
                datasets += 1;
                touched.insert(t);
            }
            keep
        });
        b.datasets.retain(|d| !(is_tenant_index(d) && touched.contains(&tenant_of(d))));
        if b.datasets.iter().all(is_tenant_index) {
            let key = object_key(id, &b);
            tombstones.insert(
                key.clone(),
                Tombstone { key, block_id: b.header.id.clone(), tenant: header_tenant, deleted_at_ms: now_ms },
            );
            blocks += 1;
        } else {
            index.insert(id, b);
        }
    }
    Response::RetentionApplied { datasets, blocks }
}
