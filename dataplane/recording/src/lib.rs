//! Recording rules: metrics computed from profiles (Pyroscope's
//! `settings.v1.RecordingRulesService`).
//!
//! - [`rule`]: validation as Pyroscope does it (a Prometheus metric name
//!   starting with `profiles_recorded_`, exactly one `__profile_type__`
//!   equality matcher, valid `group_by` and external label names, at most
//!   `max_recording_rules` per tenant);
//! - [`store`]: the rules of each tenant in the bucket, plus the provisioned
//!   rules of the configuration (read-only);
//! - `eval`: evaluation of the rules over the rows a level-0 compaction
//!   imports, so each profile is observed exactly once;
//! - `remote_write`: export to Prometheus;
//! - [`settings`]: the per-tenant key/value settings of `settings.v1.SettingsService`.

pub mod eval;
pub mod remote_write;
pub mod rule;
pub mod settings;
pub mod store;
mod versioned;

pub use eval::{CompiledRule, Evaluator, RULE_ID_LABEL, SHARD_LABEL};
pub use rule::{DEFAULT_MAX_RULES, METRIC_PREFIX, RuleError, ValidRule, validate};
pub use settings::{SettingsError, SettingsStoreClient};
pub use store::{Provisioned, RuleStore, StoreError};
