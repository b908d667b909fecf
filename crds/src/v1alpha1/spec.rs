//! `PyroscopeCluster.spec`.
// The KubeSchema derive trips `unreachable_pub` on re-exported types.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::PyroscopeClusterStatus;

/// The image the operator runs when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "ghcr.io/phlox-dev/phlox:0.1.0";

/// A Phlox cluster: every data-plane component of one installation, run
/// and kept running by the operator.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "phlox.dev",
    version = "v1alpha1",
    kind = "PyroscopeCluster",
    plural = "pyroscopeclusters",
    shortname = "pyc",
    category = "phlox",
    namespaced,
    status = "PyroscopeClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Components","type":"string","description":"Components with every replica ready / components","jsonPath":".status.componentsReady"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Writers","type":"string","description":"Segment writers: current/desired replicas","jsonPath":".status.scaling.segmentWriter"}"#,
    printcolumn = r#"{"name":"Backends","type":"string","description":"Query backends: current/desired replicas","jsonPath":".status.scaling.queryBackend"}"#,
    printcolumn = r#"{"name":"Version","type":"string","priority":1,"description":"The image every component runs","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 37 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("the name must be at most 37 characters of lowercase letters, digits and '-', starting with a letter (its StatefulSets are named <name>-segment-writer, and a StatefulSet name may have at most 52)")
)]
#[serde(rename_all = "camelCase")]
pub struct PyroscopeClusterSpec {
    /// The `phlox` image every component runs.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Pull policy of that image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Default CPU and memory of every component: `small` (a team, up to
    /// ~10 MB/s of profiles), `medium` (~50 MB/s), `large` (~200 MB/s), or
    /// `none` (no defaults). A component's `pod.resources` overrides the
    /// preset key by key (e.g. only `limits.memory`).
    #[serde(default)]
    pub size: Size,
    /// Secrets (in this namespace) used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// The object store that holds every profile.
    pub storage: StorageSpec,
    /// Annotations of the pods' ServiceAccount, e.g.
    /// `eks.amazonaws.com/role-arn` (IRSA) or
    /// `iam.gke.io/gcp-service-account` (Workload Identity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: BTreeMap<String, String>,
    /// Receives profiles (Push, /ingest, OTLP), applies limits, places them on segment writers.
    #[serde(default)]
    pub distributor: ComponentSpec,
    /// Buffers profiles per shard for a segment window and writes one object per shard.
    #[serde(default)]
    pub segment_writer: ScalableComponentSpec,
    /// The Raft group that indexes blocks (a StatefulSet with a volume per voter).
    #[serde(default)]
    pub metastore: MetastoreSpec,
    /// The public query API (Grafana, the UI, /pyroscope/render).
    #[serde(default)]
    pub query_frontend: ComponentSpec,
    /// Executes read leaves over objects; stateless.
    #[serde(default)]
    pub query_backend: ScalableComponentSpec,
    /// Merges small blocks into larger ones and applies retention.
    #[serde(default)]
    pub compaction_worker: ComponentSpec,
    /// Limits of every tenant (unset keys keep the data plane's defaults).
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Per-tenant limits on top of `limits`, keyed by tenant id. Applied
    /// without restarting pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, LimitsSpec>,
    /// How long profiles are kept.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// When on, the `X-Scope-OrgID` header names the tenant of every
    /// request; otherwise everything belongs to `anonymous`.
    #[serde(default)]
    pub multitenancy_enabled: bool,
    /// Recording rules kept in Git: metrics from profiles, exported by
    /// Prometheus remote-write. Listed as `provisioned` by the API, which
    /// cannot change them; applied without restarting pods.
    #[serde(default, skip_serializing_if = "RecordingRulesSpec::is_empty")]
    pub recording_rules: RecordingRulesSpec,
    /// Where query backends find debug files of native profiles besides
    /// those uploaded through the debuginfo API.
    #[serde(default, skip_serializing_if = "SymbolizerSpec::is_empty")]
    pub symbolizer: SymbolizerSpec,
    /// Client authentication of the public port (pushes, queries, the UI).
    /// Off when unset: put an authenticating gateway in front, as with
    /// Pyroscope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Mutual TLS between the cluster's components (the internal gRPC
    /// port). Off when unset: plain text, fenced by the NetworkPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_tls: Option<GrpcTlsSpec>,
    /// The NetworkPolicy the operator renders for the cluster's pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Prometheus Operator objects for the cluster: a PodMonitor per
    /// component and a PrometheusRule with Phlox's alerts (rendered only
    /// where the Prometheus Operator's CRDs are installed).
    #[serde(default, skip_serializing_if = "MonitoringSpec::is_off")]
    pub monitoring: MonitoringSpec,
    /// An Ingress in front of the cluster: pushes to the distributors,
    /// everything else (UI, queries) to the query frontends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Every component pushes its own CPU and heap profiles to the
    /// cluster's distributors (`service_name="phlox"`), so its flame graphs
    /// are in its own UI.
    #[serde(default, skip_serializing_if = "SelfProfilingSpec::is_off")]
    pub self_profiling: SelfProfilingSpec,
    /// While true the operator changes no child (no apply, no scaling, no
    /// deletion); it keeps reporting the status. For maintenance by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// What the operator renders for the Prometheus Operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A PodMonitor per component, scraping `/metrics` on the `http` port
    /// (the public port: with `networkPolicy.publicNamespaces`, list
    /// Prometheus's namespace there too).
    #[serde(default)]
    pub pod_monitor: PodMonitorSpec,
    /// A PrometheusRule with Phlox's alerting rules, scoped to this
    /// cluster's namespace.
    #[serde(default)]
    pub prometheus_rule: PrometheusRuleSpec,
}

impl MonitoringSpec {
    fn is_off(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval (e.g. `30s`); empty: Prometheus's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"))]
    pub interval: Option<String>,
    /// Extra labels, e.g. the one your Prometheus selects PodMonitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Extra labels, e.g. the one your Prometheus selects rules by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The Ingress: `host` (every host when empty) routes the write paths
/// (Push API, `/ingest`, OTLP over HTTP) to the distributors and the rest
/// to the query frontends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The IngressClass; empty: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// A Secret with `tls.crt` and `tls.key` for `host`: HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Annotations for the ingress controller.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Self-profiling of every component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfProfilingSpec {
    #[serde(default)]
    pub enabled: bool,
    /// The tenant the profiles go to (`X-Scope-OrgID`); empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
}

impl SelfProfilingSpec {
    fn is_off(&self) -> bool {
        self == &Self::default()
    }
}

/// Who may reach the cluster's pods: the internal gRPC port only from the
/// cluster's own pods, the admin port only from the operator, the public
/// port from anywhere or from `publicNamespaces`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Render the NetworkPolicy (it needs a CNI that enforces them).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Namespaces (by name) whose pods may reach the public port (pushes,
    /// queries); empty: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_namespaces: Vec<String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true, public_namespaces: Vec::new() }
    }
}

fn enabled() -> bool {
    true
}

/// Where the components' certificate comes from: a Secret of yours, or a
/// cert-manager issuer (set one). Either way the Secret has `tls.crt`,
/// `tls.key` and `ca.crt`, and the certificate names
/// `<cluster>-grpc.<namespace>.svc`, the name every component checks its
/// peers against (they are dialed by pod IP). Renewals apply without
/// restarting pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcTlsSpec {
    /// A Secret in this namespace with `tls.crt`, `tls.key` and `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A cert-manager issuer: the operator creates the Certificate
    /// `<cluster>-grpc-tls` (and cert-manager its Secret of that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager `Issuer` or `ClusterIssuer`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` (this namespace) or `ClusterIssuer`.
    #[serde(default = "issuer_kind")]
    pub kind: String,
    #[serde(default = "issuer_group")]
    pub group: String,
}

fn issuer_kind() -> String {
    "Issuer".into()
}

fn issuer_group() -> String {
    "cert-manager.io".into()
}

/// Credentials of the public port, mapped to tenants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// A Secret in this namespace whose key holds the credentials as a YAML
    /// list, each a bearer token or basic-auth `user:password` and the
    /// tenants it may write and read (`["*"]`: any), e.g.
    /// `- {bearer_token: t0k3n, tenants: [team-a]}` or
    /// `- {basic_auth: "grafana:pw", tenants: [team-a, team-b]}`. With
    /// multi-tenancy, `X-Scope-OrgID` is checked against them (without it, a
    /// request is for the credential's first tenant). Changes apply without
    /// restarting pods.
    pub credentials_secret: SecretKeySelector,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default = "credentials_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn credentials_key() -> String {
    "credentials.yaml".into()
}

/// Recording rules and where their metrics go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingRulesSpec {
    /// Prometheus remote-write endpoint, e.g.
    /// `http://prometheus.monitoring:9090/api/v1/write` (empty: rules are
    /// managed, nothing is exported).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_write_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RecordingRuleSpec>,
}

impl RecordingRulesSpec {
    fn is_empty(&self) -> bool {
        self.remote_write_url.is_empty() && self.rules.is_empty()
    }
}

/// Symbolization of native frames at query time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymbolizerSpec {
    /// A debuginfod server for build ids nobody uploaded, e.g.
    /// `https://debuginfod.debian.net` (fetched files are kept in the bucket).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub debuginfod_url: String,
    /// How long a build id without a debug file is not looked up again (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub retry_missing: Option<String>,
}

impl SymbolizerSpec {
    fn is_empty(&self) -> bool {
        self.debuginfod_url.is_empty() && self.retry_missing.is_none()
    }
}

/// One recording rule (the fields of Pyroscope's `RecordingRule`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingRuleSpec {
    /// Tenant the rule belongs to (`anonymous` without multi-tenancy).
    #[serde(default = "anonymous")]
    #[schemars(length(min = 1))]
    pub tenant: String,
    /// Stable id, unique per tenant; it becomes the `profiles_rule_id` label.
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// Name of the recorded metric; must start with `profiles_recorded_`.
    #[schemars(regex(pattern = r"^profiles_recorded_[a-zA-Z0-9_:]*$"))]
    pub metric_name: String,
    /// Label selectors; together exactly one `__profile_type__` equality
    /// matcher, e.g. `{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="api"}`.
    #[schemars(length(min = 1))]
    pub matchers: Vec<String>,
    /// Series labels kept on the metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Labels added to the metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// Record only the samples whose stack contains this function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
}

fn anonymous() -> String {
    "anonymous".to_owned()
}

impl Default for PyroscopeClusterSpec {
    fn default() -> Self {
        Self {
            image: default_image(),
            image_pull_policy: PullPolicy::default(),
            size: Size::default(),
            image_pull_secrets: Vec::new(),
            storage: StorageSpec::default(),
            service_account_annotations: BTreeMap::new(),
            distributor: ComponentSpec::default(),
            segment_writer: ScalableComponentSpec::default(),
            metastore: MetastoreSpec::default(),
            query_frontend: ComponentSpec::default(),
            query_backend: ScalableComponentSpec::default(),
            compaction_worker: ComponentSpec::default(),
            limits: LimitsSpec::default(),
            overrides: BTreeMap::new(),
            retention: RetentionSpec::default(),
            multitenancy_enabled: false,
            recording_rules: RecordingRulesSpec::default(),
            symbolizer: SymbolizerSpec::default(),
            auth: None,
            grpc_tls: None,
            network_policy: NetworkPolicySpec::default(),
            monitoring: MonitoringSpec::default(),
            ingress: None,
            self_profiling: SelfProfilingSpec::default(),
            paused: false,
        }
    }
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// Kubernetes image pull policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Resource presets (see `spec.size`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    #[default]
    Small,
    Medium,
    Large,
    /// No preset: only what each component's `pod.resources` sets.
    None,
}

/// Object storage backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    S3,
    Gcs,
    Azure,
    /// A directory on a ReadWriteMany volume shared by every pod.
    Filesystem,
}

/// Where blocks are stored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.backend == 'filesystem' || size(self.bucket) > 0").message("storage.bucket is required for s3, gcs and azure"))]
#[x_kube(validation = Rule::new("self.backend != 'azure' || size(self.azureAccount) > 0").message("storage.azureAccount is required for azure"))]
#[x_kube(validation = Rule::new("self.backend != 'filesystem' || size(self.filesystemClaimName) > 0").message("storage.filesystemClaimName (a ReadWriteMany claim shared by every pod) is required for filesystem"))]
pub struct StorageSpec {
    pub backend: StorageBackend,
    /// Bucket (S3, GCS) or container (Azure).
    #[serde(default)]
    pub bucket: String,
    /// Key prefix inside the bucket, to share a bucket between clusters.
    #[serde(default)]
    pub prefix: String,
    /// S3-compatible endpoint, e.g. `http://minio.minio:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    #[serde(default)]
    pub insecure: bool,
    /// Azure storage account.
    #[serde(default)]
    pub azure_account: String,
    /// A Secret whose keys become environment variables of every pod:
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (S3),
    /// `GOOGLE_SERVICE_ACCOUNT_KEY` (GCS, the key's JSON),
    /// `AZURE_STORAGE_ACCESS_KEY` (Azure). Unset: the pod's identity
    /// (IRSA, Workload Identity) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// For `filesystem`: the ReadWriteMany PersistentVolumeClaim mounted by
    /// every component.
    #[serde(default)]
    pub filesystem_claim_name: String,
    /// Root certificates to trust for an HTTPS endpoint signed by a private
    /// CA (in addition to the system's): a ConfigMap key holding PEM
    /// certificates, e.g. from trust-manager. A change rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
}

/// A ConfigMap key holding PEM certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// The ConfigMap (in the cluster's namespace).
    #[schemars(length(min = 1))]
    pub config_map: String,
    /// Its key.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

/// Options every pod of a component shares.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra flags appended to the `phlox` command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Extra environment variables (e.g. `PHLOX_LOG_LEVEL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
    /// Annotations added to the pods (not to the workload).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// A stateless component.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Pods of the component.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    #[serde(flatten)]
    pub pod: PodOptions,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self { replicas: 1, pod: PodOptions::default() }
    }
}

fn one() -> i32 {
    1
}

/// A component the operator can scale from its load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalableComponentSpec {
    /// Pods of the component while autoscaling is off; the starting point when it is on.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    #[serde(flatten)]
    pub pod: PodOptions,
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
}

impl Default for ScalableComponentSpec {
    fn default() -> Self {
        Self { replicas: 1, pod: PodOptions::default(), autoscaling: AutoscalingSpec::default() }
    }
}

/// Scaling from load, as the HorizontalPodAutoscaler computes it: desired =
/// ceil(current × load per replica / target), with a 10% tolerance. The
/// operator writes replicas to the workload, never to this resource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "autoscaling_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[serde(default = "autoscaling_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Load per replica to aim for. Segment writers: ingested MB/s per
    /// replica (default 8). Query backends: read leaves in flight per
    /// replica (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub target_value: Option<f64>,
    /// A scale-up happens only if every recommendation of this window asks for it.
    #[serde(default = "autoscaling_scale_up_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_window_seconds: i32,
    /// A scale-down goes to the highest recommendation of this window.
    #[serde(default = "autoscaling_scale_down_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_window_seconds: i32,
    /// Most pods added in one step.
    #[serde(default = "autoscaling_max_scale_up_step")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_scale_up_step: i32,
    /// Most pods removed in one step (segment writers drain one by one anyway).
    #[serde(default = "autoscaling_max_scale_down_step")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_scale_down_step: i32,
    /// Read the pool's load from this Prometheus instead of scraping the
    /// pods' `/metrics` (which remains the fallback when it fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
}

/// A Prometheus HTTP API to read the load from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// PromQL giving the pool's total load in the target's unit (one
    /// sample). Default: the component's own signal, summed over the
    /// cluster's pods (`namespace` and `pod` labels as the Prometheus
    /// Kubernetes service discovery sets them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// The algorithm's defaults ([`phlox_autoscaler::Settings`]'s: defined once).
impl Default for AutoscalingSpec {
    fn default() -> Self {
        let d = phlox_autoscaler::Settings::default();
        Self {
            enabled: d.enabled,
            min_replicas: d.min_replicas,
            max_replicas: d.max_replicas,
            target_value: d.target_value,
            scale_up_stabilization_window_seconds: d.scale_up_stabilization_window_seconds,
            scale_down_stabilization_window_seconds: d.scale_down_stabilization_window_seconds,
            max_scale_up_step: d.max_scale_up_step,
            max_scale_down_step: d.max_scale_down_step,
            prometheus: None,
        }
    }
}

fn autoscaling_min_replicas() -> i32 {
    phlox_autoscaler::Settings::default().min_replicas
}

fn autoscaling_max_replicas() -> i32 {
    phlox_autoscaler::Settings::default().max_replicas
}

fn autoscaling_scale_up_window() -> i32 {
    phlox_autoscaler::Settings::default().scale_up_stabilization_window_seconds
}

fn autoscaling_scale_down_window() -> i32 {
    phlox_autoscaler::Settings::default().scale_down_stabilization_window_seconds
}

fn autoscaling_max_scale_up_step() -> i32 {
    phlox_autoscaler::Settings::default().max_scale_up_step
}

fn autoscaling_max_scale_down_step() -> i32 {
    phlox_autoscaler::Settings::default().max_scale_down_step
}

/// The metastore: a Raft group of `voters` pods with a volume each.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.voters % 2 == 1").message("metastore.voters must be odd (1, 3 or 5) so that a majority exists"))]
pub struct MetastoreSpec {
    /// Raft voters: 1 (no fault tolerance), 3 (survives one loss) or 5.
    /// A change on a running cluster is orchestrated: new voters join as
    /// learners, catch up, then vote; removed voters leave the membership
    /// before their pods stop (`status.metastoreVoters` follows it).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 5))]
    pub voters: i32,
    /// The volume of each voter (Raft log and state).
    #[serde(default)]
    pub storage: VolumeSpec,
    #[serde(flatten)]
    pub pod: PodOptions,
}

impl Default for MetastoreSpec {
    fn default() -> Self {
        Self { voters: 1, storage: VolumeSpec::default(), pod: PodOptions::default() }
    }
}

/// A PersistentVolumeClaim template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size, e.g. `10Gi`.
    #[serde(default = "ten_gi")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub size: String,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete the claims when the PyroscopeCluster is deleted (the
    /// StatefulSet's PVC retention policy); otherwise they are kept.
    #[serde(default)]
    pub delete_with_cluster: bool,
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self { size: ten_gi(), storage_class_name: None, delete_with_cluster: false }
    }
}

fn ten_gi() -> String {
    "10Gi".to_owned()
}

/// Tenant limits; each unset key keeps the data plane's default (see
/// `config/phlox.yaml`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Ingest rate per tenant in MB/s of uncompressed profiles (0 = unlimited; default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub ingestion_rate_mb: Option<f64>,
    /// Burst above the rate in MB (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub ingestion_burst_size_mb: Option<f64>,
    /// Largest profile accepted, in bytes (default 4 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_profile_size_bytes: Option<i64>,
    /// Most samples per profile (default 16000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_profile_stacktrace_samples: Option<i64>,
    /// Most labels per sample (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_profile_stacktrace_sample_labels: Option<i64>,
    /// Deepest stack kept; deeper stacks are truncated (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_profile_stacktrace_depth: Option<i64>,
    /// Most labels per series (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_label_names_per_series: Option<i64>,
    /// Longest label name (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_label_name_length: Option<i64>,
    /// Longest label value (default 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_label_value_length: Option<i64>,
    /// Longer strings of a profile (function names, file names) keep their
    /// last this many bytes (default 65535; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_profile_symbol_value_length: Option<i64>,
    /// `__session_id__` values kept per series, folded (default 0: the label is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_sessions_per_series: Option<i64>,
    /// Memory the decoded profiles of one request may take, bytes (default 268435456).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_request_memory: Option<i64>,
    /// Profiles older than this are refused (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub reject_older_than: Option<String>,
    /// Profiles further in the future than this are refused (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub reject_newer_than: Option<String>,
    /// Data older than this is deleted (`0s` keeps everything). In
    /// `limits`, overrides `retention.period`; per tenant in `overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub retention_period: Option<String>,
    /// Recording rules a tenant may create through the API (default 25; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_recording_rules: Option<i64>,
    /// Longest time range of one query (default 30d; `0s`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub max_query_length: Option<String>,
    /// How far back queries reach (default 30d; `0s`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub max_query_lookback: Option<String>,
    /// Largest debug file a tenant may upload, bytes (default 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_debuginfo_file_bytes: Option<i64>,
    /// Debug files a tenant keeps (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_debuginfo_files: Option<i64>,
}

/// How long profiles are kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Data older than this is deleted by the metastore leader (per tenant
    /// through `overrides`); `0s` keeps everything.
    #[serde(default = "thirty_one_days")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w))+$"))]
    pub period: String,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self { period: thirty_one_days() }
    }
}

fn thirty_one_days() -> String {
    "31d".to_owned()
}
