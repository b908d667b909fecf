//! Rollups: one tenant's rows of a time bucket (an hour or a day), summed
//! into one row per series and step (an hour, or the whole day). Long-range
//! stack queries read a rollup instead of the rows it sums (see
//! ARCHITECTURE.md, "Rollups").
//!
//! ```text
//! for input in inputs (the raw blocks holding the bucket's rows):
//!   for dataset of `tenant` in input (tenant indexes skipped):
//!     symbols GET, profiles GET ──▶ each row with start ≤ time < end
//!         ──▶ SegmentBuilder::accumulate_row (symbols translated as for compaction)
//! finish ──▶ one row per (series, step): Σ values by stack, Σ totals, dated at the step's start
//!            BlockMeta.rollup_start/end = the bucket; Dataset.rollup_covers = the raw blocks summed
//! ```
//!
//! Exact: an output row's values are the sums of the values of the rows it
//! covers, stack by stack (wrapping, as every sum of the read path), and its
//! total the sum of their totals. Memory: one source dataset's sections and
//! one summed row per series, not the rows.

use std::collections::{BTreeMap, BTreeSet};

use crate::builder::RollupMeta;
use crate::{BlockError, BlockHeader, BlockReader, EncodedBlock, Result, SegmentBuilder, is_tenant_index};

const NANOS_PER_MS: i64 = 1_000_000;

/// Width of an hour rollup's bucket (UTC-aligned), in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// Width of a day rollup's bucket (UTC-aligned), in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Start of the bucket of width `width_ms` holding `time_ms`.
pub fn bucket_start(time_ms: i64, width_ms: i64) -> i64 {
    time_ms.div_euclid(width_ms) * width_ms
}

/// Whether `meta` is a rollup block (an aggregate, not raw rows).
pub fn is_rollup(meta: &phlox_proto::metastore::v1::BlockMeta) -> bool {
    meta.rollup_end > 0
}

/// Sums tenant `tenant`'s rows of `inputs` whose time lies in
/// `[start_ms, end_ms)` per series and `step_ms` (UTC-aligned; an input
/// rollup's step must divide it) into a rollup block (id, level and `created_by` from
/// `header`). An input that is itself a rollup contributes its rows (they lie
/// in the bucket) and its covers; a raw input covers itself. `covers`, when
/// given, is the block's cover list as the metastore planned it (a day also
/// covers the blocks of its hours without rows); else the inputs' covers.
/// Rows the metastore marked shadowed or deleted are skipped, as on every
/// read. [`BlockError::Empty`] when no row falls in the bucket.
pub async fn rollup(
    inputs: &[BlockReader],
    tenant: &str,
    header: BlockHeader,
    (start_ms, end_ms): (i64, i64),
    step_ms: i64,
    covers: Option<&[String]>,
) -> Result<EncodedBlock> {
    if end_ms <= start_ms || step_ms <= 0 {
        return Err(BlockError::Corrupt { path: String::new(), reason: "empty rollup bucket".into() });
    }
    let (start, end) = (start_ms.saturating_mul(NANOS_PER_MS), end_ms.saturating_mul(NANOS_PER_MS));
    let mut builder = SegmentBuilder::default();
    let mut dataset_covers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut block_covers = BTreeSet::new();
    for input in inputs {
        let meta = input.meta();
        let summed = is_rollup(meta);
        if summed {
            block_covers.extend(meta.rollup_covers.iter().cloned());
        } else {
            block_covers.insert(meta.id.clone());
        }
        for (i, ds) in meta.datasets.iter().enumerate() {
            if is_tenant_index(ds) || (if ds.tenant.is_empty() { &meta.tenant } else { &ds.tenant }) != tenant {
                continue;
            }
            if ds.max_time < start_ms || ds.min_time >= end_ms {
                continue;
            }
            // A dataset overlapping the bucket is covered even where it has
            // no row in it: skipping none of its rows changes nothing.
            let c = dataset_covers.entry(ds.name.clone()).or_default();
            if summed {
                c.extend(ds.rollup_covers.iter().cloned());
            } else {
                c.insert(meta.id.clone());
            }
            let reader = input.dataset(i).await?;
            let symbols = reader.symbols().await?;
            let mut import = builder.import_dataset(tenant, &ds.name, &symbols, reader.series());
            reader
                .for_each_row(|row| {
                    if row.time_nanos < start || row.time_nanos >= end {
                        return Ok(());
                    }
                    let step = bucket_start(row.time_nanos.div_euclid(NANOS_PER_MS), step_ms);
                    builder.accumulate_row(&mut import, row, step * NANOS_PER_MS)
                })
                .await?;
        }
    }
    if builder.is_empty() {
        return Err(BlockError::Empty);
    }
    if let Some(planned) = covers.filter(|c| !c.is_empty()) {
        block_covers = planned.iter().cloned().collect();
    }
    let rollup = RollupMeta { start_ms, end_ms, covers: dataset_covers, block_covers, step_ms };
    builder.encode(BlockHeader { tenant: tenant.to_owned(), ..header }, Some(&rollup))
}
