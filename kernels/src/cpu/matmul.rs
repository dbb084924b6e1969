//! `out = x · Wᵀ` with f32 activations and f32/bf16/f16 weights: the entry
//! point that picks the kernel family for this CPU and weight type.
//!
//! Batch invariance: for a given CPU and weight type one arithmetic is used
//! for every row count (decode GEMV and prefill GEMM alike), so a row's
//! output is bit-identical whatever other rows share the call.
//! - bf16 weights on AMX CPUs: AMX tiles, activations split exactly into
//!   three bf16 limbs (f32-accurate), f32 accumulation;
//! - otherwise on AVX-512: f32 FMA dot products (weights widened exactly;
//!   quant blocks dequantized in registers to their exact f32 values, so a
//!   stored matrix gives bit for bit what its f32 conversion gives);
//! - otherwise on AVX2+FMA: 8-lane f32 FMA dot products, every weight type
//!   widened or dequantized in registers (`matmul_avx2`);
//! - otherwise: portable Rust.

use super::features::CpuFeatures;
use crate::weight::{WeightData, WeightMatrix};

/// Which kernel family `matmul` uses for `w` on this CPU.
pub fn matmul_backend(w: &WeightMatrix) -> &'static str {
    let f = CpuFeatures::get();
    match (&w.data, f.amx_bf16, f.avx512, f.avx2) {
        (WeightData::Bf16(_), true, _, _) => "amx-bf16x3",
        (_, _, true, _) => "avx512-f32",
        (_, _, _, true) => "avx2-f32",
        _ => "portable",
    }
}

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ`.
///
/// # Panics
/// When the slice lengths do not match the shapes (a caller bug).
pub fn matmul(x: &[f32], rows: usize, w: &WeightMatrix, out: &mut [f32]) {
    check_shapes(x.len(), rows, w, out.len());
    if rows == 0 || w.rows == 0 {
        return;
    }
    if w.cols == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let f = CpuFeatures::get();
        if f.amx_bf16 {
            if let WeightData::Bf16(v) = &w.data {
                return super::amx_bf16::matmul(x, rows, w.cols, v, w.rows, out);
            }
        }
        if f.avx512 {
            return super::matmul_avx512::matmul(x, rows, w, out);
        }
        if f.avx2 {
            return super::matmul_avx2::matmul(x, rows, w, out);
        }
    }
    super::matmul_portable::matmul(x, rows, w, out)
}

pub(crate) fn check_shapes(x_len: usize, rows: usize, w: &WeightMatrix, out_len: usize) {
    let w_len = w.data.values();
    assert_eq!(w_len, w.rows * w.cols, "weight data holds {w_len} values, not {} × {}", w.rows, w.cols);
    assert_eq!(x_len, rows * w.cols, "activations hold {x_len} values, not {rows} × {}", w.cols);
    assert_eq!(out_len, rows * w.rows, "output holds {out_len} values, not {rows} × {}", w.rows);
}
