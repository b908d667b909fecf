//! `phlox-operator`: runs the controller (`run`, the default), prints the
//! CRD (`crd`), renders the objects a PyroscopeCluster owns (`render`),
//! writes the dashboards and alerts (`mixin`) or dry-runs the autoscaler
//! over a load trace (`simulate`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use phlox_crds::v1alpha1::PyroscopeCluster;
use phlox_operator::{Context, LeaseConfig, Metrics};
use tracing::info;

#[derive(Debug, Parser)]
#[command(name = "phlox-operator", version, about = "Kubernetes operator for Phlox (PyroscopeCluster)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the PyroscopeCluster CustomResourceDefinition as YAML.
    Crd,
    /// Print every object the operator creates for a PyroscopeCluster, as
    /// multi-document YAML (for review, GitOps diffs and schema checks).
    Render {
        /// The PyroscopeCluster YAML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Write the mixin (dashboards/*.json and alerts.yaml) into a directory.
    Mixin {
        /// The directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Dry-run the autoscaler over a JSON load trace (the CR's `autoscaling`
    /// block, `stepSeconds`, `load` per step, optional `podReadySeconds`):
    /// one JSON line per step with the time, load, per-pod metric, current
    /// and desired replicas, then a summary line.
    Simulate {
        /// The trace file (`-` for stdin).
        #[arg(long)]
        trace: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "PHLOX_OPERATOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: String,
    /// Take a Lease before reconciling, so that several replicas can run.
    #[arg(long, env = "PHLOX_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "PHLOX_OPERATOR_LEASE_NAME", default_value = "phlox-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "PHLOX_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Only reconcile PyroscopeClusters of this namespace (default: all).
    #[arg(long, env = "PHLOX_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, env = "PHLOX_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn render(file: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut cr: PyroscopeCluster =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a PyroscopeCluster", file.display()))?;
    cr.metadata.namespace.get_or_insert_with(|| "default".to_owned());
    // Owner references need a uid; the API server assigns the real one.
    cr.metadata.uid.get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".to_owned());
    Ok(phlox_operator::desired(&cr)?.to_yaml()?)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log_level).context("--log-level")?)
        .init();
    let metrics = Metrics::new()?;
    let listener = tokio::net::TcpListener::bind(&args.metrics_address)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_address))?;
    let server = axum::serve(listener, phlox_operator::router(metrics.clone()));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics server");
        }
    });
    let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
    let pod = std::env::var("POD_NAME").ok();
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), pod.clone()));
    let mut lost = None;
    if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let cfg = LeaseConfig::new(
            args.lease_name.clone(),
            namespace,
            pod.unwrap_or_else(|| format!("phlox-operator-{}", std::process::id())),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        lost = Some((tokio::spawn(phlox_operator::lead(client.clone(), cfg.clone(), metrics.clone(), tx)), cfg));
        info!("waiting for the leader lease");
        rx.await.context("leader election stopped")?;
    } else {
        metrics.leader.set(1);
    }
    info!(namespace = ?args.watch_namespace, "reconciling PyroscopeClusters");
    let controller = phlox_operator::run(ctx, args.watch_namespace.clone());
    match lost {
        Some((mut lost, cfg)) => {
            tokio::select! {
                _ = controller => {
                    // Shut down (SIGTERM): stop renewing, hand the lease over.
                    lost.abort();
                    let api = kube::Api::namespaced(client.clone(), &cfg.namespace);
                    if let Err(e) = phlox_operator::release(&api, &cfg).await {
                        tracing::warn!(error = %e, "cannot release the lease; it expires on its own");
                    }
                }
                _ = &mut lost => anyhow::bail!("lost the leader lease; exiting so that another replica takes over"),
            }
        }
        None => controller.await,
    }
    Ok(())
}

fn simulate(file: &PathBuf) -> anyhow::Result<String> {
    use phlox_autoscaler::simulate;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the trace from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let trace = simulate::parse_trace(&text).with_context(|| format!("{} is not a valid trace", file.display()))?;
    let steps = simulate::run(&trace)?;
    let summary = simulate::summarize(&trace, &steps)?;
    let mut out = String::new();
    for step in &steps {
        out.push_str(&serde_json::to_string(step)?);
        out.push('\n');
    }
    out.push_str(&serde_json::to_string(&serde_json::json!({ "summary": summary }))?);
    out.push('\n');
    Ok(out)
}

fn write_mixin(out: &std::path::Path) -> anyhow::Result<()> {
    let dashboards = out.join("dashboards");
    std::fs::create_dir_all(&dashboards).with_context(|| format!("cannot create {}", dashboards.display()))?;
    for (name, text) in phlox_operator::mixin::dashboard_files() {
        std::fs::write(dashboards.join(&name), text).with_context(|| format!("cannot write {name}"))?;
    }
    let alerts = out.join("alerts.yaml");
    if std::fs::read_to_string(&alerts).ok().as_deref() != Some(phlox_operator::mixin::ALERTS) {
        std::fs::write(&alerts, phlox_operator::mixin::ALERTS).context("cannot write alerts.yaml")?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", phlox_crds::crd_yaml());
            Ok(())
        }
        Some(Command::Render { file }) => {
            print!("{}", render(&file)?);
            Ok(())
        }
        Some(Command::Simulate { trace }) => {
            print!("{}", simulate(&trace)?);
            Ok(())
        }
        Some(Command::Mixin { out }) => write_mixin(&out),
        Some(Command::Run(args)) => tokio::runtime::Runtime::new()?.block_on(run(args)),
        None => match Cli::parse_from(["phlox-operator", "run"]).command {
            Some(Command::Run(args)) => tokio::runtime::Runtime::new()?.block_on(run(args)),
            _ => anyhow::bail!("no command"),
        },
    }
}
