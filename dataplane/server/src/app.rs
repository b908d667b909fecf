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

use crate::writer_sink::LocalWriter;

/// The targets this build runs, alone or comma-separated in one process.
const SUPPORTED_TARGETS: &[&str] =
    &["all", "metastore", "distributor", "segment-writer", "query-frontend", "query-backend", "compaction-worker"];

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

/// `ip:port` to dial, IPv6 in brackets (`[fd00::1]:9095`): a pod's IP from
/// the downward API may be either family.
fn dial_address(ip: &str, port: u16) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{ip}:{port}"),
    }
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

/// While the process drains, every HTTP/1.1 response closes its
/// connection: a keep-alive client's next request opens a new one, which
/// the Service sends to a replica that stays, instead of racing the
/// listener's close on an idle connection. (HTTP/2 clients get GOAWAY when
/// the listener stops.)
async fn close_when_draining(
    axum::extract::State(draining): axum::extract::State<Arc<AtomicBool>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let mut res = next.run(req).await;
    if http1 && draining.load(Ordering::Acquire) {
        res.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    res
}

/// The metastore of a process that needs none (a query backend).
struct NoMetastore;

#[async_trait::async_trait]
impl phlox_proto::metastore_client::Metastore for NoMetastore {
    async fn add_block(
        &self,
        _: phlox_proto::metastore::v1::AddBlockRequest,
    ) -> Result<phlox_proto::metastore::v1::AddBlockResponse, tonic::Status> {
        Err(tonic::Status::failed_precondition("this process has no metastore"))
    }
    async fn query_blocks(
        &self,
        _: phlox_proto::metastore::v1::QueryBlocksRequest,
    ) -> Result<phlox_proto::metastore::v1::QueryBlocksResponse, tonic::Status> {
        Err(tonic::Status::failed_precondition("this process has no metastore"))
    }
    async fn heartbeat(
        &self,
        _: phlox_proto::metastore::v1::HeartbeatRequest,
    ) -> Result<phlox_proto::metastore::v1::HeartbeatResponse, tonic::Status> {
        Err(tonic::Status::failed_precondition("this process has no metastore"))
    }
}

/// Which components this process runs.
#[derive(Debug, Clone, Copy)]
struct Roles {
    all: bool,
    metastore: bool,
    distributor: bool,
    segment_writer: bool,
    query_frontend: bool,
    query_backend: bool,
    compaction_worker: bool,
}

impl Roles {
    fn of(targets: &[String]) -> Self {
        let all = targets.iter().any(|t| t == "all");
        let has = |name: &str| all || targets.iter().any(|t| t == name);
        Self {
            all,
            metastore: has("metastore"),
            distributor: has("distributor"),
            segment_writer: has("segment-writer"),
            query_frontend: has("query-frontend"),
            query_backend: has("query-backend"),
            compaction_worker: has("compaction-worker"),
        }
    }
}

/// A gRPC channel to `host:port`, connected lazily; a comma-separated list
/// balances over its addresses and avoids the ones that are down (several
/// metastore voters: followers forward writes to the leader).
fn channel(address: &str) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = |a: &str| {
        let uri = if a.contains("://") { a.to_owned() } else { format!("http://{a}") };
        anyhow::Ok(
            tonic::transport::Endpoint::from_shared(uri)
                .with_context(|| format!("invalid address {a:?}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30)),
        )
    };
    let list: Vec<&str> = address.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    match list.as_slice() {
        [] => bail!("empty address"),
        [one] => Ok(phlox_proto::tls::connect_lazy(endpoint(one)?)),
        many if phlox_proto::tls::installed() => bail!(
            "{} addresses in {address:?}: with server.grpc_tls, name one (a Service or a DNS name of every voter)",
            many.len()
        ),
        many => Ok(tonic::transport::Channel::balance_list(
            many.iter().map(|a| endpoint(a)).collect::<anyhow::Result<Vec<_>>>()?.into_iter(),
        )),
    }
}

/// This process's gRPC address as others should dial it.
fn own_address(config: &PhloxConfig, grpc_addr: SocketAddr) -> String {
    if let Some(a) = &config.metastore.advertise_address {
        return a.clone();
    }
    match std::env::var("POD_IP") {
        Ok(ip) if !ip.is_empty() => dial_address(&ip, grpc_addr.port()),
        _ => advertise(grpc_addr),
    }
}

pub(crate) async fn run(config: PhloxConfig, reload: Option<crate::cli::ConfigLoader>) -> anyhow::Result<()> {
    let targets = parse_targets(&config.target)?;
    // Limits, provisioned rules and retention follow the file without a restart.
    let current = crate::reload::watch(config.clone(), reload, Duration::from_secs(10));
    let roles = Roles::of(&targets);
    let all = roles.all;
    if config.self_profiling.enabled && config.self_profiling.push_url.is_empty() && !roles.distributor {
        bail!(
            "self_profiling.push_url is empty and target {:?} runs no distributor to push to: set it to a distributor's URL",
            config.target
        );
    }
    // Both ports first: a busy port fails the start before anything is
    // created on disk or in the bucket.
    let listen = |address: &str, what: &str, flag: &str| {
        let address = address.to_owned();
        let (what, flag) = (what.to_owned(), flag.to_owned());
        async move {
            let bound = match TcpListener::bind(&address).await {
                // `[::]` is every address, IPv4 too (dual stack); on a host
                // without IPv6 it falls back to `0.0.0.0`.
                Err(e) if address.starts_with("[::]:") && e.kind() != std::io::ErrorKind::AddrInUse => {
                    TcpListener::bind(address.replacen("[::]", "0.0.0.0", 1)).await
                }
                r => r,
            };
            bound.with_context(|| {
                format!(
                    "cannot listen on {address} ({what}): is another phlox running? Pass {flag} to use another address"
                )
            })
        }
    };
    let grpc_listener = listen(&config.server.grpc_listen_address, "internal gRPC", "--grpc-listen-address").await?;
    let http_listener = listen(&config.server.http_listen_address, "HTTP APIs", "--http-listen-address").await?;
    let admin_listener = listen(&config.server.admin_listen_address, "admin API", "--admin-listen-address").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let admin_token =
        crate::context::auth::AdminToken::open(config.server.admin_token_file.as_deref(), &config.data_dir)
            .with_context(|| format!("cannot create the admin token in {}", config.data_dir.display()))?;
    info!(file = %admin_token.path().display(), "the admin API takes the bearer token in this file");
    // Mutual TLS on the gRPC port: served below, dialed by every client.
    let grpc_tls = match &config.server.grpc_tls {
        Some(t) => {
            let tls = phlox_proto::tls::Tls::load(phlox_proto::tls::TlsFiles {
                cert: t.cert_file.clone(),
                key: t.key_file.clone(),
                ca: t.ca_file.clone(),
                server_name: t.server_name.clone(),
            })
            .context("server.grpc_tls")?;
            tls.spawn_reload(t.reload_interval);
            phlox_proto::tls::install(Arc::clone(&tls))?;
            info!(cert = %t.cert_file.display(), "the gRPC port serves and dials mutual TLS");
            Some(tls)
        }
        None => None,
    };
    let registry = Registry::new();
    let store = phlox_storage::build(&config.storage, &config.data_dir)?;
    // Processes that write objects check the bucket before they start.
    if roles.segment_writer || roles.compaction_worker || roles.query_frontend {
        let bucket = config.storage.describe(&config.data_dir);
        phlox_storage::check_writable(store.as_ref(), &bucket).await?;
    }

    // The metastore when this process runs it.
    let address = own_address(&config, grpc_addr);
    let node = if roles.metastore {
        Some(Arc::new(
            MetastoreNode::start_with_registry(metastore_config(&config, address.clone())?, &registry).await?,
        ))
    } else {
        None
    };
    // Query backends read objects only; everything else needs the metastore.
    let needs_metastore = roles.distributor || roles.segment_writer || roles.query_frontend || roles.compaction_worker;
    let metastore: Arc<dyn phlox_proto::metastore_client::Metastore> = match (&node, &config.metastore.address) {
        (Some(n), _) => n.client(),
        (None, Some(a)) => Arc::new(phlox_proto::metastore_client::GrpcMetastore::new(channel(a)?)),
        (None, None) if needs_metastore => {
            bail!("--metastore-address is required when this process does not run the metastore")
        }
        (None, None) => Arc::new(NoMetastore),
    };

    // Write path.
    let sw = &config.segment_writer;
    let writer = if roles.segment_writer {
        let writer_config = SegmentWriterConfig {
            id: if all {
                format!("segment-writer-{}", config.metastore.node_id)
            } else {
                std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| address.clone())
            },
            shards: sw.shards,
            segment_duration: sw.segment_duration,
            max_attempts: sw.max_attempts,
            max_buffered_bytes_per_shard: sw.max_buffered_mb_per_shard << 20,
            max_stack_depth: config.limits.max_profile_stacktrace_depth,
            dedup_window: sw.dedup_window,
            ..SegmentWriterConfig::default()
        };
        Some(Arc::new(SegmentWriter::start(
            writer_config,
            Arc::clone(&store),
            Arc::clone(&metastore),
            SegmentWriterMetrics::new(&registry)?,
        )))
    } else {
        None
    };
    let distributor = if roles.distributor {
        let tenant_limits = crate::limits::tenant_limits(&config)?;
        let limits = Arc::new(LimitsStore::new(tenant_limits.clone()));
        crate::limits::follow(current.clone(), Arc::clone(&limits), tenant_limits);
        let sink: Arc<dyn phlox_distributor::ShardWriter> = match &writer {
            Some(w) if all => Arc::new(LocalWriter(Arc::clone(w))),
            _ => {
                let remote = crate::writer_sink::RemoteWriters::new(Arc::clone(&metastore), sw.shards);
                remote.spawn_refresh(Duration::from_secs(2));
                remote
            }
        };
        Some(Arc::new(Distributor::new(sink, limits, DistributorMetrics::new(&registry)?).with_shards_per_dataset(
            config.distributor.shards_per_dataset,
            config.distributor.max_shards_per_dataset,
            config.distributor.shard_unit_mb_per_second * 1e6,
        )))
    } else {
        None
    };

    // Recording rules: served by the query frontend, evaluated by compaction workers.
    let rule_store = if roles.query_frontend || roles.compaction_worker {
        let rules = Arc::new(phlox_recording::RuleStore::new(Arc::clone(&store)));
        for e in rules.set_provisioned(&provisioned_rules_of(&config.recording_rules.rules)) {
            tracing::error!(error = %e, "recording_rules.rules: this rule is left out");
        }
        follow_provisioned_rules(current.clone(), Arc::clone(&rules));
        Some(rules)
    } else {
        None
    };

    // Read path.
    let query_metrics = phlox_query::QueryMetrics::new(&registry)?;
    // Query leaves (object reads, decoding, merging) run on a runtime of their
    // own, so a saturating query load never holds the threads that answer
    // /ready, /metrics, pushes and Raft.
    let leaf_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let symbolizer = Arc::new(
        phlox_query::debuginfo::Symbolizer::new(Arc::clone(&store))
            .with_debuginfod(&config.symbolizer.debuginfod_url)
            .with_retry_missing(config.symbolizer.retry_missing),
    );
    let local_backend = phlox_query::LocalBackend::new(Arc::clone(&store))
        .with_symbolizer(Arc::clone(&symbolizer))
        .with_metrics(query_metrics.clone())
        .with_runtime(phlox_query::leaf_runtime(leaf_threads)?);

    let (stop_grpc, mut grpc_stopped) = watch::channel(false);
    let mut routes = tonic::service::Routes::default();
    if let Some(n) = &node {
        routes = routes.add_service(n.raft_service()).add_service(n.metastore_service());
    }
    if let Some(w) = &writer {
        routes = routes.add_service(crate::grpc_writer::service(Arc::clone(w), sw.shards));
    }
    if roles.query_backend {
        routes =
            routes.add_service(phlox_query::QueryBackendServer::new(Arc::new(local_backend.clone())).into_service());
    }
    let grpc = tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(
        phlox_proto::tls::incoming(grpc_listener, grpc_tls),
        async move {
            let _ = grpc_stopped.changed().await;
        },
    );
    let grpc = tokio::spawn(grpc);
    if let Some(n) = &node {
        let voters = config.metastore.peers.len().max(1);
        let wait = Duration::from_secs(120);
        if voters > 1 {
            info!(
                voters,
                majority = voters / 2 + 1,
                "metastore: waiting for a majority of the voters to elect a leader"
            );
        }
        if !n.is_initialized().await? {
            // A new voter joining a running group: the leader adds it when the
            // operator (or an admin, POST /metastore/membership) asks, however
            // long that takes.
            info!("metastore: this node has no log yet; waiting for a leader to replicate to it");
            while n.wait_for_leader(Duration::from_secs(30)).await.is_err() {
                info!("metastore: still waiting to be added to the group (the lowest node id initializes a new group)");
            }
        }
        n.wait_for_leader(wait).await.with_context(|| {
            format!(
                "no metastore leader within {}s: {} of the {voters} voters of metastore.peers must be running and reach \
                 each other on their advertised gRPC addresses (a new group is initialized by the lowest node id); \
                 start the others (in any order) within that time",
                wait.as_secs(),
                voters / 2 + 1
            )
        })?;
        n.spawn_dlq_recovery(Arc::clone(&store), config.metastore.dlq_recovery_interval);
        crate::compaction::spawn_tombstone_cleaner(
            Arc::clone(n),
            Arc::clone(&store),
            config.compaction.tombstone_grace,
        );
        crate::compaction::spawn_retention(
            Arc::clone(n),
            current.clone(),
            config.compaction.retention_interval,
            &registry,
        )?;
    }
    // The compaction worker and its recording-rules exporter, stopped in
    // order on shutdown: no new job, the current one finished, then the
    // recorded samples it produced sent.
    let (stop_compaction, compaction_stopped) = watch::channel(false);
    let mut compaction: Option<(tokio::task::JoinHandle<()>, Option<Arc<phlox_recording::remote_write::Exporter>>)> =
        None;
    if roles.compaction_worker {
        let c = &config.compaction;
        let worker = crate::compaction::CompactionWorker::new(
            crate::compaction::WorkerConfig {
                id: std::env::var("POD_NAME")
                    .ok()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("compaction-worker-{address}")),
                min_blocks: c.min_blocks.clone(),
                max_age_ms: c.max_age_seconds.iter().map(|s| (*s as i64).saturating_mul(1000)).collect(),
                poll_interval: c.poll_interval,
                lease: c.lease,
            },
            Arc::clone(&metastore),
            Arc::clone(&store),
            &registry,
        )?;
        let rr = &config.recording_rules;
        let worker = match (&rule_store, rr.remote_write_url.is_empty()) {
            (Some(rules), false) => {
                let mut rw = phlox_recording::remote_write::RemoteWriteConfig::new(rr.remote_write_url.clone());
                rw.headers = rr.remote_write_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let exporter = Arc::new(
                    phlox_recording::remote_write::Exporter::new(rw, &registry)
                        .context("recording_rules.remote_write_url")?,
                );
                exporter.spawn();
                let recording = crate::compaction::Recording::new(Arc::clone(rules), Arc::clone(&exporter), &registry)?;
                (worker.with_recording(recording), Some(exporter))
            }
            _ => (worker, None),
        };
        let (worker, exporter) = worker;
        compaction = Some((worker.spawn(compaction_stopped), exporter));
    }
    // Segment writers of a distributed deployment join the placement.
    let drain = match &writer {
        Some(w) if !all => {
            let d = crate::admin::drain::Drain::new(
                Arc::clone(w),
                Arc::clone(&metastore),
                address.clone(),
                Duration::from_secs(3),
                &registry,
            )?;
            d.spawn_heartbeats();
            Some(d)
        }
        _ => None,
    };
    // Public HTTP port.
    let ready = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    let max_body = config.server.max_request_body_mb << 20;
    let query = if roles.query_frontend {
        let backend: Arc<dyn phlox_query::QueryBackend> = if config.query_frontend.backends.is_empty() {
            if !all {
                info!("query frontend: no --query-backends, so this process reads blocks from the bucket itself");
            }
            Arc::new(local_backend.clone())
        } else {
            Arc::new(phlox_query::RemoteBackend::new(config.query_frontend.backends.clone()))
        };
        let limits = phlox_query::QueryLimits {
            max_query_length: config.limits.max_query_length,
            max_query_lookback: config.limits.max_query_lookback,
            rollups: config.query_frontend.rollups,
            tenants: config
                .tenant_limits()
                .context("overrides")?
                .iter()
                .map(|(t, l)| (t.clone(), phlox_query::RangeLimits::from(l)))
                .collect(),
            ..phlox_query::QueryLimits::default()
        };
        Some(Arc::new(phlox_query::QueryFrontend::new(Arc::clone(&metastore), backend, limits)))
    } else {
        None
    };
    let rules_api = match (&rule_store, roles.query_frontend) {
        (Some(store), true) => {
            let tenant_limits = config.tenant_limits().context("overrides")?;
            Some(Arc::new(crate::api::rules::RulesApi {
                store: Arc::clone(store),
                default_max: config.limits.max_recording_rules,
                max_by_tenant: tenant_limits.into_iter().map(|(t, l)| (t, l.max_recording_rules)).collect(),
            }))
        }
        _ => None,
    };
    let http_addr = http_listener.local_addr()?;
    let credentials = Arc::new(crate::context::auth::Credentials::new(config.server.auth.clone()));
    credentials.spawn_refresh(Duration::from_secs(10));
    let context = Arc::new(crate::context::Settings { multitenancy: config.multitenancy_enabled, credentials });
    let (operational, admin) = crate::admin::routers(crate::admin::Operations {
        registry: registry.clone(),
        ready: Arc::clone(&ready),
        metastore_node: node.clone(),
        delete: if roles.query_frontend || node.is_some() {
            Some(Arc::new(crate::admin::delete::Admin::new(Arc::clone(&metastore), &registry)?))
        } else {
            None
        },
        drain: drain.clone(),
        config: Arc::new(config.clone()),
        token: admin_token,
    });
    let app = crate::api::router(crate::api::Components {
        distributor: distributor.clone(),
        query: query.clone(),
        query_metrics,
        rules: rules_api,
        settings: roles.query_frontend.then(|| Arc::new(phlox_recording::SettingsStoreClient::new(Arc::clone(&store)))),
        adhoc: roles.query_frontend.then(|| {
            Arc::new(crate::api::adhoc::AdHoc(phlox_query::adhoc::AdHocProfiles::new(
                Arc::clone(&store),
                phlox_query::QueryLimits::default(),
            )))
        }),
        debuginfo: match roles.query_frontend {
            true => {
                let limits = |l: &phlox_config::LimitsConfig| phlox_query::debuginfo::DebugInfoLimits {
                    max_file_bytes: l.max_debuginfo_file_bytes,
                    max_files: l.max_debuginfo_files,
                };
                Some(Arc::new(crate::api::debuginfo::DebugInfo {
                    store: phlox_query::debuginfo::DebugInfoStore::new(Arc::clone(&store)),
                    symbolizer: Arc::clone(&symbolizer),
                    default_limits: limits(&config.limits),
                    limits_by_tenant: config
                        .tenant_limits()
                        .context("overrides")?
                        .iter()
                        .map(|(t, l)| (t.clone(), limits(l)))
                        .collect(),
                }))
            }
            false => None,
        },
        ready: Arc::clone(&ready),
        max_body,
    })
    .merge(crate::legacy::router(crate::legacy::Legacy { distributor, query, max_body }))
    .merge(operational)
    .route("/", axum::routing::get(crate::ui::index))
    .route("/ui/{file}", axum::routing::get(crate::ui::asset))
    // Bodies are read by `context::body::read` with their limit and an API error.
    .layer(axum::extract::DefaultBodyLimit::disable())
    // Responses (flame graphs are MBs of JSON) are gzipped for clients that
    // accept it; gRPC, images and tiny bodies are left alone.
    .layer(tower_http::compression::CompressionLayer::new())
    .layer(axum::middleware::from_fn_with_state(context, crate::context::layer))
    .layer(axum::middleware::from_fn_with_state(
        Arc::new(crate::context::duration::RequestDurations::new(&registry)?),
        crate::context::duration::layer,
    ))
    .layer(axum::middleware::from_fn_with_state(Arc::clone(&draining), close_when_draining));
    let admin_addr = admin_listener.local_addr()?;
    if config.self_profiling.enabled {
        let base = match config.self_profiling.push_url.as_str() {
            "" => format!("http://{}", advertise(http_addr)),
            url => url.to_owned(),
        };
        crate::self_profiling::SelfProfiler::new(config.self_profiling.clone(), &base, &config.target, &registry)?
            .spawn();
    }
    ready.store(true, Ordering::Release);
    info!(http = %http_addr, grpc = %grpc_addr, admin = %admin_addr, target = %config.target, data_dir = %config.data_dir.display(), "phlox is ready");

    // On SIGTERM the public port drains for `server.shutdown_delay` (not
    // ready, keep-alive connections closed as they answer), then both
    // listeners stop taking requests; in-flight ones finish.
    let (stop_http, http_stopped) = watch::channel(false);
    let shutdown_delay = config.server.shutdown_delay;
    let (ready_flag, draining_flag) = (Arc::clone(&ready), Arc::clone(&draining));
    tokio::spawn(async move {
        shutdown_signal().await;
        // Draining first: every answer saying "not ready" also closes.
        draining_flag.store(true, Ordering::Release);
        ready_flag.store(false, Ordering::Release);
        if !shutdown_delay.is_zero() {
            info!(delay = %humantime::format_duration(shutdown_delay), "draining the public port before stopping");
            tokio::time::sleep(shutdown_delay).await;
        }
        let _ = stop_http.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_server = tokio::spawn(
        axum::serve(admin_listener, admin).with_graceful_shutdown(stopped(http_stopped.clone())).into_future(),
    );
    axum::serve(http_listener, app).with_graceful_shutdown(stopped(http_stopped)).await?;
    let _ = admin_server.await;

    // In-flight pushes have been answered; flush what is buffered, stop.
    ready.store(false, Ordering::Release);
    let stop = async {
        // A distributed writer drains: it leaves the placement first.
        match (&drain, &writer) {
            (Some(d), _) => d.drain().await,
            (None, Some(w)) => w.shutdown().await,
            (None, None) => {}
        }
        let _ = stop_compaction.send(true);
        if let Some((worker, exporter)) = compaction.take() {
            let _ = worker.await;
            if let Some(e) = exporter
                && !e.flush(Duration::from_secs(10)).await
            {
                warn!("recorded samples still unsent at shutdown");
            }
        }
        if let Some(n) = &node {
            n.shutdown().await;
        }
        let _ = stop_grpc.send(true);
        let _ = grpc.await;
    };
    if tokio::time::timeout(config.server.graceful_shutdown_timeout, stop).await.is_err() {
        warn!("graceful shutdown timed out");
    }
    info!("phlox stopped");
    Ok(())
}

/// Applies the provisioned rules of each new configuration (rules kept in
/// Git apply without a restart).
fn follow_provisioned_rules(config: crate::reload::Current, store: Arc<phlox_recording::RuleStore>) {
    let mut applied = config.borrow().recording_rules.rules.clone();
    crate::reload::on_change(config, move |c| {
        if c.recording_rules.rules == applied {
            return;
        }
        applied = c.recording_rules.rules.clone();
        for e in store.set_provisioned(&provisioned_rules_of(&applied)) {
            tracing::error!(error = %e, "recording_rules.rules: this rule is left out");
        }
        tracing::info!(tenants = applied.len(), "provisioned recording rules reloaded");
    });
}

/// The configuration's provisioned recording rules, per tenant.
pub(crate) fn provisioned_rules_of(
    rules: &std::collections::BTreeMap<String, Vec<phlox_config::ProvisionedRule>>,
) -> std::collections::BTreeMap<String, Vec<phlox_recording::Provisioned>> {
    rules
        .iter()
        .map(|(tenant, rules)| {
            let rules = rules
                .iter()
                .map(|r| phlox_recording::Provisioned {
                    id: r.id.clone(),
                    metric_name: r.metric_name.clone(),
                    matchers: r.matchers.clone(),
                    group_by: r.group_by.clone(),
                    external_labels: r.external_labels.clone(),
                    function_name: r.function_name.clone(),
                })
                .collect();
            (tenant.clone(), rules)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_of_either_family_can_be_dialed() {
        assert_eq!(dial_address("10.1.2.3", 9095), "10.1.2.3:9095");
        assert_eq!(dial_address("fd00:10:244::7", 9095), "[fd00:10:244::7]:9095");
        assert_eq!(advertise("[::]:9095".parse().unwrap()), "127.0.0.1:9095");
    }
}
