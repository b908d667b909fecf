//! `phlox`: every Phlox data-plane component in one binary.
//!
//! `phlox` (no arguments) runs everything in one process with data in
//! `./data` and the APIs on :4040. `phlox dump` prints what a data
//! directory holds, through the same metastore and block reader a query uses.

mod admin;
mod api;
mod app;
mod cli;
mod compaction;
mod context;
mod dump;
mod grpc_writer;
mod legacy;
mod limits;
mod reload;
mod ui;
mod writer_sink;

use std::sync::Arc;

/// glibc's malloc gives threads that allocate at the same time arenas of
/// their own, up to eight per core, and returns little of what they free:
/// in the metastore bench a leader's RSS grew past 370 MB while its state
/// and dedup keys took under 100 MB (followers, which allocate from fewer
/// threads at once, stayed near 230 MB). Capping the arenas at one per core
/// kept it at 218 MB but cost ingest about a tenth of its throughput per
/// CPU-second (lock contention); handing free pages back to the system
/// every second (`malloc_trim`, which also releases whole free pages
/// inside the arenas) keeps the arenas and returns what fragmentation holds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_malloc_periodically() {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(EVERY);
            // SAFETY: malloc_trim only returns free memory to the system; it
            // takes each arena's lock and is safe to call from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the malloc trimming thread");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_malloc_periodically() {}

fn main() -> anyhow::Result<()> {
    trim_malloc_periodically();
    let cli = cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Some(cli::Command::Dump(args)) => {
            init_tracing("text", "warn");
            runtime.block_on(dump::run(&args))
        }
        None => {
            init_tracing(&cli.run.log_format, &cli.run.log_level);
            let config = cli.run.config()?;
            let reload: Option<cli::ConfigLoader> = cli.run.storage.config.is_some().then(|| {
                let args = cli.run.clone();
                Arc::new(move || args.config()) as cli::ConfigLoader
            });
            runtime.block_on(app::run(config, reload))
        }
    }
}

fn init_tracing(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PHLOX_LOG").unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
