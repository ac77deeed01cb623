//! The `weir-broker` binary: parses the configuration, sets up logging, and runs the broker
//! until SIGTERM or SIGINT. Exit status 0 after a clean shutdown, 1 on any start-up or shard
//! error (the error is logged and printed).

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let flags = weir_broker::config::Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cpus = weir_broker::runtime::allowed_cpus().len().max(1);
    let config =
        weir_broker::config::Config::resolve(flags, cpus).context("invalid configuration")?;
    weir_broker::runtime::run(config).context("weir-broker failed")
}
