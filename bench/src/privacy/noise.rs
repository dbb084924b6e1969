//! The attacker's model of the mask on an op's rows, from the public
//! parameters in the manifest: ReMO pads are `N(0, diag(σ²))` with
//! `σ_c = κ·s_c`. Unmasked recordings get a tiny floor so the Gaussian
//! likelihood stays finite (it then ranks like an L2 distance).

use talaria_models::OpId;

use super::recording::Manifest;

/// Relative noise floor for unmasked rows (f32 rounding is ~1e-7).
const UNMASKED_FLOOR: f64 = 1e-3;

#[derive(Clone, Debug)]
pub struct NoiseModel {
    /// Per input channel standard deviation of the pad.
    pub sigma: Vec<f64>,
    /// Whether the channel scales came from the manifest (else 1.0 each,
    /// the RMS of a gain-free RMSNorm output).
    pub announced: bool,
}

impl NoiseModel {
    pub fn for_op(m: &Manifest, id: OpId, cols: usize) -> Self {
        let (scales, announced) = match m.channel_scales(id) {
            Some(s) if s.len() == cols => (s, true),
            _ => (vec![1.0; cols], false),
        };
        let k = m.kappa();
        let factor = if k > 0.0 { k } else { UNMASKED_FLOOR };
        Self { sigma: scales.iter().map(|s| (s * factor).max(1e-12)).collect(), announced }
    }

    /// `1/σ_c²`.
    pub fn precision(&self) -> Vec<f64> {
        self.sigma.iter().map(|s| 1.0 / (s * s)).collect()
    }
}
