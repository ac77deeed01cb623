//! `weir`, the command line for Weir: topics, producing and consuming, load generation
//! (`weir bench`), and fitting the Universal Scalability Law to measured throughput.
//!
//! `args` defines the grammar (`usl` and `bench` the grammar of their own options); `run` runs
//! each command against the broker through the client crate (`bench` and `usl sweep` through
//! their own modules, on a multi-threaded runtime), except `weir usl fit`, which needs no broker.
//! Every
//! failure ends the process with one `error: …` line on stderr and exit status 1; normal output
//! goes to stdout (records, listings, fit reports) and summaries to stderr, so `weir consume` can
//! be piped.

mod args;
mod bench;
mod run;
mod usl;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    // `weir bench` drives many producers and consumers at once: it gets worker threads; every
    // other command is one sequential conversation with the broker.
    let mut builder = match &cli.command {
        args::Command::Bench(bench) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(bench.runtime_threads());
            builder
        }
        args::Command::Usl(usl::UslCommand::Sweep(_)) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(bench::available_cores());
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", run::describe(&error));
            ExitCode::FAILURE
        }
    }
}
