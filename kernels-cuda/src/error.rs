//! Errors of the CUDA backend. Every failure is an error value (never a
//! panic), so a caller can fall back to the CPU kernels.

use cudarc::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver: libcuda could not be loaded (no NVIDIA driver on this machine)")]
    DriverNotFound,
    #[error("the CUDA driver reports no device")]
    NoDevice,
    #[error("CUDA device {ordinal} does not exist (the driver reports {count})")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error(
        "NVRTC not found: libnvrtc could not be loaded (install a CUDA toolkit, or run \
         `source bench/gpu/nvrtc_env.sh`, or set TALARIA_NVRTC_DIR to the folder holding \
         libnvrtc.so.12)"
    )]
    NvrtcNotFound,
    #[error("cuBLAS not found: libcublas could not be loaded")]
    CublasNotFound,
    #[error("{context}: CUDA driver error {source:?}")]
    Driver {
        context: String,
        #[source]
        source: DriverError,
    },
    #[error("NVRTC could not compile {source_name} for {arch}: {message}")]
    Compile { source_name: &'static str, arch: String, message: String },
    #[error("{context}: cuBLAS error {status}")]
    Cublas { context: String, status: String },
    #[error("bad matmul arguments: {0}")]
    Shape(String),
    #[error("{op} needs a bf16 weight matrix, this one is {dtype}")]
    UnsupportedDtype { op: &'static str, dtype: &'static str },
    #[error("the weight matrix was uploaded through a different CudaMatmul (another CUDA context)")]
    ForeignWeight,
    #[error("{kernel} needs compute capability 8.0 or newer, the device has {major}.{minor}")]
    ArchTooOld { kernel: &'static str, major: i32, minor: i32 },
    #[error("a CUDA library call panicked in {context}: {message}")]
    Panicked { context: String, message: String },
}

/// Attaches what was being done to a driver error.
pub(crate) trait DriverContext<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T, CudaError>;
}

impl<T> DriverContext<T> for Result<T, DriverError> {
    fn ctx(self, context: impl Into<String>) -> Result<T, CudaError> {
        self.map_err(|source| CudaError::Driver { context: context.into(), source })
    }
}

/// Runs `f`, turning a panic inside cudarc (it panics when a library or a
/// symbol is missing) into an error.
pub(crate) fn catch_library_panic<T>(context: &str, f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(CudaError::Panicked { context: context.to_string(), message })
        }
    }
}
