use std::process::ExitCode;

use clap::Parser;

/// mimalloc for Rust's allocations: the server's CPU per MLP request at c=64 fell 71.0 -> 65.0
/// µs, eight alternating pairs (README, Benchmark). The allocator's own share of the profile
/// stayed near 7-8% either way, so the gain is in what the allocations do to the rest, not
/// pinned down further. Built `no_thp`: mimalloc otherwise asks for transparent huge pages on
/// its arenas, which cost ResNet-18's idle server 45 MB of RSS. Built `override`, it is malloc
/// for libtorch too: glibc kept each worker thread's arena top after warm-up (an added worker
/// cost 10-12 MiB), which mimalloc gives back on request (README, ninth stop; `tserve::allocator`
/// says when it gives memory back by itself).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tserve::allocator::keep_freed_pages();
    tserve::logging::init();
    tserve::launcher::run(tserve::cli::Args::parse())
}
