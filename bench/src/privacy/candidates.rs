//! What the attacker can compute: the exact input row of an op for a
//! candidate token. Layer-0 qkv inputs are gain-free RMSNorm of embedding
//! rows, a fixed dictionary of V rows; deeper ops depend on the prefix and
//! come from running the plain model (see `engine_candidates`).

use anyhow::{ensure, Context, Result};
use talaria_kernels::WeightDType;
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

/// Gain-free RMSNorm of each row, as the CVM computes before layer 0's qkv.
pub fn rms_normalize_rows(e: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; e.len()];
    for (o, row) in out.chunks_exact_mut(cols).zip(e.chunks_exact(cols)) {
        let ms: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        o.iter_mut().zip(row).for_each(|(o, &v)| *o = (v as f64 * inv) as f32);
    }
    out
}

/// The layer-0 qkv dictionary: `RMSNorm(E[t])` (no gain) for every token.
pub struct Layer0Dictionary {
    pub rows: Rows32,
}

impl Layer0Dictionary {
    pub fn from_embedding(embedding: &[f32], vocab: usize, hidden: usize, eps: f32) -> Result<Self> {
        ensure!(embedding.len() == vocab * hidden, "embedding has {} values, expected {vocab} × {hidden}", embedding.len());
        Ok(Self { rows: Rows32::from_vec(vocab, hidden, rms_normalize_rows(embedding, hidden, eps))? })
    }

    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self> {
        let w = CvmWeights::load(ck, WeightDType::F32).with_context(|| format!("loading the embedding of {}", ck.path.display()))?;
        let c = &ck.config;
        Self::from_embedding(&w.embed_tokens.to_f32(), c.vocab_size, c.hidden_size, c.rms_norm_eps)
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
        let d = Layer0Dictionary::from_embedding(&[3.0, 4.0, 0.0, 0.0, 1.0, 1.0], 3, 2, 0.0).unwrap();
        let r0 = d.rows.row(0);
        assert!(((r0[0] * r0[0] + r0[1] * r0[1]) / 2.0 - 1.0).abs() < 1e-6);
        assert!(d.dictionary(OpId::new(0, Op::Qkv)).is_some());
        assert!(d.dictionary(OpId::new(1, Op::Qkv)).is_none());
        assert!(d.dictionary(OpId::new(0, Op::O)).is_none());
        assert!(Layer0Dictionary::from_embedding(&[1.0], 3, 2, 0.0).is_err());
    }
}
