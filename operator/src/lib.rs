//! The Phlox operator: reconciles `PyroscopeCluster` resources into the
//! objects that run every data-plane component.
//!
//! ```text
//! PyroscopeCluster ──watch──▶ Controller ──▶ reconcile
//!   (and every owned child)                   │ render::desired(spec): pure, testable
//!                                             │   ServiceAccount, ConfigMap (phlox.yaml),
//!                                             │   Services, StatefulSets (metastore, segment-writer),
//!                                             │   Deployments, PodDisruptionBudgets
//!                                             │ apply: server-side apply, skipped when the
//!                                             │   child's desired-hash annotation matches
//!                                             └ status: per-component replicas, Ready /
//!                                                 Progressing / Degraded conditions
//! ```
//!
//! Leader election (a Lease) lets several replicas run; `/metrics` and
//! `/healthz` are served on the metrics port.

pub mod admin_token;
mod apply;
pub mod autoscale;
mod controller;
mod error;
mod http;
mod leader;
mod metrics;
pub mod mixin;
mod names;
mod render;
pub mod rollout;
mod status;
pub mod volumes;
pub mod voters;

pub use apply::{Outcome, apply, desired_hash};
pub use controller::{Context, backoff, error_policy, reconcile, run};
pub use error::{Error, Result};
pub use http::router;
pub use leader::{LeaseConfig, can_take, lead, release, try_acquire};
pub use metrics::Metrics;
pub use names::{
    ADMIN_PORT, ADMIN_TOKEN_DIR, ADMIN_TOKEN_KEY, AUTH_DIR, AUTH_FILE, BUCKET_DIR, CONFIG_DIR, CONFIG_FILE,
    CONFIG_HASH_ANNOTATION, Component, DATA_DIR, DESIRED_HASH_ANNOTATION, FIELD_MANAGER, GRPC_PORT, GRPC_TLS_DIR,
    HTTP_PORT, MAX_CLUSTER_NAME, Names, STATUS_FIELD_MANAGER, STORAGE_CA_DIR, STORAGE_CA_FILE,
    STORAGE_SECRET_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION, check_cluster_name,
};
pub use render::{Children, component_options, desired, desired_with, phlox_config, preset};
pub use status::{Observed, compute, with_autoscaling};
