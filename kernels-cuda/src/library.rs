//! Finding the CUDA shared libraries at run time.
//!
//! cudarc (feature `dynamic-loading`) `dlopen()`s bare names: for NVRTC
//! `libnvrtc.so`, `libnvrtc64.so`, …, `libnvrtc.so.12`, … (see
//! `cudarc::get_lib_name_candidates`), for the driver `libcuda.so*`, for
//! cuBLAS `libcublas.so*`. The dynamic linker resolves a bare name through
//! `LD_LIBRARY_PATH`, the ld.so cache and the default directories, and it
//! also answers it with an already loaded library whose SONAME matches. So a
//! pip-installed NVRTC (`nvidia-cuda-nvrtc-cu12`, SONAME `libnvrtc.so.12`,
//! RUNPATH `$ORIGIN` for its `libnvrtc-builtins`) is found either through
//! `LD_LIBRARY_PATH` (what `bench/gpu/nvrtc_env.sh` prints) or by
//! [`ensure_nvrtc`], which loads it by absolute path first. cudarc panics
//! inside a lazy static when a library is missing, so every entry point of
//! this module checks presence before anything else.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::CudaError;

/// Folder holding `libnvrtc.so.12`, searched before the default cache folder.
pub const NVRTC_DIR_ENV: &str = "TALARIA_NVRTC_DIR";
/// The `nvidia-cuda-nvrtc-cu12` wheel that `bench/gpu/nvrtc_env.sh` installs
/// (matches cudarc's `cuda-12040` bindings).
pub const NVRTC_WHEEL_VERSION: &str = "12.4.127";
const NVRTC_FILE: &str = "libnvrtc.so.12";

/// Where NVRTC came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvrtcLocation {
    /// Found by the dynamic linker (LD_LIBRARY_PATH, ld.so cache, system dirs).
    System,
    /// Loaded by absolute path from this file.
    Preloaded(PathBuf),
}

/// True if the CUDA driver library can be loaded (the check cudarc requires
/// before any other driver call).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library names and closes them again.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// True if the cuBLAS library can be loaded.
pub fn cublas_present() -> bool {
    // SAFETY: as in `driver_present`.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// True if cudarc can load NVRTC right now (without the preload fallback).
pub fn nvrtc_present() -> bool {
    // SAFETY: as in `driver_present`.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Folders searched for a pip-installed NVRTC: `$TALARIA_NVRTC_DIR`, then the
/// folder `bench/gpu/nvrtc_env.sh` installs into.
pub fn nvrtc_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(NVRTC_DIR_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cache/talaria").join(format!("nvrtc-{NVRTC_WHEEL_VERSION}")).join("nvidia/cuda_nvrtc/lib"));
    }
    dirs
}

/// Makes NVRTC loadable by cudarc, or says why it is not. The first call
/// decides; later calls return the same answer.
pub fn ensure_nvrtc() -> Result<NvrtcLocation, CudaError> {
    static FOUND: OnceLock<Option<NvrtcLocation>> = OnceLock::new();
    FOUND.get_or_init(locate_nvrtc).clone().ok_or(CudaError::NvrtcNotFound)
}

fn locate_nvrtc() -> Option<NvrtcLocation> {
    if nvrtc_present() {
        return Some(NvrtcLocation::System);
    }
    for dir in nvrtc_search_dirs() {
        let path = dir.join(NVRTC_FILE);
        if path.is_file() && preload(&path) && nvrtc_present() {
            return Some(NvrtcLocation::Preloaded(path));
        }
    }
    None
}

/// dlopen()s `path` and keeps it loaded for the life of the process (cudarc
/// keeps its own handle for as long), so a later bare-name dlopen of its
/// SONAME finds it.
#[cfg(unix)]
fn preload(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a plain dlopen of a shared library; the handle is deliberately
    // never closed.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        tracing::debug!(path = %path.display(), "dlopen of NVRTC failed");
        return false;
    }
    true
}

#[cfg(not(unix))]
fn preload(_path: &Path) -> bool {
    false
}
