//! ReMO's tunable parameters.

use talaria_kernels::Precision;

use crate::error::RemoError;
use crate::mixing::butterfly::MIN_ROUNDS;

/// The most of a pad batch that may ever be used (docs/DESIGN.md §3).
pub const MAX_USABLE_FRACTION: f64 = 0.75;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RemoParams {
    /// Privacy level κ: pad σ_c = κ·s_c.
    pub kappa: f64,
    /// Rounds of the butterfly mixing (≥ 3).
    pub mixing_rounds: usize,
    /// Fraction of each pad batch kept (the rest is discarded), ≤ 0.75.
    pub usable_fraction: f64,
    /// `refill_idle` tops up pools holding fewer pads than this.
    pub low_water: usize,
    /// The pool is flushed when a call's mean whitened energy against the
    /// scales its oldest pads were drawn at exceeds `stale_ratio²` (so no
    /// call is masked at less than `κ / stale_ratio` in the bound's sense;
    /// see `pool::stale_energy`). Scales are raised at every per-channel
    /// excess regardless; this only bounds how stale pooled pads may be.
    /// Default 4. A per-channel test flushed on routine single-row outliers
    /// (4 synchronous pad batches in 64 decode steps).
    pub stale_ratio: f64,
}

impl Default for RemoParams {
    fn default() -> Self {
        Self { kappa: 1e4, mixing_rounds: MIN_ROUNDS, usable_fraction: MAX_USABLE_FRACTION, low_water: 256, stale_ratio: 4.0 }
    }
}

/// The privacy level used when none is given, per pad precision.
///
/// Exact (f64 pads and accumulation): products within ~1e-10 of exact at
/// κ = 10⁴, logits equal to the plain exact engine's up to one f32 ulp.
/// Fast (f32 pads, f32 accumulation, bf16 limbs on AMX or tensor cores):
/// the worker's f32 rounding of `X + R` is ~κ·2⁻²⁴ of σ, and σ sits at
/// twice the calibration peak, so κ = 10²: logits within ~0.2 of the plain
/// f32 engine's (greedy tokens identical on the reference prompts), no
/// attack of the suite above chance on real recordings, and a worst-case
/// bound of 7 bits per position (rows at their calibration scale) against
/// 7e-4 for the exact mode.
pub fn default_kappa(precision: Precision) -> f64 {
    match precision {
        Precision::F64 => 1e4,
        Precision::F32 => 1e2,
    }
}

impl RemoParams {
    /// The defaults with privacy level `kappa`.
    pub fn with_kappa(kappa: f64) -> Self {
        Self { kappa, ..Self::default() }
    }

    pub fn validate(&self) -> Result<(), RemoError> {
        let bad = |m: String| Err(RemoError::Param(m));
        if !(self.kappa.is_finite() && self.kappa > 0.0) {
            return bad(format!("κ must be finite and > 0, got {}", self.kappa));
        }
        if self.mixing_rounds < MIN_ROUNDS {
            return bad(format!("mixing rounds must be ≥ {MIN_ROUNDS}, got {}", self.mixing_rounds));
        }
        if !(self.usable_fraction > 0.0 && self.usable_fraction <= MAX_USABLE_FRACTION) {
            return bad(format!("usable fraction must be in (0, {MAX_USABLE_FRACTION}], got {}", self.usable_fraction));
        }
        if !(self.stale_ratio.is_finite() && self.stale_ratio >= 1.0) {
            return bad(format!("stale ratio must be finite and ≥ 1, got {}", self.stale_ratio));
        }
        Ok(())
    }

    /// Pads kept from a batch of `n_p` (at least one).
    pub fn usable_per_batch(&self, n_p: usize) -> usize {
        ((self.usable_fraction * n_p as f64).floor() as usize).clamp(1, n_p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RemoParams::default().validate().is_ok());
        for p in [
            RemoParams::with_kappa(0.0),
            RemoParams::with_kappa(f64::INFINITY),
            RemoParams { mixing_rounds: 2, ..Default::default() },
            RemoParams { usable_fraction: 0.8, ..Default::default() },
            RemoParams { usable_fraction: 0.0, ..Default::default() },
            RemoParams { stale_ratio: 0.5, ..Default::default() },
        ] {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert_eq!(RemoParams::default().usable_per_batch(1024), 768);
        assert_eq!(RemoParams::default().usable_per_batch(2), 1);
    }
}
