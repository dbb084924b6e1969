//! A GGUF vocabulary (`tokenizer.ggml.*`) as the equivalent HF
//! `tokenizer.json`, so every tokenizer runs through the same `tokenizers`
//! implementation. Two kinds, as `tokenizer.ggml.model` names them:
//! - `gpt2`: byte-level BPE with the file's merges, split first by the
//!   pre-tokenizer `tokenizer.ggml.pre` names;
//! - `llama`: SentencePiece BPE (Llama 1/2, Gemma) with byte fallback; the
//!   file has no merges, so they are rebuilt from the vocabulary as HF
//!   transformers does for these files (`gemma_tokenizer` in its GGUF
//!   integration): every split of a token into two vocabulary entries,
//!   ranked by the merged token's position in the file, longer left parts
//!   first.

use std::collections::HashMap;

use serde_json::{json, Value};

/// GGUF token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Llama 3's split (`llama-bpe`), as llama.cpp and transformers use it.
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.json` of a GPT-2-style byte-level BPE vocabulary.
pub(crate) fn byte_level_bpe(tokens: &[&str], merges: &[&str], types: &[i64], pre: &str) -> Result<Value, String> {
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let split_then_bytes = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
    };
    let pre_tokenizer = match pre {
        // SmolLM: every digit is its own pre-token, then GPT-2's split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]}),
        "default" | "gpt-2" | "gpt2" => byte_level,
        "llama-bpe" | "llama3" | "llama-v3" => split_then_bytes(LLAMA3_SPLIT),
        "qwen2" => split_then_bytes(QWEN2_SPLIT),
        other => return Err(format!("pre-tokenizer {other:?} is not supported (supported: smollm, gpt2, llama-bpe, qwen2)")),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types, |_| true),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges},
    }))
}

/// The `tokenizer.json` of a SentencePiece BPE vocabulary (spaces as `▁`,
/// unknown characters as `<0xNN>` byte tokens).
pub(crate) fn sentencepiece_bpe(tokens: &[&str], types: &[i64], unk: &str) -> Value {
    // A token of spaces alone is stored with real spaces; the normalizer
    // turns every space into `▁`, so it is spelled that way.
    let spelled: Vec<String> = tokens
        .iter()
        .map(|t| if t.contains(' ') && t.trim().is_empty() { "\u{2581}".repeat(t.chars().count()) } else { t.to_string() })
        .collect();
    // Later duplicates win, as in a Python dict.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(spelled.len());
    for (i, t) in spelled.iter().enumerate() {
        index.insert(t, i);
    }
    let mut merges: Vec<(usize, usize, &str, &str)> = Vec::new();
    for (&token, &i) in &index {
        let bounds: Vec<usize> = token.char_indices().map(|(b, _)| b).skip(1).collect();
        for b in bounds {
            let (l, r) = token.split_at(b);
            if index.contains_key(l) && index.contains_key(r) {
                merges.push((i, l.chars().count(), l, r));
            }
        }
    }
    // Best first: the merged token's position, then the longer left part.
    merges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let merges: Vec<Value> = merges.iter().map(|(_, _, l, r)| json!([l, r])).collect();
    let vocab: serde_json::Map<String, Value> = index.iter().map(|(t, i)| (t.to_string(), json!(i))).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types, |t| index.contains_key(t)),
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges},
    })
}

/// Control tokens (special) and user-defined ones (not special, and only
/// those the vocabulary spells as stored), matched whole before the model.
fn added_tokens(tokens: &[&str], types: &[i64], user_defined_kept: impl Fn(&str) -> bool) -> Vec<Value> {
    tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match types.get(i) {
            Some(&CONTROL) => Some((i, t, true)),
            Some(&USER_DEFINED) if user_defined_kept(t) => Some((i, t, false)),
            _ => None,
        })
        .map(|(i, t, special)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect()
}
