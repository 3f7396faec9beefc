//! `loadgen` binary: parses the command line and runs the scenario.

use clap::Parser;

fn main() -> std::process::ExitCode {
    loadgen::run(loadgen::cli::Cli::parse())
}
