//! CPU kernels: matmul (f32 and exact f64), RMSNorm, RoPE, SiLU gating,
//! softmax and paged attention (the weight-free ones in f32, and in f64 for
//! the exact mode). Multi-threaded with rayon where it pays.

mod activation;

#[cfg(target_arch = "x86_64")]
mod amx_bf16;
mod attention;
mod attention_f64;
mod attention_f64_group;
mod attention_tile;
#[cfg(target_arch = "x86_64")]
mod blocks_avx2;
#[cfg(target_arch = "x86_64")]
mod dot_avx512;
#[cfg(target_arch = "x86_64")]
mod dot_blocks_avx512;
#[cfg(target_arch = "x86_64")]
mod dot_f64_avx512;
mod error;
mod exp;
mod exp_f64;
mod features;
mod huge_pages;
mod matmul;
#[cfg(target_arch = "x86_64")]
mod matmul_avx2;
#[cfg(target_arch = "x86_64")]
mod matmul_avx512;
mod matmul_f64;
#[cfg(target_arch = "x86_64")]
mod matmul_f64_avx2;
mod matmul_portable;
mod norm;
mod parallel;
mod pool_warmth;
#[cfg(target_arch = "x86_64")]
mod prefetch;
mod rope;
mod scratch;
mod softmax;
mod spd_solve;

pub use activation::{gated_mul, silu, silu_mul, Activation};

pub use attention::{paged_attention, AttnQuery, PagedKv, PagedKvMut};
pub use attention_f64::paged_attention_f64;
pub use error::KernelError;
pub(crate) use exp::exp;
pub(crate) use exp_f64::exp_f64;
pub use features::CpuFeatures;
pub use huge_pages::advise_huge_pages;
pub use matmul::{matmul, matmul_backend};
pub use matmul_f64::matmul_f64;
pub use norm::rms_norm;
pub use parallel::{join_global_pool, pool_on_this_thread, prefetch};
pub use pool_warmth::keep_pool_warm;
pub use rope::RopeTable;
pub use softmax::{log_softmax, softmax};
pub use spd_solve::{cholesky, cholesky_solve, gram};

#[cfg(test)]
mod matmul_f64_tests;
#[cfg(test)]
mod matmul_quant_tests;
#[cfg(test)]
mod matmul_tests;
