//! The decoder forward pass over a batch of sequence chunks (prefill chunks
//! and decode tokens alike), weight-free except for the embedding (and the
//! tied head): every other weight product goes through `Linear`. One pass
//! serves every family; the config says which of its steps a layer has
//! (biases, q/k norms, sandwich norms, sliding windows, the activation).

use std::ops::Range;
use std::sync::Mutex;
use std::time::Instant;

use talaria_kernels::cpu::{gated_mul, matmul, rms_norm, AttnQuery, KernelError, RopeTable};
use talaria_kernels::{Float, Precision};
use talaria_models::{CvmWeights, ModelConfig, Op, OpId};

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

pub struct DecoderModel {
    pub config: ModelConfig,
    pub weights: CvmWeights,
    /// The distinct RoPE tables (Gemma 3: global and local layers) and
    /// which one each layer uses.
    ropes: Vec<RopeTable>,
    layer_rope: Vec<usize>,
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

impl DecoderModel {
    pub fn new(config: ModelConfig, weights: CvmWeights) -> Result<Self, ForwardError> {
        let c = &config;
        let mut keys: Vec<(f32, Option<&talaria_models::RopeScaling>)> = Vec::new();
        let mut layer_rope = Vec::with_capacity(c.num_hidden_layers);
        for layer in 0..c.num_hidden_layers {
            let key = (c.rope_theta_of(layer), c.rope_scaling_of(layer));
            layer_rope.push(keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            }));
        }
        let ropes = keys
            .iter()
            .map(|(theta, scaling)| {
                let divisors = scaling.map(|s| s.divisors(c.head_dim, *theta as f64));
                RopeTable::scaled(c.head_dim, *theta as f64, divisors.as_deref(), c.max_position_embeddings)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { config, weights, ropes, layer_rope, scratch: Mutex::default() })
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
            let out = &mut h[r * d..(r + 1) * d];
            match self.config.embedding_scale {
                // In f32, as HF scales the embedding (then widened in the exact mode).
                Some(scale) => out.iter_mut().zip(row).for_each(|(h, v)| *h = T::from_f32(v * scale)),
                None => out.iter_mut().zip(row).for_each(|(h, v)| *h = T::from_f32(v)),
            }
        }
        Ok(())
    }
}

/// One forward step in progress: the rows it runs (chunk, position), the
/// KV cache and the linear backend, and the time spent in the latter.
struct Step<'a> {
    model: &'a DecoderModel,
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

    /// Norm, qkv (+ bias), q/k norms, RoPE, KV write, paged attention
    /// (windowed in sliding layers), o (+ norm), residual add.
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
        let w = &self.model.weights.layers[layer];
        let (d, qd, kvd, n, hd) = (c.hidden_size, c.q_dim(), c.kv_dim(), self.rows.len(), c.head_dim);
        // In the activations' precision (exact in f32 too for head_dim 64).
        let scale = T::from_f64(c.attention_scale()).to_f64();
        let rope = &self.model.ropes[self.model.layer_rope[layer]];
        let window = c.window_of(layer);
        rms_norm(h, d, c.rms_norm_eps, Some(&w.input_layernorm), x);
        self.linear(OpId::new(layer, Op::Qkv), n, x, qkv)?;
        let cache = self.kv.cache_mut::<T>()?;
        let mut head_tmp = vec![T::default(); qd.max(kvd)];
        for (r, row) in qkv.chunks_exact_mut(qd + 2 * kvd).enumerate() {
            let (ci, pos) = self.rows[r];
            if let Some(b) = &w.self_attn.qkv_bias {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += T::from_f32(b));
            }
            let (q, kv_part) = row.split_at_mut(qd);
            let (k, v) = kv_part.split_at_mut(kvd);
            for (t, norm) in [(&mut *q, &w.self_attn.q_norm), (&mut *k, &w.self_attn.k_norm)] {
                if let Some(g) = norm {
                    let tmp = &mut head_tmp[..t.len()];
                    tmp.copy_from_slice(t);
                    rms_norm(tmp, hd, c.rms_norm_eps, Some(g), t);
                }
            }
            rope.apply(q, c.num_attention_heads, pos)?;
            rope.apply(k, c.num_key_value_heads, pos)?;
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
                window_start: window.map_or(0, |w| (pos + 1).saturating_sub(w)),
            })
            .collect();
        T::paged_attention(&queries, &cache.layer(layer), c.num_attention_heads, scale, attn)?;
        drop(queries);
        self.linear(OpId::new(layer, Op::O), n, attn, proj)?;
        add_residual(h, proj, w.attention_output_norm(), c.rms_norm_eps, d, x);
        Ok(())
    }

    /// Norm, gate_up, gating, down (+ norm), residual add.
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
        let w = &self.model.weights.layers[layer];
        let n = self.rows.len();
        rms_norm(h, c.hidden_size, c.rms_norm_eps, Some(w.mlp_input_norm()), x);
        self.linear(OpId::new(layer, Op::GateUp), n, x, gate_up)?;
        gated_mul(gate_up, c.intermediate_size, c.hidden_act, act);
        self.linear(OpId::new(layer, Op::Down), n, act, proj)?;
        add_residual(h, proj, w.post_feedforward_layernorm.as_deref(), c.rms_norm_eps, c.hidden_size, x);
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

/// `h += out`, or `h += RMSNorm(out)·γ` where the sublayer has a norm on
/// its output (`tmp` holds the normed rows).
fn add_residual<T: Float>(h: &mut [T], out: &[T], norm: Option<&[f32]>, eps: f32, d: usize, tmp: &mut [T]) {
    match norm {
        Some(g) => {
            rms_norm(out, d, eps, Some(g), tmp);
            h.iter_mut().zip(tmp.iter()).for_each(|(a, &b)| *a += b);
        }
        None => h.iter_mut().zip(out).for_each(|(a, &b)| *a += b),
    }
}
