//! Numeric kernels with no model or protocol knowledge: CPU (GEMM/GEMV,
//! attention, norms, RoPE, activations) and CUDA (sources compiled by NVRTC
//! at run time).
pub mod cpu;
pub mod cuda;
pub mod weight;

pub use weight::{WeightDType, WeightData, WeightMatrix};
