//! `phlox.dev/v1alpha1`.

mod spec;
mod status;

pub use spec::{
    AuthSpec, AutoscalingSpec, CaBundle, ComponentSpec, DEFAULT_IMAGE, GrpcTlsSpec, IngressSpec, IssuerRef, LimitsSpec,
    MetastoreSpec, MonitoringSpec, NetworkPolicySpec, PodMonitorSpec, PodOptions, PrometheusRuleSpec, PrometheusSource,
    PullPolicy, PyroscopeCluster, PyroscopeClusterSpec, RecordingRuleSpec, RecordingRulesSpec, RetentionSpec,
    ScalableComponentSpec, SecretKeySelector, SelfProfilingSpec, Size, StorageBackend, StorageSpec, VolumeSpec,
};
pub use status::{AutoscalingStatus, ComponentStatus, PyroscopeClusterStatus, ScalingSummary, condition};
