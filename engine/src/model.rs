//! The Llama forward pass over a batch of sequence chunks (prefill chunks
//! and decode tokens alike), weight-free except for the embedding (and the
//! tied head): every other weight product goes through `Linear`.

use std::sync::Mutex;
use std::time::Instant;

use talaria_kernels::cpu::{matmul, rms_norm, silu_mul, AttnQuery, KernelError, RopeTable};
use talaria_models::{CvmWeights, LlamaConfig, Op, OpId};

use crate::kv_cache::{KvPool, SeqBlocks};
use crate::lane::{ForwardScratch, Lane};
use crate::linear::Linear;
use crate::precision::Precision;

/// Which positions of a chunk need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    None,
    Last,
    All,
}

/// New tokens of one sequence for this step. Its blocks must already be
/// reserved for `tokens.len()` more tokens; positions continue from
/// `blocks.len()`.
pub struct SeqChunk<'a> {
    pub blocks: &'a SeqBlocks,
    pub tokens: &'a [u32],
    pub logits: LogitsWanted,
}

/// Time spent in the weight-free part vs the linear backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimings {
    pub cvm_s: f64,
    pub linear_s: f64,
}

pub struct LlamaModel {
    pub config: LlamaConfig,
    pub weights: CvmWeights,
    rope: RopeTable,
    /// Activation buffers kept between steps: fresh multi-MB allocations
    /// each step cost page faults (f64 prefill: ~30 MB per step).
    scratch: Mutex<ForwardScratch>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("position {pos} is beyond the context length {max}")]
    TooLong { pos: usize, max: usize },
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error("the KV pool holds {} values but the backend computes in {}", kv.name(), backend.name())]
    KvPrecision { kv: Precision, backend: Precision },
    #[error("linear backend failed at {id}: {source:#}")]
    Linear {
        id: OpId,
        #[source]
        source: anyhow::Error,
    },
}

impl LlamaModel {
    pub fn new(config: LlamaConfig, weights: CvmWeights) -> Result<Self, ForwardError> {
        let rope = RopeTable::new(config.head_dim, config.rope_theta as f64, config.max_position_embeddings)?;
        Ok(Self { config, weights, rope, scratch: Mutex::default() })
    }

    /// Sizes the step buffers for `rows` rows of `precision` now, so the
    /// first step of that size pays no allocation or page faults.
    pub fn reserve_buffers(&self, rows: usize, precision: Precision) {
        let mut scratch = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match precision {
            Precision::F32 => self.size_buffers(f32::buffers(&mut scratch), rows),
            Precision::F64 => self.size_buffers(f64::buffers(&mut scratch), rows),
        }
    }

    /// The step buffers (`Lane::buffers`) sized for `n` rows, zeroed.
    fn size_buffers<T: Lane>(&self, bufs: &mut [Vec<T>; 7], n: usize) {
        let c = &self.config;
        let (d, qd, kvd, ff) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let lens = [n * d, n * d, n * (qd + 2 * kvd), n * qd, n * d, n * 2 * ff, n * ff];
        for (b, len) in bufs.iter_mut().zip(lens) {
            b.clear();
            b.resize(len, T::default());
        }
    }

    /// Runs one step; returns logits (vocab-sized rows) for the positions
    /// asked for, in chunk order. The caller advances each chunk's
    /// `SeqBlocks` by its token count afterwards. Activations are in the
    /// backend's precision (`Linear::precision`), which the KV pool must
    /// hold.
    pub fn forward(
        &self,
        chunks: &[SeqChunk],
        kv: &mut KvPool,
        linear: &mut dyn Linear,
        t: &mut StepTimings,
    ) -> Result<Vec<f32>, ForwardError> {
        let precision = linear.precision();
        if kv.precision() != precision {
            return Err(ForwardError::KvPrecision { kv: kv.precision(), backend: precision });
        }
        match precision {
            Precision::F32 => self.forward_in::<f32>(chunks, kv, linear, t),
            Precision::F64 => self.forward_in::<f64>(chunks, kv, linear, t),
        }
    }

    fn forward_in<T: Lane>(
        &self,
        chunks: &[SeqChunk],
        kv: &mut KvPool,
        linear: &mut dyn Linear,
        t: &mut StepTimings,
    ) -> Result<Vec<f32>, ForwardError> {
        let c = &self.config;
        let (d, qd, kvd, hd) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.head_dim);
        let start = Instant::now();
        let mut linear_s = 0.0;

        // Row bookkeeping: (chunk index, position) per row.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for (ci, ch) in chunks.iter().enumerate() {
            let p0 = ch.blocks.len();
            if p0 + ch.tokens.len() > c.max_position_embeddings {
                return Err(ForwardError::TooLong { pos: p0 + ch.tokens.len(), max: c.max_position_embeddings });
            }
            rows.extend((0..ch.tokens.len()).map(|i| (ci, p0 + i)));
        }
        let n = rows.len();
        let mut scratch = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bufs = T::buffers(&mut scratch);
        self.size_buffers(bufs, n);
        let [h, x, qkv, attn, proj, gate_up, act] = bufs;
        for (r, &tok) in chunks.iter().flat_map(|ch| ch.tokens.iter()).enumerate() {
            if tok as usize >= c.vocab_size {
                return Err(ForwardError::BadToken(tok));
            }
            let row = self.weights.embed_tokens.row_f32(tok as usize);
            h[r * d..(r + 1) * d].iter_mut().zip(row).for_each(|(h, v)| *h = T::from_f32(v));
        }

        let mut call = |id: OpId, x: &[T], out: &mut [T], linear_s: &mut f64| -> Result<(), ForwardError> {
            let t0 = Instant::now();
            let r = T::linear(linear, id, x, n, out).map_err(|source| ForwardError::Linear { id, source });
            *linear_s += t0.elapsed().as_secs_f64();
            r
        };

        // In the activations' precision (exact in f32 too for head_dim 64).
        let scale = T::from_f64(1.0 / (hd as f64).sqrt()).to_f64();

        for layer in 0..c.num_hidden_layers {
            rms_norm(h, d, c.rms_norm_eps, None, x);
            call(OpId::new(layer, Op::Qkv), x, qkv, &mut linear_s)?;
            for (r, row) in qkv.chunks_exact_mut(qd + 2 * kvd).enumerate() {
                let (ci, pos) = rows[r];
                let (q, kv_part) = row.split_at_mut(qd);
                let (k, v) = kv_part.split_at_mut(kvd);
                self.rope.apply(q, c.num_attention_heads, pos)?;
                self.rope.apply(k, c.num_key_value_heads, pos)?;
                let (block, off) = chunks[ci].blocks.slot(pos);
                T::write_kv(kv, layer, block, off, k, v)?;
            }
            let queries: Vec<AttnQuery<T>> = rows
                .iter()
                .enumerate()
                .map(|(r, &(ci, pos))| AttnQuery {
                    q: &qkv[r * (qd + 2 * kvd)..r * (qd + 2 * kvd) + qd],
                    block_table: chunks[ci].blocks.block_table(),
                    context_len: pos + 1,
                })
                .collect();
            T::attention(&queries, kv, layer, c.num_attention_heads, scale, attn)?;
            drop(queries);
            call(OpId::new(layer, Op::O), attn, proj, &mut linear_s)?;
            h.iter_mut().zip(proj.iter()).for_each(|(a, &b)| *a += b);

            rms_norm(h, d, c.rms_norm_eps, None, x);
            call(OpId::new(layer, Op::GateUp), x, gate_up, &mut linear_s)?;
            silu_mul(gate_up, c.intermediate_size, act);
            call(OpId::new(layer, Op::Down), act, proj, &mut linear_s)?;
            h.iter_mut().zip(proj.iter()).for_each(|(a, &b)| *a += b);
        }

        // Final norm and head for the rows that want logits.
        let mut sel = Vec::new();
        let mut r = 0;
        for ch in chunks {
            let k = ch.tokens.len();
            match ch.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last if k > 0 => sel.push(r + k - 1),
                LogitsWanted::Last => {}
                LogitsWanted::All => sel.extend(r..r + k),
            }
            r += k;
        }
        let m = sel.len();
        let mut hs = Vec::with_capacity(m * d);
        for &r in &sel {
            hs.extend_from_slice(&h[r * d..(r + 1) * d]);
        }
        let mut xs = vec![T::default(); m * d];
        let mut logits = vec![0f32; m * c.vocab_size];
        if m > 0 {
            match &self.weights.norm {
                // Tied head: the CVM holds the embedding and computes logits,
                // from the normed rows rounded to f32 (one rounding, then one
                // product: a flip there moves a logit by ~1e-8).
                Some(gain) => {
                    rms_norm(&hs, d, c.rms_norm_eps, Some(gain), &mut xs);
                    let xs32: Vec<f32> = xs.iter().map(|v| v.to_f64() as f32).collect();
                    matmul(&xs32, m, &self.weights.embed_tokens, &mut logits);
                }
                None => {
                    rms_norm(&hs, d, c.rms_norm_eps, None, &mut xs);
                    let t0 = Instant::now();
                    let mut out = vec![T::default(); m * c.vocab_size];
                    T::linear(linear, OpId::lm_head(), &xs, m, &mut out)
                        .map_err(|source| ForwardError::Linear { id: OpId::lm_head(), source })?;
                    logits.iter_mut().zip(&out).for_each(|(l, v)| *l = v.to_f64() as f32);
                    linear_s += t0.elapsed().as_secs_f64();
                }
            }
        }
        t.linear_s += linear_s;
        t.cvm_s += start.elapsed().as_secs_f64() - linear_s;
        Ok(logits)
    }
}
