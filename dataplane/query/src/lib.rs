//! The read path: a query frontend that plans and a query backend that
//! executes, joined by the transport-agnostic [`QueryBackend`] trait.
//!
//! ```text
//! RPC ─▶ QueryFrontend: validate, parse selector ─▶ Metastore::query_blocks(tenants, range, service/type matchers)
//!          │ one read leaf per block (its matching datasets only), ~16 merge nodes
//!          ▼
//!        QueryBackend::execute(leaf) / execute_merge(node)  ×N, concurrently  ── LocalBackend: ranged GETs of the needed sections,
//!          │                                                 series selection, stack values in dense arrays,
//!          ▼                                                 stack → node of the service's interned call tree
//!        merge LeafResults ─▶ flame graph / tree / series / labels
//! ```
//!
//! In one process the frontend calls [`LocalBackend`]; between processes it
//! calls [`RemoteBackend`], which sends each node over gRPC to a
//! [`QueryBackendServer`] wrapping the backend process's [`LocalBackend`].

pub mod adhoc;
mod backend;
mod call_tree;
pub mod debuginfo;
mod error;
pub mod flamebearer;
mod frontend;
mod metrics;
mod plan;
mod remote;
mod rollups;
mod stacks;
mod symbol_cache;
mod task;

pub use backend::{LocalBackend, QueryBackend, leaf_runtime};
pub use call_tree::CallTree;
pub use error::QueryError;
pub use frontend::{QueryFrontend, QueryLimits, RangeLimits, flamegraph};
pub use metrics::QueryMetrics;
pub use plan::{
    ExemplarKind, LeafKind, LeafQuery, LeafResult, MAX_MERGE_CHILDREN, PointExemplar, PointValue, ProfilePoint,
    SeriesPoints,
};
pub use remote::{
    QUERY_BACKEND_MAX_MESSAGE_SIZE, QueryBackendServer, RemoteBackend, RemoteBackendOptions, query_from_proto,
    query_to_proto, result_from_proto, result_to_proto,
};
pub use stacks::{MergedStacks, PgoOptions, call_site_mask};
pub use symbol_cache::{DEFAULT_SYMBOL_CACHE_BYTES, SymbolCache};
