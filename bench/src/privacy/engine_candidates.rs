//! Candidate rows for every op of every layer, from the plain model: the
//! prefix runs once through `DecoderModel` (its KV cache kept between
//! calls and extended as the recovered prefix grows), then each candidate
//! token runs as one more position through a `Linear` that records the
//! input of every op before multiplying. The candidate's KV slot is
//! overwritten by the next candidate, so the prefix is never re-run.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use talaria_engine::{DecoderModel, KvPool, Linear, LocalLinear, LogitsWanted, SeqBlocks, SeqChunk, StepTimings};
use talaria_engine::{Rows, RowsMut};
use talaria_kernels::WeightFormat;
use talaria_models::{Checkpoint, CvmWeights, Op, OpId, WorkerWeights};

use super::candidates::{Candidates, Layer0Dictionary};
use super::mat::Rows32;

/// Tokens per KV block; the pool holds `max_tokens` positions.
const BLOCK: usize = 16;

/// A `Linear` that keeps a copy of the input of the ops it is asked to.
pub struct CapturingLinear<L: Linear> {
    pub inner: L,
    pub wanted: Vec<OpId>,
    pub captured: HashMap<OpId, Vec<f32>>,
}

impl<L: Linear> Linear for CapturingLinear<L> {
    /// Runs on the f32 engine (the default precision), so rows are f32.
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        if let (true, Rows::F32(v)) = (self.wanted.contains(&id), x) {
            self.captured.insert(id, v.to_vec());
        }
        self.inner.forward(id, rows, x, out)
    }

    fn name(&self) -> String {
        format!("capture({})", self.inner.name())
    }
}

pub struct EngineCandidates {
    layer0: Layer0Dictionary,
    model: DecoderModel,
    linear: CapturingLinear<LocalLinear>,
    kv: KvPool,
    seq: SeqBlocks,
    /// Tokens whose K/V are in `seq`.
    cached: Vec<u32>,
    /// Next-token logits after `cached` (None while it is empty).
    logits: Option<Vec<f32>>,
    ops: Vec<OpId>,
}

impl EngineCandidates {
    /// `dtype`: the weights as the worker holds them (its `--dtype`).
    pub fn load(ck: &Checkpoint, dtype: WeightFormat, max_tokens: usize) -> Result<Self> {
        let layer0 = Layer0Dictionary::from_checkpoint(ck)?;
        let weights = Arc::new(WorkerWeights::load(ck, dtype).context("loading the worker weights")?);
        let ops: Vec<OpId> = weights.op_ids().into_iter().filter(|&id| id != OpId::new(0, Op::Qkv)).collect();
        let cvm = CvmWeights::load(ck, WeightFormat::Stored).context("loading the CVM weights")?;
        let model = DecoderModel::new(ck.config.clone(), cvm).context("building the plain model")?;
        let kv = KvPool::new(&ck.config, max_tokens.div_ceil(BLOCK) + 1, BLOCK);
        let seq = kv.new_sequence();
        let linear = CapturingLinear { inner: LocalLinear::new(weights), wanted: ops.clone(), captured: HashMap::new() };
        Ok(Self { layer0, model, linear, kv, seq, cached: Vec::new(), logits: None, ops })
    }

    /// Brings the KV cache to exactly `prefix` (extending it when it
    /// continues the cached tokens, else starting over).
    fn sync(&mut self, prefix: &[u32]) -> Result<()> {
        if self.cached.len() > prefix.len() || self.cached[..] != prefix[..self.cached.len()] {
            self.seq = self.kv.new_sequence();
            self.cached.clear();
            self.logits = None;
        }
        let rest = &prefix[self.cached.len()..];
        if rest.is_empty() {
            return Ok(());
        }
        self.seq.reserve(rest.len())?;
        let mut t = StepTimings::default();
        let chunk = SeqChunk { blocks: &self.seq, tokens: rest, logits: LogitsWanted::Last };
        let logits = self.model.forward(&[chunk], &mut self.kv, &mut self.linear, &mut t)?;
        self.seq.advance(rest.len());
        self.cached.extend_from_slice(rest);
        self.logits = Some(logits);
        Ok(())
    }
}

impl Candidates for EngineCandidates {
    fn vocab_size(&self) -> usize {
        self.layer0.vocab_size()
    }

    fn dictionary(&self, id: OpId) -> Option<&Rows32> {
        self.layer0.dictionary(id)
    }

    fn contextual_ops(&self) -> Vec<OpId> {
        self.ops.clone()
    }

    fn contextual_rows(&mut self, prefix: &[u32], candidates: &[u32]) -> Result<Vec<(OpId, Rows32)>> {
        self.sync(prefix)?;
        let mut out: Vec<(OpId, Rows32)> = Vec::with_capacity(self.ops.len());
        self.seq.reserve(1)?;
        for (i, &t) in candidates.iter().enumerate() {
            self.linear.captured.clear();
            let mut timings = StepTimings::default();
            let chunk = SeqChunk { blocks: &self.seq, tokens: std::slice::from_ref(&t), logits: LogitsWanted::None };
            self.model.forward(&[chunk], &mut self.kv, &mut self.linear, &mut timings)?;
            for (k, id) in self.ops.iter().enumerate() {
                let x = self.linear.captured.get(id).with_context(|| format!("{id} was not called"))?;
                if i == 0 {
                    out.push((*id, Rows32::zeros(candidates.len(), x.len())));
                }
                ensure!(out[k].1.cols == x.len(), "{id}: input width changed");
                out[k].1.row_mut(i).copy_from_slice(x);
            }
        }
        Ok(out)
    }

    fn next_token_logits(&mut self, prefix: &[u32]) -> Result<Option<Vec<f32>>> {
        self.sync(prefix)?;
        Ok(self.logits.clone())
    }

    fn runs_model(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::attacks::likelihood::{DecodeMode, SequentialDecoding};
    use crate::privacy::attacks::{Attack, Evidence};
    use crate::privacy::mat::Rows64;
    use crate::privacy::npy::NpyDtype;
    use crate::privacy::recording::{Call, CallKind, Manifest, Recording};
    use crate::privacy::score::score;
    use crate::privacy::steps::group_steps;
    use crate::privacy::tokens::{SequenceTokens, TokensFile};
    use talaria_models::fetch::ensure_default_model;

    fn provider() -> (Checkpoint, EngineCandidates) {
        let ck = Checkpoint::open(ensure_default_model(false).expect("default model")).expect("checkpoint");
        let p = EngineCandidates::load(&ck, WeightFormat::Stored, 64).expect("engine candidates");
        (ck, p)
    }

    /// Every op's input rows for `tokens` run as one prefill.
    fn captured(ck: &Checkpoint, p: &mut EngineCandidates, tokens: &[u32]) -> HashMap<OpId, Vec<f32>> {
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(ck, WeightFormat::Stored).unwrap()).unwrap();
        let mut kv = KvPool::new(&ck.config, 8, BLOCK);
        let mut seq = kv.new_sequence();
        seq.reserve(tokens.len()).unwrap();
        let mut all = p.ops.clone();
        all.push(OpId::new(0, Op::Qkv));
        p.linear.wanted = all;
        p.linear.captured.clear();
        let chunk = SeqChunk { blocks: &seq, tokens, logits: LogitsWanted::None };
        model.forward(&[chunk], &mut kv, &mut p.linear, &mut StepTimings::default()).unwrap();
        p.linear.wanted = p.ops.clone();
        std::mem::take(&mut p.linear.captured)
    }

    #[test]
    fn candidate_rows_match_a_full_forward_and_decode_a_permuted_recording() {
        let (ck, mut p) = provider();
        let tokens: Vec<u32> = ck.tokenizer.encode("The cat sat on the mat").unwrap();
        let n = tokens.len();
        assert!(n >= 5);
        let full = captured(&ck, &mut p, &tokens);
        // The last position's inputs, as a candidate after the prefix.
        let rows = p.contextual_rows(&tokens[..n - 1], &[tokens[0], tokens[n - 1]]).unwrap();
        for (id, r) in &rows {
            let d = r.cols;
            let want = &full[id][(n - 1) * d..n * d];
            let err = r.row(1).iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            assert!(err <= 1e-3 * scale.max(1.0), "{id}: max error {err}");
        }
        assert!(p.next_token_logits(&tokens[..2]).unwrap().is_some());

        // A recording of every op with each call's rows permuted: prefill of
        // the first 3 tokens, then decode steps.
        let mut calls = Vec::new();
        let mut steps = vec![(0..3).map(|p| (0, p)).collect::<Vec<_>>()];
        steps.extend((3..n).map(|p| vec![(0, p)]));
        let mut order: Vec<OpId> = vec![OpId::new(0, Op::Qkv)];
        order.extend(p.ops.iter().copied());
        for step in &steps {
            let (lo, hi) = (step[0].1, step[step.len() - 1].1 + 1);
            for id in &order {
                let x = &full[id];
                let d = x.len() / n;
                let mut rows: Vec<usize> = (lo..hi).collect();
                rows.reverse();
                let data = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().map(|&v| v as f64)).collect();
                calls.push(Call {
                    seq: calls.len() as u64,
                    kind: CallKind::Online,
                    id: *id,
                    dtype: NpyDtype::F32,
                    data: Rows64::from_vec(rows.len(), d, data).unwrap(),
                });
            }
        }
        let rec = Recording {
            manifest: Manifest { format_version: 1, model: ck.config.clone(), remo: serde_json::json!({"mode": "permute"}) },
            calls,
        };
        let sources = steps.iter().map(|s| Some((0..s.len()).rev().map(Some).collect())).collect();
        let tf = TokensFile {
            format_version: 1,
            sequences: vec![SequenceTokens { tokens: tokens.clone(), prompt_len: 3, bos: false, attacker: false }],
            steps: Some(steps),
            row_sources: Some(sources),
        };
        let st = group_steps(&rec, &tf).unwrap();
        let mut ev = Evidence { rec: &rec, steps: &st, view: None };
        ev.view = crate::privacy::attacks::dict_view::DictView::build(&ev, &p);
        let out = SequentialDecoding { mode: DecodeMode::Exhaustive, rerank: 4 }.run(&ev, &mut p).unwrap().unwrap();
        assert!(out.notes.contains("prefix-dependent ops"), "{}", out.notes);
        assert_eq!(score(&tf, &st, &out.guesses).top1, 1.0);
        let fast = SequentialDecoding { mode: DecodeMode::Fast { top_k: 4 }, rerank: 4 }.run(&ev, &mut p).unwrap().unwrap();
        assert_eq!(score(&tf, &st, &fast.guesses).top1, 1.0);
    }
}
