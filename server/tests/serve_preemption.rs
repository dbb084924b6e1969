//! A KV cache far too small for the load: sequences are preempted (blocks
//! freed, recomputed later) and every request still completes with exactly
//! the greedy output it gets when it runs alone.

mod serve_common;

use std::time::Duration;

use serde_json::json;
use serve_common::{choice_text, start};

/// 2 · 30 layers · 16 tokens · 192 (K/V width) · 4 bytes.
const BLOCK_BYTES: usize = 737_280;

#[test]
fn tiny_kv_cache_preempts_and_still_completes_every_request_exactly() {
    // 10 blocks = 160 tokens; each request needs up to ~4 blocks.
    let kv = (10 * BLOCK_BYTES).to_string();
    let s = start(&["--kv-cache-memory", &kv]);
    assert_eq!(s.metric("talaria_kv_cache_total_blocks"), 10.0);
    let prompts = [
        "The quick brown fox",
        "In the beginning there was",
        "Rust is a language that",
        "Ten facts about the moon:",
        "Dear diary, today I",
        "The ocean is deep and",
    ];
    let req = |p: &str| json!({"prompt": p, "max_tokens": 40, "temperature": 0, "ignore_eos": true});
    let alone: Vec<String> = prompts.iter().map(|p| choice_text(&s.ok("/v1/completions", &req(p)), 0)).collect();
    assert_eq!(s.metric("talaria_num_preemptions_total"), 0.0, "one at a time fits");

    let together: Vec<(u16, String, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let s = &s;
                sc.spawn(move || {
                    let r = s.post("/v1/completions", &req(p));
                    (r.status, choice_text(&r.body, 0), r.body["choices"][0]["finish_reason"].as_str().unwrap_or("").to_string())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (status, text, finish)) in together.iter().enumerate() {
        assert_eq!(*status, 200);
        assert_eq!(finish, "length");
        assert_eq!(*text, alone[i], "prompt {i} differs after preemption");
    }
    assert!(s.metric("talaria_num_preemptions_total") > 0.0, "6 × 4 blocks in 10 must preempt");
    assert!(s.wait_idle(Duration::from_secs(30)));

    // A request that could never fit in the cache is refused up front.
    let r = s.post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 200}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "max_tokens");
}
