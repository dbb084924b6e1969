//! CUDA backend: our own masked-GEMM kernels (CUDA C in `kernels/*.cu`,
//! compiled at run time by NVRTC through cudarc), with a cuBLAS reference.
//!
//! Everything compiles without CUDA; at run time [`CudaMatmul::new`] returns
//! a [`CudaError`] when there is no driver, no device or no NVRTC, so callers
//! fall back to the CPU kernels. [`library`] explains how the shared
//! libraries are found.

pub mod cublas_ref;
pub mod device_weight;
pub mod error;
pub mod gemm;
pub mod library;
pub mod matmul;
pub mod plan;
pub mod probe;
pub mod source;
mod staging;

pub use cublas_ref::CublasReference;
pub use device_weight::DeviceWeight;
pub use error::CudaError;
pub use gemm::GemmKernels;
pub use library::{driver_present, ensure_nvrtc, NvrtcLocation};
pub use matmul::CudaMatmul;
pub use plan::{KernelVariant, MatmulMode};
pub use probe::{device_count, probe_devices, DeviceInfo};
