//! The block index: blocks by id, and per (tenant, hour) the blocks holding
//! data of that tenant in that hour.

use std::collections::{BTreeMap, BTreeSet};

use phlox_proto::metastore::v1::{BlockMeta, Dataset};
use prost::Message as _;
use ulid::Ulid;

/// Width of a time partition: one hour in ms.
pub const PARTITION_MS: i64 = 3_600_000;

/// A block whose time range for one tenant covers more partitions than this
/// is kept in a per-tenant list checked by every query instead of being
/// listed in each partition (a segment with a far-off client timestamp must
/// not cost one entry per hour of its range).
pub(crate) const MAX_PARTITIONS_PER_ENTRY: i64 = 7 * 24;

/// Field number of `BlockMeta.datasets` (metastore.proto).
const DATASETS_FIELD: u32 = 10;

/// A block as indexed: the metadata without its datasets, and the datasets
/// apart, so that a query clones only the datasets it returns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexedBlock {
    pub(crate) header: BlockMeta,
    pub(crate) datasets: Vec<Dataset>,
}

impl IndexedBlock {
    pub(crate) fn new(mut block: BlockMeta) -> Self {
        let datasets = std::mem::take(&mut block.datasets);
        Self { header: block, datasets }
    }

    /// The full metadata, as added (with shadowed keys filled in).
    pub(crate) fn to_meta(&self) -> BlockMeta {
        BlockMeta { datasets: self.datasets.clone(), ..self.header.clone() }
    }

    /// Protobuf encoding of [`Self::to_meta`], without cloning the datasets:
    /// a repeated field may be appended after the other fields.
    pub(crate) fn encode_meta(&self) -> Vec<u8> {
        let mut buf = self.header.encode_to_vec();
        for ds in &self.datasets {
            prost::encoding::message::encode(DATASETS_FIELD, ds, &mut buf);
        }
        buf
    }

    /// Tenant of a dataset: its own, or the block's for compacted blocks.
    pub(crate) fn dataset_tenant<'a>(&'a self, ds: &'a Dataset) -> &'a str {
        if ds.tenant.is_empty() { &self.header.tenant } else { &ds.tenant }
    }

    /// Per tenant, the union of its datasets' time ranges.
    fn tenant_ranges(&self) -> BTreeMap<&str, (i64, i64)> {
        let mut ranges: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for ds in &self.datasets {
            let r = ranges.entry(self.dataset_tenant(ds)).or_insert((ds.min_time, ds.max_time));
            r.0 = r.0.min(ds.min_time);
            r.1 = r.1.max(ds.max_time);
        }
        ranges
    }
}

/// Partition number of a time (floor division, so negative times work too).
pub(crate) fn partition_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(PARTITION_MS)
}

/// Blocks by id plus the (tenant, partition) lists.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct BlockIndex {
    blocks: BTreeMap<Ulid, IndexedBlock>,
    partitions: BTreeMap<(String, i64), BTreeSet<Ulid>>,
    wide: BTreeMap<String, BTreeSet<Ulid>>,
}

impl BlockIndex {
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn contains(&self, id: &Ulid) -> bool {
        self.blocks.contains_key(id)
    }

    pub(crate) fn get(&self, id: &Ulid) -> Option<&IndexedBlock> {
        self.blocks.get(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Ulid, &IndexedBlock)> {
        self.blocks.iter()
    }

    /// Indexes a block under every tenant of its datasets; replaces any
    /// block with the same id.
    pub(crate) fn insert(&mut self, id: Ulid, block: IndexedBlock) {
        self.remove(&id);
        for (tenant, (min, max)) in block.tenant_ranges() {
            let (first, last) = (partition_of(min), partition_of(max));
            if last.saturating_sub(first) >= MAX_PARTITIONS_PER_ENTRY {
                self.wide.entry(tenant.to_owned()).or_default().insert(id);
            } else {
                for p in first..=last {
                    self.partitions.entry((tenant.to_owned(), p)).or_default().insert(id);
                }
            }
        }
        self.blocks.insert(id, block);
    }

    /// Removes a block and its partition entries.
    pub(crate) fn remove(&mut self, id: &Ulid) -> Option<IndexedBlock> {
        let block = self.blocks.remove(id)?;
        for (tenant, (min, max)) in block.tenant_ranges() {
            let (first, last) = (partition_of(min), partition_of(max));
            if last.saturating_sub(first) >= MAX_PARTITIONS_PER_ENTRY {
                remove_from(&mut self.wide, tenant.to_owned(), id);
            } else {
                for p in first..=last {
                    remove_from(&mut self.partitions, (tenant.to_owned(), p), id);
                }
            }
        }
        Some(block)
    }

    /// Ids of blocks that may hold data of `tenant` in `[start, end]`.
    pub(crate) fn candidates(&self, tenant: &str, start: i64, end: i64, out: &mut BTreeSet<Ulid>) {
        let from = (tenant.to_owned(), partition_of(start));
        let to = (tenant.to_owned(), partition_of(end));
        for ids in self.partitions.range(from..=to).map(|(_, ids)| ids) {
            out.extend(ids.iter().copied());
        }
        if let Some(ids) = self.wide.get(tenant) {
            out.extend(ids.iter().copied());
        }
    }
}

fn remove_from<K: Ord>(map: &mut BTreeMap<K, BTreeSet<Ulid>>, key: K, id: &Ulid) {
    if let Some(ids) = map.get_mut(&key) {
        ids.remove(id);
        if ids.is_empty() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(tenant: &str, min: i64, max: i64) -> Dataset {
        Dataset { tenant: tenant.into(), min_time: min, max_time: max, ..Default::default() }
    }

    fn candidates(index: &BlockIndex, tenant: &str, start: i64, end: i64) -> Vec<Ulid> {
        let mut out = BTreeSet::new();
        index.candidates(tenant, start, end, &mut out);
        out.into_iter().collect()
    }

    #[test]
    fn encoded_meta_decodes_to_the_full_block() {
        let meta = BlockMeta {
            id: "x".into(),
            datasets: vec![dataset("a", 1, 2), dataset("b", 3, 4)],
            max_time: 9,
            ..Default::default()
        };
        let block = IndexedBlock::new(meta.clone());
        assert_eq!(BlockMeta::decode(block.encode_meta().as_slice()).unwrap(), meta);
        assert_eq!(block.to_meta(), meta);
    }

    #[test]
    fn block_is_listed_in_every_partition_it_overlaps_per_tenant() {
        let id = Ulid::from_parts(1, 1);
        let block = IndexedBlock::new(BlockMeta {
            datasets: vec![dataset("a", 0, PARTITION_MS * 2), dataset("b", PARTITION_MS * 5, PARTITION_MS * 5)],
            ..Default::default()
        });
        let mut index = BlockIndex::default();
        index.insert(id, block);
        assert_eq!(index.partitions.len(), 4);
        assert_eq!(candidates(&index, "a", PARTITION_MS, PARTITION_MS), vec![id]);
        assert!(candidates(&index, "a", PARTITION_MS * 3, PARTITION_MS * 9).is_empty());
        assert_eq!(candidates(&index, "b", PARTITION_MS * 3, PARTITION_MS * 9), vec![id]);
        assert!(candidates(&index, "c", 0, PARTITION_MS * 9).is_empty());
        index.remove(&id);
        assert!(index.partitions.is_empty());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn wide_blocks_are_found_by_any_query_of_their_tenant() {
        let id = Ulid::from_parts(1, 1);
        let block =
            IndexedBlock::new(BlockMeta { datasets: vec![dataset("a", i64::MIN, i64::MAX)], ..Default::default() });
        let mut index = BlockIndex::default();
        index.insert(id, block);
        assert!(index.partitions.is_empty());
        assert_eq!(candidates(&index, "a", 5, 6), vec![id]);
        index.remove(&id);
        assert!(index.wide.is_empty());
    }
}
