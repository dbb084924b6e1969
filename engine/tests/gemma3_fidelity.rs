//! Gemma 3 270M (real weights, Q4_K_M GGUF) against HF transformers in f32
//! on the same file's dequantized weights (reference/make_gemma3_reference.py):
//! on 10 completion prompts, the plain engine's greedy 32 tokens are
//! transformers' and each step's top-10 logits are within 5e-4 of its (5e-5 measured).

use std::sync::Arc;

use talaria_engine::{generate, DecoderModel, GenerateRequest, KvPool, LocalLinear, SamplingParams};
use talaria_kernels::WeightFormat;
use talaria_models::fetch::{ensure_model, GEMMA3_270M};
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn greedy_tokens_and_logits_match_transformers() {
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/gemma3_reference.json")).unwrap();
    let ck = Checkpoint::open(ensure_model(&GEMMA3_270M, false).unwrap()).unwrap();
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, WeightFormat::Stored).unwrap()).unwrap();
    let mut linear = LocalLinear::new(Arc::new(WorkerWeights::load(&ck, WeightFormat::Stored).unwrap()));
    let mut kv = KvPool::new(&model.config, 64, 16);
    let prompts = data["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 10);
    let mut worst = 0f32;
    for p in prompts {
        let text = p["text"].as_str().unwrap();
        let prompt_ids = ids(&p["prompt_ids"]);
        assert_eq!(ck.tokenizer.encode(text).unwrap(), prompt_ids, "{text:?}: prompt ids");
        let want = ids(&p["greedy_ids"]);
        let steps = p["top10"].as_array().unwrap();
        let req = GenerateRequest {
            prompt_ids,
            params: SamplingParams::greedy(),
            max_tokens: want.len(),
            stop_strings: vec![],
            ignore_eos: true,
        };
        let mut step = 0;
        let out = generate(&model, &mut kv, &mut linear, &ck.tokenizer, &req, |logits, _, _| {
            if logits.is_empty() {
                return;
            }
            for pair in steps[step].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let diff = (logits[id] - pair[1].as_f64().unwrap() as f32).abs();
                worst = worst.max(diff);
                assert!(diff <= 5e-4, "{text:?} step {step} token {id}: |Δlogit| = {diff}");
            }
            step += 1;
        })
        .unwrap();
        assert_eq!(out.tokens.iter().map(|t| t.id).collect::<Vec<_>>(), want, "{text:?}: greedy continuation");
    }
    eprintln!("gemma3-270m: max |Δlogit| vs transformers (top-10 per step): {worst:.2e}");
}
