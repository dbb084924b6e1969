//! Per-op channel scales `s_c` (docs/DESIGN.md §3) from a fixed public calibration
//! text. We take each channel's largest magnitude over the text rather than
//! its RMS: single rows (the first position's "attention sink", outlier
//! channels) exceed the RMS several-fold, and a pad must dominate every row,
//! not the average one. The RMS would put most prompts' rows over the
//! energy budget (and have them scaled down before masking). They are public
//! constants of the model. The CVM measures them itself at connect time with
//! unmasked (`plain`) worker calls — the text is public, so nothing private
//! is sent — rather than trusting numbers an untrusted worker would report.

use std::collections::HashMap;

use talaria_engine::{DecoderModel, KvPool, Linear, LogitsWanted, SeqChunk, StepTimings};
use talaria_kernels::{Float, Rows, RowsMut};
use talaria_models::{OpId, Tokenizer};

/// Public calibration texts: chat turns, prose, code, numbers and other
/// languages, each run as its own sequence so several first positions (where
/// activations peak) are seen.
pub const CALIBRATION_TEXTS: &[&str] = &[
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France, and how many people live there?<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris, home to about 2.1 million people (over 12 million in the metropolitan area).<|im_end|>\n",
    "<|im_start|>user\nWrite a Python function that checks whether a number is prime, and explain it step by step.<|im_end|>\n<|im_start|>assistant\n```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    for k in range(2, int(n ** 0.5) + 1):\n        if n % k == 0:\n            return False\n    return True\n```\nIt tries every divisor up to the square root.<|im_end|>\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who told stories about the stars. Every night the children gathered to listen, and every night he began: \"Long ago, before the lighthouse was built...\"",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nSELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name ORDER BY 2 DESC;\n#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "Photosynthesis converts light energy into chemical energy: 6 CO2 + 6 H2O -> C6H12O6 + 6 O2. The reaction takes place in the chloroplasts; in 2023 researchers measured rates of 12.5 umol/m2/s at 25 C.",
    "Le temps est beau aujourd'hui. ¿Dónde está la biblioteca? Der schnelle braune Fuchs springt über den faulen Hund. 東京は日本の首都です。 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nGive me three tips for staying healthy.<|im_end|>\n<|im_start|>assistant\n1. Drink plenty of water. 2. Eat a balanced diet with vegetables and fruit. 3. Sleep seven to nine hours a night.<|im_end|>\n",
];

/// Multiplier on the calibration peaks. Real prompts reach a few times the
/// peaks of one calibration text in some outlier channels (seen up to ~6× in
/// `mlp.down_proj` inputs); σ never follows them (it would show private
/// magnitudes to the worker): a row whose whitened energy exceeds the budget
/// is scaled down by a private power of two before masking. A larger σ
/// would make that rarer but grows the rounding error of the unmasked
/// product in proportion, and with it the rare 1-ulp flips when the exact
/// f64 result is rounded to f32.
pub const SCALE_HEADROOM: f64 = 2.0;

/// Channels whose calibration peak is tiny still get at least this fraction
/// of the op's mean peak, so no channel is ever left unmasked.
pub const SCALE_FLOOR: f64 = 0.05;

/// Wraps a `Linear` and records the per-channel largest magnitude of each
/// op's input rows.
struct ScaleProbe<'a> {
    inner: &'a mut dyn Linear,
    peaks: HashMap<OpId, Vec<f64>>,
}

impl Linear for ScaleProbe<'_> {
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        let d_in = x.len() / rows.max(1);
        let peak = self.peaks.entry(id).or_insert_with(|| vec![0.0; d_in]);
        match x {
            Rows::F32(v) => observe_peaks(peak, v, d_in),
            Rows::F64(v) => observe_peaks(peak, v, d_in),
        }
        self.inner.forward(id, rows, x, out)
    }
    fn name(&self) -> String {
        "calibration".into()
    }
}

fn observe_peaks<T: Float>(peak: &mut [f64], x: &[T], d_in: usize) {
    for row in x.chunks_exact(d_in) {
        peak.iter_mut().zip(row).for_each(|(p, &v)| *p = p.max(v.to_f64().abs()));
    }
}

/// Measures the channel scales of every op's input on `CALIBRATION_TEXTS`,
/// running the model over `linear` (the worker with public-data calls in
/// the CVM; a local backend in the attack suite, which recomputes them).
pub fn channel_scales(model: &DecoderModel, tok: &Tokenizer, linear: &mut dyn Linear) -> anyhow::Result<HashMap<OpId, Vec<f64>>> {
    // A model with a short context sees each text's beginning only.
    let max = model.config.max_position_embeddings;
    let texts: Vec<Vec<u32>> =
        CALIBRATION_TEXTS.iter().map(|t| tok.encode(t).map(|ids| ids[..ids.len().min(max)].to_vec())).collect::<Result<_, _>>()?;
    let blocks: usize = texts.iter().map(|ids| ids.len().div_ceil(16)).sum();
    let mut kv = KvPool::new(&model.config, blocks, 16);
    let mut seqs = Vec::new();
    for ids in &texts {
        let mut seq = kv.new_sequence();
        seq.reserve(ids.len())?;
        seqs.push(seq);
    }
    // One batched step: every text is its own sequence. An untied head is
    // the worker's too, so every position asks for logits (a tied head is
    // the CVM's, and the logits would cost it ~20 GFLOP for nothing).
    let logits = if model.config.tie_word_embeddings { LogitsWanted::None } else { LogitsWanted::All };
    let chunks: Vec<SeqChunk> = seqs.iter().zip(&texts).map(|(s, ids)| SeqChunk { blocks: s, tokens: ids, logits }).collect();
    let mut probe = ScaleProbe { inner: linear, peaks: HashMap::new() };
    model.forward(&chunks, &mut kv, &mut probe, &mut StepTimings::default())?;
    Ok(probe.peaks.into_iter().map(|(id, peak)| (id, scales_from_peaks(peak))).collect())
}

/// The channel scales of one op from the per-channel peak magnitudes of its
/// calibration rows: `SCALE_HEADROOM · max(peak, SCALE_FLOOR · mean peak)`.
/// Public, so anyone who saw the calibration rows (the worker served them)
/// gets the same numbers.
pub fn scales_from_peaks(peak: Vec<f64>) -> Vec<f64> {
    let mean = peak.iter().sum::<f64>() / peak.len().max(1) as f64;
    let floor = (SCALE_FLOOR * mean).max(1e-6);
    peak.into_iter().map(|v| SCALE_HEADROOM * v.max(floor)).collect()
}
