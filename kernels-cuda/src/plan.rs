//! Which kernel runs a call, and its launch geometry. Pure functions, so the
//! choices are tested without a GPU.

use cudarc::driver::LaunchConfig;

use talaria_kernels::WeightDType;

use super::error::CudaError;

/// Up to this many rows a call is memory-bound on reading W: the GEMV kernels
/// read each weight once for all rows.
pub const GEMV_MAX_ROWS: usize = 8;

/// The arithmetic a call uses (see the crate's kernels/*.cu for details).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulMode {
    /// f64 activations, f64 products and sums (FP64 tensor cores).
    Exact,
    /// f32 activations as three bf16 limbs, bf16 tensor cores, f32 sums.
    Fast,
    /// f32 activations rounded to bf16, bf16 tensor cores, f32 sums.
    Plain,
}

impl MatmulMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Fast => "fast",
            Self::Plain => "plain",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelVariant {
    /// 64×64-tiled `mma.sync` kernel (sm_80+).
    TensorCore,
    /// The exact mode's 64×64 kernel issuing sm_90's m16n8k4 DMMA (two
    /// 8-row tiles per instruction); exact mode only.
    TensorCoreSm90,
    /// One warp per output column, 8 rows per block row.
    Gemv,
}

/// The kernel for `rows` rows of `mode` on a device of `compute_capability`.
/// On sm_90 the exact mode issues the m16n8k4 DMMA: 1.3–1.6× the m8n8k4
/// kernel's rate on an H100 (42 vs 27 TFLOP/s at 4096³, bench/RESULTS.md).
pub fn choose_variant(mode: MatmulMode, rows: usize, compute_capability: (i32, i32)) -> KernelVariant {
    if rows <= GEMV_MAX_ROWS || compute_capability.0 < 8 {
        KernelVariant::Gemv
    } else if mode == MatmulMode::Exact && compute_capability.0 >= 9 {
        KernelVariant::TensorCoreSm90
    } else {
        KernelVariant::TensorCore
    }
}

/// Entry-point name of a (mode, variant, weight dtype) triple:
/// `talaria_{mode}_{kernel}_{dtype}`. The exact kernels take every weight
/// dtype; the fast and plain ones have GEMVs for every dtype and
/// tensor-core kernels for bf16 and the quant blocks (their integer quants
/// are exact in bf16), not for f16 or f32 weights.
pub fn entry_name(mode: MatmulMode, variant: KernelVariant, dtype: WeightDType) -> Result<&'static str, CudaError> {
    use KernelVariant::*;
    use MatmulMode::*;
    let (source, kernel) = match (mode, variant) {
        (Exact, TensorCore) => (&super::source::EXACT_SOURCE, "dmma"),
        (Exact, TensorCoreSm90) => (&super::source::EXACT_SOURCE, "dmma90"),
        (Exact, Gemv) => (&super::source::EXACT_SOURCE, "gemv"),
        (Fast | Plain, TensorCoreSm90) => {
            return Err(CudaError::Shape(format!("the sm_90 DMMA kernel is exact-mode only, not {}", mode.name())))
        }
        (Fast | Plain, TensorCore) => (&super::source::BF16_SOURCE, "mma"),
        (Fast | Plain, Gemv) => (&super::source::BF16_SOURCE, "gemv"),
    };
    let want = format!("talaria_{}_{kernel}_{}", mode.name(), dtype.name());
    source.entries.iter().copied().find(|e| *e == want).ok_or(CudaError::UnsupportedDtype { op: mode.name(), dtype: dtype.name() })
}

/// Problem size of one call, checked to fit the kernels' `int` arguments and
/// the grid limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

const MAX_GRID_Y: usize = 65_535;

impl GemmShape {
    pub fn validate(&self) -> Result<(), CudaError> {
        let fits = |v: usize| v <= i32::MAX as usize;
        if self.d_in == 0 || self.d_out == 0 {
            return Err(CudaError::Shape(format!("empty weight matrix {self:?}")));
        }
        if !fits(self.rows) || !fits(self.d_in) || !fits(self.d_out) {
            return Err(CudaError::Shape(format!("dimension above i32::MAX in {self:?}")));
        }
        if self.rows.div_ceil(GEMV_MAX_ROWS) > MAX_GRID_Y {
            return Err(CudaError::Shape(format!("{} rows exceed one launch (at most {})", self.rows, MAX_GRID_Y * GEMV_MAX_ROWS)));
        }
        Ok(())
    }

    /// Rows of 8 elements stay 16-byte aligned: the kernels' vector loads.
    pub fn vectorized(&self) -> bool {
        self.d_in.is_multiple_of(8)
    }
}

/// Grid and block of a launch.
pub fn launch_config(variant: KernelVariant, shape: GemmShape) -> LaunchConfig {
    match variant {
        KernelVariant::TensorCore | KernelVariant::TensorCoreSm90 => LaunchConfig {
            grid_dim: (shape.d_out.div_ceil(64) as u32, shape.rows.div_ceil(64) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        },
        KernelVariant::Gemv => LaunchConfig {
            grid_dim: (shape.d_out.div_ceil(8) as u32, shape.rows.div_ceil(GEMV_MAX_ROWS) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rows_use_gemv_and_prefill_uses_tensor_cores() {
        use MatmulMode::*;
        assert_eq!(choose_variant(Exact, 1, (9, 0)), KernelVariant::Gemv);
        assert_eq!(choose_variant(Fast, 8, (9, 0)), KernelVariant::Gemv);
        assert_eq!(choose_variant(Fast, 9, (9, 0)), KernelVariant::TensorCore);
        assert_eq!(choose_variant(Exact, 9, (9, 0)), KernelVariant::TensorCoreSm90);
        assert_eq!(choose_variant(Exact, 512, (8, 0)), KernelVariant::TensorCore);
        // No mma.sync below sm_80.
        assert_eq!(choose_variant(Exact, 512, (7, 5)), KernelVariant::Gemv);
    }

    #[test]
    fn fast_and_plain_tensor_cores_take_bf16_and_quant_blocks() {
        use KernelVariant::*;
        use MatmulMode::*;
        use WeightDType::*;
        for mode in [Fast, Plain] {
            for dtype in [Bf16, F16, F32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K] {
                assert!(entry_name(mode, Gemv, dtype).unwrap().ends_with(dtype.name()));
                // f16 and f32 values are not exact in bf16 (no limbs for W).
                assert_eq!(entry_name(mode, TensorCore, dtype).is_ok(), !matches!(dtype, F16 | F32), "{dtype:?}");
            }
            assert!(entry_name(mode, Gemv, Q8K).is_err(), "Q8_K is never held");
            assert!(entry_name(mode, TensorCoreSm90, Bf16).is_err());
        }
        assert_eq!(entry_name(Fast, TensorCore, Q4K).unwrap(), "talaria_fast_mma_q4_k");
        assert_eq!(entry_name(Plain, Gemv, Bf16).unwrap(), "talaria_plain_gemv_bf16");
        assert_eq!(entry_name(Exact, TensorCore, F16).unwrap(), "talaria_exact_dmma_f16");
    }

    #[test]
    fn the_exact_kernels_read_every_stored_quant_type() {
        use WeightDType::*;
        for dtype in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K] {
            for variant in [KernelVariant::TensorCore, KernelVariant::TensorCoreSm90, KernelVariant::Gemv] {
                let name = entry_name(MatmulMode::Exact, variant, dtype).unwrap();
                assert!(name.ends_with(dtype.name()), "{name}");
            }
        }
        assert_eq!(entry_name(MatmulMode::Exact, KernelVariant::Gemv, Q4K).unwrap(), "talaria_exact_gemv_q4_k");
        assert!(entry_name(MatmulMode::Exact, KernelVariant::Gemv, Q8K).is_err(), "Q8_K is never held");
    }

    #[test]
    fn every_entry_name_is_a_compiled_entry() {
        use WeightDType::*;
        let all: Vec<&str> = super::super::source::SOURCES.iter().flat_map(|s| s.entries.iter().copied()).collect();
        for mode in [MatmulMode::Exact, MatmulMode::Fast, MatmulMode::Plain] {
            for variant in [KernelVariant::TensorCore, KernelVariant::TensorCoreSm90, KernelVariant::Gemv] {
                for dtype in [Bf16, F16, F32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K, Q8K] {
                    if let Ok(name) = entry_name(mode, variant, dtype) {
                        assert!(all.contains(&name), "{name} is not in any source");
                    }
                }
            }
        }
    }

    #[test]
    fn grids_cover_the_output() {
        let shape = GemmShape { rows: 130, d_in: 576, d_out: 3072 };
        let tc = launch_config(KernelVariant::TensorCore, shape);
        assert_eq!(tc.grid_dim, (48, 3, 1));
        assert_eq!(tc.block_dim, (128, 1, 1));
        let gv = launch_config(KernelVariant::Gemv, GemmShape { rows: 3, ..shape });
        assert_eq!(gv.grid_dim, (384, 1, 1));
        assert_eq!(gv.block_dim.0 / 32, 8, "one warp per column, 8 columns per block");
    }

    #[test]
    fn shapes_are_validated() {
        assert!(GemmShape { rows: 4, d_in: 0, d_out: 3 }.validate().is_err());
        assert!(GemmShape { rows: 1 << 31, d_in: 8, d_out: 8 }.validate().is_err());
        assert!(GemmShape { rows: 600_000, d_in: 8, d_out: 8 }.validate().is_err());
        let ok = GemmShape { rows: 0, d_in: 576, d_out: 1536 };
        assert!(ok.validate().is_ok());
        assert!(ok.vectorized());
        assert!(!GemmShape { d_in: 45, ..ok }.vectorized());
    }
}
