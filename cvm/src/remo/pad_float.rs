//! The element type of pads, of the masked rows on the wire and of the
//! worker's answers: `f64` in the exact mode, `f32` in the fast mode
//! (DESIGN §3, "a faster mode"). The fast mode halves every byte the CVM
//! draws, mixes and sends, and lets the worker use its f32 kernels (bf16
//! limbs with f32 accumulation); the price is that the worker's f32
//! rounding, about `κ·2⁻²⁴` relative to the data, is no longer far below
//! the model's own, so it runs at a smaller κ (see [`RemoPrecision`]).

use super::worker::{WorkerCall, WorkerMatmul};
use talaria_engine::Precision;
use talaria_kernels::cpu::Activation;

pub trait PadFloat: Activation + Into<f64> + bytemuck::Pod {
    /// The activations the engine hands a scheme of this pad type.
    const PRECISION: Precision;

    /// One call with the rows written and the answer read in place (see
    /// [`WorkerMatmul::matmul_in_place`]), in this type on the wire.
    fn worker_in_place(
        worker: &mut dyn WorkerMatmul,
        call: WorkerCall,
        fill: &mut dyn FnMut(&mut [Self]),
        take: &mut dyn FnMut(&[Self]),
    ) -> anyhow::Result<()>;
}

impl PadFloat for f64 {
    const PRECISION: Precision = Precision::F64;

    fn worker_in_place(
        worker: &mut dyn WorkerMatmul,
        call: WorkerCall,
        fill: &mut dyn FnMut(&mut [f64]),
        take: &mut dyn FnMut(&[f64]),
    ) -> anyhow::Result<()> {
        worker.matmul_in_place(call, fill, take)
    }
}

impl PadFloat for f32 {
    const PRECISION: Precision = Precision::F32;

    fn worker_in_place(
        worker: &mut dyn WorkerMatmul,
        call: WorkerCall,
        fill: &mut dyn FnMut(&mut [f32]),
        take: &mut dyn FnMut(&[f32]),
    ) -> anyhow::Result<()> {
        worker.matmul_in_place_f32(call, fill, take)
    }
}

/// Which pads a ReMO session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum RemoPrecision {
    /// f64 rows, f64 accumulation: products within ~1e-10 of exact at
    /// κ = 10⁴, logits equal to the plain exact engine's up to one f32 ulp.
    Exact,
    /// f32 rows, f32 accumulation (bf16 limbs on AMX or tensor cores):
    /// about twice the throughput on a CPU worker. The worker's f32
    /// rounding of `X + R` is ~κ·2⁻²⁴ of σ, and σ sits at twice the
    /// calibration peak, so the default κ is 10²: logits within ~0.2 of the
    /// plain f32 engine's (greedy tokens identical on the reference
    /// prompts), no attack of the suite above chance on real recordings,
    /// and a worst-case bound of 7 bits per position (rows at their
    /// calibration scale) against 7e-4 for the exact mode.
    Fast,
}

impl RemoPrecision {
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact-f64",
            Self::Fast => "fast-f32",
        }
    }

    /// The privacy level used when none is given.
    pub fn default_kappa(self) -> f64 {
        match self {
            Self::Exact => 1e4,
            Self::Fast => 1e2,
        }
    }
}
