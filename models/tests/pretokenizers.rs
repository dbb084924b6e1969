//! The GPT-2-style splits llama.cpp calls `llama-bpe` (Llama 3) and `qwen2`,
//! against HF transformers' tokenizer built from the same GGUF
//! (reference/make_pretokenizer_ids.py): a real byte-level vocabulary and
//! its merges (the default model's) relabelled with each pre-tokenizer, on
//! 248 strings (code, numbers, whitespace runs, many scripts, emoji).

use talaria_models::fetch::ensure_default_model;
use talaria_models::gguf::{write_gguf, GgufFile, GgufValue};
use talaria_models::Tokenizer;

#[test]
fn llama_bpe_and_qwen2_splits_give_transformers_ids() {
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/pretokenizer_ids.json")).unwrap();
    let texts: Vec<&str> = data["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(texts.len() >= 200);
    let src = GgufFile::open(ensure_default_model(false).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("talaria-pretok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for pre in ["llama-bpe", "qwen2"] {
        let mut meta: Vec<(String, GgufValue)> = src
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer.") && *k != "tokenizer.chat_template" && *k != "tokenizer.ggml.pre")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.push(("general.architecture".into(), GgufValue::String("llama".into())));
        meta.push(("tokenizer.ggml.pre".into(), GgufValue::String(pre.into())));
        let path = dir.join(format!("{pre}.gguf"));
        write_gguf(&path, &meta, &[]).unwrap();
        let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        assert!(!tok.add_bos);
        for (text, want) in texts.iter().zip(data[pre].as_array().unwrap()) {
            let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(tok.encode(text).unwrap(), want, "{pre}: {text:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
