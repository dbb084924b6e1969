//! The public per-op facts ReMO needs: shapes and calibration channel
//! scales (measured by the CVM on public calibration text; docs/DESIGN.md §3).

use std::collections::HashMap;

use talaria_models::{op_dims, ModelConfig, Op, OpId};

use crate::error::RemoError;

/// One linear: `d_in → d_out`, and the public RMS `s_c` of each input channel.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpec {
    pub d_in: usize,
    pub d_out: usize,
    pub channel_scales: Vec<f64>,
}

/// Every op ReMO will mask, validated.
#[derive(Clone, Debug, Default)]
pub struct RemoSetup {
    ops: HashMap<OpId, OpSpec>,
}

impl RemoSetup {
    /// Validates shapes (non-zero) and scales (`d_in` finite values > 0: a
    /// channel of scale 0 would get pads of σ = 0 and go out unmasked).
    pub fn new(ops: HashMap<OpId, OpSpec>) -> Result<Self, RemoError> {
        for (&id, spec) in &ops {
            if spec.d_in == 0 || spec.d_out == 0 {
                return Err(RemoError::Param(format!("{id}: empty shape {}→{}", spec.d_in, spec.d_out)));
            }
            let got = spec.channel_scales.len();
            if got != spec.d_in {
                return Err(RemoError::Shape { id, what: "channel scales", got, expected: spec.d_in });
            }
            if let Some((channel, &value)) = spec.channel_scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
                return Err(RemoError::BadScale { id, channel, value });
            }
        }
        Ok(Self { ops })
    }

    /// All outsourced linears of `cfg` (4 per layer, plus the LM head when
    /// untied) with their scales from `scales`; a missing op is an error.
    pub fn from_config(cfg: &ModelConfig, mut scales: HashMap<OpId, Vec<f64>>) -> Result<Self, RemoError> {
        let mut ops = HashMap::new();
        for id in outsourced_ops(cfg) {
            let (d_in, d_out) = op_dims(cfg, id.op);
            let channel_scales = scales.remove(&id).ok_or(RemoError::UnknownOp { id })?;
            ops.insert(id, OpSpec { d_in, d_out, channel_scales });
        }
        Self::new(ops)
    }

    pub fn get(&self, id: OpId) -> Option<&OpSpec> {
        self.ops.get(&id)
    }

    /// The op ids, sorted (layer order, then op order).
    pub fn ids(&self) -> Vec<OpId> {
        let mut ids: Vec<OpId> = self.ops.keys().copied().collect();
        ids.sort();
        ids
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// `d_in` of every op; one position goes through each op once per pass.
    pub fn input_dims(&self) -> impl Iterator<Item = usize> + '_ {
        self.ops.values().map(|s| s.d_in)
    }
}

/// The linears the worker runs for `cfg`, in forward order.
pub fn outsourced_ops(cfg: &ModelConfig) -> Vec<OpId> {
    let mut ids: Vec<OpId> = (0..cfg.num_hidden_layers).flat_map(|l| Op::LAYER_OPS.into_iter().map(move |op| OpId::new(l, op))).collect();
    if !cfg.tie_word_embeddings {
        ids.push(OpId::lm_head());
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(d_in: usize, s: f64) -> OpSpec {
        OpSpec { d_in, d_out: 3, channel_scales: vec![s; d_in] }
    }

    #[test]
    fn rejects_bad_scales_and_shapes() {
        let id = OpId::new(0, Op::Qkv);
        assert!(RemoSetup::new(HashMap::from([(id, spec(4, 1.0))])).is_ok());
        assert!(matches!(RemoSetup::new(HashMap::from([(id, spec(4, -1.0))])), Err(RemoError::BadScale { .. })));
        assert!(matches!(RemoSetup::new(HashMap::from([(id, spec(4, f64::NAN))])), Err(RemoError::BadScale { .. })));
        let mut short = spec(4, 1.0);
        short.channel_scales.pop();
        assert!(matches!(RemoSetup::new(HashMap::from([(id, short)])), Err(RemoError::Shape { .. })));
        assert!(RemoSetup::new(HashMap::from([(id, spec(0, 1.0))])).is_err());
    }
}
