//! ReMO's tunable parameters.

use talaria_kernels::Precision;

use crate::error::RemoError;
use crate::mixing::butterfly::MIN_ROUNDS;

/// The most of a pad batch that may ever be used (docs/DESIGN.md §3).
pub const MAX_USABLE_FRACTION: f64 = 0.75;

/// How many rows an online call carries: the real rows padded with dummy
/// rows (zeros, masked with their own pads like real rows) up to a bucket,
/// so the worker sees the bucket rather than the exact number of prompt
/// tokens or running sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowBuckets {
    /// No padding: the exact row count shows.
    Exact,
    /// The next power of two (the default).
    PowersOfTwo,
}

impl RowBuckets {
    /// Rows sent for `rows` real rows.
    pub fn bucket(self, rows: usize) -> usize {
        match self {
            Self::Exact => rows,
            Self::PowersOfTwo => rows.next_power_of_two(),
        }
    }
}

/// `pow2` (or `powers-of-two`) and `exact` (or `none`), as the command lines take it.
impl std::str::FromStr for RowBuckets {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pow2" | "powers-of-two" => Ok(Self::PowersOfTwo),
            "exact" | "none" => Ok(Self::Exact),
            other => Err(format!("unknown row buckets {other:?} (pow2 or exact)")),
        }
    }
}

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
    /// Online calls are padded to these row counts.
    pub row_buckets: RowBuckets,
    /// CVM threads that draw, mix, unmix and check pad batches off the
    /// engine thread (0: everything on the engine thread). Not public: it
    /// changes where the CVM computes, not what the worker sees.
    pub pad_threads: usize,
    /// Once the pools are full, fault in one round of recycled pad storage
    /// (every op's `R` and `R·W`) in idle time. A server under load grows
    /// into it during its first batch period anyway, with the kernel
    /// zeroing fresh pages on the pad threads (a third of the CVM's CPU
    /// then); a one-shot run that never refills does not need it.
    pub reserve_storage: bool,
}

impl Default for RemoParams {
    fn default() -> Self {
        Self {
            kappa: 1e4,
            mixing_rounds: MIN_ROUNDS,
            usable_fraction: MAX_USABLE_FRACTION,
            low_water: 256,
            row_buckets: RowBuckets::PowersOfTwo,
            pad_threads: 0,
            reserve_storage: false,
        }
    }
}

/// The privacy level used when none is given, per pad precision.
///
/// Exact (f64 pads and accumulation): products within ~1e-10 of exact at
/// κ = 10⁴, logits equal to the plain exact engine's up to one f32 ulp.
/// Fast (f32 pads, f32 accumulation, bf16 limbs on AMX or tensor cores):
/// the worker's f32 rounding of `X + R` is ~κ·2⁻²⁴ of σ, so the error grows
/// with κ. At κ = 10² the sequential attack over every layer, guided by the
/// model's prior, beat its null twin on real recordings (bound: 7 bits per
/// position); at κ = 10³ it did not (bound 0.07 bits), at the price of
/// logits about 10× further from the plain f32 engine's
/// (docs/decisions.md, "Fast mode at κ = 10³").
pub fn default_kappa(precision: Precision) -> f64 {
    match precision {
        Precision::F64 => 1e4,
        Precision::F32 => 1e3,
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
        ] {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert_eq!(RemoParams::default().usable_per_batch(1024), 768);
        assert_eq!(RemoParams::default().usable_per_batch(2), 1);
        let b = RemoParams::default().row_buckets;
        assert_eq!([1, 2, 3, 5, 16, 17, 513].map(|n| b.bucket(n)), [1, 2, 4, 8, 16, 32, 1024]);
        assert_eq!(RowBuckets::Exact.bucket(17), 17);
        assert_eq!("pow2".parse::<RowBuckets>(), Ok(RowBuckets::PowersOfTwo));
    }
}
