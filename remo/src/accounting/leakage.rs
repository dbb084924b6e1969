//! The leakage bound of docs/DESIGN.md §3: against an attacker who knows the
//! candidate rows exactly, each masked row is a Gaussian channel with
//! signal ≤ `s_c` and noise `κ·s_c` per channel, so one call leaks at most
//! `d_in · ½·log₂(1 + 1/κ²)` bits about its row, and a position at most the
//! sum over every call it goes through.

use talaria_models::{op_dims, ModelConfig};

use crate::setup::outsourced_ops;

/// Bits one online call of an op with `d_in` inputs can leak about one row.
pub fn leakage_bits_per_call(d_in: usize, kappa: f64) -> f64 {
    leakage_bits_at_energy(d_in, kappa, 1.0)
}

/// The same bound evaluated at the row's actual signal power: `energy` is
/// the mean over channels of `(x_c / s_c)²` (1 = every channel at its
/// scale). Each channel leaks at most `½·log₂(1 + (x_c/σ_c)²)`, and by
/// concavity their sum (and the mean over a call's rows) is at most this.
pub fn leakage_bits_at_energy(d_in: usize, kappa: f64, energy: f64) -> f64 {
    // ln_1p keeps precision for large κ, where 1/κ² is tiny.
    d_in as f64 * 0.5 * (energy / (kappa * kappa)).ln_1p() / std::f64::consts::LN_2
}

/// The per-position bound over calls with the given input widths.
pub fn leakage_bound_bits_for_dims(d_ins: impl IntoIterator<Item = usize>, kappa: f64) -> f64 {
    d_ins.into_iter().map(|d| leakage_bits_per_call(d, kappa)).sum()
}

/// The per-position bound for one forward pass of `cfg`: 4 ops per layer,
/// plus the LM head when it is untied (tied logits stay in the CVM).
pub fn leakage_bound_bits(cfg: &ModelConfig, kappa: f64) -> f64 {
    leakage_bound_bits_for_dims(outsourced_ops(cfg).into_iter().map(|id| op_dims(cfg, id.op).0), kappa)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn smollm2() -> ModelConfig {
        ModelConfig { rope_theta: 1e5, max_position_embeddings: 8192, ..ModelConfig::llama(49152, 576, 1536, 30, 9, 3) }
    }

    #[test]
    fn smollm2_bound() {
        let cfg = smollm2();
        // 30 × (576 + 576 + 576 + 1536) input channels per position, each
        // ½·log₂(1 + 1e-8) ≈ ½·1e-8 / ln 2 bits.
        let want = 30.0 * 3264.0 * 0.5 * 1e-8 / std::f64::consts::LN_2;
        let got = leakage_bound_bits(&cfg, 1e4);
        assert!((got - want).abs() < 1e-7 * want, "{got} vs {want}");
        assert!((got - 7.063e-4).abs() < 1e-6, "{got}");
        // An untied head adds one call of width d.
        let untied = ModelConfig { tie_word_embeddings: false, ..cfg };
        assert!((leakage_bound_bits(&untied, 1e4) - got - leakage_bits_per_call(576, 1e4)).abs() < 1e-15);
        // κ = 1: half a bit per channel.
        assert!((leakage_bits_per_call(10, 1.0) - 5.0).abs() < 1e-12);
    }
}
