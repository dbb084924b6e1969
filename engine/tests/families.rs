//! Every supported family against HF transformers: tiny random-weight
//! models made by `reference/make_tiny_models.py` (Llama 3 RoPE scaling,
//! Qwen2 biases, Qwen3 q/k norms, Mistral's sliding window, Gemma 3's
//! sandwich norms, GELU-tanh, scaled embedding and local/global layers), in
//! HF-folder and GGUF form. The plain engine must give transformers' f32
//! logits within 1e-4 at every position — in one prefill, in a prefill
//! followed by single-token steps (the KV cache across sliding windows) and
//! along the greedy continuation — and the same greedy tokens, in the fast
//! (f32) and the exact (f64) mode alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use talaria_engine::{generate, DecoderModel, GenerateRequest, KvPool, LocalLinear, LogitsWanted, SamplingParams, SeqChunk, StepTimings};
use talaria_kernels::{Precision, WeightFormat};
use talaria_models::{Checkpoint, CvmWeights, Family, WorkerWeights};

const TOLERANCE: f32 = 1e-4;

fn tiny(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata/tiny").join(family)
}

fn reference(family: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(tiny(family).join("reference.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

struct Engine {
    model: DecoderModel,
    linear: LocalLinear,
    kv: KvPool,
}

fn engine(path: &Path, precision: Precision) -> Engine {
    let ck = Checkpoint::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, WeightFormat::default()).unwrap()).unwrap();
    let weights = Arc::new(WorkerWeights::load(&ck, WeightFormat::default()).unwrap());
    let linear = if precision == Precision::F64 { LocalLinear::exact(weights) } else { LocalLinear::new(weights) };
    let kv = KvPool::with_precision(&model.config, 32, 4, precision);
    Engine { model, linear, kv }
}

fn assert_close(got: &[f32], want: &[f32], what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: vocabulary size");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: max |Δlogit| = {worst:.2e} > {TOLERANCE:.0e}");
    worst
}

/// Teacher-forced logits at every position: one prefill of the whole
/// sequence, then a prefill of 6 tokens and one token per step.
fn check_forced(e: &mut Engine, reference: &serde_json::Value, what: &str) -> f32 {
    let vocab = e.model.config.vocab_size;
    let mut worst = 0f32;
    for (s, seq) in reference["forced"].as_array().unwrap().iter().enumerate() {
        let tokens = ids(&seq["ids"]);
        let want: Vec<Vec<f32>> = seq["logits"].as_array().unwrap().iter().map(floats).collect();
        for split in [tokens.len(), 6] {
            let mut blocks = e.kv.new_sequence();
            let mut got: Vec<f32> = Vec::new();
            let mut start = 0;
            while start < tokens.len() {
                let end = if start == 0 { split } else { start + 1 };
                blocks.reserve(end - start).unwrap();
                let chunk = SeqChunk { blocks: &blocks, tokens: &tokens[start..end], logits: LogitsWanted::All };
                got.extend(e.model.forward(&[chunk], &mut e.kv, &mut e.linear, &mut StepTimings::default()).unwrap());
                blocks.advance(end - start);
                start = end;
            }
            for (p, want) in want.iter().enumerate() {
                let w =
                    assert_close(&got[p * vocab..(p + 1) * vocab], want, &format!("{what} forced {s} (first chunk {split}) position {p}"));
                worst = worst.max(w);
            }
        }
    }
    worst
}

/// HF's greedy continuation and every step's logits.
fn check_greedy(e: &mut Engine, ck: &Checkpoint, reference: &serde_json::Value, what: &str) -> f32 {
    let mut worst = 0f32;
    for (i, p) in reference["prompts"].as_array().unwrap().iter().enumerate() {
        let want = ids(&p["greedy_ids"]);
        let steps: Vec<Vec<f32>> = p["logits"].as_array().unwrap().iter().map(floats).collect();
        let req = GenerateRequest {
            prompt_ids: ids(&p["prompt_ids"]),
            params: SamplingParams::greedy(),
            max_tokens: want.len(),
            stop_strings: vec![],
            ignore_eos: true,
        };
        let mut step = 0;
        let out = generate(&e.model, &mut e.kv, &mut e.linear, &ck.tokenizer, &req, |logits, _, _| {
            if logits.is_empty() {
                return;
            }
            worst = worst.max(assert_close(logits, &steps[step], &format!("{what} prompt {i} step {step}")));
            step += 1;
        })
        .unwrap();
        assert_eq!(out.tokens.iter().map(|t| t.id).collect::<Vec<_>>(), want, "{what} prompt {i}: greedy tokens");
    }
    worst
}

fn check_family(family: &str, expected: Family, forms: &[&str]) {
    let reference = reference(family);
    for form in forms {
        let path = tiny(family).join(form);
        let ck = Checkpoint::open(&path).unwrap();
        assert_eq!(ck.config.family, expected, "{family} {form}: family");
        for precision in [Precision::F32, Precision::F64] {
            let what = format!("{family} {form} {}", precision.name());
            let mut e = engine(&path, precision);
            let forced = check_forced(&mut e, &reference, &what);
            let greedy = check_greedy(&mut e, &ck, &reference, &what);
            eprintln!("{what}: max |Δlogit| vs transformers: forced {forced:.2e}, greedy {greedy:.2e}");
        }
    }
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check_family("llama", Family::Llama, &["hf", "model.gguf"]);
    let ck = Checkpoint::open(tiny("llama").join("model.gguf")).unwrap();
    assert!(matches!(ck.config.rope_scaling, Some(talaria_models::RopeScaling::Factors(_))), "GGUF carries rope_freqs");
}

#[test]
fn qwen2_biases_match_transformers() {
    check_family("qwen2", Family::Qwen2, &["hf", "model.gguf"]);
}

#[test]
fn qwen3_qk_norms_match_transformers() {
    check_family("qwen3", Family::Qwen3, &["hf", "model.gguf"]);
}

#[test]
fn mistral_sliding_window_matches_transformers() {
    check_family("mistral", Family::Mistral, &["hf"]);
}

#[test]
fn gemma3_matches_transformers() {
    check_family("gemma3", Family::Gemma3, &["hf", "model.gguf"]);
}
