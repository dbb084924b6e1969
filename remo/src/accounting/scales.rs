//! Per-op channel scales `s_c`, fixed from public inputs only (the public
//! calibration text; docs/DESIGN.md §3). Pads get `σ_c = κ·s_c` whatever
//! the data, so nothing the worker sees of σ (pad-batch column norms,
//! online-row RMS, the call sequence) depends on private rows. A private
//! row whose whitened energy exceeds the budget is instead scaled down by a
//! private power of two before masking, and its product scaled back up:
//! both scalings are exact in floating point, and the factor never leaves
//! the CVM.

/// The whitened energy a row may carry when masked: rows at their
/// calibration scale (the nominal leakage bound).
pub const ENERGY_BUDGET: f64 = 1.0;

/// The fixed scales of one op.
pub struct ChannelScales {
    scales: Vec<f64>,
    /// `1 / s_c` (scales are validated finite and positive).
    inverse: Vec<f64>,
}

impl ChannelScales {
    pub fn new(scales: Vec<f64>) -> Self {
        let inverse = scales.iter().map(|&s| 1.0 / s).collect();
        Self { scales, inverse }
    }

    pub fn scales(&self) -> &[f64] {
        &self.scales
    }

    /// The mean whitened energy of one row, `mean_c (x_c / s_c)²`: by
    /// Jensen, a row masked at κ leaks at most `d_in·½·log₂(1 + energy/κ²)`
    /// bits, whatever its distribution over channels.
    pub fn energy<X: Copy + Into<f64>>(&self, row: &[X]) -> f64 {
        // Eight partial sums: one running sum made the pass scalar.
        const LANES: usize = 8;
        let mut acc = [0.0f64; LANES];
        let square = |v: X, inv: f64| {
            let w = v.into() * inv;
            w * w
        };
        let (rows, invs) = (row.chunks_exact(LANES), self.inverse.chunks_exact(LANES));
        let tail: f64 = rows.remainder().iter().zip(invs.remainder()).map(|(&v, &inv)| square(v, inv)).sum();
        for (r, inv) in rows.zip(invs) {
            for l in 0..LANES {
                acc[l] += square(r[l], inv[l]);
            }
        }
        (acc.iter().sum::<f64>() + tail) / row.len().max(1) as f64
    }
}

/// The smallest power of two `α ≥ 1` with `energy / α² ≤ ENERGY_BUDGET`.
pub fn rescale_factor(energy: f64) -> f64 {
    // NaN never gets here: inputs are checked finite first.
    if energy.is_nan() || energy <= ENERGY_BUDGET {
        return 1.0;
    }
    let mut alpha = (0.5 * (energy / ENERGY_BUDGET).log2()).ceil().exp2();
    while energy / (alpha * alpha) > ENERGY_BUDGET {
        alpha *= 2.0;
    }
    alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_whitened_and_the_factor_is_the_smallest_power_of_two_within_budget() {
        let s = ChannelScales::new(vec![1.0, 2.0, 0.5, 1.0]);
        assert_eq!(s.energy(&[1.0f32, 2.0, 0.5, 1.0]), 1.0);
        assert_eq!(s.energy(&[2.0f64, 0.0, 0.0, 0.0]), 1.0);
        assert_eq!(rescale_factor(0.0), 1.0);
        assert_eq!(rescale_factor(1.0), 1.0);
        assert_eq!(rescale_factor(1.0001), 2.0);
        assert_eq!(rescale_factor(4.0), 2.0);
        assert_eq!(rescale_factor(4.5), 4.0);
        assert_eq!(rescale_factor(1e6), 1024.0);
        for e in [1.5, 17.0, 3e9] {
            let a = rescale_factor(e);
            assert!(e / (a * a) <= 1.0 && e / (a * a) > 0.25, "{e} → {a}");
        }
    }
}
