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
/// threads at once, stayed near 230 MB); one arena per core kept every voter
/// near 210 MB. Set before the runtime starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX).max(1);
    // SAFETY: mallopt only sets a parameter of the allocator; M_ARENA_MAX
    // with a positive value is one glibc accepts at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
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
