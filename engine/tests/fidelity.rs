//! The plain engine against the independent float32 numpy reference
//! (reference/llama_reference.py) on the real default model: with the
//! weights as stored (the default), greedy tokens identical and logits
//! within 1e-3; stored weights give exactly the logits of their f32
//! conversion; bf16 weights keep wide-margin prompts only.

use std::sync::Arc;

use talaria_engine::{generate, DecoderModel, GenerateRequest, KvPool, LocalLinear, SamplingParams};
use talaria_kernels::{WeightDType, WeightFormat};
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};

fn reference_data() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/reference_logits.json")).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn engine(ck: &Checkpoint, format: WeightFormat) -> (DecoderModel, LocalLinear, KvPool) {
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(ck, format).unwrap()).unwrap();
    let linear = LocalLinear::new(Arc::new(WorkerWeights::load(ck, format).unwrap()));
    let kv = KvPool::new(&model.config, 64, 16);
    (model, linear, kv)
}

fn greedy(prompt_ids: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest { prompt_ids, params: SamplingParams::greedy(), max_tokens, stop_strings: vec![], ignore_eos: true }
}

#[test]
fn default_weights_match_the_reference_greedy_tokens_and_logits() {
    let data = reference_data();
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let (model, mut linear, mut kv) = engine(&ck, WeightFormat::default());
    let mut worst = 0f32;
    for p in data["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let prompt_ids = ids(&p["prompt_ids"]);
        let text = p["text"].as_str().unwrap();
        assert_eq!(ck.tokenizer.encode(text).unwrap(), prompt_ids, "{name}: prompt ids");
        let want = ids(&p["greedy_ids"]);
        let steps = p["steps"].as_array().unwrap();
        let mut step = 0;
        let out = generate(&model, &mut kv, &mut linear, &ck.tokenizer, &greedy(prompt_ids, want.len()), |logits, _, _| {
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
fn stored_weights_give_their_f32_conversions_logits_bit_for_bit() {
    let data = reference_data();
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let (stored, mut stored_linear, mut kv_a) = engine(&ck, WeightFormat::Stored);
    assert_eq!(stored.weights.embed_tokens.dtype(), WeightDType::Q8_0, "the file's blocks, kept");
    let (f32_model, mut f32_linear, mut kv_b) = engine(&ck, WeightFormat::Convert(WeightDType::F32));
    let prompt = ids(&data["prompts"][0]["prompt_ids"]);
    let logits_of = |model: &DecoderModel, linear: &mut LocalLinear, kv: &mut KvPool| {
        let mut all: Vec<u32> = Vec::new();
        generate(model, kv, linear, &ck.tokenizer, &greedy(prompt.clone(), 8), |logits, _, _| {
            all.extend(logits.iter().map(|v| v.to_bits()));
        })
        .unwrap();
        all
    };
    let a = logits_of(&stored, &mut stored_linear, &mut kv_a);
    let b = logits_of(&f32_model, &mut f32_linear, &mut kv_b);
    assert!(!a.is_empty());
    assert!(a == b, "stored and f32 weights disagree in some logit bit");
}

#[test]
fn bf16_weights_keep_greedy_on_easy_prompts() {
    // bf16 rounding moves logits by ~1e-2: only prompts with a wide margin
    // are expected to keep their greedy continuation exactly.
    let data = reference_data();
    let ck = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap();
    let (model, mut linear, mut kv) = engine(&ck, WeightFormat::Convert(WeightDType::Bf16));
    let p = data["prompts"].as_array().unwrap().iter().find(|p| p["min_margin"].as_f64().unwrap() > 0.5).expect("a wide-margin prompt");
    let out = generate(&model, &mut kv, &mut linear, &ck.tokenizer, &greedy(ids(&p["prompt_ids"]), 16), |_, _, _| {}).unwrap();
    let got: Vec<u32> = out.tokens.iter().map(|t| t.id).collect();
    assert_eq!(got, ids(&p["greedy_ids"])[..16]);
}
