//! The model's own chat template, rendered as HF transformers renders it:
//! each tiny family model (`testdata/tiny`, a template in its family's
//! style, `reference/chat_templates/`) from its HF folder and its GGUF, on
//! conversations with system prompts, multiple turns, whitespace to trim,
//! reasoning to strip and roles the template refuses.

use std::path::Path;

use talaria_models::{ChatMessage, Checkpoint};

#[test]
fn every_family_renders_its_template_like_transformers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tiny");
    for family in ["llama", "qwen2", "qwen3", "mistral", "gemma3"] {
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(family).join("reference.json")).unwrap()).unwrap();
        let forms: &[&str] = if family == "mistral" { &["hf"] } else { &["hf", "model.gguf"] };
        for form in forms {
            let ck = Checkpoint::open(root.join(family).join(form)).unwrap();
            assert!(ck.tokenizer.has_chat_template(), "{family} {form}");
            for case in reference["chat"].as_array().unwrap() {
                let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
                let got = ck.tokenizer.chat_prompt(&messages);
                match case["text"].as_str() {
                    Some(want) => assert_eq!(got.as_deref(), Ok(want), "{family} {form}: {messages:?}"),
                    None => {
                        let err = got.expect_err("transformers refused these messages");
                        let why = case["error"].as_str().unwrap();
                        assert!(err.contains(why), "{family} {form}: {err:?} should carry {why:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_base_model_without_a_template_refuses_chat_clearly() {
    let ck = Checkpoint::open(talaria_models::fetch::ensure_model(&talaria_models::fetch::GEMMA3_270M, false).unwrap()).unwrap();
    assert!(!ck.tokenizer.has_chat_template());
    let err = ck.tokenizer.chat_prompt(&[ChatMessage::new("user", "Hi")]).unwrap_err();
    assert!(err.contains("no chat template") && !err.contains('/'), "{err}");
}
