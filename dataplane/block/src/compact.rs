//! The merge step of compaction: many objects (segments or compacted
//! blocks, each possibly holding many tenants) → one block of one tenant.
//!
//! ```text
//! for source in sources (in order):
//!   for dataset of `tenant` in source (tenant indexes skipped):
//!     series GET, symbols GET, profiles GET (decoded one batch at a time)
//!     every row not shadowed by the metastore ──▶ SegmentBuilder::import_row
//!         (symbols translated through a memo per source dataset; a key already
//!          imported from an earlier source is skipped)
//! SegmentBuilder::finish ──▶ one dataset per service_name (+ tenant index when 2+)
//! ```
//!
//! Memory: one source dataset's section bytes, symbols and memo, plus the
//! builder (the output's rows and symbols). The output is a function of the
//! sources (and their order) and the header only: symbol ids are assigned
//! in import order, series and rows are sorted by `finish`, datasets
//! ordered by name, so compacting the same sources twice gives the same
//! bytes.

use phlox_proto::metastore::v1::BlockMeta;

use crate::{
    BlockError, BlockHeader, BlockReader, EncodedBlock, Result, RowRef, SegmentBuilder, SeriesInfo, Symbols,
    is_tenant_index,
};

/// Sees what a compaction imports: each source dataset, then each of its
/// rows that made it into the output (rows shadowed by the metastore,
/// already imported from an earlier source or excluded are not shown). So
/// an observer of level-0 compactions sees every profile exactly once (the
/// recording rules' evaluation).
pub trait RowObserver: Send {
    /// A source dataset begins: its object's metadata, symbols and series.
    fn dataset(&mut self, source: &BlockMeta, symbols: &Symbols, series: &[SeriesInfo]);
    /// A row of the current dataset was imported.
    fn row(&mut self, row: &RowRef<'_>);
}

/// Observes nothing.
struct NoObserver;

impl RowObserver for NoObserver {
    fn dataset(&mut self, _: &BlockMeta, _: &Symbols, _: &[SeriesInfo]) {}
    fn row(&mut self, _: &RowRef<'_>) {}
}

/// Merges tenant `tenant`'s datasets of `sources` into one block (id, shard,
/// level and `created_by` from `header`; its tenant is set to `tenant`).
/// Rows whose dedup key the metastore shadowed are skipped, and a row whose
/// (tenant, series fingerprint, profile id) key appears in several sources
/// is kept once (from the first source that has it). Datasets of other
/// tenants and tenant-index datasets are ignored. Errors if nothing remains
/// ([`BlockError::Empty`]) or a source is corrupt.
///
/// Encoding (in [`SegmentBuilder::finish`]) is CPU-bound and runs on
/// scoped threads inside this future: callers on an async runtime should
/// run it where blocking is acceptable (e.g. a dedicated compaction task).
pub async fn compact(sources: &[BlockReader], tenant: &str, header: BlockHeader) -> Result<EncodedBlock> {
    compact_excluding(sources, tenant, header, &[]).await
}

/// [`compact`], also dropping every row whose time falls in one of
/// `exclude` (Unix milliseconds, both ends inclusive: a deletion's ranges).
/// [`BlockError::Empty`] when nothing remains.
pub async fn compact_excluding(
    sources: &[BlockReader],
    tenant: &str,
    header: BlockHeader,
    exclude: &[(i64, i64)],
) -> Result<EncodedBlock> {
    compact_observed(sources, tenant, header, exclude, &mut NoObserver).await
}

/// [`compact_excluding`], showing `observer` every imported row.
pub async fn compact_observed(
    sources: &[BlockReader],
    tenant: &str,
    header: BlockHeader,
    exclude: &[(i64, i64)],
    observer: &mut dyn RowObserver,
) -> Result<EncodedBlock> {
    const NANOS_PER_MS: i64 = 1_000_000;
    let exclude: Vec<(i64, i64)> = exclude
        .iter()
        .map(|&(s, e)| {
            (s.saturating_mul(NANOS_PER_MS), e.saturating_mul(NANOS_PER_MS).saturating_add(NANOS_PER_MS - 1))
        })
        .collect();
    let excluded = |t: i64| exclude.iter().any(|&(s, e)| s <= t && t <= e);
    let mut builder = SegmentBuilder::default();
    for source in sources {
        for (i, ds) in source.meta().datasets.iter().enumerate() {
            if ds.tenant != tenant || is_tenant_index(ds) {
                continue;
            }
            let with_path = |e: BlockError| match e {
                BlockError::Corrupt { path, reason } if path.is_empty() => {
                    BlockError::Corrupt { path: source.path().to_string(), reason }
                }
                BlockError::Arrow(a) => BlockError::Corrupt { path: source.path().to_string(), reason: a.to_string() },
                other => other,
            };
            let reader = source.dataset(i).await.map_err(with_path)?;
            let symbols = reader.symbols().await.map_err(with_path)?;
            observer.dataset(source.meta(), &symbols, reader.series());
            let mut import = builder.import_dataset(tenant, &ds.name, &symbols, reader.series());
            reader
                .for_each_row(|row| {
                    if excluded(row.time_nanos) {
                        return Ok(());
                    }
                    if builder.import_row(&mut import, row)? {
                        observer.row(row);
                    }
                    Ok(())
                })
                .await
                .map_err(with_path)?;
        }
    }
    if builder.is_empty() {
        return Err(BlockError::Empty);
    }
    builder.finish(BlockHeader { tenant: tenant.to_owned(), ..header })
}
