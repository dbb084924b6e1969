//! One line of the attack suite's results.

use serde::Serialize;

/// One (scheme, κ, setting, attack) result.
#[derive(Clone, Debug, Serialize)]
pub struct AttackRow {
    pub scheme: String,
    pub kappa: Option<f64>,
    pub setting: String,
    pub attack: String,
    pub assumptions: Vec<&'static str>,
    pub uses_prior: bool,
    pub weak_scheme: bool,
    pub top1: f64,
    /// Top-1 of the same attack on the recording's null twin (gated ReMO
    /// recordings only): what it gets without any information.
    pub null_top1: Option<f64>,
    pub top1_prompt: f64,
    pub top1_response: f64,
    pub bag_recall: f64,
    pub positions: usize,
    pub seconds: f64,
    pub notes: String,
}
