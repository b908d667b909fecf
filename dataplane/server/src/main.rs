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
mod self_profiling;
mod ui;
mod writer_sink;

use std::sync::Arc;

// jemalloc, with its heap profiling on (`/debug/pprof/heap`). Under glibc's
// malloc a metastore leader's RSS grew past 370 MB while its data took under
// 100 MB (an arena per thread that allocates concurrently, little returned);
// jemalloc's background threads return dirty pages within seconds.
phlox_introspect::install_allocator!();

fn main() -> anyhow::Result<()> {
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
    let filter = EnvFilter::try_from_env("PHLOX_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn,pprof=warn")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
