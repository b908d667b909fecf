//! Domain types shared by every Phlox crate: tenants, labels and series
//! fingerprints, profile types, profile ids and dedup keys.
//!
//! No I/O and no async: everything here is plain data with its invariants.

mod ids;
mod labels;
mod profile_type;
mod selector;
mod tenant;
mod tree;

pub use ids::{ProfileId, ProfileKey};
pub use labels::{LabelPair, Labels, label_names};
pub use profile_type::{ProfileType, ProfileTypeError};
pub use selector::{MAX_MATCHERS, MatchOp, Matcher, Selector, SelectorError, parse_selector};
pub use tenant::{DEFAULT_TENANT, TenantError, TenantId};
pub use tree::{DiffLevels, FlameGraphLevels, OTHER, StackTree, diff_flamegraph, dot_graph};
