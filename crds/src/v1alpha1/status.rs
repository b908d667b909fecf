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
    /// Autoscaling works: every autoscaled component has its load metric
    /// (False with `MetricsMissing` or `DrainTimeout` otherwise).
    pub const SCALING_ACTIVE: &str = "ScalingActive";
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
    /// Per autoscaled component: the last decision and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["component"]))]
    pub autoscaling: Vec<AutoscalingStatus>,
    /// `current/desired` replicas per autoscaled component, for `kubectl get pyc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSummary>,
    /// The image every component runs: set when a rollout has finished
    /// (every workload runs its desired template on every replica, ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Voters of the metastore's Raft membership, as the operator last
    /// changed or confirmed it (a change of `spec.metastore.voters` is done
    /// when this equals it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metastore_voters: Option<i32>,
    /// A rollout in progress, in order: which components keep their running
    /// template and what they wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

/// `current/desired` replicas of the autoscaled components.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_writer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_backend: Option<String>,
}

/// The autoscaler's last decision for one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// `segment-writer` or `query-backend`.
    pub component: String,
    /// The workload's replicas when the decision was made.
    pub current_replicas: i32,
    /// The replicas the autoscaler wants.
    pub desired_replicas: i32,
    /// The load signal, e.g. `ingest MB/s per pod`.
    pub metric: String,
    /// Its value per reporting pod (absent when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The target per pod.
    pub target: f64,
    /// Pods whose metric was read.
    pub reporting_pods: i32,
    /// `ScaleUp`, `ScaleDown`, `WithinTolerance`, `StabilizingDown`,
    /// `MetricsMissing`, `Draining`, `DrainTimeout`, ...
    pub reason: String,
    pub message: String,
    /// When the replicas last changed, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// The segment writer being drained before it is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_pod: Option<String>,
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
