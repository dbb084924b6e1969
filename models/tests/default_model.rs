//! The real default model: loads, has the documented shape, and its
//! tokenizer matches the Python `tokenizers` ids stored in testdata.

use talaria_kernels::{WeightDType, WeightFormat};
use talaria_models::fetch::ensure_default_model;
use talaria_models::{ChatMessage, Checkpoint, Op, OpId, WorkerWeights};

fn checkpoint() -> Checkpoint {
    let path = ensure_default_model(false).expect("default model");
    Checkpoint::open(path).expect("open default model")
}

#[test]
fn config_matches_design() {
    let c = checkpoint().config;
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size, c.vocab_size, c.head_dim),
        (30, 576, 9, 3, 1536, 49152, 64)
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 1e5);
    assert_eq!(c.rms_norm_eps, 1e-5);
}

#[test]
fn tokenizer_matches_python_tokenizers() {
    let ck = checkpoint();
    let cases: Vec<serde_json::Value> = serde_json::from_str(include_str!("../testdata/tokenizer_ids.json")).unwrap();
    assert!(cases.len() >= 200);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = ck.tokenizer.encode(text).unwrap();
        assert_eq!(got, want, "ids for {text:?}");
        assert_eq!(ck.tokenizer.decode(&got, false).unwrap(), text, "round trip of {text:?}");
    }
}

#[test]
fn chat_template_and_stop_tokens() {
    let ck = checkpoint();
    let t = &ck.tokenizer;
    // The GGUF's own template, which adds SmolLM2's default system prompt.
    let p = t.chat_prompt(&[ChatMessage::new("user", "Hi")]).unwrap();
    assert_eq!(p, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    let ids = t.encode(&p).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one special token");
    assert!(t.stop_ids.contains(&2) && t.stop_ids.contains(&0));
    assert!(!t.add_bos);
}

#[test]
fn worker_weights_fuse_and_stay_as_stored() {
    let ck = checkpoint();
    let w = WorkerWeights::load(&ck, WeightFormat::Stored).unwrap();
    assert_eq!(w.layers.len(), 30);
    let qkv = w.get(OpId::new(3, Op::Qkv)).unwrap();
    assert_eq!((qkv.rows, qkv.cols), (576 + 2 * 192, 576));
    assert_eq!(qkv.dtype(), WeightDType::Q4_1, "the file's Q4_1 blocks, not a conversion");
    assert_eq!(qkv.size_bytes(), (576 + 2 * 192) * 576 / 32 * 20);
    let gu = w.get(OpId::new(29, Op::GateUp)).unwrap();
    assert_eq!((gu.rows, gu.cols), (2 * 1536, 576));
    assert!(w.get(OpId::lm_head()).is_none(), "tied head stays in the CVM");
    assert!(w.get(OpId::new(30, Op::O)).is_none());
}

#[test]
fn manifest_hash_is_stable() {
    let a = checkpoint().manifest_hash();
    assert_eq!(a.len(), 64);
    assert_eq!(a, checkpoint().manifest_hash());
}
