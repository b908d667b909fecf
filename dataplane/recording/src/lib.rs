//! Recording rules: metrics computed from profiles (Pyroscope's
//! `settings.v1.RecordingRulesService`).
//!
//! This crate holds the rule model and its validation, as Pyroscope
//! validates rules: a Prometheus metric name starting with
//! `profiles_recorded_`, label selectors with exactly one
//! `__profile_type__` equality matcher, valid `group_by` and external label
//! names, at most `max_rules` per tenant. Storage, evaluation during
//! compaction and remote-write export build on it.

mod rule;

pub use rule::{DEFAULT_MAX_RULES, METRIC_PREFIX, RuleError, ValidRule, validate};
