//! Link-time set-up for libtorch: an rpath to its `lib` folder, so `target/release/tserve` runs
//! without `LD_LIBRARY_PATH`, and CUDA support kept in the binary when the libtorch has it.
//!
//! torch-sys finds libtorch through `LIBTORCH` (set for cargo in `.cargo/config.toml`); this script
//! reads the same variable so both agree on one libtorch.

use std::path::PathBuf;

fn main() {
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

    // No symbol of libtorch_cuda.so is referenced directly (CUDA kernels register themselves when
    // the library is loaded), so the linker's --as-needed would drop it and tch would see no GPU.
    // Keep it as a dependency; on a machine without a GPU it loads and reports zero devices.
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
