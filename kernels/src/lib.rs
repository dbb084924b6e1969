//! CPU numeric kernels with no model or protocol knowledge (GEMM/GEMV,
//! attention, norms, RoPE, activations), and the one precision type the
//! layers above share ([`Precision`], [`Float`], [`Rows`]). The CUDA kernels
//! live in `talaria-kernels-cuda`, which only the worker links.
pub mod cpu;
pub mod precision;
pub mod weight;

pub use precision::{f32_product, mixed, Float, Precision, Rows, RowsMut};
pub use weight::{WeightDType, WeightData, WeightFormat, WeightMatrix};
