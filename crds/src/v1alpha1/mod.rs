//! `phlox.dev/v1alpha1`.

mod spec;
mod status;

pub use spec::{
    AuthSpec, AutoscalingSpec, CaBundle, ComponentSpec, DEFAULT_IMAGE, GrpcTlsSpec, IngressSpec, IssuerRef, LimitsSpec,
    MetastoreSpec, MonitoringSpec, NetworkPolicySpec, PodMonitorSpec, PrometheusRuleSpec, SelfProfilingSpec, PodOptions, PrometheusSource, PullPolicy, PyroscopeCluster, PyroscopeClusterSpec,
    RecordingRuleSpec, RecordingRulesSpec, RetentionSpec, ScalableComponentSpec, SecretKeySelector, Size,
    StorageBackend, StorageSpec, VolumeSpec,
};
pub use status::{AutoscalingStatus, ComponentStatus, PyroscopeClusterStatus, ScalingSummary, condition};
