//! `PyroscopeCluster.status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types.
pub mod condition {
    /// Every component has all its desired replicas ready.
    pub const READY: &str = "Ready";
    /// A component is rolling out or scaling (desired ≠ ready or an old
    /// revision still runs).
    pub const PROGRESSING: &str = "Progressing";
    /// The operator cannot apply the desired state, or a component has
    /// fewer ready replicas than it needs to serve.
    pub const DEGRADED: &str = "Degraded";
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PyroscopeClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Per component: its workload and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub components: Vec<ComponentStatus>,
    /// `ready/total` components, for `kubectl get pyc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components_ready: Option<String>,
}

/// One component's workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `distributor`, `segment-writer`, `metastore`, `query-frontend`,
    /// `query-backend` or `compaction-worker`.
    pub name: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Name of the workload.
    pub workload: String,
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    /// Replicas running the current pod template.
    pub updated_replicas: i32,
}
