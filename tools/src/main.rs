//! `weir`, the command line for Weir: topics, producing and consuming, and fitting the Universal
//! Scalability Law to measured throughput.
//!
//! `args` defines the grammar (`usl` the grammar of its own subcommands); `run` runs each command
//! against the broker through the client crate, except `weir usl`, which needs no broker. Every
//! failure ends the process with one `error: …` line on stderr and exit status 1; normal output
//! goes to stdout (records, listings, fit reports) and summaries to stderr, so `weir consume` can
//! be piped.

mod args;
mod run;
mod usl;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
