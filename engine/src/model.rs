//! The Llama forward pass over a batch of sequence chunks (prefill chunks
//! and decode tokens alike), weight-free except for the embedding (and the
//! tied head): every other weight product goes through `Linear`.

use std::ops::Range;
use std::sync::Mutex;
use std::time::Instant;

use talaria_kernels::cpu::{matmul, rms_norm, silu_mul, AttnQuery, KernelError, RopeTable};
use talaria_kernels::{Float, Precision};
use talaria_models::{CvmWeights, LlamaConfig, Op, OpId};

use crate::kv_cache::{KvPool, SeqBlocks};
use crate::linear::Linear;

/// Which positions of a chunk need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    None,
    Last,
    /// Every position (the prompt's logprobs are asked for).
    All,
}

impl LogitsWanted {
    /// The positions, within a chunk of `len` tokens, that get a row of
    /// logits (in this order).
    pub fn positions(self, len: usize) -> Range<usize> {
        match self {
            Self::None => 0..0,
            Self::Last => len.saturating_sub(1)..len,
            Self::All => 0..len,
        }
    }
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
    scratch: Mutex<StepBuffers>,
}

/// The step's activation buffers (residual, normed rows, qkv, attention,
/// projection, gate_up, SiLU output) of the precision last used.
#[derive(Default)]
struct StepBuffers(Option<Box<dyn std::any::Any + Send>>);

impl StepBuffers {
    /// The buffers as `T` (fresh ones if the last step ran in the other
    /// precision).
    fn get<T: Float>(&mut self) -> &mut [Vec<T>; 7] {
        if !self.0.as_ref().is_some_and(|b| b.is::<[Vec<T>; 7]>()) {
            self.0 = Some(Box::new(<[Vec<T>; 7]>::default()));
        }
        self.0.as_mut().and_then(|b| b.downcast_mut()).expect("just set")
    }
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
            Precision::F32 => self.size_buffers(scratch.get::<f32>(), rows),
            Precision::F64 => self.size_buffers(scratch.get::<f64>(), rows),
        }
    }

    /// The step buffers sized for `n` rows, zeroed.
    fn size_buffers<T: Float>(&self, bufs: &mut [Vec<T>; 7], n: usize) {
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

    fn forward_in<T: Float>(
        &self,
        chunks: &[SeqChunk],
        kv: &mut KvPool,
        linear: &mut dyn Linear,
        t: &mut StepTimings,
    ) -> Result<Vec<f32>, ForwardError> {
        let c = &self.config;
        let start = Instant::now();

        // Row bookkeeping: (chunk index, position) per row.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for (ci, ch) in chunks.iter().enumerate() {
            let p0 = ch.blocks.len();
            if p0 + ch.tokens.len() > c.max_position_embeddings {
                return Err(ForwardError::TooLong { pos: p0 + ch.tokens.len(), max: c.max_position_embeddings });
            }
            rows.extend((0..ch.tokens.len()).map(|i| (ci, p0 + i)));
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bufs = scratch.get::<T>();
        self.size_buffers(bufs, rows.len());
        let [h, x, qkv, attn, proj, gate_up, act] = bufs;
        self.embed(chunks, h)?;
        let mut step = Step { model: self, chunks, rows: &rows, kv, linear, linear_s: 0.0 };
        for layer in 0..c.num_hidden_layers {
            step.attention_block(layer, h, x, qkv, attn, proj)?;
            step.mlp_block(layer, h, x, gate_up, act, proj)?;
        }
        let logits = step.head(h)?;
        t.linear_s += step.linear_s;
        t.cvm_s += start.elapsed().as_secs_f64() - step.linear_s;
        Ok(logits)
    }

    /// The embedding rows of the step's tokens.
    fn embed<T: Float>(&self, chunks: &[SeqChunk], h: &mut [T]) -> Result<(), ForwardError> {
        let d = self.config.hidden_size;
        for (r, &tok) in chunks.iter().flat_map(|ch| ch.tokens.iter()).enumerate() {
            if tok as usize >= self.config.vocab_size {
                return Err(ForwardError::BadToken(tok));
            }
            let row = self.weights.embed_tokens.row_f32(tok as usize);
            h[r * d..(r + 1) * d].iter_mut().zip(row).for_each(|(h, v)| *h = T::from_f32(v));
        }
        Ok(())
    }
}

/// One forward step in progress: the rows it runs (chunk, position), the
/// KV cache and the linear backend, and the time spent in the latter.
struct Step<'a> {
    model: &'a LlamaModel,
    chunks: &'a [SeqChunk<'a>],
    rows: &'a [(usize, usize)],
    kv: &'a mut KvPool,
    linear: &'a mut dyn Linear,
    linear_s: f64,
}

impl Step<'_> {
    /// `out = x · W_idᵀ` through the backend, timed.
    fn linear<T: Float>(&mut self, id: OpId, n: usize, x: &[T], out: &mut [T]) -> Result<(), ForwardError> {
        let t0 = Instant::now();
        let r = self.linear.forward(id, n, T::rows(x), T::rows_mut(out)).map_err(|source| ForwardError::Linear { id, source });
        self.linear_s += t0.elapsed().as_secs_f64();
        r
    }

    /// Norm, qkv, RoPE, KV write, paged attention, o, residual add.
    fn attention_block<T: Float>(
        &mut self,
        layer: usize,
        h: &mut [T],
        x: &mut [T],
        qkv: &mut [T],
        attn: &mut [T],
        proj: &mut [T],
    ) -> Result<(), ForwardError> {
        let c = &self.model.config;
        let (d, qd, kvd, n) = (c.hidden_size, c.q_dim(), c.kv_dim(), self.rows.len());
        // In the activations' precision (exact in f32 too for head_dim 64).
        let scale = T::from_f64(1.0 / (c.head_dim as f64).sqrt()).to_f64();
        rms_norm(h, d, c.rms_norm_eps, Some(&self.model.weights.layers[layer].input_layernorm), x);
        self.linear(OpId::new(layer, Op::Qkv), n, x, qkv)?;
        let cache = self.kv.cache_mut::<T>()?;
        for (r, row) in qkv.chunks_exact_mut(qd + 2 * kvd).enumerate() {
            let (ci, pos) = self.rows[r];
            let (q, kv_part) = row.split_at_mut(qd);
            let (k, v) = kv_part.split_at_mut(kvd);
            self.model.rope.apply(q, c.num_attention_heads, pos)?;
            self.model.rope.apply(k, c.num_key_value_heads, pos)?;
            let (block, off) = self.chunks[ci].blocks.slot(pos);
            cache.write(layer, block, off, k, v)?;
        }
        let queries: Vec<AttnQuery<T>> = self
            .rows
            .iter()
            .enumerate()
            .map(|(r, &(ci, pos))| AttnQuery {
                q: &qkv[r * (qd + 2 * kvd)..r * (qd + 2 * kvd) + qd],
                block_table: self.chunks[ci].blocks.block_table(),
                context_len: pos + 1,
            })
            .collect();
        T::paged_attention(&queries, &cache.layer(layer), c.num_attention_heads, scale, attn)?;
        drop(queries);
        self.linear(OpId::new(layer, Op::O), n, attn, proj)?;
        h.iter_mut().zip(proj.iter()).for_each(|(a, &b)| *a += b);
        Ok(())
    }

    /// Norm, gate_up, SiLU gating, down, residual add.
    fn mlp_block<T: Float>(
        &mut self,
        layer: usize,
        h: &mut [T],
        x: &mut [T],
        gate_up: &mut [T],
        act: &mut [T],
        proj: &mut [T],
    ) -> Result<(), ForwardError> {
        let c = &self.model.config;
        let n = self.rows.len();
        rms_norm(h, c.hidden_size, c.rms_norm_eps, Some(&self.model.weights.layers[layer].post_attention_layernorm), x);
        self.linear(OpId::new(layer, Op::GateUp), n, x, gate_up)?;
        silu_mul(gate_up, c.intermediate_size, act);
        self.linear(OpId::new(layer, Op::Down), n, act, proj)?;
        h.iter_mut().zip(proj.iter()).for_each(|(a, &b)| *a += b);
        Ok(())
    }

    /// Final norm and head for the rows that want logits, in chunk order.
    fn head<T: Float>(&mut self, h: &[T]) -> Result<Vec<f32>, ForwardError> {
        let c = &self.model.config;
        let d = c.hidden_size;
        let mut sel = Vec::new();
        let mut r = 0;
        for ch in self.chunks {
            sel.extend(ch.logits.positions(ch.tokens.len()).map(|p| r + p));
            r += ch.tokens.len();
        }
        let m = sel.len();
        let mut hs = Vec::with_capacity(m * d);
        for &r in &sel {
            hs.extend_from_slice(&h[r * d..(r + 1) * d]);
        }
        let mut xs = vec![T::default(); m * d];
        let mut logits = vec![0f32; m * c.vocab_size];
        if m == 0 {
            return Ok(logits);
        }
        rms_norm(&hs, d, c.rms_norm_eps, Some(&self.model.weights.norm), &mut xs);
        if self.model.weights.tied_head {
            // Tied head: the CVM holds the embedding and computes logits,
            // from the normed rows rounded to f32 (one rounding, then one
            // product: a flip there moves a logit by ~1e-8).
            let xs32: Vec<f32> = xs.iter().map(|v| v.to_f64() as f32).collect();
            matmul(&xs32, m, &self.model.weights.embed_tokens, &mut logits);
        } else {
            let mut out = vec![T::default(); m * c.vocab_size];
            self.linear(OpId::lm_head(), m, &xs, &mut out)?;
            logits.iter_mut().zip(&out).for_each(|(l, v)| *l = v.to_f64() as f32);
        }
        Ok(logits)
    }
}
