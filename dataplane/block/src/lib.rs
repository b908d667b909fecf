//! The Phlox object format: one object holds many (tenant, service)
//! datasets, each in seven compressed Arrow IPC sections, followed by a
//! protobuf footer (`metastore.v1.BlockMeta`) and a 16-byte trailer. The full
//! byte-level description is in ARCHITECTURE.md ("Block format").
//!
//! ```text
//! SeriesProfile ──▶ SegmentBuilder::add ──▶ finish ──▶ EncodedBlock { bytes, meta, keys }
//!                                                            │ put to paths::segment_path
//! BlockReader::open (tail GET) ──▶ dataset(i) (series GET) ──▶ profiles / symbols (ranged GETs)
//!
//! compact(sources, tenant) ──▶ per source dataset of the tenant: symbols + for_each_row
//!                              ──▶ SegmentBuilder::import_row ──▶ finish ──▶ one block of the tenant
//! rollup(inputs, tenant, bucket) ──▶ SegmentBuilder::accumulate_row ──▶ one summed row per series
//! ```

mod builder;
mod compact;
mod error;
mod format;
mod intern;
pub mod paths;
mod reader;
pub mod rollup;
mod sections;

pub use builder::{BlockHeader, DEFAULT_MAX_STACK_DEPTH, DatasetImport, EncodedBlock, SegmentBuilder, is_tenant_index};
pub use compact::{RowObserver, compact, compact_excluding, compact_observed};
pub use error::{BlockError, Result};
pub use format::{FORMAT_VERSION, MAGIC, TAIL_FETCH, TRAILER_LEN};
pub use reader::{
    BlockReader, DatasetReader, Frame, FunctionRow, MappingRow, ProfileRow, RowRef, SampleFilter, SeriesInfo, Symbols,
};
