use std::process::ExitCode;

use clap::Parser;

/// mimalloc for Rust's allocations: glibc's malloc was 7.8% of the server's CPU on the MLP at
/// c=64 (`_int_malloc`, `_int_free`, `malloc_consolidate`), much of it requests allocated on
/// an HTTP thread and freed on a worker's. libtorch's own allocations stay with glibc.
/// Built `no_thp`: mimalloc otherwise asks for transparent huge pages on its arenas, which cost
/// ResNet-18's idle server 45 MB of RSS (2 MiB pages for small allocations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tserve::logging::init();
    tserve::launcher::run(tserve::cli::Args::parse())
}
