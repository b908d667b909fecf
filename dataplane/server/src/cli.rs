//! Flags and `PHLOX_*` environment variables; they override the config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use phlox_config::PhloxConfig;

#[derive(Debug, Parser)]
#[command(
    name = "phlox",
    version,
    about = "Phlox: a continuous-profiling database compatible with Grafana Pyroscope",
    long_about = "Phlox: a continuous-profiling database compatible with Grafana Pyroscope.\n\n\
        With no flags it runs every component in one process: data in ./data, APIs and UI on \
        http://localhost:4040. Flags override the config file (--config); each has a PHLOX_* \
        environment variable.",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print every series, profile and stack a data directory holds, as JSON
    /// (stop the server using the data directory first).
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// Tenants to dump.
    #[arg(long = "tenant", default_value = "anonymous")]
    pub(crate) tenants: Vec<String>,
}

/// Where the data is: what both the server and `phlox dump` need.
#[derive(Debug, Clone, Args)]
pub(crate) struct StorageArgs {
    /// YAML configuration file (see config/phlox.yaml).
    #[arg(long, env = "PHLOX_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Local data directory: the metastore's Raft log, and the filesystem bucket unless --storage-filesystem-dir is set.
    #[arg(long, env = "PHLOX_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Storage backend.
    #[arg(long, env = "PHLOX_STORAGE_BACKEND", value_parser = ["filesystem", "s3", "gcs", "azure", "memory"])]
    pub(crate) storage_backend: Option<String>,
    /// Directory of the filesystem bucket (default <data-dir>/bucket). Every process of one cluster must use the same bucket.
    #[arg(long, env = "PHLOX_STORAGE_FILESYSTEM_DIR")]
    pub(crate) storage_filesystem_dir: Option<PathBuf>,
    /// Bucket (S3, GCS) or container (Azure).
    #[arg(long, env = "PHLOX_STORAGE_BUCKET")]
    pub(crate) storage_bucket: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "PHLOX_STORAGE_S3_ENDPOINT")]
    pub(crate) storage_s3_endpoint: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// Components to run, comma-separated: all, or metastore, distributor, segment-writer, query-frontend, query-backend, compaction-worker.
    #[arg(long, env = "PHLOX_TARGET")]
    pub(crate) target: Option<String>,
    /// Public HTTP address (APIs, UI, /ready, /metrics).
    #[arg(long, env = "PHLOX_HTTP_LISTEN_ADDRESS")]
    pub(crate) http_listen_address: Option<String>,
    /// Internal gRPC address (metastore, Raft, segment writers, query backends).
    #[arg(long, env = "PHLOX_GRPC_LISTEN_ADDRESS")]
    pub(crate) grpc_listen_address: Option<String>,
    /// Admin API address (deletes, drain, metastore membership; bearer token).
    #[arg(long, env = "PHLOX_ADMIN_LISTEN_ADDRESS")]
    pub(crate) admin_listen_address: Option<String>,
    /// After SIGTERM, keep serving this long (not ready, closing keep-alive connections) before stopping, e.g. 5s.
    #[arg(long, env = "PHLOX_SHUTDOWN_DELAY")]
    pub(crate) shutdown_delay: Option<String>,
    /// Segment window, e.g. 500ms.
    #[arg(long, env = "PHLOX_SEGMENT_DURATION")]
    pub(crate) segment_duration: Option<String>,
    /// Reject profiles older than this, e.g. 1h.
    #[arg(long, env = "PHLOX_REJECT_OLDER_THAN")]
    pub(crate) reject_older_than: Option<String>,
    /// Per-tenant ingest rate limit in MB/s (0 = unlimited).
    #[arg(long, env = "PHLOX_INGESTION_RATE_MB")]
    pub(crate) ingestion_rate_mb: Option<f64>,
    /// Take the tenant from X-Scope-OrgID (a switch; --multitenancy-enabled=false turns it off).
    #[arg(
        long,
        env = "PHLOX_MULTITENANCY_ENABLED",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) multitenancy_enabled: Option<bool>,
    /// Metastore Raft node id: a number, or `auto` for the trailing ordinal of the pod name (POD_NAME, else the hostname) plus one, as in a StatefulSet (phlox-metastore-2 is node 3).
    #[arg(long, env = "PHLOX_METASTORE_NODE_ID")]
    pub(crate) metastore_node_id: Option<String>,
    /// Address Raft peers use to reach this metastore node (host:port); default: the gRPC listen address.
    #[arg(long, env = "PHLOX_METASTORE_ADVERTISE_ADDRESS")]
    pub(crate) metastore_advertise_address: Option<String>,
    /// Metastore voters as id=host:port, comma-separated, this node included (e.g. 1=10.0.0.1:9095,2=10.0.0.2:9095,3=10.0.0.3:9095); none: a single voter.
    #[arg(long, env = "PHLOX_METASTORE_PEERS", value_delimiter = ',')]
    pub(crate) metastore_peers: Option<Vec<String>>,
    /// Metastore gRPC address(es), comma-separated, for processes that do not run the metastore (host:port).
    #[arg(long, env = "PHLOX_METASTORE_ADDRESS")]
    pub(crate) metastore_address: Option<String>,
    /// Query backends' gRPC addresses, comma-separated (query-frontend target); none: the frontend reads blocks in-process.
    #[arg(long, env = "PHLOX_QUERY_BACKENDS", value_delimiter = ',')]
    pub(crate) query_backends: Option<Vec<String>>,
    /// Push this process's own CPU and heap profiles (a switch; see self_profiling in the config).
    #[arg(
        long,
        env = "PHLOX_SELF_PROFILING_ENABLED",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) self_profiling_enabled: Option<bool>,
    /// Where self-profiling pushes (a distributor's HTTP base URL); empty: this process.
    #[arg(long, env = "PHLOX_SELF_PROFILING_PUSH_URL")]
    pub(crate) self_profiling_push_url: Option<String>,
    /// Log level (error, warn, info, debug, trace); PHLOX_LOG takes a full filter.
    #[arg(long, env = "PHLOX_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    /// Log format.
    #[arg(long, env = "PHLOX_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
}

/// The command line, with each flag's help ending in the default it has
/// when neither the flag nor the config file sets it (from
/// [`PhloxConfig::default`], the one source of defaults).
/// Re-reads the configuration (file, env and flags) for reloads.
pub(crate) type ConfigLoader = std::sync::Arc<dyn Fn() -> anyhow::Result<PhloxConfig> + Send + Sync>;

pub(crate) fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let d = PhloxConfig::default();
    let defaults: Vec<(&str, String)> = vec![
        ("target", d.target.clone()),
        ("http_listen_address", d.server.http_listen_address.clone()),
        ("grpc_listen_address", d.server.grpc_listen_address.clone()),
        ("admin_listen_address", d.server.admin_listen_address.clone()),
        ("shutdown_delay", humantime::format_duration(d.server.shutdown_delay).to_string()),
        ("data_dir", d.data_dir.display().to_string()),
        ("storage_backend", "filesystem".into()),
        ("segment_duration", humantime::format_duration(d.segment_writer.segment_duration).to_string()),
        ("reject_older_than", humantime::format_duration(d.limits.reject_older_than).to_string()),
        ("ingestion_rate_mb", d.limits.ingestion_rate_mb.to_string()),
        ("multitenancy_enabled", d.multitenancy_enabled.to_string()),
        ("metastore_node_id", d.metastore.node_id.to_string()),
        ("self_profiling_enabled", d.self_profiling.enabled.to_string()),
    ];
    let with_defaults = |mut cmd: clap::Command| {
        for (id, value) in &defaults {
            cmd = cmd.mut_arg(*id, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {value}]"))
            });
        }
        cmd
    };
    let mut cmd = with_defaults(Cli::command());
    cmd = cmd.mut_subcommand("dump", |sub| {
        sub.mut_arg("data_dir", |a| {
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            a.help(format!("{help} [default: {}]", d.data_dir.display()))
        })
    });
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn duration(flag: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(v).with_context(|| format!("--{flag}: invalid duration {v:?}"))
}

impl StorageArgs {
    /// The config file (or defaults) with the storage flags applied.
    pub(crate) fn config(&self) -> anyhow::Result<PhloxConfig> {
        let mut c = match &self.config {
            Some(p) => PhloxConfig::from_file(p)?,
            None => PhloxConfig::default(),
        };
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.storage_backend {
            c.storage.backend = match v.as_str() {
                "filesystem" => phlox_storage::Backend::Filesystem,
                "s3" => phlox_storage::Backend::S3,
                "gcs" => phlox_storage::Backend::Gcs,
                "azure" => phlox_storage::Backend::Azure,
                "memory" => phlox_storage::Backend::Memory,
                other => anyhow::bail!("--storage-backend: unknown backend {other:?}"),
            };
        }
        if let Some(v) = &self.storage_filesystem_dir {
            c.storage.filesystem.dir = Some(v.clone());
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
        Ok(c)
    }
}

impl RunArgs {
    /// The config file (or defaults) with flags and env applied, validated.
    pub(crate) fn config(&self) -> anyhow::Result<PhloxConfig> {
        let mut c = self.storage.config()?;
        if let Some(v) = &self.target {
            c.target = v.clone();
        }
        if let Some(v) = &self.http_listen_address {
            c.server.http_listen_address = v.clone();
        }
        if let Some(v) = &self.grpc_listen_address {
            c.server.grpc_listen_address = v.clone();
        }
        if let Some(v) = &self.admin_listen_address {
            c.server.admin_listen_address = v.clone();
        }
        if let Some(v) = &self.shutdown_delay {
            c.server.shutdown_delay = duration("shutdown-delay", v)?;
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
        if let Some(v) = &self.metastore_peers {
            c.metastore.peers = v.clone();
        }
        if let Some(v) = &self.metastore_address {
            c.metastore.address = Some(v.clone());
        }
        if let Some(v) = &self.query_backends {
            c.query_frontend.backends = v.clone();
        }
        if let Some(v) = self.self_profiling_enabled {
            c.self_profiling.enabled = v;
        }
        if let Some(v) = &self.self_profiling_push_url {
            c.self_profiling.push_url = v.clone();
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
