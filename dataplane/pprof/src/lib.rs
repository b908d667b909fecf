//! pprof for Phlox: a bounded, allocation-lean decoder ([`Profile::decode`]),
//! bounded gzip ([`maybe_gunzip`]), semantic validation, and the split of one
//! pprof into per-series profiles ([`split`]).
//!
//! ```text
//! bytes ──maybe_gunzip(limit)──▶ plain ──Profile::decode──▶ Profile ──validate──▶ split(labels)
//!                                                                       │
//!                      one SeriesProfile per (sample-label set × sample type) ◀─┘
//! ```

mod build;
mod compress;
mod encode;
mod error;
mod profile;
mod split;
mod wire;

pub use build::StackProfileBuilder;
pub use compress::{gunzip_capped, is_gzip, maybe_gunzip};
pub use error::DecodeError;
pub use profile::{Function, Label, Line, Location, Mapping, Profile, StringTable, ValueType};
pub use split::{SeriesProfile, SpanKeys, parse_span_id, parse_trace_id, split};

#[cfg(feature = "testkit")]
pub mod testkit;
