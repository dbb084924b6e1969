use serde::{Deserialize, Serialize};

/// Bumped whenever the meaning of a frame changes (2: typed busy report and
/// public parameters).
pub const WORKER_PROTOCOL: u32 = 2;

/// The public protocol parameters of a session, stored in a recording's
/// manifest so attacks know them (docs/DESIGN.md §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicParams {
    /// `remo` or `plain`.
    pub mode: String,
    /// `remo`, `remo-fast` or `plain`: what the attack suite models.
    pub scheme: String,
    /// The privacy level κ (0 for the plain baseline).
    pub kappa: f64,
    /// `exact-f64` or `fast-f32`.
    pub precision: String,
    /// How the public channel scales were obtained.
    pub calibration: String,
}

impl PublicParams {
    /// Whether the session sends rows unmasked: the `plain` baseline (κ = 0
    /// is how it announces itself; a non-positive or non-finite κ masks
    /// nothing either).
    pub fn is_unmasked(&self) -> bool {
        self.mode == "plain" || self.scheme == "plain" || !(self.kappa.is_finite() && self.kappa > 0.0)
    }
}

/// CVM → worker, first frame of a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// `Checkpoint::manifest_hash()` of the model the CVM loaded.
    pub manifest_hash: String,
    pub remo: PublicParams,
}

/// Worker → CVM answer to `Hello`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloAck {
    pub protocol: u32,
    pub manifest_hash: String,
    pub backend: String,
    pub weight_dtype: String,
    /// Every op the worker serves.
    pub ops: Vec<OpShape>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpShape {
    pub layer: i32,
    pub op: u8,
    pub d_in: usize,
    pub d_out: usize,
}

#[cfg(test)]
mod tests {
    use super::PublicParams;

    fn params(mode: &str, scheme: &str, kappa: f64) -> PublicParams {
        PublicParams { mode: mode.into(), scheme: scheme.into(), kappa, precision: "exact-f64".into(), calibration: String::new() }
    }

    #[test]
    fn plain_sessions_and_zero_kappa_are_unmasked() {
        assert!(params("plain", "plain", 0.0).is_unmasked());
        assert!(params("remo", "remo", 0.0).is_unmasked());
        assert!(params("remo", "remo", f64::NAN).is_unmasked());
        assert!(params("remo", "plain", 1e4).is_unmasked());
        assert!(!params("remo", "remo", 1e4).is_unmasked());
        assert!(!params("remo", "remo-fast", 1e2).is_unmasked());
    }
}
