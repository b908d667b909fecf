//! AddBlock: validation (before proposing and again at apply) and the
//! deterministic apply, with idempotence by block id and shadowing of
//! profile rows already held by earlier blocks.

use bytes::Bytes;
use phlox_proto::metastore::v1::{AddBlockRequest, BlockMeta};
use ulid::Ulid;

use std::collections::HashSet;

use super::dedup::{DedupIndex, KEY_LEN, split_keys};
use super::index::{BlockIndex, IndexedBlock};
use super::tombstones::{Tombstones, object_key};
use super::{InvalidRequest, Response};

/// Checks a request and returns the block and its id.
pub(crate) fn validate_add_block(request: &AddBlockRequest) -> Result<(&BlockMeta, Ulid), InvalidRequest> {
    let block = request.block.as_ref().ok_or(InvalidRequest::MissingBlock)?;
    let id = Ulid::from_string(&block.id).map_err(|_| InvalidRequest::InvalidBlockId { id: block.id.clone() })?;
    if block.min_time > block.max_time {
        return Err(InvalidRequest::InvalidTimeRange {
            what: "block".into(),
            min: block.min_time,
            max: block.max_time,
        });
    }
    for (index, ds) in block.datasets.iter().enumerate() {
        if ds.min_time > ds.max_time {
            return Err(InvalidRequest::InvalidTimeRange {
                what: format!("dataset {index}"),
                min: ds.min_time,
                max: ds.max_time,
            });
        }
        if ds.tenant.is_empty() && block.tenant.is_empty() {
            return Err(InvalidRequest::DatasetWithoutTenant { index });
        }
    }
    let keys = &request.dataset_keys;
    if !keys.is_empty() && keys.len() != block.datasets.len() {
        return Err(InvalidRequest::DatasetKeyCount { datasets: block.datasets.len(), keys: keys.len() });
    }
    if let Some((index, k)) = keys.iter().enumerate().find(|(_, k)| k.len() % KEY_LEN != 0) {
        return Err(InvalidRequest::DatasetKeyLength { index, len: k.len() });
    }
    Ok((block, id))
}

/// Indexes the block unless its id is indexed or tombstoned already.
///
/// Only level-0 segments take part in dedup: a compacted block holds rows
/// that were deduplicated when their segments were added, so any keys it
/// carries are ignored (checking them would shadow every row it has). A
/// `decided` entry carries the shadowed keys the leader chose; an entry of
/// an earlier version is decided here with the `legacy` index of its state
/// (none: nothing is shadowed).
pub(crate) fn apply_add_block(
    index: &mut BlockIndex,
    legacy: Option<&mut DedupIndex>,
    tombstones: &Tombstones,
    request: AddBlockRequest,
    decided: bool,
) -> Response {
    let id = match validate_add_block(&request) {
        Ok((_, id)) => id,
        Err(e) => return Response::Rejected(e),
    };
    let AddBlockRequest { block, dataset_keys } = request;
    let Some(block) = block else {
        return Response::Rejected(InvalidRequest::MissingBlock);
    };
    if let Some((i, ds)) = block.datasets.iter().enumerate().find(|(_, d)| d.shadowed_keys.len() % KEY_LEN != 0) {
        return Response::Rejected(InvalidRequest::DatasetKeyLength { index: i, len: ds.shadowed_keys.len() });
    }
    let mut block = IndexedBlock::new(block);
    if index.contains(&id) || tombstones.contains_key(&object_key(id, &block)) {
        return Response::AddBlock { added: false, shadowed_profiles: 0 };
    }
    let mut shadowed_profiles = 0;
    // A compacted block's metadata is kept as written.
    if block.header.compaction_level == 0 && decided {
        for (ds, keys) in block.datasets.iter().zip(&dataset_keys) {
            let shadowed: HashSet<&[u8]> = ds.shadowed_keys.chunks_exact(KEY_LEN).collect();
            if !shadowed.is_empty() {
                shadowed_profiles += split_keys(keys).filter(|k| shadowed.contains(&k.0[..])).count() as u64;
            }
        }
    } else if block.header.compaction_level == 0 {
        let mut shadowed = Vec::new();
        if let Some(legacy) = legacy
            && !dataset_keys.is_empty()
        {
            (shadowed, shadowed_profiles) = legacy.observe(&dataset_keys, block.header.max_time);
        }
        for (i, ds) in block.datasets.iter_mut().enumerate() {
            let keys = shadowed.get(i).map(Vec::as_slice).unwrap_or_default();
            ds.shadowed_keys = Bytes::from(keys.iter().flat_map(|k| k.0).collect::<Vec<u8>>());
        }
    }
    index.insert(id, block);
    Response::AddBlock { added: true, shadowed_profiles }
}
