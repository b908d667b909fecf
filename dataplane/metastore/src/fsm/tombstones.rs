//! Tombstones: objects removed from the index whose deletion from the bucket
//! is still pending (compaction sources, retention).

use std::collections::BTreeMap;

use phlox_block::paths::object_path;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::index::{BlockIndex, IndexedBlock};
use super::{InvalidRequest, Response};

/// An object to delete from the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Object key in the bucket.
    pub key: String,
    /// Id of the block the object held.
    pub block_id: String,
    /// Tenant of the block (empty for level-0 segments).
    pub tenant: String,
    /// Unix ms at which the block left the index (proposer's clock).
    pub deleted_at_ms: i64,
}

/// Tombstones by object key.
pub(crate) type Tombstones = BTreeMap<String, Tombstone>;

/// Object key of an indexed block.
pub(crate) fn object_key(id: Ulid, block: &IndexedBlock) -> String {
    let h = &block.header;
    object_path(&h.tenant, h.shard, h.compaction_level, id).to_string()
}

/// Tombstones the object of a block that left the index.
pub(crate) fn tombstone_block(tombstones: &mut Tombstones, id: Ulid, block: &IndexedBlock, now_ms: i64) {
    let key = object_key(id, block);
    tombstones.insert(
        key.clone(),
        Tombstone {
            key,
            block_id: block.header.id.clone(),
            tenant: block.header.tenant.clone(),
            deleted_at_ms: now_ms,
        },
    );
}

pub(crate) fn parse_ids(ids: &[String]) -> Result<Vec<Ulid>, InvalidRequest> {
    ids.iter().map(|id| Ulid::from_string(id).map_err(|_| InvalidRequest::InvalidBlockId { id: id.clone() })).collect()
}

/// Removes blocks from the index and tombstones their objects; ids that are
/// not indexed are skipped.
pub(crate) fn apply_delete_blocks(
    index: &mut BlockIndex,
    tombstones: &mut Tombstones,
    ids: &[String],
    now_ms: i64,
) -> Response {
    let ids = match parse_ids(ids) {
        Ok(ids) => ids,
        Err(e) => return Response::Rejected(e),
    };
    let mut deleted = 0;
    for id in ids {
        let Some(block) = index.remove(&id) else {
            continue;
        };
        tombstone_block(tombstones, id, &block, now_ms);
        deleted += 1;
    }
    Response::BlocksDeleted { deleted }
}

/// Forgets tombstones by object key.
pub(crate) fn apply_remove_tombstones(tombstones: &mut Tombstones, keys: &[String]) -> Response {
    let removed = keys.iter().filter(|k| tombstones.remove(k.as_str()).is_some()).count();
    Response::TombstonesRemoved { removed: removed as u64 }
}
