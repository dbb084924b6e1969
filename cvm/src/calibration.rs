//! Per-op channel scales `s_c` (DESIGN §3) from a fixed public calibration
//! text. We take each channel's largest magnitude over the text rather than
//! its RMS: single rows (the first position's "attention sink", outlier
//! channels) exceed the RMS several-fold, and a pad must dominate every row,
//! not the average one. The RMS would make the CVM's observed-scale check
//! fire on most prompts and flush pad pools. They are public
//! constants of the model. The CVM measures them itself at connect time with
//! unmasked (`plain`) worker calls — the text is public, so nothing private
//! is sent — rather than trusting numbers an untrusted worker would report.

use std::collections::HashMap;

use talaria_engine::{KvPool, Linear, LlamaModel, LogitsWanted, SeqChunk, StepTimings};
use talaria_models::{OpId, Tokenizer};


/// Public calibration text: prose, code, numbers and chat markup, so every
/// channel sees typical activations.
pub const CALIBRATION_TEXT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
What is the capital of France, and how many people live there?<|im_end|>\n<|im_start|>assistant\n\
The capital of France is Paris, home to about 2.1 million people (over 12 million in the metropolitan area).<|im_end|>\n\
def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\
Once upon a time, in a small village by the sea, there lived an old fisherman who told stories about the stars. \
Photosynthesis converts light energy into chemical energy: 6 CO2 + 6 H2O -> C6H12O6 + 6 O2. \
Le temps est beau aujourd'hui; ¿dónde está la biblioteca? 東京は日本の首都です。 \
SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name ORDER BY 2 DESC;";

/// Multiplier on the calibration peaks. Real prompts reach a few times the
/// peaks of one calibration text in some outlier channels (seen up to ~6× in
/// `mlp.down_proj` inputs); the pools handle that by raising σ and, beyond
/// 4×, flushing. A larger σ would make flushes rarer but grows the rounding
/// error of the unmasked product in proportion, and with it the rare 1-ulp
/// flips when the exact f64 result is rounded to f32.
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
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let d_in = x.len() / rows.max(1);
        let peak = self.peaks.entry(id).or_insert_with(|| vec![0.0; d_in]);
        for row in x.chunks_exact(d_in) {
            peak.iter_mut().zip(row).for_each(|(p, &v)| *p = p.max((v as f64).abs()));
        }
        self.inner.forward(id, x, rows, out)
    }
    fn name(&self) -> String {
        "calibration".into()
    }
}

/// Measures the channel scales of every op's input on `CALIBRATION_TEXT`,
/// running the model over `linear` (the worker with public-data calls in
/// the CVM; a local backend in the attack suite, which recomputes them).
pub fn channel_scales(model: &LlamaModel, tok: &Tokenizer, linear: &mut dyn Linear) -> anyhow::Result<HashMap<OpId, Vec<f64>>> {
    let ids = tok.encode(CALIBRATION_TEXT)?;
    let mut kv = KvPool::new(&model.config, ids.len().div_ceil(16), 16);
    let mut seq = kv.new_sequence();
    seq.reserve(ids.len())?;
    let mut probe = ScaleProbe { inner: linear, peaks: HashMap::new() };
    model.forward(&[SeqChunk { blocks: &seq, tokens: &ids, logits: LogitsWanted::Last }], &mut kv, &mut probe, &mut StepTimings::default())?;
    Ok(probe
        .peaks
        .into_iter()
        .map(|(id, peak)| {
            let mean = peak.iter().sum::<f64>() / peak.len().max(1) as f64;
            let floor = (SCALE_FLOOR * mean).max(1e-6);
            (id, peak.into_iter().map(|v| SCALE_HEADROOM * v.max(floor)).collect())
        })
        .collect())
}
