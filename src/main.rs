use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tserve::logging::init();
    tserve::launcher::run(tserve::cli::Args::parse())
}
