//! Loading libtorch's CUDA half only where there is a GPU to use it. PyTorch's CUDA build splits
//! libtorch in two: `libtorch_cpu.so`, which every host needs, and `libtorch_cuda.so`, which pulls
//! in cuBLAS, cuFFT, cuSPARSE, nvJitLink and more, and registers CUDA with libtorch when loaded.
//! Linked in, it cost every CPU-only host 260 MB of resident memory and about a tenth of a
//! second of start-up (ResNet-18, two workers: 504 → 245 MB, 0.81 → 0.73 s to ready). So the
//! binaries do not link it; where an NVIDIA driver is present, it is loaded here, before anything
//! asks libtorch about GPUs. (Nor do they need it to exist: a CPU-only torch build should do too,
//! not yet tried.)

use std::ffi::CStr;
use std::path::Path;

/// Where the NVIDIA kernel driver shows itself; without it no CUDA device can exist.
const DRIVER_MARKERS: [&str; 2] = ["/proc/driver/nvidia/version", "/dev/nvidiactl"];

/// What start-up found: whether CUDA is available to libtorch, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaSupport {
    Loaded,
    NoDriver,
    /// A driver, but no loadable `libtorch_cuda.so` (a CPU-only torch, or a broken install).
    NotLoadable(String),
}

/// Loads `libtorch_cuda.so` (found through the binary's rpath, or `LD_LIBRARY_PATH`) where an
/// NVIDIA driver is present. Call once, before the first CUDA query.
pub fn load_cuda() -> CudaSupport {
    if !DRIVER_MARKERS.iter().any(|marker| Path::new(marker).exists()) {
        return CudaSupport::NoDriver;
    }
    const LIBRARY: &CStr = c"libtorch_cuda.so";
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept for the life of the
    // process (never dlclosed), as libtorch's registrations point into the library.
    let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if !handle.is_null() {
        return CudaSupport::Loaded;
    }
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl* call.
    let error = unsafe { libc::dlerror() };
    let reason = if error.is_null() {
        "unknown error".to_string()
    } else {
        unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned()
    };
    CudaSupport::NotLoadable(reason)
}
