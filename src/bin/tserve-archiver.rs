use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tserve::archiver::run(tserve::archiver::ArchiverArgs::parse())
}
