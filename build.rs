//! Build-time set-up: Rust code for the vendored gRPC `.proto` files (`proto/`), and for libtorch
//! an rpath to its `lib` folder, so `target/release/tserve` runs
//! without `LD_LIBRARY_PATH` (and can load libtorch's CUDA library from there at run time).
//!
//! torch-sys finds libtorch through `LIBTORCH` (set for cargo in `.cargo/config.toml`); this script
//! reads the same variable so both agree on one libtorch.

use std::path::PathBuf;

fn main() {
    compile_protos();
    link_libtorch();
}

/// The gRPC services tserve serves, generated with the protoc that `protoc-bin-vendored` carries
/// (so no system protobuf compiler is needed); servers only, the tests' clients are Python's.
fn compile_protos() {
    const PROTOS: [&str; 3] = [
        "proto/kserve/grpc_predict_v2.proto",
        "proto/torchserve/inference.proto",
        "proto/torchserve/management.proto",
    ];
    println!("cargo:rerun-if-changed=proto/google/rpc/status.proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    if std::env::var_os("PROTOC").is_none() {
        match protoc_bin_vendored::protoc_bin_path() {
            // A build script is single-threaded: nothing else reads the environment meanwhile.
            Ok(protoc) => std::env::set_var("PROTOC", protoc),
            Err(e) => println!("cargo:warning=no vendored protoc for this platform ({e}); set PROTOC"),
        }
    }
    // The well-known types (`google/protobuf/empty.proto`, ...) come with the vendored protoc.
    let well_known = protoc_bin_vendored::include_path().map(|p| p.display().to_string()).unwrap_or_default();
    let includes = ["proto", well_known.as_str()];
    if let Err(e) = tonic_prost_build::configure().build_client(false).compile_protos(&PROTOS, &includes) {
        panic!("cannot compile the gRPC protos: {e}");
    }
}

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set: no rpath added; set LD_LIBRARY_PATH to run");
        println!("cargo:rustc-env=TSERVE_DEFAULT_PYTHON=python3");
        return;
    };
    // The Python of the venv that provides libtorch also runs the Python backend by default
    // (it has the `torchserve` package); the `python` config key overrides it.
    // `LIBTORCH` is `.venv/libtorch` (a link into the venv's torch package): its lexical parent
    // is the venv.
    let venv_python = std::path::absolute(&libtorch)
        .ok()
        .and_then(|path| Some(path.parent()?.join("bin").join("python")))
        .filter(|python| python.exists());
    let python = venv_python.map_or_else(|| "python3".to_string(), |p| p.display().to_string());
    println!("cargo:rustc-env=TSERVE_DEFAULT_PYTHON={python}");
    let lib_dir = PathBuf::from(libtorch).join("lib");
    // The canonical path, so the rpath still holds when the binary is started from elsewhere.
    let lib_dir = lib_dir.canonicalize().unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());

    // libtorch_cuda.so is not linked: the linker's --as-needed drops it (no symbol of it is
    // referenced), and `src/gpu.rs` loads it at start-up where an NVIDIA driver is present, so
    // CPU-only hosts never map cuBLAS and friends.
}
