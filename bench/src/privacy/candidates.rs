//! What the attacker can compute: the exact input row of an op for a
//! candidate token. Layer-0 qkv inputs are RMSNorm of embedding rows times
//! the layer's gain, a fixed dictionary of V rows; deeper ops depend on the prefix and
//! come from running the plain model (see `engine_candidates`).

use anyhow::{ensure, Context, Result};
use talaria_kernels::cpu::rms_norm;
use talaria_kernels::WeightFormat;
use talaria_models::{Checkpoint, CvmWeights, Op, OpId};

use super::mat::Rows32;

pub trait Candidates {
    fn vocab_size(&self) -> usize;

    /// The op's candidate rows when they do not depend on the prefix
    /// (row t = the op's input when the token is t).
    fn dictionary(&self, id: OpId) -> Option<&Rows32>;

    /// Ops whose candidate rows depend on the prefix.
    fn contextual_ops(&self) -> Vec<OpId>;

    /// For each candidate token appended after `prefix`, its input row at
    /// every contextual op: one (op, candidates × d_in) entry per op.
    fn contextual_rows(&mut self, prefix: &[u32], candidates: &[u32]) -> Result<Vec<(OpId, Rows32)>>;

    /// The plain model's next-token logits after `prefix` (None for an
    /// empty prefix or when this provider does not run the model).
    fn next_token_logits(&mut self, prefix: &[u32]) -> Result<Option<Vec<f32>>>;

    /// Whether `next_token_logits` can answer (the fast sequential mode
    /// needs the model).
    fn runs_model(&self) -> bool {
        false
    }
}

/// The layer-0 qkv dictionary: `RMSNorm(E[t]) · γ` (layer 0's
/// `input_layernorm` gain) for every token, as the CVM computes it.
pub struct Layer0Dictionary {
    pub rows: Rows32,
}

impl Layer0Dictionary {
    pub fn from_embedding(embedding: &[f32], gain: &[f32], vocab: usize, hidden: usize, eps: f32) -> Result<Self> {
        ensure!(embedding.len() == vocab * hidden, "embedding has {} values, expected {vocab} × {hidden}", embedding.len());
        ensure!(gain.len() == hidden, "the norm gain has {} values, expected {hidden}", gain.len());
        let mut rows = vec![0f32; embedding.len()];
        rms_norm(embedding, hidden, eps, Some(gain), &mut rows);
        Ok(Self { rows: Rows32::from_vec(vocab, hidden, rows)? })
    }

    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self> {
        let w = CvmWeights::load(ck, WeightFormat::Stored).with_context(|| format!("loading the embedding of {}", ck.path.display()))?;
        let c = &ck.config;
        Self::from_embedding(&w.embed_tokens.to_f32(), &w.layers[0].input_layernorm, c.vocab_size, c.hidden_size, c.rms_norm_eps)
    }
}

impl Candidates for Layer0Dictionary {
    fn vocab_size(&self) -> usize {
        self.rows.rows
    }

    fn dictionary(&self, id: OpId) -> Option<&Rows32> {
        (id == OpId::new(0, Op::Qkv)).then_some(&self.rows)
    }

    fn contextual_ops(&self) -> Vec<OpId> {
        Vec::new()
    }

    fn contextual_rows(&mut self, _prefix: &[u32], _candidates: &[u32]) -> Result<Vec<(OpId, Rows32)>> {
        Ok(Vec::new())
    }

    fn next_token_logits(&mut self, _prefix: &[u32]) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_unit_rms_and_only_layer0_qkv_is_a_dictionary() {
        let d = Layer0Dictionary::from_embedding(&[3.0, 4.0, 0.0, 0.0, 1.0, 1.0], &[1.0, 2.0], 3, 2, 0.0).unwrap();
        let r0 = d.rows.row(0);
        assert!(((r0[0] * r0[0] + r0[1] * r0[1] / 4.0) / 2.0 - 1.0).abs() < 1e-6, "unit RMS before the gain");
        assert!((r0[1] / r0[0] - 8.0 / 3.0).abs() < 1e-6, "the gain scales channel 1");
        assert!(d.dictionary(OpId::new(0, Op::Qkv)).is_some());
        assert!(d.dictionary(OpId::new(1, Op::Qkv)).is_none());
        assert!(d.dictionary(OpId::new(0, Op::O)).is_none());
        assert!(Layer0Dictionary::from_embedding(&[1.0], &[1.0, 1.0], 3, 2, 0.0).is_err());
        assert!(Layer0Dictionary::from_embedding(&[0.0; 6], &[1.0], 3, 2, 0.0).is_err());
    }
}
