//! Starting and stopping the components of `--target`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use phlox_config::PhloxConfig;
use phlox_distributor::{Distributor, DistributorMetrics, LimitsStore};
use phlox_metastore::{MetastoreConfig, MetastoreNode};
use phlox_segment_writer::{SegmentWriter, SegmentWriterConfig, SegmentWriterMetrics};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::http::{HttpState, router};
use crate::writer_sink::LocalWriter;

/// The targets this build can run in one process.
const SUPPORTED_TARGETS: &[&str] = &["all", "metastore"];

fn parse_targets(target: &str) -> anyhow::Result<Vec<String>> {
    let targets: Vec<String> = target.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    if targets.is_empty() {
        bail!("--target is empty");
    }
    for t in &targets {
        if !SUPPORTED_TARGETS.contains(&t.as_str()) {
            bail!("--target {t}: not available in this build (supported: {})", SUPPORTED_TARGETS.join(", "));
        }
    }
    Ok(targets)
}

/// The address peers reach us at: the listen address, with an unspecified
/// IP replaced by loopback.
fn advertise(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() }
}

pub(crate) fn metastore_config(config: &PhloxConfig, advertise_address: String) -> anyhow::Result<MetastoreConfig> {
    let mut m = MetastoreConfig::new(config.metastore.node_id, config.data_dir.join("metastore"), advertise_address)
        .with_peers(config.metastore.parsed_peers()?);
    m.bootstrap = config.metastore.bootstrap;
    Ok(m)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutdown signal received");
}

/// Re-reads the configuration (file, env and flags) for reloads.
pub(crate) type ConfigLoader = Arc<dyn Fn() -> anyhow::Result<PhloxConfig> + Send + Sync>;

pub(crate) async fn run(config: PhloxConfig, reload: Option<ConfigLoader>) -> anyhow::Result<()> {
    let targets = parse_targets(&config.target)?;
    let all = targets.iter().any(|t| t == "all");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let registry = Registry::new();
    let store = phlox_storage::build(&config.storage, &config.data_dir)?;

    // Metastore and the internal gRPC port.
    let grpc_listener = TcpListener::bind(&config.server.grpc_listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.grpc_listen_address))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let advertise_address = config.metastore.advertise_address.clone().unwrap_or_else(|| advertise(grpc_addr));
    let node = MetastoreNode::start_with_registry(metastore_config(&config, advertise_address)?, &registry).await?;
    let (stop_grpc, mut grpc_stopped) = watch::channel(false);
    let grpc = tonic::transport::Server::builder()
        .add_service(node.raft_service())
        .add_service(node.metastore_service())
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(grpc_listener), async move {
            let _ = grpc_stopped.changed().await;
        });
    let grpc = tokio::spawn(grpc);
    node.wait_for_leader(Duration::from_secs(120)).await.context("metastore has no leader")?;
    node.spawn_dlq_recovery(Arc::clone(&store), config.metastore.dlq_recovery_interval);

    // Write path.
    let (writer, distributor) = if all {
        let sw = &config.segment_writer;
        let writer_config = SegmentWriterConfig {
            id: format!("segment-writer-{}", config.metastore.node_id),
            shards: sw.shards,
            segment_duration: sw.segment_duration,
            max_attempts: sw.max_attempts,
            max_buffered_bytes_per_shard: sw.max_buffered_mb_per_shard << 20,
            max_stack_depth: config.limits.max_profile_stacktrace_depth,
            dedup_window: sw.dedup_window,
            ..SegmentWriterConfig::default()
        };
        let writer = Arc::new(SegmentWriter::start(
            writer_config,
            Arc::clone(&store),
            node.client(),
            SegmentWriterMetrics::new(&registry)?,
        ));
        let tenant_limits = crate::limits::tenant_limits(&config)?;
        let limits = Arc::new(LimitsStore::new(tenant_limits.clone()));
        if let Some(load) = reload.clone() {
            crate::limits::spawn_reload(load, Arc::clone(&limits), tenant_limits, Duration::from_secs(10));
        }
        let distributor =
            Distributor::new(Arc::new(LocalWriter(Arc::clone(&writer))), limits, DistributorMetrics::new(&registry)?)
                .with_shards_per_dataset(config.distributor.shards_per_dataset);
        (Some(writer), Some(Arc::new(distributor)))
    } else {
        (None, None)
    };

    // Public HTTP port.
    let ready = Arc::new(AtomicBool::new(false));
    let max_body = config.server.max_request_body_mb << 20;
    let query_metrics = phlox_query::QueryMetrics::new(&registry)?;
    let query = all.then(|| {
        Arc::new(phlox_query::QueryFrontend::new(
            node.client(),
            Arc::new(phlox_query::LocalBackend::new(Arc::clone(&store)).with_metrics(query_metrics.clone())),
            phlox_query::QueryLimits::default(),
        ))
    });
    let state = Arc::new(HttpState {
        grpc_push: distributor.as_ref().map(|d| crate::grpc_push::service(Arc::clone(d), max_body)),
        grpc_otlp: distributor.as_ref().map(|d| crate::otlp::service(Arc::clone(d))),
        grpc_query: query.clone().map(crate::grpc_query::service),
        query_metrics,
        query,
        distributor,
        registry: registry.clone(),
        ready: Arc::clone(&ready),
        multitenancy: config.multitenancy_enabled,
        max_body,
    });
    let http_listener = TcpListener::bind(&config.server.http_listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http_listen_address))?;
    let http_addr = http_listener.local_addr()?;
    ready.store(true, Ordering::Release);
    info!(http = %http_addr, grpc = %grpc_addr, target = %config.target, data_dir = %config.data_dir.display(), "phlox is ready");

    let mut app = router(state);
    if crate::auth::enabled(&config.server.auth) {
        app = app.layer(axum::middleware::from_fn_with_state(Arc::new(config.server.auth.clone()), crate::auth::check));
    }
    axum::serve(http_listener, app).with_graceful_shutdown(shutdown_signal()).await?;

    // In-flight pushes have been answered; flush what is buffered, stop.
    ready.store(false, Ordering::Release);
    let stop = async {
        if let Some(w) = &writer {
            w.shutdown().await;
        }
        node.shutdown().await;
        let _ = stop_grpc.send(true);
        let _ = grpc.await;
    };
    if tokio::time::timeout(config.server.graceful_shutdown_timeout, stop).await.is_err() {
        warn!("graceful shutdown timed out");
    }
    info!("phlox stopped");
    Ok(())
}
