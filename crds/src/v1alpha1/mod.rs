//! `phlox.dev/v1alpha1`.

mod spec;
mod status;

pub use spec::{
    AutoscalingSpec, CaBundle, ComponentSpec, DEFAULT_IMAGE, LimitsSpec, MetastoreSpec, PodOptions, PrometheusSource,
    PullPolicy, PyroscopeCluster, PyroscopeClusterSpec, RecordingRuleSpec, RecordingRulesSpec, RetentionSpec,
    ScalableComponentSpec, Size, StorageBackend, StorageSpec, VolumeSpec,
};
pub use status::{AutoscalingStatus, ComponentStatus, PyroscopeClusterStatus, ScalingSummary, condition};
