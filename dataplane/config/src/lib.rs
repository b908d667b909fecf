//! The Phlox configuration document: one strict, versioned YAML file
//! (`--config`), overridden by `PHLOX_*` environment variables and flags
//! (handled by the binary). Unknown keys are errors; every field has a
//! documented default, so an empty file is a valid configuration.
//!
//! See `config/phlox.yaml` for the reference document.

mod duration;

pub use duration::format as format_duration;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use phlox_storage::StorageConfig;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("unsupported config version {0} (this build reads version 1)")]
    Version(u32),
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhloxConfig {
    /// Document version; `1`.
    pub version: u32,
    /// Components to run, comma-separated (`all` = every component).
    pub target: String,
    /// Local state (metastore log) and the default filesystem bucket.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub distributor: DistributorConfig,
    pub segment_writer: SegmentWriterConfig,
    pub metastore: MetastoreConfig,
    pub query_frontend: QueryFrontendConfig,
    pub compaction: CompactionConfig,
    pub limits: LimitsConfig,
    /// Per-tenant limits: tenant → any keys of `limits`, applied on top of
    /// `limits`. Re-read from the config file without a restart.
    pub overrides: BTreeMap<String, serde_yaml::Mapping>,
    /// When on, `X-Scope-OrgID` names the tenant; otherwise every request is `anonymous`.
    pub multitenancy_enabled: bool,
    /// Metrics from profiles: where they go and the rules kept in this file.
    pub recording_rules: RecordingRulesConfig,
    /// The process's own CPU and heap profiles, pushed to a distributor.
    pub self_profiling: SelfProfilingConfig,
    /// Native frames: where query backends find debug files besides uploads.
    pub symbolizer: SymbolizerConfig,
}

/// Symbolization of native frames at query time (debug files uploaded
/// through `debuginfo.v1alpha1.DebuginfoService`, then a debuginfod server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SymbolizerConfig {
    /// A debuginfod server asked for build ids nobody uploaded (e.g.
    /// `https://debuginfod.debian.net`); fetched files are kept in the
    /// bucket. Empty: uploads only.
    pub debuginfod_url: String,
    /// How long a build id without a debug file is not looked up again
    /// (and answers naming its frames by address are kept).
    #[serde(with = "duration")]
    pub retry_missing: Duration,
}

impl Default for SymbolizerConfig {
    fn default() -> Self {
        Self { debuginfod_url: String::new(), retry_missing: Duration::from_secs(30) }
    }
}

/// Self-profiling: every `interval` the process pushes the CPU profile of
/// that interval and its heap profile (allocations of the interval, live
/// memory at its end) to a Phlox distributor, as `process_cpu` and `memory`
/// of `service_name`, labelled with the target and the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfProfilingConfig {
    pub enabled: bool,
    /// The length of each CPU profile, and the time between two pushes
    /// (1s to 60s). `/debug/pprof/profile` answers 409 while one is taken.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The Push API's base URL (`http://phlox-distributor:4040`); empty:
    /// this process's own HTTP port, which then must run a distributor.
    pub push_url: String,
    /// `X-Scope-OrgID` of the pushes; empty: none (the `anonymous` tenant
    /// without multi-tenancy).
    pub tenant: String,
    /// The `service_name` label of the profiles.
    pub service_name: String,
    /// A file holding the bearer token of the pushes, when the public port
    /// requires a credential; re-read at each push.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for SelfProfilingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(15),
            push_url: String::new(),
            tenant: String::new(),
            service_name: "phlox".into(),
            bearer_token_file: None,
        }
    }
}

/// Recording rules: evaluated as level-0 segments are compacted, exported by
/// Prometheus remote-write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingRulesConfig {
    /// Remote-write endpoint (e.g. `http://prometheus:9090/api/v1/write`);
    /// empty: rules are managed but no metric is exported.
    pub remote_write_url: String,
    /// Extra headers of every remote-write request (e.g. `Authorization`).
    pub remote_write_headers: BTreeMap<String, String>,
    /// Provisioned rules per tenant: listed with `provisioned: true`,
    /// read-only through the API.
    pub rules: BTreeMap<String, Vec<ProvisionedRule>>,
}

/// A recording rule kept in the configuration (or a PyroscopeCluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionedRule {
    /// Stable id (unique per tenant).
    pub id: String,
    /// `profiles_recorded_...`.
    pub metric_name: String,
    /// Label selectors; exactly one `__profile_type__` equality matcher in all.
    pub matchers: Vec<String>,
    pub group_by: Vec<String>,
    pub external_labels: BTreeMap<String, String>,
    /// Only samples whose stack contains this function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
}

/// The query frontend of a distributed deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryFrontendConfig {
    /// Query backends (`host:port` of their gRPC port; a DNS name may
    /// resolve to many, as a headless Service does). Empty: read leaves run
    /// in this process.
    pub backends: Vec<String>,
    /// Stack queries read rollups (hour and day sums made by compaction)
    /// for the whole buckets of their range; false reads raw rows only
    /// (same answers, slower over long ranges).
    pub rollups: bool,
}

impl Default for QueryFrontendConfig {
    fn default() -> Self {
        Self { backends: Vec::new(), rollups: true }
    }
}

/// Compaction: when blocks of a level (0, 1, 2) are merged one level up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Blocks of a tenant at each level that start a job.
    pub min_blocks: Vec<u32>,
    /// Age (seconds) of a level's oldest block that starts a job anyway.
    pub max_age_seconds: Vec<u64>,
    /// How often an idle worker asks for a job.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long a compacted-away object stays in the bucket (queries that
    /// listed it finish) before it is deleted.
    #[serde(with = "duration")]
    pub tombstone_grace: Duration,
    /// How long a worker holds a job; a job whose worker died is redone
    /// after this.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How often the metastore leader applies `limits.retention_period`.
    #[serde(with = "duration")]
    pub retention_interval: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            min_blocks: vec![20, 10, 10],
            max_age_seconds: vec![60, 600, 3600],
            poll_interval: Duration::from_secs(2),
            tombstone_grace: Duration::from_secs(60),
            retention_interval: Duration::from_secs(60),
            lease: Duration::from_secs(300),
        }
    }
}

impl Default for PhloxConfig {
    fn default() -> Self {
        Self {
            version: 1,
            target: "all".into(),
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            distributor: DistributorConfig::default(),
            segment_writer: SegmentWriterConfig::default(),
            metastore: MetastoreConfig::default(),
            query_frontend: QueryFrontendConfig::default(),
            compaction: CompactionConfig::default(),
            limits: LimitsConfig::default(),
            overrides: BTreeMap::new(),
            multitenancy_enabled: false,
            recording_rules: RecordingRulesConfig::default(),
            self_profiling: SelfProfilingConfig::default(),
            symbolizer: SymbolizerConfig::default(),
        }
    }
}

/// Optional authentication of the public port (off when no credential is
/// configured).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted `Authorization: Bearer <token>` tokens, for any tenant.
    pub bearer_tokens: Vec<String>,
    /// Accepted basic-auth credentials as `user:password`, for any tenant.
    pub basic_auth: Vec<String>,
    /// Credentials limited to tenants.
    pub tenants: Vec<TenantCredential>,
    /// A YAML file with more [`TenantCredential`]s (a mounted Secret),
    /// re-read while running.
    pub credentials_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Whether any credential is configured (then every route but `/ready`
    /// and `/metrics` requires one).
    pub fn enabled(&self) -> bool {
        !self.bearer_tokens.is_empty()
            || !self.basic_auth.is_empty()
            || !self.tenants.is_empty()
            || self.credentials_file.is_some()
    }
}

/// A credential that may only write and read `tenants`: `X-Scope-OrgID` is
/// checked against it (a request without one is for the first tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantCredential {
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Basic auth, `user:password`.
    pub basic_auth: Option<String>,
    /// The tenants it may write and read (`*`: any).
    pub tenants: Vec<String>,
}

impl TenantCredential {
    /// The credentials of a `credentials_file`.
    pub fn parse_list(yaml: &str) -> Result<Vec<TenantCredential>, ConfigError> {
        let list: Vec<TenantCredential> =
            serde_yaml::from_str(yaml).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for c in &list {
            c.validate()?;
        }
        Ok(list)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("server.auth credential: {m}")));
        match (&self.bearer_token, &self.basic_auth) {
            (None, None) | (Some(_), Some(_)) => return bad("set exactly one of bearer_token and basic_auth"),
            (Some(t), None) if t.is_empty() => return bad("bearer_token is empty"),
            (None, Some(b)) if !b.contains(':') => return bad("basic_auth must be user:password"),
            _ => {}
        }
        if self.tenants.is_empty() {
            return bad("tenants is empty (use [\"*\"] for any tenant)");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public HTTP port: APIs, UI, `/ready`, `/metrics`.
    pub http_listen_address: String,
    /// Internal gRPC port: metastore, Raft, component traffic.
    pub grpc_listen_address: String,
    /// Largest request body accepted on the HTTP port (MiB).
    pub max_request_body_mb: usize,
    /// How long a graceful shutdown may take before the process exits.
    #[serde(with = "duration")]
    pub graceful_shutdown_timeout: Duration,
    /// How long the public port keeps serving after SIGTERM before it
    /// stops taking requests (Pyroscope's `-shutdown-delay`): `/ready`
    /// answers 503 and every HTTP/1.1 response closes its connection, so
    /// load balancers and keep-alive clients move to other replicas first.
    #[serde(with = "duration")]
    pub shutdown_delay: Duration,
    /// Authentication of every public route but `/ready` and `/metrics`.
    pub auth: AuthConfig,
    /// The admin listener: deletes, a writer's drain, the metastore's
    /// membership (never on the public port).
    pub admin_listen_address: String,
    /// The bearer token the admin listener requires; empty:
    /// `<data_dir>/admin-token`, created with a random token if missing.
    pub admin_token_file: Option<PathBuf>,
    /// Mutual TLS on the internal gRPC port, served and dialed (off: plain
    /// text).
    pub grpc_tls: Option<GrpcTlsConfig>,
}

/// The PEM files of the internal port's mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// This process's certificate, presented when serving and dialing.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA that signed every component's certificate.
    pub ca_file: PathBuf,
    /// The name peers' certificates are checked against (default: the host
    /// dialed); components are dialed by IP, so a cluster uses one name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// How often the files are re-read (a renewed certificate applies to
    /// new connections).
    #[serde(default = "tls_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

fn tls_reload_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: "0.0.0.0:4040".into(),
            grpc_listen_address: "0.0.0.0:9095".into(),
            max_request_body_mb: 256,
            graceful_shutdown_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            auth: AuthConfig::default(),
            admin_listen_address: "127.0.0.1:4041".into(),
            admin_token_file: None,
            grpc_tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributorConfig {
    /// Fewest shards a (tenant, service) dataset spreads over.
    pub shards_per_dataset: u32,
    /// Most shards a dataset spreads over as its ingest rate grows.
    pub max_shards_per_dataset: u32,
    /// Ingest rate (MB/s of uncompressed profiles) per shard of a dataset;
    /// 0 keeps every dataset at `shards_per_dataset`.
    pub shard_unit_mb_per_second: f64,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self { shards_per_dataset: 2, max_shards_per_dataset: 32, shard_unit_mb_per_second: 0.5 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentWriterConfig {
    /// Shards of this writer.
    pub shards: u32,
    /// The segment window.
    #[serde(with = "duration")]
    pub segment_duration: Duration,
    /// Attempts of an upload or registration before the push fails.
    pub max_attempts: u32,
    /// Pushes get 429 once a shard buffers this much (MiB).
    pub max_buffered_mb_per_shard: usize,
    /// How long a writer remembers durable profile keys to skip retries.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
}

impl Default for SegmentWriterConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            segment_duration: Duration::from_millis(500),
            max_attempts: 5,
            max_buffered_mb_per_shard: 64,
            dedup_window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetastoreConfig {
    /// Raft node id, stable across restarts.
    pub node_id: u64,
    /// Address peers use to reach this node (`host:port` of the gRPC port);
    /// default: the gRPC listen address with `0.0.0.0` replaced by `127.0.0.1`.
    pub advertise_address: Option<String>,
    /// Voters as `id=host:port` (this node included); empty = single voter.
    pub peers: Vec<String>,
    /// Initialize the cluster when its log is empty.
    pub bootstrap: bool,
    /// Metastore address for components of other processes (`host:port`);
    /// unused when the metastore runs in this process.
    pub address: Option<String>,
    /// How often the leader looks for dead-lettered blocks.
    #[serde(with = "duration")]
    pub dlq_recovery_interval: Duration,
}

impl Default for MetastoreConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_address: None,
            peers: Vec::new(),
            bootstrap: true,
            address: None,
            dlq_recovery_interval: Duration::from_secs(15),
        }
    }
}

impl MetastoreConfig {
    /// Parses `peers` (`id=host:port`).
    pub fn parsed_peers(&self) -> Result<Vec<(u64, String)>, ConfigError> {
        self.peers
            .iter()
            .map(|p| {
                let (id, addr) = p
                    .split_once('=')
                    .ok_or_else(|| ConfigError::Invalid(format!("metastore peer {p:?} is not id=host:port")))?;
                let id = id
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::Invalid(format!("metastore peer id {id:?} is not a number")))?;
                Ok((id, addr.trim().to_owned()))
            })
            .collect()
    }
}

/// Per-tenant limits (defaults as Pyroscope's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sustained ingest rate per tenant (uncompressed profile + label bytes), MB/s; 0 = unlimited.
    pub ingestion_rate_mb: f64,
    /// Burst on top of the rate, MB.
    pub ingestion_burst_size_mb: f64,
    pub max_profile_size_bytes: usize,
    pub max_profile_stacktrace_samples: usize,
    pub max_profile_stacktrace_sample_labels: usize,
    pub max_profile_stacktrace_depth: usize,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Longer strings of a profile keep their last this many bytes; 0: no limit.
    pub max_profile_symbol_value_length: usize,
    /// `__session_id__` values kept per series (folded); 0 drops the label.
    pub max_sessions_per_series: usize,
    /// Memory the decoded profiles of one request may take, bytes.
    pub max_request_memory: usize,
    #[serde(with = "duration")]
    pub reject_older_than: Duration,
    #[serde(with = "duration")]
    pub reject_newer_than: Duration,
    /// Data older than this is deleted (0 keeps everything); per tenant
    /// through `overrides`.
    #[serde(with = "duration")]
    pub retention_period: Duration,
    /// Recording rules a tenant may create through the API (provisioned
    /// rules do not count); 0: no limit.
    pub max_recording_rules: usize,
    /// Longest time range of one query; 0: unlimited.
    #[serde(with = "duration")]
    pub max_query_length: Duration,
    /// How far back queries reach (older parts of a range are left out); 0: unlimited.
    #[serde(with = "duration")]
    pub max_query_lookback: Duration,
    /// Largest debug file (ELF) a tenant may upload, bytes.
    pub max_debuginfo_file_bytes: u64,
    /// Most debug files a tenant keeps.
    pub max_debuginfo_files: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 2.0,
            max_profile_size_bytes: 4 * 1024 * 1024,
            max_profile_stacktrace_samples: 16_000,
            max_profile_stacktrace_sample_labels: 100,
            max_profile_stacktrace_depth: 1000,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_profile_symbol_value_length: 65_535,
            max_sessions_per_series: 0,
            max_request_memory: 256 << 20,
            reject_older_than: Duration::from_secs(3600),
            reject_newer_than: Duration::from_secs(600),
            retention_period: Duration::from_secs(31 * 24 * 3600),
            max_recording_rules: 25,
            max_query_length: Duration::from_secs(30 * 24 * 3600),
            max_query_lookback: Duration::from_secs(30 * 24 * 3600),
            max_debuginfo_file_bytes: 1 << 30,
            max_debuginfo_files: 10_000,
        }
    }
}

impl PhloxConfig {
    /// Parses a YAML document (unknown keys are errors) and validates it.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        let c: PhloxConfig = if yaml.trim().is_empty() { PhloxConfig::default() } else { serde_yaml::from_str(yaml)? };
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let yaml =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_yaml(&yaml)
    }

    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        Ok(serde_yaml::to_string(self)?)
    }

    /// The limits of every tenant with overrides: `limits` with the
    /// tenant's keys applied on top.
    pub fn tenant_limits(&self) -> Result<BTreeMap<String, LimitsConfig>, ConfigError> {
        let base = serde_yaml::to_value(&self.limits)?;
        self.overrides
            .iter()
            .map(|(tenant, o)| {
                let mut merged = base.clone();
                if let Some(m) = merged.as_mapping_mut() {
                    for (k, v) in o {
                        m.insert(k.clone(), v.clone());
                    }
                }
                let l: LimitsConfig = serde_yaml::from_value(merged)
                    .map_err(|e| ConfigError::Invalid(format!("overrides.{tenant}: {e}")))?;
                Ok((tenant.clone(), l))
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.version != 1 {
            return Err(ConfigError::Version(self.version));
        }
        if self.segment_writer.shards == 0 {
            return bad("segment_writer.shards must be at least 1");
        }
        if self.segment_writer.segment_duration < Duration::from_millis(10) {
            return bad("segment_writer.segment_duration must be at least 10ms");
        }
        if self.segment_writer.max_attempts == 0 {
            return bad("segment_writer.max_attempts must be at least 1");
        }
        if self.distributor.max_shards_per_dataset < self.distributor.shards_per_dataset {
            return bad("distributor.max_shards_per_dataset must be at least shards_per_dataset");
        }
        if self.distributor.shard_unit_mb_per_second.is_nan() || self.distributor.shard_unit_mb_per_second < 0.0 {
            return bad("distributor.shard_unit_mb_per_second must be 0 or more");
        }
        if self.distributor.shards_per_dataset == 0 {
            return bad("distributor.shards_per_dataset must be at least 1");
        }
        if self.metastore.node_id == 0 {
            return bad("metastore.node_id must not be 0");
        }
        let peers = self.metastore.parsed_peers()?;
        if !peers.is_empty() && !peers.iter().any(|(id, _)| *id == self.metastore.node_id) {
            return bad("metastore.peers must include this node's id");
        }
        if self.server.auth.basic_auth.iter().any(|c| !c.contains(':')) {
            return bad("server.auth.basic_auth entries must be user:password");
        }
        for c in &self.server.auth.tenants {
            c.validate()?;
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.self_profiling.interval) {
            return bad("self_profiling.interval must be between 1s and 60s");
        }
        if self.self_profiling.enabled && self.self_profiling.service_name.is_empty() {
            return bad("self_profiling.service_name must not be empty");
        }
        for l in std::iter::once(&self.limits).chain(self.tenant_limits()?.values()) {
            if l.ingestion_rate_mb < 0.0 || l.ingestion_burst_size_mb < 0.0 {
                return bad("limits: ingestion_rate_mb and ingestion_burst_size_mb must not be negative");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_is_the_default() {
        assert_eq!(PhloxConfig::from_yaml("").unwrap(), PhloxConfig::default());
        assert_eq!(PhloxConfig::default().server.http_listen_address, "0.0.0.0:4040");
    }

    #[test]
    fn documents_round_trip_and_durations_read_as_text() {
        let c =
            PhloxConfig::from_yaml("segment_writer:\n  segment_duration: 250ms\nlimits:\n  reject_older_than: 2h\n")
                .unwrap();
        assert_eq!(c.segment_writer.segment_duration, Duration::from_millis(250));
        assert_eq!(c.limits.reject_older_than, Duration::from_secs(7200));
        assert_eq!(PhloxConfig::from_yaml(&c.to_yaml().unwrap()).unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e = PhloxConfig::from_yaml("segment_writer:\n  shardz: 3\n").unwrap_err().to_string();
        assert!(e.contains("shardz"), "{e}");
        let e = PhloxConfig::from_yaml("version: 2\n").unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
        let e = PhloxConfig::from_yaml("segment_writer:\n  shards: 0\n").unwrap_err().to_string();
        assert!(e.contains("shards"), "{e}");
        let e = PhloxConfig::from_yaml("metastore:\n  peers: [\"2=a:1\"]\n").unwrap_err().to_string();
        assert!(e.contains("include this node"), "{e}");
        assert!(PhloxConfig::from_yaml("segment_writer:\n  segment_duration: soon\n").is_err());
    }

    #[test]
    fn overrides_apply_on_top_of_the_limits() {
        let c = PhloxConfig::from_yaml(
            "limits:\n  max_label_names_per_series: 40\noverrides:\n  team-a:\n    ingestion_rate_mb: 100\n",
        )
        .unwrap();
        let t = c.tenant_limits().unwrap();
        assert_eq!(t["team-a"].ingestion_rate_mb, 100.0);
        assert_eq!(t["team-a"].max_label_names_per_series, 40);
        let e = PhloxConfig::from_yaml("overrides:\n  team-a:\n    ingestion_rate: 1\n").unwrap_err().to_string();
        assert!(e.contains("overrides.team-a") && e.contains("ingestion_rate"), "{e}");
    }

    #[test]
    fn the_reference_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/phlox.yaml");
        let c = PhloxConfig::from_file(std::path::Path::new(path)).unwrap();
        assert_eq!(c.target, "all");
        // The limits it documents are the defaults (the distributor's too:
        // its `Limits::default()` is built from `LimitsConfig::default()`).
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.ingestion_rate_mb, 4.0);
        assert_eq!(c.limits.max_profile_size_bytes, 4 << 20);
    }
}
