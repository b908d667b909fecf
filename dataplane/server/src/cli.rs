//! Flags and `PHLOX_*` environment variables; they override the config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use phlox_config::PhloxConfig;

#[derive(Debug, Parser)]
#[command(name = "phlox", version, about = "Phlox: a continuous-profiling database compatible with Grafana Pyroscope")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print every series, profile and stack a data directory holds, as JSON.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    /// Tenants to dump.
    #[arg(long = "tenant", default_value = "anonymous")]
    pub(crate) tenants: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// YAML configuration file (see config/phlox.yaml).
    #[arg(long, env = "PHLOX_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Components to run, comma-separated; `all` runs every component.
    #[arg(long, env = "PHLOX_TARGET", global = true)]
    pub(crate) target: Option<String>,
    /// Public HTTP address (APIs, /ready, /metrics).
    #[arg(long, env = "PHLOX_HTTP_LISTEN_ADDRESS", global = true)]
    pub(crate) http_listen_address: Option<String>,
    /// Internal gRPC address (metastore, Raft).
    #[arg(long, env = "PHLOX_GRPC_LISTEN_ADDRESS", global = true)]
    pub(crate) grpc_listen_address: Option<String>,
    /// Local data directory (metastore and the default filesystem bucket).
    #[arg(long, env = "PHLOX_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Storage backend: filesystem, s3, gcs, azure, memory.
    #[arg(long, env = "PHLOX_STORAGE_BACKEND", global = true)]
    pub(crate) storage_backend: Option<String>,
    /// Bucket (S3, GCS) or container (Azure).
    #[arg(long, env = "PHLOX_STORAGE_BUCKET", global = true)]
    pub(crate) storage_bucket: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "PHLOX_STORAGE_S3_ENDPOINT", global = true)]
    pub(crate) storage_s3_endpoint: Option<String>,
    /// Segment window, e.g. 500ms.
    #[arg(long, env = "PHLOX_SEGMENT_DURATION", global = true)]
    pub(crate) segment_duration: Option<String>,
    /// Reject profiles older than this, e.g. 1h.
    #[arg(long, env = "PHLOX_REJECT_OLDER_THAN", global = true)]
    pub(crate) reject_older_than: Option<String>,
    /// Per-tenant ingest rate limit in MB/s (0 = unlimited).
    #[arg(long, env = "PHLOX_INGESTION_RATE_MB", global = true)]
    pub(crate) ingestion_rate_mb: Option<f64>,
    /// Take the tenant from X-Scope-OrgID.
    #[arg(long, env = "PHLOX_MULTITENANCY_ENABLED", global = true)]
    pub(crate) multitenancy_enabled: Option<bool>,
    /// Metastore Raft node id: a number, or `auto` for the trailing ordinal
    /// of the pod name (`POD_NAME`, else the hostname) plus one, as in a
    /// StatefulSet (`phlox-metastore-2` is node 3).
    #[arg(long, env = "PHLOX_METASTORE_NODE_ID", global = true)]
    pub(crate) metastore_node_id: Option<String>,
    /// Address Raft peers use to reach this metastore node (`host:port`).
    #[arg(long, env = "PHLOX_METASTORE_ADVERTISE_ADDRESS", global = true)]
    pub(crate) metastore_advertise_address: Option<String>,
    /// Metastore gRPC address for components that do not run it (`host:port`).
    #[arg(long, env = "PHLOX_METASTORE_ADDRESS", global = true)]
    pub(crate) metastore_address: Option<String>,
    /// Query backends' gRPC addresses, comma-separated (query-frontend target).
    #[arg(long, env = "PHLOX_QUERY_BACKENDS", global = true, value_delimiter = ',')]
    pub(crate) query_backends: Option<Vec<String>>,
    /// Log level (error, warn, info, debug, trace); PHLOX_LOG takes a full filter.
    #[arg(long, env = "PHLOX_LOG_LEVEL", default_value = "info", global = true)]
    pub(crate) log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "PHLOX_LOG_FORMAT", default_value = "text", global = true)]
    pub(crate) log_format: String,
}

fn duration(flag: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(v).with_context(|| format!("--{flag}: invalid duration {v:?}"))
}

impl RunArgs {
    /// The config file (or defaults) with flags and env applied, validated.
    pub(crate) fn config(&self) -> anyhow::Result<PhloxConfig> {
        let mut c = match &self.config {
            Some(p) => PhloxConfig::from_file(p)?,
            None => PhloxConfig::default(),
        };
        if let Some(v) = &self.target {
            c.target = v.clone();
        }
        if let Some(v) = &self.http_listen_address {
            c.server.http_listen_address = v.clone();
        }
        if let Some(v) = &self.grpc_listen_address {
            c.server.grpc_listen_address = v.clone();
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.storage_backend {
            c.storage.backend = serde_yaml_enum(v)?;
        }
        if let Some(v) = &self.storage_bucket {
            c.storage.s3.bucket = v.clone();
            c.storage.gcs.bucket = v.clone();
            c.storage.azure.container = v.clone();
        }
        if let Some(v) = &self.storage_s3_endpoint {
            c.storage.s3.endpoint = Some(v.clone());
            c.storage.s3.insecure |= v.starts_with("http://");
        }
        if let Some(v) = &self.segment_duration {
            c.segment_writer.segment_duration = duration("segment-duration", v)?;
        }
        if let Some(v) = &self.reject_older_than {
            c.limits.reject_older_than = duration("reject-older-than", v)?;
        }
        if let Some(v) = self.ingestion_rate_mb {
            c.limits.ingestion_rate_mb = v;
        }
        if let Some(v) = self.multitenancy_enabled {
            c.multitenancy_enabled = v;
        }
        if let Some(v) = &self.metastore_node_id {
            c.metastore.node_id = node_id(v, std::env::var("POD_NAME").ok().or_else(hostname).as_deref())?;
        }
        if let Some(v) = &self.metastore_advertise_address {
            c.metastore.advertise_address = Some(v.clone());
        }
        if let Some(v) = &self.metastore_address {
            c.metastore.address = Some(v.clone());
        }
        if let Some(v) = &self.query_backends {
            c.query_frontend.backends = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// A node id, or `auto`: the trailing `-<ordinal>` of `pod` plus one.
fn node_id(v: &str, pod: Option<&str>) -> anyhow::Result<u64> {
    if v != "auto" {
        return v.parse().with_context(|| format!("--metastore-node-id: {v:?} is neither a number nor `auto`"));
    }
    let pod = pod.context("--metastore-node-id=auto needs POD_NAME or a hostname")?;
    let ordinal: u64 = pod
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .with_context(|| format!("--metastore-node-id=auto: pod name {pod:?} does not end in -<ordinal>"))?;
    Ok(ordinal + 1)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

fn serde_yaml_enum(v: &str) -> anyhow::Result<phlox_storage::Backend> {
    let c = PhloxConfig::from_yaml(&format!("storage:\n  backend: {v:?}\n"))
        .with_context(|| format!("--storage-backend: unknown backend {v:?} (filesystem, s3, gcs, azure, memory)"))?;
    Ok(c.storage.backend)
}

#[cfg(test)]
mod tests {
    use super::node_id;

    #[test]
    fn node_ids_come_from_numbers_or_statefulset_ordinals() {
        assert_eq!(node_id("7", None).unwrap(), 7);
        assert_eq!(node_id("auto", Some("phlox-metastore-0")).unwrap(), 1);
        assert_eq!(node_id("auto", Some("phlox-metastore-4")).unwrap(), 5);
        assert!(node_id("auto", Some("phlox")).is_err());
        assert!(node_id("auto", None).is_err());
        assert!(node_id("x", None).is_err());
    }
}
