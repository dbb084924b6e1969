//! The plain engine against the independent float32 numpy reference
//! (reference/llama_reference.py) on the real default model: greedy tokens
//! identical and logits within 1e-3 with f32 weights.

use std::sync::Arc;

use talaria_engine::{generate, GenerateRequest, KvPool, LlamaModel, LocalLinear, SamplingParams};
use talaria_kernels::WeightDType;
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};

#[test]
fn greedy_tokens_and_logits_match_reference() {
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/reference_logits.json")).unwrap();
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let model = LlamaModel::new(ck.config.clone(), CvmWeights::load(&ck, WeightDType::F32).unwrap()).unwrap();
    let mut linear = LocalLinear::new(Arc::new(WorkerWeights::load(&ck, WeightDType::F32).unwrap()));
    let mut kv = KvPool::new(&model.config, 64, 16);
    let mut worst = 0f32;
    for p in data["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let prompt_ids = ids(&p["prompt_ids"]);
        let text = p["text"].as_str().unwrap();
        assert_eq!(ck.tokenizer.encode(text).unwrap(), prompt_ids, "{name}: prompt ids");
        let want = ids(&p["greedy_ids"]);
        let steps = p["steps"].as_array().unwrap();
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
            for pair in steps[step]["top"].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let diff = (logits[id] - pair[1].as_f64().unwrap() as f32).abs();
                worst = worst.max(diff);
                assert!(diff <= 1e-3, "{name} step {step} token {id}: |Δlogit| = {diff}");
            }
            step += 1;
        })
        .unwrap();
        let got: Vec<u32> = out.tokens.iter().map(|t| t.id).collect();
        assert_eq!(got, want, "{name}: greedy continuation");
    }
    eprintln!("max |logit difference| vs reference (top-10 per step): {worst:.2e}");
}

#[test]
fn bf16_weights_keep_greedy_on_easy_prompts() {
    // bf16 rounding moves logits by ~1e-2: only prompts with a wide margin
    // are expected to keep their greedy continuation exactly.
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/reference_logits.json")).unwrap();
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let model = LlamaModel::new(ck.config.clone(), CvmWeights::load(&ck, WeightDType::Bf16).unwrap()).unwrap();
    let mut linear = LocalLinear::new(Arc::new(WorkerWeights::load(&ck, WeightDType::Bf16).unwrap()));
    let mut kv = KvPool::new(&model.config, 64, 16);
    let p = data["prompts"].as_array().unwrap().iter().find(|p| p["min_margin"].as_f64().unwrap() > 0.5).expect("a wide-margin prompt");
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let req = GenerateRequest {
        prompt_ids: ids(&p["prompt_ids"]),
        params: SamplingParams::greedy(),
        max_tokens: 16,
        stop_strings: vec![],
        ignore_eos: true,
    };
    let out = generate(&model, &mut kv, &mut linear, &ck.tokenizer, &req, |_, _, _| {}).unwrap();
    let got: Vec<u32> = out.tokens.iter().map(|t| t.id).collect();
    assert_eq!(got, ids(&p["greedy_ids"])[..16]);
}
